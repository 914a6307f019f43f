"""`Baton.status` called again and again (a service polling its goals), on each store.

One finished travel-shaped goal (three no-op tasks) in a fresh store; then, interleaved, each
round times `--calls` calls of:

- **kept**: `Baton.status(goal_id)`, the read models kept open by the client;
- **opened per call** (the baseline, same run): what `status` did before, a catch-up through
  read models opened for it and a read through read models opened again
  (`refresh(store)`, then `read(store)`).

    .venv/bin/python -m scripts.bench_api_status [--calls 50] [--rounds 5] \
        [--stores sqlite,postgres]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import baton
from baton.readmodels.reading import read, refresh
from scripts.bench_stores import open_target, postgres_unreachable

ROOT = Path(__file__).resolve().parents[1]
PLAN = {
    "version": 1,
    "name": "status-bench",
    "agents": {"a": "scripts.bench_agents:hop"},
    "tasks": [{"id": "t0", "agent": "a", "input": {"payload": "$goal.payload"}},
              {"id": "t1", "agent": "a", "input": {"payload": "$t0.payload"}},
              {"id": "t2", "agent": "a", "input": {"payload": "$t1.payload"}}],
    "output": "$t2",
}


def _per_call_ms(fn: Callable[[], object], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - started) * 1000 / calls


def measure(store_name: str, calls: int, rounds: int) -> dict[str, float]:
    with open_target(store_name, ROOT) as target, baton.Baton(target.url) as client:
        goal_id = client.run(baton.load_plan(PLAN), {"payload": "x"}).goal_id

        def opened_per_call() -> None:
            refresh(client.store)
            with read(client.store) as models:
                models.goal_with_tasks(goal_id)

        kept, opened = [], []
        for _ in range(rounds):
            kept.append(_per_call_ms(lambda: client.status(goal_id), calls))
            opened.append(_per_call_ms(opened_per_call, calls))
    return {"kept_ms": statistics.median(kept), "opened_ms": statistics.median(opened)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--stores", default="sqlite,postgres")
    args = parser.parse_args()
    print("| store | status(goal), kept | opened per call (baseline) | kept ÷ baseline |")
    print("| --- | ---: | ---: | ---: |")
    for name in args.stores.split(","):
        if name == "postgres" and (reason := postgres_unreachable()) is not None:
            print(f"postgres skipped: {reason}", file=sys.stderr)
            continue
        row = measure(name, args.calls, args.rounds)
        print(f"| {name} | {row['kept_ms']:.2f} ms | {row['opened_ms']:.2f} ms | "
              f"{row['kept_ms'] / row['opened_ms']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
