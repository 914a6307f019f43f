"""The goal workloads (chain, fanout, retry): their plans, and their raw floor.

Every agent is a no-op from `scripts.bench_agents`, so a run measures orchestration and
durability only. The floor does what any durable runner must do at the least: call the same
functions and write one row per task in its own transaction.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from scripts.bench_agents import PAYLOAD, Hop, Items, flaky, gather, hop

__all__ = ["WORKLOADS", "FloorWriter", "Workload"]

AGENTS = {
    "hop": "scripts.bench_agents:hop",
    "gather": "scripts.bench_agents:gather",
    "flaky": "scripts.bench_agents:flaky",
}


@dataclass(frozen=True)
class Workload:
    name: str
    describe: str
    tasks: int  # tasks per goal (the per-task divisor)
    plan: Callable[[], dict[str, Any]]
    floor: Callable[[FloorWriter], None]


def _plan(name: str, tasks: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"version": 1, "name": name, "agents": AGENTS, "tasks": tasks, **extra}


def _chain_tasks(n: int, agent: str) -> list[dict[str, Any]]:
    first = {"id": "t0", "agent": agent, "input": {"payload": "$goal.payload"}}
    rest = [
        {"id": f"t{i}", "agent": agent, "input": {"payload": f"$t{i - 1}.payload"}}
        for i in range(1, n)
    ]
    return [first, *rest]


def chain_plan(n: int) -> dict[str, Any]:
    return _plan("bench-chain", _chain_tasks(n, "hop"), output=f"$t{n - 1}")


def fanout_plan(n: int) -> dict[str, Any]:
    planner = {"id": "planner", "agent": "hop", "input": {"payload": "$goal.payload"}}
    workers = [
        {"id": f"w{i}", "agent": "hop", "input": {"payload": "$planner.payload"}} for i in range(n)
    ]
    # The reducer binds a list literal of references: it reads all n outputs.
    reducer = {"id": "reduce", "agent": "gather", "input": {"items": [f"$w{i}" for i in range(n)]}}
    return _plan("bench-fanout", [planner, *workers, reducer], output="$reduce")


def retry_plan(n: int) -> dict[str, Any]:
    defaults = {"retry": {"max_attempts": 2, "backoff_s": 0}}
    return _plan("bench-retry", _chain_tasks(n, "flaky"), defaults=defaults, output=f"$t{n - 1}")


class FloorWriter:
    """One row per call, each in its own transaction, on a bare driver connection."""

    def __init__(self, conn: Any, *, postgres: bool) -> None:
        self.conn = conn
        self.postgres = postgres
        self.goal = ""
        self.seq = 0
        blob = "bytea" if postgres else "BLOB"
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS floor_rows (goal TEXT NOT NULL, seq INTEGER NOT NULL, "
            f"state {blob} NOT NULL, PRIMARY KEY (goal, seq))"
        )
        mark = "%s" if postgres else "?"
        self.insert = f"INSERT INTO floor_rows VALUES ({mark}, {mark}, {mark})"

    def new_goal(self) -> None:
        self.goal, self.seq = uuid.uuid4().hex, 0

    def write(self, value: Any) -> None:
        self.seq += 1
        state = json.dumps(value, separators=(",", ":")).encode()
        if self.postgres:
            with self.conn.transaction():
                self.conn.execute(self.insert, (self.goal, self.seq, state))
        else:
            self.conn.execute("BEGIN")
            self.conn.execute(self.insert, (self.goal, self.seq, state))
            self.conn.execute("COMMIT")


def floor_chain(n: int) -> Callable[[FloorWriter], None]:
    def run(writer: FloorWriter) -> None:
        writer.new_goal()
        payload = PAYLOAD
        for _ in range(n):
            payload = hop(Hop(payload=payload)).payload
            writer.write({"payload": payload})

    return run


def floor_fanout(n: int) -> Callable[[FloorWriter], None]:
    def run(writer: FloorWriter) -> None:
        writer.new_goal()
        planned = hop(Hop(payload=PAYLOAD))
        writer.write(planned.model_dump())
        outputs = []
        for _ in range(n):
            out = hop(Hop(payload=planned.payload))
            writer.write(out.model_dump())
            outputs.append(out)
        writer.write(gather(Items(items=outputs)).model_dump())

    return run


def floor_retry(n: int) -> Callable[[FloorWriter], None]:
    def run(writer: FloorWriter) -> None:
        writer.new_goal()
        payload = PAYLOAD
        for i in range(n):
            key = f"{writer.goal}/{i}"
            try:
                out = flaky(Hop(payload=payload), idempotency_key=key)
            except RuntimeError:
                out = flaky(Hop(payload=payload), idempotency_key=key)
            payload = out.payload
            writer.write({"payload": payload})

    return run


def _workloads() -> dict[str, Workload]:
    chain, fanout, retry = 50, 100, 20
    return {
        "chain": Workload(
            "chain", f"{chain} tasks in a line, a {len(PAYLOAD)}-byte payload each hop", chain,
            lambda: chain_plan(chain), floor_chain(chain),
        ),
        "fanout": Workload(
            "fanout", f"a planner, {fanout} independent tasks, a reducer reading all {fanout}",
            fanout + 2, lambda: fanout_plan(fanout), floor_fanout(fanout),
        ),
        "retry": Workload(
            "retry", f"{retry} sequential tasks, each failing once then succeeding (no backoff)",
            retry, lambda: retry_plan(retry), floor_retry(retry),
        ),
    }


WORKLOADS = _workloads()
