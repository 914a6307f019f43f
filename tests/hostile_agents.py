"""Agents whose results are hostile: values that pass naive checks but cannot be stored or
printed, or whose reading raises. Plain typed functions, as users write them."""

from __future__ import annotations

from typing import Any

from tests.agents import Costly, Scored, Text

# What the agent `returns_value` returns; a test sets it before running the goal.
VALUE: list[Any] = [None]


class _ItemsRaise(dict):  # type: ignore[type-arg]
    def items(self) -> Any:
        raise RuntimeError("items() is broken")


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


def lone_surrogate(inp: Text) -> Text:
    return {"text": "a\ud800b"}  # type: ignore[return-value]


def surrogate_key(inp: Text) -> Text:
    return {"text": "x", "\udcff": 1}  # type: ignore[return-value]


def nested_5000(inp: Text) -> Text:
    return {"text": _nested(5000)}  # type: ignore[return-value]


def items_raise(inp: Text) -> Text:
    return _ItemsRaise(text="x")  # type: ignore[return-value]


def huge_tokens(inp: Text) -> Text:
    return Text(text="x"), {"tokens": 10**400}  # type: ignore[return-value]


def nan_confidence(inp: Text) -> Scored:
    return {"text": "x", "confidence": float("nan")}  # type: ignore[return-value]


def nan_as_text(inp: Text) -> Scored:
    return {"text": "x", "confidence": "NaN"}  # type: ignore[return-value]


def infinite_cost(inp: Text) -> Costly:
    return {"text": "x", "usage": {"tokens": 1, "cost_usd": float("inf")}}  # type: ignore[return-value]


def infinite_cost_pair(inp: Text) -> Text:
    return Text(text="x"), {"tokens": 1, "cost_usd": float("inf")}  # type: ignore[return-value]


def raises_surrogate(inp: Text) -> Text:
    raise ValueError("bad \ud800 byte")


async def async_nested_5000(inp: Text) -> Text:
    return {"text": _nested(5000)}  # type: ignore[return-value]


def returns_value(inp: Text) -> Any:
    """Returns whatever VALUE holds (hypothesis tests draw it); annotated Scored below."""
    return VALUE[0]


returns_value.__annotations__ = {"inp": Text, "return": Scored}
