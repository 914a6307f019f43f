"""No-op agents for the benchmarks: plain typed functions, so only Baton's own work is timed.

Named in the benchmark plans as `scripts.bench_agents:<fn>` (importable from the repo root).
"""

from __future__ import annotations

from pydantic import BaseModel

__all__ = [
    "PAYLOAD", "Count", "Hop", "Items", "Payloads", "Summary", "flaky", "gather", "hop", "spread",
]

PAYLOAD = "x" * 200  # the ~200-byte payload every hop carries

# Idempotency keys seen by `flaky`: the first attempt of a task raises, the retry (which gets
# the same key) returns. Keys embed the goal id, so every benchmark run starts fresh.
_FAILED_ONCE: set[str] = set()


class Hop(BaseModel):
    payload: str


class Items(BaseModel):
    items: list[Hop]


class Summary(BaseModel):
    count: int


def hop(inp: Hop) -> Hop:
    """Pass the payload on unchanged."""
    return inp


def gather(inp: Items) -> Summary:
    """The fan-in: read every upstream output."""
    return Summary(count=len(inp.items))


def flaky(inp: Hop, idempotency_key: str = "") -> Hop:
    """Fail the first attempt of each task, succeed on the retry."""
    if idempotency_key not in _FAILED_ONCE:
        _FAILED_ONCE.add(idempotency_key)
        raise RuntimeError("first attempt fails on purpose")
    return inp


class Count(BaseModel):
    count: int


class Payloads(BaseModel):
    payloads: list[str]


def spread(inp: Count) -> Payloads:
    """A map's list: `count` payloads, one per instance (`scripts/bench_map.py`)."""
    return Payloads(payloads=[f"{index}" for index in range(inp.count)])
