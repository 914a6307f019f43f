"""The plan file's model (CONTRACT.md §2) and the task graph derived from it.

Unknown keys are errors (`extra="forbid"`): a misspelt `on_failur:` must not silently fall back to
the default. Graph-level checks that need no agent (ids, cycles, references to unknown tasks) live
here; the checks against agent contracts live in `baton.domain.contract_check`.
"""

from __future__ import annotations

from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError

from baton.domain.errors import PlanError, PlanIssue
from baton.domain.references import GOAL, Ref, iter_refs, parse_binding

__all__ = [
    "Budget",
    "Defaults",
    "Estimate",
    "LlmAgentSpec",
    "LlmDeclaration",
    "Plan",
    "RetryOverride",
    "RetryPolicy",
    "TaskSpec",
    "load_plan",
    "parse_plan",
]

_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetryPolicy(_Strict):
    """Bounded retries with exponential backoff; `max_attempts` counts the first attempt too."""

    max_attempts: int = Field(3, ge=1)
    backoff_s: float = Field(1.0, ge=0)
    multiplier: float = Field(2.0, ge=1)
    max_backoff_s: float = Field(30.0, ge=0)
    jitter: float = Field(0.1, ge=0, le=1)  # ± fraction of the delay, derived, never random


class RetryOverride(_Strict):
    """A task's retry settings: each field left out falls back to the plan's defaults."""

    max_attempts: int | None = Field(None, ge=1)
    backoff_s: float | None = Field(None, ge=0)
    multiplier: float | None = Field(None, ge=1)
    max_backoff_s: float | None = Field(None, ge=0)
    jitter: float | None = Field(None, ge=0, le=1)


class Budget(_Strict):
    """Goal-wide caps, checked before an attempt starts (the cascading-retry guard)."""

    max_attempts: int | None = Field(None, ge=1)
    max_tokens: int | None = Field(None, ge=0)
    max_cost_usd: float | None = Field(None, ge=0)
    deadline_s: float | None = Field(None, gt=0)
    on_exhausted: Literal["fail", "escalate"] = "fail"


class Estimate(_Strict):
    """What one attempt is expected to spend; reserved before dispatch, reconciled after."""

    tokens: int = Field(0, ge=0)
    cost_usd: float = Field(0.0, ge=0)


class LlmAgentSpec(_Strict):
    """An LLM agent declared in the plan (`agents: {name: {llm: {...}}}`), no Python needed."""

    model: str = Field(min_length=1)  # `test` (deterministic, local) or `openai:<model>`
    instructions: str = ""
    input: str = Field(min_length=1)  # module:Model, the input contract
    output: str = Field(min_length=1)  # module:Model, the output contract
    base_url: str | None = None  # any OpenAI-compatible server; else BATON_LLM_BASE_URL


class LlmDeclaration(_Strict):
    llm: LlmAgentSpec


_AGENT_TAGS = ("module:callable", "llm:")


def _agent_form(value: Any) -> str | None:
    if isinstance(value, str):
        return _AGENT_TAGS[0]
    return _AGENT_TAGS[1] if isinstance(value, dict | LlmDeclaration) else None


# An allowlist entry: `module:callable`, or an `llm:` declaration. The discriminator makes a bad
# declaration's error name its own field (agents.x.llm.temperature), not every union member.
AgentTarget = Annotated[
    Annotated[str, Tag(_AGENT_TAGS[0])] | Annotated[LlmDeclaration, Tag(_AGENT_TAGS[1])],
    Discriminator(
        _agent_form,
        custom_error_type="agent_target",
        custom_error_message="expected 'module:callable' or a mapping with an llm: declaration",
    ),
]


class Defaults(_Strict):
    retry: RetryPolicy = RetryPolicy()
    timeout_s: float | None = Field(60.0, gt=0)


class TaskSpec(_Strict):
    id: str = Field(pattern=_ID_PATTERN)
    agent: str
    input: dict[str, Any] = Field(default_factory=dict)
    after: list[str] = Field(default_factory=list)
    retry: RetryOverride | None = None
    timeout_s: float | None = Field(None, gt=0)
    min_confidence: float | None = Field(None, ge=0, le=1)
    on_low_confidence: Literal["retry", "escalate"] = "retry"
    on_failure: Literal["fail", "escalate", "abandon"] = "fail"
    side_effects: Literal["none", "idempotent", "unsafe"] = "none"
    estimate: Estimate | None = None
    # `process`: a sync agent runs in a worker process its timeout terminates (docs/llm.md)
    isolation: Literal["thread", "process"] = "thread"

    @cached_property
    def bindings(self) -> dict[str, Any]:
        """The input bindings parsed into Refs and literals."""
        return {name: parse_binding(value) for name, value in self.input.items()}

    @cached_property
    def refs(self) -> list[tuple[str, Ref]]:
        """(target field, reference) for every reference in the bindings."""
        return [(name, ref) for name, value in self.bindings.items() for ref in iter_refs(value)]


class Plan(_Strict):
    version: Literal[1]
    name: str = Field(min_length=1)
    agents: dict[str, AgentTarget] = Field(min_length=1)
    input: str | None = None
    budget: Budget = Budget()
    defaults: Defaults = Defaults()
    tasks: list[TaskSpec] = Field(min_length=1)
    output: str | dict[str, Any] | None = None

    # Derived views, computed once per plan; a Plan is immutable.

    @cached_property
    def task_map(self) -> dict[str, TaskSpec]:
        return {task.id: task for task in self.tasks}

    @cached_property
    def order(self) -> tuple[str, ...]:
        """Task ids in plan order: the tie-break for every decision, so decisions are stable."""
        return tuple(task.id for task in self.tasks)

    @cached_property
    def index(self) -> dict[str, int]:
        """Each task's position in plan order."""
        return {task_id: position for position, task_id in enumerate(self.order)}

    @cached_property
    def deps(self) -> dict[str, tuple[str, ...]]:
        """Upstream tasks of each task: those its bindings read, plus `after`."""
        result: dict[str, tuple[str, ...]] = {}
        for task in self.tasks:
            upstream = [ref.source for _, ref in task.refs if ref.source != GOAL]
            upstream += task.after
            result[task.id] = tuple(dict.fromkeys(upstream))
        return result

    @cached_property
    def dependants(self) -> dict[str, tuple[str, ...]]:
        result: dict[str, list[str]] = {task_id: [] for task_id in self.order}
        for task_id, upstream in self.deps.items():
            for dep in upstream:
                result.setdefault(dep, []).append(task_id)
        return {key: tuple(value) for key, value in result.items()}

    @cached_property
    def output_binding(self) -> Any:
        return parse_binding(self.output) if self.output is not None else None

    @cached_property
    def output_sources(self) -> frozenset[str]:
        """Tasks the goal's output reads; abandoning one of them fails the goal."""
        refs = iter_refs(self.output_binding) if self.output is not None else iter(())
        return frozenset(ref.source for ref in refs if ref.source != GOAL)

    def retry_for(self, task: TaskSpec) -> RetryPolicy:
        if task.retry is None:
            return self.defaults.retry
        overrides = task.retry.model_dump(exclude_none=True)
        return self.defaults.retry.model_copy(update=overrides)

    def timeout_for(self, task: TaskSpec) -> float | None:
        return task.timeout_s if task.timeout_s is not None else self.defaults.timeout_s

    def graph_issues(self) -> list[PlanIssue]:
        """Duplicate ids, unknown agents and task references, and cycles."""
        issues: list[PlanIssue] = []
        seen: set[str] = set()
        for task in self.tasks:
            if task.id in seen:
                issues.append(PlanIssue(f"tasks[{task.id}]", "duplicate task id"))
            seen.add(task.id)
            if task.id == GOAL:
                issues.append(PlanIssue(f"tasks[{task.id}]", "'goal' is reserved for $goal"))
            if task.agent not in self.agents:
                issues.append(
                    PlanIssue(
                        f"tasks[{task.id}].agent",
                        f"agent {task.agent!r} is not in the plan's agents allowlist",
                    )
                )
            for name, ref in task.refs:
                if ref.source != GOAL and ref.source not in self.task_map:
                    issues.append(
                        PlanIssue(
                            f"tasks[{task.id}].input.{name}", f"{ref}: no task {ref.source!r}"
                        )
                    )
                if ref.source == task.id:
                    issues.append(
                        PlanIssue(f"tasks[{task.id}].input.{name}", f"{ref}: a task reads itself")
                    )
            for dep in task.after:
                if dep not in self.task_map:
                    issues.append(PlanIssue(f"tasks[{task.id}].after", f"no task {dep!r}"))
        for ref in iter_refs(self.output_binding):
            if ref.source != GOAL and ref.source not in self.task_map:
                issues.append(PlanIssue("output", f"{ref}: no task {ref.source!r}"))
        if not issues:
            cycle = self._find_cycle()
            if cycle:
                issues.append(
                    PlanIssue(f"tasks[{cycle[0]}]", "dependency cycle: " + " -> ".join(cycle))
                )
        return issues

    def _find_cycle(self) -> list[str]:
        """A cycle as a list of task ids (first repeated at the end), or [] for a DAG."""
        state: dict[str, int] = {}  # 1 = on the stack, 2 = done
        stack: list[str] = []

        def visit(node: str) -> list[str]:
            state[node] = 1
            stack.append(node)
            for dep in self.deps.get(node, ()):
                if state.get(dep) == 1:
                    return [*stack[stack.index(dep) :], dep]
                if dep not in state and (found := visit(dep)):
                    return found
            stack.pop()
            state[node] = 2
            return []

        for task_id in self.order:
            if task_id not in state and (found := visit(task_id)):
                return found
        return []


def parse_plan(data: Any, *, source: str = "plan") -> Plan:
    """The plan model from data (already parsed from YAML/JSON), before any graph check."""
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        issues = [PlanIssue(_location(data, err["loc"]), err["msg"]) for err in exc.errors()]
        raise PlanError(issues, source=source) from None


def load_plan(data: Any, *, source: str = "plan") -> Plan:
    """Validate plan data and its graph; PlanError lists every problem."""
    plan = parse_plan(data, source=source)
    issues = plan.graph_issues()
    if issues:
        raise PlanError(issues, source=source)
    return plan


def _location(data: Any, loc: tuple[Any, ...]) -> str:
    """Render a pydantic error location with task ids instead of list indexes."""
    parts: list[str] = []
    node = data
    for key in loc:
        if len(parts) == 2 and parts[0] == "agents" and key in _AGENT_TAGS:
            continue  # which form of allowlist entry pydantic tried: not a place in the file
        if isinstance(key, int) and parts and parts[-1] == "tasks":
            task = node[key] if isinstance(node, list) and key < len(node) else None
            label = task.get("id") if isinstance(task, dict) else None
            parts[-1] = f"tasks[{label if label else key}]"
        else:
            parts.append(str(key))
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            node = None
    return ".".join(parts) or "plan"
