"""Bindings: `$goal.<path>` and `$<task>.<path>` references, literals, and the `$$` escape.

A binding value is parsed once into a tree of `Ref` and literals; resolving it against the goal
input and the accepted outputs gives the agent's input, built only from what the plan declared.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from baton.domain.errors import ResolveError, one_line
from baton.domain.json_values import MAX_DEPTH, json_problem

__all__ = [
    "GOAL",
    "BindingError",
    "Ref",
    "iter_refs",
    "parse_binding",
    "parse_ref",
    "resolve",
    "resolve_binding",
]

GOAL = "goal"


@dataclass(frozen=True)
class Ref:
    """A reference to the goal input or to a task's accepted output, with a dot path into it."""

    source: str  # "goal" or a task id
    path: tuple[str, ...]

    def __str__(self) -> str:
        return "$" + ".".join((self.source, *self.path))


class BindingError(ValueError):
    """A binding that is not a reference nor a storable literal; `path` locates it inside the
    binding (mapping keys and list indexes), so the plan error can name the field."""

    def __init__(self, message: str, path: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.path = path


def parse_ref(text: str) -> Ref:
    """Parse `$source.a.b`; raises BindingError on an empty source or segment."""
    parts = text[1:].split(".")
    if any(not part for part in parts):
        raise BindingError(
            f"malformed reference {one_line(text)!r}: empty name in the dot path "
            "(expected $goal.<path> or $<task id>.<path>)"
        )
    return Ref(parts[0], tuple(parts[1:]))


def parse_binding(value: Any, _path: tuple[str, ...] = ()) -> Any:
    """Turn a plan binding into Refs and literals; refs may sit inside lists and mappings.

    Raises BindingError (with where inside the binding) for a malformed reference, a literal
    that is not storable JSON (NaN, a lone surrogate) or nesting deeper than MAX_DEPTH: the
    recursion below is bounded by that check.
    """
    if len(_path) > MAX_DEPTH:
        raise BindingError(f"nested more than {MAX_DEPTH} levels deep", _path[:3])
    if isinstance(value, str):
        if value.startswith("$$"):
            literal = value[1:]  # an escaped literal that starts with "$"
        elif value.startswith("$"):
            try:
                return parse_ref(value)
            except BindingError as exc:
                raise BindingError(exc.message, _path) from None
        else:
            literal = value
        _check_literal(literal, _path)
        return literal
    if isinstance(value, Mapping):
        parsed: dict[Any, Any] = {}
        for key, item in value.items():
            _check_literal(key, _path)
            parsed[key] = parse_binding(item, (*_path, str(key)))
        return parsed
    if isinstance(value, list):
        return [parse_binding(item, (*_path, str(i))) for i, item in enumerate(value)]
    _check_literal(value, _path)
    return value


def _check_literal(value: Any, path: tuple[str, ...]) -> None:
    # Only what the store or `--json` cannot carry; other YAML scalars (dates) dump as strings.
    problem = json_problem(value, max_depth=0) if isinstance(value, str | float) else None
    if problem is not None:
        raise BindingError(problem, path)


def iter_refs(parsed: Any) -> Iterator[Ref]:
    """Every Ref inside a parsed binding."""
    if isinstance(parsed, Ref):
        yield parsed
    elif isinstance(parsed, Mapping):
        for item in parsed.values():
            yield from iter_refs(item)
    elif isinstance(parsed, list):
        for item in parsed:
            yield from iter_refs(item)


def resolve(ref: Ref, goal_input: Any, outputs: Mapping[str, Any]) -> Any:
    """The JSON value a reference points at; ResolveError names the missing segment."""
    if ref.source == GOAL:
        value = goal_input
    elif ref.source in outputs:
        value = outputs[ref.source]
    else:
        raise ResolveError(f"{ref}: task {ref.source!r} has no accepted output")
    for depth, segment in enumerate(ref.path):
        try:
            if isinstance(value, list):
                value = value[int(segment)]
            elif isinstance(value, Mapping):
                value = value[segment]
            else:
                raise KeyError(segment)
        except (KeyError, IndexError, ValueError):
            walked = "$" + ".".join((ref.source, *ref.path[:depth]))
            raise ResolveError(f"{ref}: {walked} has no {segment!r}") from None
    return value


def resolve_binding(parsed: Any, goal_input: Any, outputs: Mapping[str, Any]) -> Any:
    """Resolve every Ref inside a parsed binding; literals pass through unchanged."""
    if isinstance(parsed, Ref):
        return resolve(parsed, goal_input, outputs)
    if isinstance(parsed, Mapping):
        return {key: resolve_binding(item, goal_input, outputs) for key, item in parsed.items()}
    if isinstance(parsed, list):
        return [resolve_binding(item, goal_input, outputs) for item in parsed]
    return parsed
