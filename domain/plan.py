"""The plan file's model (docs/reference.md, "The plan file") and the task graph derived from it.

Unknown keys are errors (`extra="forbid"`): a misspelt `on_failur:` must not silently fall back to
the default. Graph-level checks that need no agent (ids, cycles, references to unknown tasks) live
here; the checks against agent contracts live in `baton.domain.contract_check`.
"""

from __future__ import annotations

import json
from functools import cached_property
from graphlib import CycleError, TopologicalSorter
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError

from baton.domain.errors import PlanError, PlanIssue
from baton.domain.references import GOAL, BindingError, Ref, iter_refs, parse_binding

__all__ = [
    "Budget",
    "Defaults",
    "Estimate",
    "Expands",
    "Limits",
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
    # NaN and Infinity are not numbers a plan can mean, and not JSON (docs/reference.md).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


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


class Expands(_Strict):
    """A planner task: its agent's output is a plan fragment (baton.domain.expansion)."""

    result: str = Field(min_length=1)  # module:Model, the type the fragment's `output` produces
    may_use: list[str] | None = None  # agents its fragment may use; None: the whole allowlist


class Limits(_Strict):
    """Caps on the tasks added while a goal runs (fragments and map instances)."""

    max_tasks: int = Field(1000, ge=0)  # added tasks, goal-wide
    max_depth: int = Field(1, ge=0)  # planners emitting planners: 1 lets only plan tasks plan


class Defaults(_Strict):
    retry: RetryPolicy = RetryPolicy()
    timeout_s: float | None = Field(60.0, gt=0)
    # How many clarification questions a task may ask (baton.domain.gates).
    max_clarifications: int = Field(3, ge=0)


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
    # Human gates (baton.domain.gates): wait for `resolve --approve|--reject` before the first
    # dispatch; how many clarification questions the task may ask (None: the plan's default).
    approval: Literal["required"] | None = None
    max_clarifications: int | None = Field(None, ge=0)
    # Decomposition (baton.domain.expansion): a planner task, or a map over a list
    expands: Expands | None = None
    for_each: str | None = None  # `$source.path` of a list: one instance per element
    as_: str | None = Field(None, alias="as", pattern=_ID_PATTERN)  # the element, bound as `$as`

    @cached_property
    def for_each_ref(self) -> Ref | None:
        """The list a map runs over; None for a task that is not a map (or a malformed ref,
        which `graph_issues` reports)."""
        if self.for_each is None or not self.for_each.startswith("$"):
            return None
        try:
            parsed = parse_binding(self.for_each)
        except BindingError:
            return None
        return parsed if isinstance(parsed, Ref) else None

    @cached_property
    def bindings(self) -> dict[str, Any]:
        """The input bindings parsed into Refs and literals."""
        return {name: parse_binding(value) for name, value in self.input.items()}

    @cached_property
    def refs(self) -> list[tuple[str, Ref]]:
        """(target field, reference) for every reference in the bindings (a map's `$as` element
        is not a reference to a task)."""
        return [
            (name, ref)
            for name, value in self.bindings.items()
            for ref in iter_refs(value)
            if self.as_ is None or ref.source != self.as_
        ]


class Plan(_Strict):
    version: Literal[1]
    name: str = Field(min_length=1)
    agents: dict[str, AgentTarget] = Field(min_length=1)
    input: str | None = None
    budget: Budget = Budget()
    defaults: Defaults = Defaults()
    tasks: list[TaskSpec] = Field(min_length=1)
    output: str | dict[str, Any] | None = None
    limits: Limits = Limits()

    # Derived views, computed once per plan; a Plan is immutable.

    @cached_property
    def canonical_json(self) -> str:
        """The plan as `Started` records it (baton.domain.goal.canonical_plan), as JSON text:
        every mapping's keys sorted."""
        dumped = self.model_dump(mode="json", exclude_unset=True, by_alias=True)
        return json.dumps(dumped, sort_keys=True)

    @cached_property
    def fold_key(self) -> str:
        """The text `Goal` keys its plan cache with, for the recorded form of this plan."""
        return plan_key(json.loads(self.canonical_json))

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
        """Upstream tasks of each task (those its bindings read, plus `after`), in plan order.

        Plan order, never the order the bindings are written in: a mapping's key order is not
        part of the plan (a run file stores it with sorted keys), so nothing decided from the
        dependencies (`TaskReady.inputs`, its reason) may depend on it. Unknown ids, which
        `graph_issues` reports, sort last.
        """
        result: dict[str, tuple[str, ...]] = {}
        unknown = len(self.index)
        for task in self.tasks:
            upstream = {ref.source for _, ref in task.refs if ref.source != GOAL}
            upstream.update(task.after)
            if task.for_each_ref is not None and task.for_each_ref.source != GOAL:
                upstream.add(task.for_each_ref.source)
            result[task.id] = tuple(
                sorted(upstream, key=lambda dep: (self.index.get(dep, unknown), dep))
            )
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

    @cached_property
    def approval_tasks(self) -> frozenset[str]:
        """Tasks that wait for a human's approval before their first dispatch."""
        return frozenset(task.id for task in self.tasks if task.approval == "required")

    def clarifications_for(self, task: TaskSpec) -> int:
        if task.max_clarifications is not None:
            return task.max_clarifications
        return self.defaults.max_clarifications

    def retry_for(self, task: TaskSpec) -> RetryPolicy:
        if task.retry is None:
            return self.defaults.retry
        overrides = task.retry.model_dump(exclude_none=True)
        return self.defaults.retry.model_copy(update=overrides)

    def timeout_for(self, task: TaskSpec) -> float | None:
        return task.timeout_s if task.timeout_s is not None else self.defaults.timeout_s

    def binding_issues(self) -> list[PlanIssue]:
        """Bindings that do not parse (a malformed reference, NaN, nesting too deep), each
        located at its field; every other check reads the parsed bindings, so these come first."""
        issues: list[PlanIssue] = []
        for task in self.tasks:
            for name, value in task.input.items():
                try:
                    parse_binding(value)
                except BindingError as exc:
                    where = ".".join((f"tasks[{task.id}].input", name, *exc.path))
                    issues.append(PlanIssue(where, exc.message))
        if self.output is not None:
            try:
                parse_binding(self.output)
            except BindingError as exc:
                issues.append(PlanIssue(".".join(("output", *exc.path)), exc.message))
        return issues

    def graph_issues(self) -> list[PlanIssue]:
        """Malformed bindings; else duplicate ids, unknown agents and task references, cycles."""
        issues: list[PlanIssue] = self.binding_issues()
        if issues:
            return issues
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
        issues += _decomposition_issues(self)
        cycle = self.find_cycle()
        reads_itself = len(cycle) == 2 and any(
            ref.source == cycle[0] for _, ref in self.task_map[cycle[0]].refs
        )
        if cycle and not reads_itself:  # reported above, with the field
            issues.append(
                PlanIssue(f"tasks[{cycle[0]}]", "dependency cycle: " + " -> ".join(cycle))
            )
        return issues

    @cached_property
    def maps(self) -> tuple[str, ...]:
        """Ids of the map tasks (`for_each`), in plan order: decide looks at these alone."""
        return tuple(task.id for task in self.tasks if task.for_each is not None)

    def find_cycle(self) -> list[str]:
        """A cycle as task ids, each reading the next (the first repeated at the end), or [] for a
        DAG. graphlib sorts without recursion, so a 10,000-task chain is no deeper than a
        3-task one; its CycleError carries the cycle it found."""
        return _cycle_in({task_id: self.deps[task_id] for task_id in self.order})

    def topological_order(self) -> tuple[str, ...]:
        """Every task after all it depends on; CycleError when there is no such order."""
        graph = {task_id: self.deps[task_id] for task_id in self.order}
        return tuple(TopologicalSorter(graph).static_order())


def _decomposition_issues(plan: Plan) -> list[PlanIssue]:
    """`expands`, `for_each` and `as` that cannot work, whatever the agents' contracts."""
    issues: list[PlanIssue] = []
    for task in plan.tasks:
        where = f"tasks[{task.id}]"
        if task.expands is not None:
            for agent in task.expands.may_use or ():
                if agent not in plan.agents:
                    message = f"agent {agent!r} is not in the plan's agents allowlist"
                    issues.append(PlanIssue(f"{where}.expands.may_use", message))
            if task.for_each is not None:
                message = "a map cannot expand: put the planner upstream of the map"
                issues.append(PlanIssue(f"{where}.expands", message))
        if task.for_each is None:
            if task.as_ is not None:
                issues.append(PlanIssue(f"{where}.as", "'as' names the element of for_each"))
            continue
        ref = task.for_each_ref
        if ref is None:
            message = f"{task.for_each!r} is not a reference ($goal.<path> or $<task>.<path>)"
            issues.append(PlanIssue(f"{where}.for_each", message))
        elif ref.source != GOAL and ref.source not in plan.task_map:
            issues.append(PlanIssue(f"{where}.for_each", f"{ref}: no task {ref.source!r}"))
        elif ref.source == task.id:
            issues.append(PlanIssue(f"{where}.for_each", f"{ref}: a task reads itself"))
        if task.as_ is None:
            issues.append(PlanIssue(f"{where}.as", "for_each needs 'as', the element's name"))
        elif task.as_ == GOAL or task.as_ in plan.task_map:
            message = f"{task.as_!r} would hide ${task.as_}; name the element otherwise"
            issues.append(PlanIssue(f"{where}.as", message))
    return issues


def _cycle_in(graph: dict[str, tuple[str, ...]]) -> list[str]:
    """A cycle of `graph` (task -> the tasks it reads, in plan order), or []."""
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        # graphlib lists each node before the nodes that depend on it; reversed, each task
        # is followed by the task it reads, as `a -> b` reads "a needs b". Rotated to start
        # at the task listed first, so the message does not depend on graphlib's walk.
        index = {task_id: position for position, task_id in enumerate(graph)}
        cycle = list(reversed(exc.args[1][1:]))
        first = min(range(len(cycle)), key=lambda i: index.get(cycle[i], len(index)))
        cycle = cycle[first:] + cycle[:first]
        return [*cycle, cycle[0]]
    return []


def _raw_cycle(data: Any) -> list[str]:
    """A cycle among the tasks of plan data that did not parse (a misspelt key elsewhere), so
    that one report names both; [] when the tasks are too malformed to tell."""
    tasks = data.get("tasks") if isinstance(data, dict) else None
    if not isinstance(tasks, list):
        return []
    graph: dict[str, tuple[str, ...]] = {}
    for task in tasks:
        if not isinstance(task, dict) or not isinstance(task.get("id"), str):
            continue
        try:
            refs = iter_refs(parse_binding(task.get("input") or {}))
            upstream = {ref.source for ref in refs if ref.source != GOAL}
        except Exception:  # a malformed reference: reported by the parse, not a graph edge
            upstream = set()
        after = task.get("after")
        if isinstance(after, list):
            upstream.update(dep for dep in after if isinstance(dep, str))
        graph.setdefault(task["id"], tuple(sorted(upstream)))
    return _cycle_in(graph)


def parse_plan(data: Any, *, source: str = "plan") -> Plan:
    """The plan model from data (already parsed from YAML/JSON), before any graph check."""
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        issues = [PlanIssue(_location(data, err["loc"]), err["msg"]) for err in exc.errors()]
        if cycle := _raw_cycle(data):  # "every problem at once": the graph's too
            issues.append(
                PlanIssue(f"tasks[{cycle[0]}]", "dependency cycle: " + " -> ".join(cycle))
            )
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


def plan_key(data: dict[str, Any]) -> str:
    """A recorded plan as compact JSON text with sorted keys: one plan in any key order gives
    one text (the key of `Goal`'s plan cache)."""
    return json.dumps(data, separators=(",", ":"), sort_keys=True, default=str)
