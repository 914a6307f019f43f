"""What one read-model page costs as an agent's latency history grows.

For each store and each history size N: a store whose agent `hop` already has N latency
samples (inserted straight into `agent_latency`, with `agent_stats`' count and percentile
samples set from them, as a catch-up would have left them). Then, `rounds` times: one 10-task
chain goal is run (untimed) and the views are caught up on it, timed, the way a worker does
(`readmodels.Refresher`, views kept open). In the same round, on the same table, the baseline:
what release 0.2.0's catch-up ran for each agent a page touched instead, a COUNT and two
`ORDER BY duration_ms LIMIT 1 OFFSET` scans over all of the agent's samples.

    .venv/bin/python -m scripts.bench_views [--samples 1000,100000,1000000] [--rounds 5] \
        [--stores sqlite,postgres] [--ties] [--json]

The synthetic samples have negative positions, so they never meet a real notification id; the
percentiles' ties are broken by position all the same.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from baton.projections.ranks import nearest_rank
from baton.readmodels.reading import Refresher
from baton.runtime.loading import prepare_plan
from baton.runtime.service import start_goal
from baton.store.eventstore import open_store
from scripts.bench_agents import PAYLOAD
from scripts.bench_stores import Target, open_target, postgres_unreachable
from scripts.bench_workloads import chain_plan

AGENT = "hop"


def preload(target: Target, samples: int, *, ties: bool = False) -> None:
    """`samples` more latency samples for AGENT, and agent_stats as a catch-up would leave it;
    with `ties`, every one of the same duration (fast agents measured to the microsecond)."""
    rng = random.Random(samples)
    rows = [(-n, AGENT, "synthetic", "history", 1,
             0.012 if ties else round(rng.lognormvariate(0, 1), 3))
            for n in range(1, samples + 1)]
    conn = target.connect()
    try:
        insert = ("INSERT INTO agent_latency (position, agent, goal_id, task_id, attempt, "
                  "duration_ms) VALUES ")
        if target.pg_schema is None:
            conn.execute("BEGIN")
            conn.executemany(insert + "(?, ?, ?, ?, ?, ?)", rows)
            conn.execute("COMMIT")
        else:
            with conn.cursor() as cursor, cursor.copy(
                "COPY agent_latency (position, agent, goal_id, task_id, attempt, duration_ms) "
                "FROM STDIN"
            ) as copy:
                for row in rows:
                    copy.write_row(row)
        mark = "?" if target.pg_schema is None else "%s"
        ordered = conn.execute(
            f"SELECT duration_ms, position FROM agent_latency WHERE agent = {mark} "
            "ORDER BY duration_ms, position", (AGENT,)).fetchall()
        count = len(ordered)
        p50 = ordered[nearest_rank(count, 50) - 1]
        p95 = ordered[nearest_rank(count, 95) - 1]
        conn.execute(
            f"UPDATE agent_stats SET latency_samples = {mark}, p50_ms = {mark}, "
            f"p50_position = {mark}, p95_ms = {mark}, p95_position = {mark} "
            f"WHERE agent = {mark}", (count, *p50, *p95, AGENT))
    finally:
        conn.close()


def recount(conn: Any, mark: str) -> None:
    """Release 0.2.0's per-page work for one agent: count, then two offset scans."""
    count = conn.execute(f"SELECT COUNT(*) FROM agent_latency WHERE agent = {mark}",
                         (AGENT,)).fetchone()[0]
    for percent in (50, 95):
        rank = nearest_rank(count, percent)
        conn.execute(f"SELECT duration_ms FROM agent_latency WHERE agent = {mark} "
                     f"ORDER BY duration_ms LIMIT 1 OFFSET {mark}", (AGENT, rank - 1)).fetchone()


def measure(target: Target, samples: int, rounds: int, *, ties: bool = False) -> dict[str, Any]:
    loaded = prepare_plan(chain_plan(10))
    store = open_store(target.url)
    refresh = Refresher(store)
    conn = target.connect()
    mark = "?" if target.pg_schema is None else "%s"
    try:
        start_goal(store, loaded, {"payload": PAYLOAD})
        refresh()  # the views exist and AGENT has its row
        preload(target, samples, ties=ties)
        page: list[float] = []
        old: list[float] = []
        for _ in range(rounds):
            start_goal(store, loaded, {"payload": PAYLOAD})
            started = time.perf_counter()
            applied = refresh()
            page.append(time.perf_counter() - started)
            assert applied > 0, "the round's goal was not projected"
            started = time.perf_counter()
            recount(conn, mark)
            old.append(time.perf_counter() - started)
    finally:
        conn.close()
        refresh.close()
        store.close()
    page_ms, old_ms = statistics.median(page) * 1e3, statistics.median(old) * 1e3
    return {"store": target.name, "samples": samples, "page_ms": round(page_ms, 2),
            "recount_ms": round(old_ms, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", default="1000,100000,1000000")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--ties", action="store_true",
                        help="every synthetic sample of one duration")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.stores.split(","):
            if name == "postgres" and (why := postgres_unreachable()):
                print(f"skipped postgres: {why}", file=sys.stderr)
                continue
            for samples in (int(s) for s in args.samples.split(",")):
                with open_target(name, Path(workdir)) as target:
                    results.append(measure(target, samples, args.rounds, ties=args.ties))
                row = results[-1]
                if not args.json:
                    print(f"{name:8} {samples:>9} samples: page {row['page_ms']:8.2f} ms, "
                          f"0.2.0's recount alone {row['recount_ms']:9.2f} ms")
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
