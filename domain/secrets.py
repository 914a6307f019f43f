"""Secrets: a value that any contract types `SecretStr`/`SecretBytes` is never stored in clear.

pydantic already masks such fields when a model is dumped (`model_dump(mode="json")`), which
covers outputs returned as model instances, a goal input validated by the plan's input model and
a human's output. What is left is raw JSON: an agent that returns a plain dict, a goal input
without an input model, and a value typed `str` upstream that a downstream contract types as a
secret. `redact` masks by annotation; `redact_source` masks one source (the goal input or a
task's output) by its own model and by every downstream field its bindings feed.

The mask is the one pydantic prints, so a recorded value still satisfies its contract and replay
re-judges it the same way. The price: an agent can never receive a secret through a binding (it
would receive the mask); secrets reach agents out of band, from their environment.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel, SecretBytes, SecretStr

from baton.domain.contracts import Contracts
from baton.domain.plan import Plan
from baton.domain.references import Ref
from baton.domain.typecheck import member_annotation

__all__ = ["MASK", "has_secret", "redact", "redact_output", "redact_source"]

MASK = "**********"
_SECRET_TYPES = (SecretStr, SecretBytes)


def _is_secret(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, _SECRET_TYPES)


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _args(annotation: Any) -> tuple[Any, ...]:
    return tuple(arg for arg in typing.get_args(annotation) if arg is not type(None))


def has_secret(annotation: Any, _seen: frozenset[Any] = frozenset()) -> bool:
    """Does this annotation hold a secret anywhere (in a field, an item, a union member)?"""
    if _is_secret(annotation):
        return True
    if _is_model(annotation):
        if annotation in _seen:
            return False  # a recursive model: its secrets, if any, were found on the way in
        seen = _seen | {annotation}
        return any(has_secret(f.annotation, seen) for f in annotation.model_fields.values())
    return any(has_secret(arg, _seen) for arg in _args(annotation))


def redact(value: Any, annotation: Any) -> Any:
    """`value` (JSON) with every part the annotation types as a secret replaced by MASK."""
    if value is None or not has_secret(annotation):
        return value
    if _is_secret(annotation):
        return MASK
    if _is_model(annotation):
        if not isinstance(value, Mapping):
            return value
        masked = dict(value)
        for name, field in annotation.model_fields.items():
            for key in {name, field.alias} - {None}:
                if key in masked:
                    masked[key] = redact(masked[key], field.annotation)
        return masked
    origin = typing.get_origin(annotation)
    args = _args(annotation)
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        if origin is typing.Annotated:
            args = args[:1]
        if any(_is_secret(arg) for arg in args):
            return MASK  # a value that may be a secret is treated as one
        for arg in args:
            value = redact(value, arg)
        return value
    if isinstance(value, list) and args:
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return [redact(v, a) for v, a in zip(value, args, strict=False)] + value[len(args) :]
        return [redact(item, args[0]) for item in value]
    if isinstance(value, Mapping) and len(args) == 2:
        return {key: redact(item, args[1]) for key, item in value.items()}
    return value


def _redact_at(value: Any, path: tuple[str, ...], annotation: Any) -> Any:
    if not path:
        return redact(value, annotation)
    head, rest = path[0], path[1:]
    if isinstance(value, Mapping) and head in value:
        return {**value, head: _redact_at(value[head], rest, annotation)}
    if isinstance(value, list) and head.isdigit() and int(head) < len(value):
        index = int(head)
        return [*value[:index], _redact_at(value[index], rest, annotation), *value[index + 1 :]]
    return value


def redact_source(
    value: Any,
    source: str,
    plan: Plan,
    contracts: Contracts,
    *,
    model: type[BaseModel] | None = None,
) -> Any:
    """Mask a source's value (`source` is "goal" or a task id) before it is recorded.

    By the source's own `model` (the task's output model, the goal's input model), and by the
    input field of every task whose binding reads from this source.
    """
    if model is not None:
        value = redact(value, model)
    for task in plan.tasks:
        contract = contracts.get(task.agent)
        if contract is None:
            continue
        fields = contract.input_model.model_fields
        for name, binding in task.bindings.items():
            if name not in fields:
                continue
            for ref, annotation in _secret_refs(binding, fields[name].annotation):
                if ref.source == source:
                    value = _redact_at(value, ref.path, annotation)
    return value


def _secret_refs(binding: Any, annotation: Any) -> Iterator[tuple[Ref, Any]]:
    """The references in a binding that fill a part typed as (or holding) a secret, with that
    part's annotation; references inside literal lists and mappings too."""
    if isinstance(binding, Ref):
        if has_secret(annotation):
            yield binding, annotation
    elif isinstance(binding, Mapping):
        for key, item in binding.items():
            yield from _secret_refs(item, member_annotation(annotation, str(key)))
    elif isinstance(binding, list):
        for index, item in enumerate(binding):
            yield from _secret_refs(item, member_annotation(annotation, str(index)))


def redact_output(plan: Plan, contracts: Contracts, task_id: str, output: Any) -> Any:
    """An agent's raw output as it may be recorded: secrets masked."""
    spec = plan.task_map.get(task_id)
    contract = contracts.get(spec.agent) if spec is not None else None
    model = contract.output_model if contract is not None else None
    return redact_source(output, task_id, plan, contracts, model=model)
