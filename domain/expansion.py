"""Decomposition at run time: planner tasks whose output is a plan fragment, and maps over a list.

A planner (`expands:`) returns `{"tasks": [...], "output": ...}` in the plan file's own task
syntax. Before any of it runs the fragment is held to every check `baton validate` makes: it is
placed beside the goal's tasks and the same `graph_issues` and `check_contracts` run over it, plus
`may_use`, the plan's `limits` and what the budget leaves. Accepted, it is recorded (`PlanExtended`)
and its tasks, renamed `<planner>/<id>`, join the goal; the planner stays `running` until the last
of them ends, and its output is then the fragment's `output`, validated as `expands.result`.

A map (`for_each: $ref`, `as: name`) runs one instance per element of a list known only at run
time: `MapExpanded` records the width read from the recorded output, and its instances
(`search[0]`, ...) read their element through the list itself (`$plan.queries.3`), so nothing of
the list is copied. The map's output is the list of its instances' outputs, in element order.

Everything here is a pure function of the goal's state and recorded events: replay rebuilds the
same tasks from `PlanExtended.fragment` and `MapExpanded.width`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError

from baton.domain.contract_check import check_contracts, check_value
from baton.domain.contracts import AgentContract, Contracts
from baton.domain.errors import PlanIssue
from baton.domain.plan import Plan, TaskSpec, _location
from baton.domain.references import GOAL, BindingError, iter_refs, parse_binding
from baton.domain.state import UNAVAILABLE, GoalState, TaskState, parent_of

__all__ = [
    "CHECKS",
    "PlanContracts",
    "check_fragment",
    "extend_with_fragment",
    "extend_with_map",
    "extended_plan",
    "fragment_of",
    "room_problems",
]

# What an accepted fragment passed, recorded with it (`PlanExtended.checks`).
CHECKS = (
    "syntax",
    "agents allowlist",
    "may_use",
    "graph (ids, references, cycles)",
    "contract types",
    "required fields",
    "literal types",
    "output produces expands.result",
    "limits",
    "budget",
)


class PlanContracts(dict[str, AgentContract]):
    """The agents' contracts (by agent name), and the models a run-time plan check reads besides
    them: the goal input model and each planner's `expands.result`, by its `module:Model`."""

    def __init__(
        self,
        contracts: Mapping[str, AgentContract] | None = None,
        *,
        input_model: type[BaseModel] | None = None,
        results: Mapping[str, type[BaseModel]] | None = None,
    ) -> None:
        super().__init__(contracts or {})
        self.input_model = input_model
        self.results = dict(results or {})


def input_model_of(contracts: Contracts) -> type[BaseModel] | None:
    return getattr(contracts, "input_model", None)


def result_model(contracts: Contracts, spec: TaskSpec) -> type[BaseModel] | None:
    results: dict[str, type[BaseModel]] = getattr(contracts, "results", {})
    return results.get(spec.expands.result) if spec.expands is not None else None


def judging_contract(state: GoalState, contracts: Contracts, spec: TaskSpec) -> AgentContract:
    """What an output of this task is judged against: its agent's contract; for a planner whose
    fragment already joined the goal (a human supplies what it could not build), its result;
    for a map (a human supplies its output: decision rules 4), the list of its agent's output
    model, what `$<map>` holds downstream (rules 1-3 judged one element's)."""
    if spec.for_each is not None and state.rules >= 4:
        listed = list_of(contracts[spec.agent].output_model)
        return AgentContract(input_model=listed, output_model=listed)
    result = result_model(contracts, spec) if spec.id in state.children else None
    if result is None:
        return contracts[spec.agent]
    return AgentContract(input_model=result, output_model=result)


def judging_confidence(state: GoalState, spec: TaskSpec) -> float | None:
    """The `min_confidence` an output of this task is judged with: none for a map's list (its
    instances are judged one by one), the task's for the rest."""
    return None if spec.for_each is not None and state.rules >= 4 else spec.min_confidence


@cache
def list_of(model: type[BaseModel]) -> type[BaseModel]:
    """The model of a list of `model`s, named `list[Model]` in what it reports."""
    name = f"list[{model.__name__}]"
    listed: type[BaseModel] = type(name, (RootModel[list[model]],), {"__module__": __name__})  # type: ignore[valid-type]
    return listed


# --- fragments ----------------------------------------------------------------------------------


class _Fragment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    tasks: list[TaskSpec] = Field(min_length=1)
    output: str | dict[str, Any]


def fragment_of(raw: Any) -> Any:
    """The fragment in a planner's output: its `tasks` and `output` (other fields the output
    model declares, such as `confidence`, are not part of it)."""
    if isinstance(raw, dict):
        return {key: raw[key] for key in ("tasks", "output") if key in raw}
    return raw


class FragmentError(ValueError):
    def __init__(self, issues: list[PlanIssue]) -> None:
        super().__init__("; ".join(map(str, issues)))
        self.issues = issues


def parse_fragment(planner: str, fragment: Any) -> tuple[list[TaskSpec], Any, Any]:
    """The fragment's tasks renamed `<planner>/<id>`, and its `output` binding as written and
    parsed (renamed too); inside
    the fragment a reference to one of its own ids names that task, any other names a task the
    goal already has. FragmentError lists what does not even parse."""
    try:
        parsed = _Fragment.model_validate(fragment)
    except ValidationError as exc:
        located = [PlanIssue(_location(fragment, err["loc"]), err["msg"]) for err in exc.errors()]
        raise FragmentError(located) from None
    local = {task.id for task in parsed.tasks}
    renames = {task_id: f"${planner}/{task_id}" for task_id in local}
    issues: list[PlanIssue] = []
    specs = []
    for task in parsed.tasks:
        values = _values(task)
        values["id"] = f"{planner}/{task.id}"
        values["input"] = _retarget(task.input, renames)
        if task.after:
            values["after"] = [f"{planner}/{dep}" if dep in local else dep for dep in task.after]
        if task.for_each is not None:
            values["for_each"] = _retarget(task.for_each, renames)
        if task.as_ is not None and task.as_ in local:
            message = f"{task.as_!r} would hide the fragment's task of that id"
            issues.append(PlanIssue(f"tasks[{task.id}].as", message))
        specs.append(TaskSpec.model_construct(task.model_fields_set, **values))
    raw_output = _retarget(parsed.output, renames)
    try:
        output = parse_binding(raw_output)
    except BindingError as exc:
        issues.append(PlanIssue(".".join(("output", *exc.path)), exc.message))
        output = None
    if issues:
        raise FragmentError(issues)
    return specs, raw_output, output


def _retarget(value: Any, targets: Mapping[str, str]) -> Any:
    """A raw binding whose references to a source in `targets` read the target instead, the
    rest of the path kept: `{"a": "$plan/a"}` renames a fragment's own ids, `{"query":
    "$plan.queries.3"}` points a map instance's element at its place in the list."""
    if isinstance(value, str):
        if value.startswith("$") and not value.startswith("$$"):
            source, dot, rest = value[1:].partition(".")
            if source in targets:
                return f"{targets[source]}{dot}{rest}"
        return value
    if isinstance(value, dict):
        return {key: _retarget(item, targets) for key, item in value.items()}
    if isinstance(value, list):
        return [_retarget(item, targets) for item in value]
    return value


def check_fragment(
    state: GoalState, contracts: Contracts, planner: str, raw: Any
) -> list[str]:
    """Every problem with the fragment in a planner's output; [] when it may join the goal."""
    spec = state.plan.task_map[planner]
    try:
        specs, raw_output, output = parse_fragment(planner, fragment_of(raw))
    except FragmentError as exc:
        return [_in_fragment(issue, planner) for issue in exc.issues]
    problems: list[str] = []
    if state.rules >= 4 and any(task.id == f"{planner}/{GOAL}" for task in specs):
        # renamed `<planner>/goal`, the plan's check never sees it: inside the fragment
        # `$goal` would read that task, not the goal input (rules 1-3 let it through)
        problems.append(f"tasks[{planner}/{GOAL}]: 'goal' is reserved for $goal")
    allowed = spec.expands.may_use if spec.expands is not None else None
    for task in specs:
        if allowed is not None and task.agent not in allowed and task.agent in state.plan.agents:
            problems.append(
                f"tasks[{task.id}].agent: agent {task.agent!r} is not in "
                f"tasks[{planner}].expands.may_use ({', '.join(allowed) or 'empty'})"
            )
    problems += room_problems(state, specs, depth=_depth(planner) + 1)
    # The goal's tasks and the fragment's, the planner reading its children (its output is
    # theirs): a fragment task reading the planner, or a task downstream of it, is a cycle.
    added = [task.id for task in specs]
    new_ids = set(added)
    waits = TaskSpec.model_construct(
        spec.model_fields_set | {"after"}, **_values(spec, after=[*spec.after, *added])
    )
    combined = _extended(_replaced(state.plan, waits), planner, specs)
    # with the fragment's output as the plan's: its references are checked as a plan output's
    combined = Plan.model_construct(
        combined.model_fields_set, **_values(combined, output=raw_output)
    )
    issues = [issue for issue in combined.graph_issues() if _concerns(issue, new_ids)]
    issues += [
        PlanIssue("output", f"{ref}: the fragment's output cannot read its own planner")
        for ref in iter_refs(output) if ref.source == planner
    ]
    malformed = any(_concerns(issue, new_ids) for issue in combined.binding_issues())
    if not malformed:  # as `validate`: every problem at once, once the bindings parse
        issues += check_contracts(
            combined, contracts, input_model=input_model_of(contracts), only=new_ids
        )
        issues += _output_issues(combined, contracts, spec, raw_output, output)
    problems += [_in_fragment(issue, planner) for issue in issues]
    return problems


def _output_issues(
    plan: Plan, contracts: Contracts, spec: TaskSpec, raw_output: Any, output: Any
) -> list[PlanIssue]:
    """The fragment's `output` checked as the input of a task whose input model is
    `expands.result`: the same check a task's bindings get (fields, types, required)."""
    result = result_model(contracts, spec)
    if result is None or output is None:
        return []
    if not isinstance(output, dict):
        return check_value(plan, contracts, input_model_of(contracts), "output", output, result)
    pseudo_id = f"{spec.id}/$output"
    pseudo = TaskSpec.model_construct(
        {"id", "agent", "input"}, id=pseudo_id, agent="$result", input=raw_output
    )
    with_output = _extended(plan, spec.id, [pseudo])
    checking = PlanContracts(contracts, input_model=input_model_of(contracts))
    checking["$result"] = AgentContract(input_model=result, output_model=result)
    issues = check_contracts(
        with_output, checking, input_model=input_model_of(contracts), only={pseudo_id}
    )
    prefix = f"tasks[{pseudo_id}].input"
    return [PlanIssue("output" + issue.where.removeprefix(prefix), issue.message)
            for issue in issues]


def room_problems(state: GoalState, specs: list[TaskSpec], *, depth: int) -> list[str]:
    """What `limits` and the budget say to adding these tasks, each problem naming its cap."""
    problems: list[str] = []
    limits = state.plan.limits
    added = sum(len(children) for children in state.children.values())
    if added + len(specs) > limits.max_tasks:
        problems.append(
            f"limits.max_tasks: {len(specs)} more tasks would make {added + len(specs)} added "
            f"at run time, over max_tasks {limits.max_tasks}"
        )
    if depth > limits.max_depth:
        problems.append(
            f"limits.max_depth: tasks added at depth {depth}, over max_depth {limits.max_depth}"
        )
    else:
        for task in specs:
            if task.expands is not None and depth + 1 > limits.max_depth:
                problems.append(
                    f"tasks[{task.id}].expands: limits.max_depth: its fragment would be at "
                    f"depth {depth + 1}, over max_depth {limits.max_depth}"
                )
    budget = state.plan.budget
    if budget.max_attempts is not None and specs:
        waiting = state.count("pending", "ready") - sum(
            1 for tid in state.plan.maps if state.tasks[tid].status in ("pending", "ready")
        )
        left = budget.max_attempts - state.attempts_used - waiting
        if len(specs) > left:
            problems.append(
                f"budget.max_attempts: {len(specs)} new tasks need at least {len(specs)} "
                f"attempts; {max(left, 0)} are left of {budget.max_attempts} after the "
                f"{waiting} tasks still to start"
            )
    tokens = sum(task.estimate.tokens for task in specs if task.estimate is not None)
    if budget.max_tokens is not None and state.used.tokens + tokens > budget.max_tokens:
        problems.append(
            f"budget.max_tokens: the new tasks' estimates ({tokens}) exceed what is left "
            f"({max(budget.max_tokens - state.used.tokens, 0)} of {budget.max_tokens})"
        )
    cost = sum(task.estimate.cost_usd for task in specs if task.estimate is not None)
    if budget.max_cost_usd is not None and state.used.cost_usd + cost > budget.max_cost_usd:
        left_usd = max(budget.max_cost_usd - state.used.cost_usd, 0.0)
        problems.append(
            f"budget.max_cost_usd: the new tasks' estimates ({cost:g}) exceed what is left "
            f"({left_usd:g} of {budget.max_cost_usd:g})"
        )
    return problems


def _in_fragment(issue: PlanIssue, planner: str) -> str:
    return str(issue) if issue.where.startswith(("tasks[", "output")) else (
        f"{planner}: {issue}"
    )


def _concerns(issue: PlanIssue, new_ids: set[str]) -> bool:
    """Is this issue about the fragment? (The goal's own tasks passed these checks already.)"""
    if issue.message.startswith("dependency cycle") or issue.where.startswith("output"):
        return True
    if not issue.where.startswith("tasks["):
        return False
    return issue.where[len("tasks["):].split("]", 1)[0] in new_ids


def _depth(task_id: str) -> int:
    """How many planners stand above a task: `plan/sub/x` is at depth 2."""
    return task_id.count("/")


# --- maps ---------------------------------------------------------------------------------------


def map_instances(spec: TaskSpec, width: int) -> list[TaskSpec]:
    """`width` instances of a map, `<map>[i]` reading element i of the list through the list
    itself: `$query.x` becomes `$plan.queries.3.x`."""
    assert spec.for_each is not None and spec.as_ is not None
    # Every field given: model_construct then computes no default (10,000 instances).
    base = _values(spec, for_each=None, as_=None)
    fields_set = spec.model_fields_set - {"for_each", "as_"}
    return [
        TaskSpec.model_construct(
            fields_set | {"id", "input"},
            **{
                **base,
                "id": f"{spec.id}[{index}]",
                "input": _retarget(spec.input, {spec.as_: f"{spec.for_each}.{index}"}),
            },
        )
        for index in range(width)
    ]


# --- joining the goal (event mutators only) -----------------------------------------------------


def extend_with_fragment(state: GoalState, planner: str, fragment: Any) -> list[str]:
    """Add an accepted fragment's tasks to the goal; the planner waits for them."""
    specs, _, output = parse_fragment(planner, fragment)
    state.fragment_outputs[planner] = output
    state.fragments[planner] = fragment
    return _join(state, planner, specs)


def extend_with_map(state: GoalState, map_id: str, width: int) -> list[str]:
    """Add a map's instances to the goal; the map waits for them."""
    return _join(state, map_id, map_instances(state.plan.task_map[map_id], width))


def extended_plan(
    started: Plan, children: dict[str, tuple[str, ...]], fragments: dict[str, Any]
) -> Plan:
    """The plan a goal's fold built, from the plan it started with: each planner's fragment
    and each map's instances placed again in the order they joined (`children` keeps it).
    What a snapshot restores instead of storing tasks that only a fold can build."""
    plan = started
    for parent, added in children.items():
        if parent in fragments:
            specs = parse_fragment(parent, fragments[parent])[0]
        else:
            specs = map_instances(plan.task_map[parent], len(added))
        plan = _extended(plan, parent, specs)
    return plan


def _join(state: GoalState, parent: str, specs: list[TaskSpec]) -> list[str]:
    if state.plan_file is None:
        state.plan_file = state.plan
    state.plan = _extended(state.plan, parent, specs)
    ids = [spec.id for spec in specs]
    for task_id in ids:
        state.tasks[task_id] = TaskState(task_id)
    pending = state.by_status.setdefault("pending", set())
    for task_id in ids:
        pending.add(task_id)
        deps = state.plan.deps[task_id]
        state.unmet[task_id] = sum(1 for dep in deps if state.tasks[dep].status != "succeeded")
        if state.unmet[task_id] == 0 or any(
            state.tasks[dep].status in UNAVAILABLE for dep in deps
        ):
            state.candidates.add(task_id)
    state.children[parent] = tuple(ids)
    state.open_children[parent] = len(ids)
    state.joining.add(parent)
    return ids


def _values(spec: BaseModel, **changes: Any) -> dict[str, Any]:
    return {name: getattr(spec, name) for name in type(spec).model_fields} | changes


def _extended(plan: Plan, anchor: str, specs: Iterable[TaskSpec]) -> Plan:
    """The plan with `specs` placed right after `anchor`, the task that added them (plan order
    is every decision's tie-break). Built without validation: the specs were validated as a
    fragment or derived from a validated task; run-time ids hold `/` and `[`."""
    tasks = list(plan.tasks)
    at = plan.index[anchor] + 1
    tasks[at:at] = specs
    return Plan.model_construct(plan.model_fields_set, **_values(plan, tasks=tasks))


def _replaced(plan: Plan, spec: TaskSpec) -> Plan:
    tasks = [spec if task.id == spec.id else task for task in plan.tasks]
    return Plan.model_construct(plan.model_fields_set, **_values(plan, tasks=tasks))


def is_added(plan: Plan, task_id: str) -> bool:
    """Could a run of this plan add a task of this id? (Its root is a planner or a map.)"""
    root = task_id
    while (parent := parent_of(root)) is not None:
        root = parent
    spec = plan.task_map.get(root)
    return root != task_id and spec is not None and (
        spec.expands is not None or spec.for_each is not None
    )
