"""Bindings: `$goal.<path>` and `$<task>.<path>` references, literals, and the `$$` escape.

A binding value is parsed once into a tree of `Ref` and literals; resolving it against the goal
input and the accepted outputs gives the agent's input, built only from what the plan declared.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from baton.domain.errors import ResolveError

__all__ = ["GOAL", "Ref", "iter_refs", "parse_binding", "parse_ref", "resolve", "resolve_binding"]

GOAL = "goal"


@dataclass(frozen=True)
class Ref:
    """A reference to the goal input or to a task's accepted output, with a dot path into it."""

    source: str  # "goal" or a task id
    path: tuple[str, ...]

    def __str__(self) -> str:
        return "$" + ".".join((self.source, *self.path))


def parse_ref(text: str) -> Ref:
    """Parse `$source.a.b`; raises ValueError on an empty source or segment."""
    parts = text[1:].split(".")
    if any(not part for part in parts):
        raise ValueError(f"malformed reference {text!r}: empty name in the dot path")
    return Ref(parts[0], tuple(parts[1:]))


def parse_binding(value: Any) -> Any:
    """Turn a plan binding into Refs and literals; refs may sit inside lists and mappings."""
    if isinstance(value, str):
        if value.startswith("$$"):
            return value[1:]  # an escaped literal that starts with "$"
        if value.startswith("$"):
            return parse_ref(value)
        return value
    if isinstance(value, Mapping):
        return {key: parse_binding(item) for key, item in value.items()}
    if isinstance(value, list):
        return [parse_binding(item) for item in value]
    return value


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
