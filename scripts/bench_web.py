"""The web view's goal list and escalations against the number of goals in the store.

For each store and each size N: synthetic `goal_summary` rows (statuses, plans and times drawn
from a seeded generator; an escalated task for each waiting goal and for half the cancelled
ones) written straight into the read models, then each page requested 5 times through
Starlette's test client (median). The baseline is the same pages over 100 goals, same run.

    .venv/bin/python -m scripts.bench_web [--goals 100000] [--stores sqlite,postgres]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from baton.projections import open_views
from baton.projections.schema import GOAL_SUMMARY, TASK_STATUS, TASK_STATUSES
from baton.store.eventstore import open_store
from baton.web.app import create_app
from scripts.bench_stores import Target, open_target, postgres_unreachable

PAGES = ("/", "/?status=waiting", "/?plan=plan-03", "/?since=2026-02-20T00:00%2B02:00",
         "/?page=500", "/escalations")
STATUSES = ["completed"] * 14 + ["failed"] * 2 + ["waiting"] * 2 + ["running", "cancelled"]
BASE = datetime(2026, 1, 1, tzinfo=UTC)


def _goal(views: Any, rng: random.Random, index: int) -> tuple[dict[str, Any], str]:
    status = rng.choice(STATUSES)
    updated = BASE + timedelta(seconds=rng.randrange(0, 60 * 86400),
                               microseconds=rng.randrange(0, 1_000_000))
    row: dict[str, Any] = dict.fromkeys(GOAL_SUMMARY.names)
    row.update(goal_id=f"g{index:07d}", plan=f"plan-{rng.randrange(20):02d}", status=status,
               reason=f"reason {index}", started_at=updated - timedelta(minutes=5),
               updated_at=updated, tasks=4, attempts=5, tokens=100, cost_usd=0.01,
               ended_at=updated if status in ("completed", "failed", "cancelled") else None,
               output={"answer": "x" * 200} if status == "completed" else None,
               events=20, position=index)
    row.update({f"tasks_{name}": 0 for name in TASK_STATUSES})
    row["tasks_succeeded"] = 4 if status == "completed" else 2
    return row, status


def fill(target: Target, goals: int) -> None:
    rng = random.Random(7)
    store = open_store(target.url)
    try:
        with open_views(store.app) as views:
            rows, tasks = [], []
            for index in range(goals):
                row, status = _goal(views, rng, index)
                rows.append(views._encoded(GOAL_SUMMARY, row))
                if status == "waiting" or (status == "cancelled" and index % 2):
                    task: dict[str, Any] = dict.fromkeys(TASK_STATUS.names)
                    task.update(goal_id=row["goal_id"], task_id="price", plan_index=1,
                                agent="price", status="escalated", attempts=1,
                                last_reason="retries ran out", updated_at=row["updated_at"],
                                status_since=row["updated_at"], duration_ms=10.0, tokens=0,
                                cost_usd=0.0, waiting_for="failure")
                    tasks.append(views._encoded(TASK_STATUS, task))
            with views.datastore.transaction(commit=True) as c:
                views._insert(c, GOAL_SUMMARY, rows)
                views._insert(c, TASK_STATUS, tasks)
            with views.datastore.transaction(commit=True) as c:
                c.execute("ANALYZE" if target.pg_schema is None
                          else f"ANALYZE {views.qualified('goal_summary')}")
    finally:
        store.close()


def pages_ms(target: Target) -> dict[str, float]:
    store = open_store(target.url)
    try:
        client = TestClient(create_app(store, catch_up_s=0))
        result = {}
        for page in PAGES:
            samples = []
            for _ in range(5):
                started = time.perf_counter()
                response = client.get(page)
                samples.append(time.perf_counter() - started)
                assert response.status_code == 200, (page, response.status_code)
            result[page] = statistics.median(samples) * 1e3
        return result
    finally:
        store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--goals", type=int, default=100_000)
    parser.add_argument("--stores", default="sqlite,postgres")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.stores.split(","):
            if name == "postgres" and (why := postgres_unreachable()):
                print(f"skipped postgres: {why}", file=sys.stderr)
                continue
            measured = {}
            for goals in (100, args.goals):
                with open_target(name, Path(workdir)) as target:
                    fill(target, goals)
                    measured[goals] = pages_ms(target)
            print(f"\n{name}: page | 100 goals | {args.goals:,} goals | ratio")
            for page in PAGES:
                small, large = measured[100][page], measured[args.goals][page]
                print(f"{page} | {small:.1f} ms | {large:.1f} ms | {large / small:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
