"""The static check of a plan against its agents' contracts, before anything runs.

Every binding is followed to the field it reads (a field the upstream output model, or the goal
input model, must have) and its type is compared with the downstream input field; every required
input field must be bound. Each problem names the task and the field.
"""

from __future__ import annotations

from collections import abc
from collections.abc import Collection, Mapping
from typing import Annotated, Any, get_args, get_origin

from pydantic import BaseModel

from baton.domain.contracts import Contracts
from baton.domain.errors import PlanIssue
from baton.domain.plan import Plan, TaskSpec
from baton.domain.references import GOAL, Ref, iter_refs
from baton.domain.secrets import has_secret
from baton.domain.typecheck import (
    PathError,
    annotation_at,
    can_satisfy,
    describe,
    literal_problem,
    member_annotation,
)

__all__ = ["check_contracts", "check_value"]


def check_contracts(
    plan: Plan,
    contracts: Contracts,
    *,
    input_model: type[BaseModel] | None,
    only: Collection[str] | None = None,
) -> list[PlanIssue]:
    """Problems between the plan's bindings and the agents' pydantic contracts; with `only`,
    those of these tasks alone (a fragment checked beside the goal's tasks)."""
    issues: list[PlanIssue] = []
    for task in plan.tasks:
        if only is not None and task.id not in only:
            continue
        contract = contracts.get(task.agent)
        if contract is None:
            continue  # the agent failed to load; that issue is already reported
        local: dict[str, Any] = {}
        if task.for_each_ref is not None and task.as_ is not None:
            element = _element(plan, contracts, input_model, task.for_each_ref)
            if isinstance(element, PlanIssue):
                issues.append(PlanIssue(f"tasks[{task.id}].for_each", element.message))
                element = Any
            local[task.as_] = element
        fields = contract.input_model.model_fields
        for name, binding in task.bindings.items():
            where = f"tasks[{task.id}].input.{name}"
            if name not in fields:
                known = ", ".join(fields) or "none"
                issues.append(
                    PlanIssue(
                        where,
                        f"{contract.input_model.__name__} has no field {name!r} (fields: {known})",
                    )
                )
                continue
            target = fields[name].annotation
            issues += _check_binding(plan, contracts, input_model, where, binding, target, local)
        for name, field in fields.items():
            if field.is_required() and name not in task.input:
                issues.append(
                    PlanIssue(
                        f"tasks[{task.id}].input.{name}",
                        f"required by {contract.input_model.__name__} but not bound",
                    )
                )
        if task.min_confidence is not None and "confidence" not in (
            contract.output_model.model_fields
        ):
            issues.append(
                PlanIssue(
                    f"tasks[{task.id}].min_confidence",
                    f"{contract.output_model.__name__} has no 'confidence' field",
                )
            )
    for ref, where in _output_refs(plan) if only is None else ():
        source = _source_annotation(plan, contracts, input_model, ref)
        if isinstance(source, PlanIssue):
            issues.append(PlanIssue(where, source.message))
    return issues


def check_value(
    plan: Plan,
    contracts: Contracts,
    input_model: type[BaseModel] | None,
    where: str,
    binding: Any,
    target: Any,
) -> list[PlanIssue]:
    """A parsed binding checked against the annotation it must satisfy, as a task's input
    field is (a planner's fragment `output` against `expands.result`)."""
    return _check_binding(plan, contracts, input_model, where, binding, target)


def _check_binding(
    plan: Plan,
    contracts: Contracts,
    input_model: type[BaseModel] | None,
    where: str,
    binding: Any,
    target: Any,
    local: Mapping[str, Any] | None = None,
) -> list[PlanIssue]:
    if isinstance(binding, Ref):
        source = _source_annotation(plan, contracts, input_model, binding, local)
        if isinstance(source, PlanIssue):
            return [PlanIssue(where, source.message)]
        if source is not None and not can_satisfy(source, target):
            return [
                PlanIssue(
                    where,
                    f"{binding} is {describe(source)}, which can never satisfy {describe(target)}",
                )
            ]
        return []
    if isinstance(binding, str | bytes | int | float) and has_secret(target):
        message = ("a literal for a secret field would be stored in clear in the goal's events; "
                   "pass it in the goal input or in the agent's environment")
        return [PlanIssue(where, message)]
    issues: list[PlanIssue] = []
    # Literal containers may hold references and literals: each item is checked against the
    # part of the target it fills (a field, a mapping value, a list item), Any where unknown.
    items = binding.items() if isinstance(binding, dict) else (
        enumerate(binding) if isinstance(binding, list) else ())
    for key, item in items:
        part = member_annotation(target, str(key))
        issues += _check_binding(
            plan, contracts, input_model, f"{where}.{key}", item, part, local
        )
    if not issues and next(iter_refs(binding), None) is None:
        # All literal: known now, so validated as the agent's input model will validate it
        # (each part above, then the whole, which catches e.g. a model's missing field).
        problem = literal_problem(binding, target)
        if problem is not None:
            issues.append(PlanIssue(where, problem))
    return issues


def _source_annotation(
    plan: Plan,
    contracts: Contracts,
    input_model: type[BaseModel] | None,
    ref: Ref,
    local: Mapping[str, Any] | None = None,
) -> Any:
    """The annotation a reference points at; None when unknown; a PlanIssue when missing.

    `local`: names bound inside the task (a map's element, `as`). A planner's output is its
    `expands.result`; a map's, the list of its agent's outputs."""
    if local and ref.source in local:
        root: Any = local[ref.source]
        label = f"${ref.source} (an element)"
    elif ref.source == GOAL:
        root = input_model if input_model is not None else Any
        label = f"goal input {input_model.__name__}" if input_model is not None else "goal input"
    else:
        upstream: TaskSpec | None = plan.task_map.get(ref.source)
        contract = contracts.get(upstream.agent) if upstream is not None else None
        if contract is None:
            return None
        root = contract.output_model
        label = f"{contract.output_model.__name__} (output of {ref.source!r})"
        assert upstream is not None
        if upstream.expands is not None:
            results: Mapping[str, Any] = getattr(contracts, "results", {})
            root = results.get(upstream.expands.result)
            if root is None:
                return None  # the result model failed to load; reported where it is named
            label = f"{root.__name__} (expands.result of {ref.source!r})"
        elif upstream.for_each is not None:
            root = list[contract.output_model]  # type: ignore[name-defined]
            label = f"list[{contract.output_model.__name__}] (the outputs of map {ref.source!r})"
    try:
        return annotation_at(root, ref.path)
    except PathError as exc:
        return PlanIssue("", f"{ref}: {label} has no field {exc.segment!r}")


def _element(
    plan: Plan, contracts: Contracts, input_model: type[BaseModel] | None, ref: Ref
) -> Any:
    """The annotation of one element of the list a map runs over; a PlanIssue when the
    reference is missing or is not a list."""
    source = _source_annotation(plan, contracts, input_model, ref)
    if isinstance(source, PlanIssue) or source is None or source is Any:
        return Any if source is None else source
    bare = source
    while get_origin(bare) is Annotated:
        bare = get_args(bare)[0]
    if bare in (list, tuple) or get_origin(bare) in (list, tuple, abc.Sequence):
        return annotation_at(source, ("0",))
    return PlanIssue("", f"{ref} is {describe(source)}, not a list: for_each needs a list")


def _output_refs(plan: Plan) -> list[tuple[Ref, str]]:
    binding = plan.output_binding
    if isinstance(binding, Ref):
        return [(binding, "output")]
    found: list[tuple[Ref, str]] = []
    if isinstance(binding, dict):
        for key, value in binding.items():
            if isinstance(value, Ref):
                found.append((value, f"output.{key}"))
    return found
