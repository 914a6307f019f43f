"""What a value must be to be stored in an event and printed as JSON, checked without recursion.

User data (plan bindings, goal input, agent outputs, usage reports) crosses into the event log
here. A value is storable when it is plain JSON (mappings with string keys, lists, strings,
whole numbers, finite floats, booleans, null), nests at most `MAX_DEPTH` levels, and every
string encodes as UTF-8 (a lone surrogate such as "\\ud800" passes `json.dumps` but fails the
store's UTF-8 encoding). The walk uses an explicit stack, so a value nested far deeper than
Python's recursion limit is reported, not a `RecursionError`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from baton.domain.errors import one_line

__all__ = ["MAX_DEPTH", "json_problem"]

# Generous for real data (LLM outputs rarely nest ten levels), and far below the depth at
# which the json module, pydantic or the store's encoder would exhaust the C stack.
MAX_DEPTH = 100


def json_problem(value: Any, *, max_depth: int = MAX_DEPTH) -> str | None:
    """Why `value` cannot be stored as JSON ("at a.b: ..."), or None when it can.

    Tuples count as lists (they dump as such). The first problem found is reported.
    """
    stack: list[tuple[Any, tuple[str, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        if len(path) > max_depth:
            return f"{_at(path[:max_depth])}nested more than {max_depth} levels deep"
        if item is None or isinstance(item, bool | int):
            continue
        if isinstance(item, str):
            if not _encodes(item):
                return f"{_at(path)}string {one_line(item[:40])!r} is not valid Unicode " \
                       "(a lone surrogate)"
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                return f"{_at(path)}{item!r} is not a finite number (NaN and Infinity are not JSON)"
            continue
        if isinstance(item, Mapping):
            for key, member in item.items():
                if not isinstance(key, str):
                    return f"{_at(path)}key {key!r} is not a string"
                if not _encodes(key):
                    return f"{_at(path)}key {one_line(key[:40])!r} is not valid Unicode " \
                           "(a lone surrogate)"
                stack.append((member, (*path, key)))
            continue
        if isinstance(item, list | tuple):
            stack.extend((member, (*path, str(index))) for index, member in enumerate(item))
            continue
        return f"{_at(path)}a {type(item).__name__} is not a JSON value"
    return None


def _encodes(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _at(path: tuple[str, ...]) -> str:
    if not path:
        return ""
    shown = one_line(".".join(path))
    return f"at {shown if len(shown) <= 120 else shown[:117] + '...'}: "
