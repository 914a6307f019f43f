"""Reading a goal back: what `baton status`, `resume` and a worker taking a goal up pay.

    python scripts/bench_load.py [--stores sqlite,postgres] [--loads 50] [--json]

Two goals per store, each written through Baton's own save path (so its snapshots are taken as
a run takes them): a finished 50-task chain run by the real runner, and a 10,007-event goal (667
tasks, each failing four times before it succeeds) driven by the real domain and saved after
every observation. Each is then read through a store handle opened for it, `--loads` times
after one untimed read: `store.get` (the latest snapshot and the events after it) against
folding every event (`repository.get`, what `get` did before snapshots). Both must give the same
goal. Targets (issue 17): the chain within 1 ms, the 10,007-event goal within 20 ms.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a file: make `scripts.*` importable
    sys.path.insert(0, str(ROOT))

from baton.runtime.loading import prepare_plan  # noqa: E402
from baton.runtime.service import start_goal  # noqa: E402
from baton.store.eventstore import BatonStore, open_store  # noqa: E402
from scripts.bench_agents import PAYLOAD  # noqa: E402
from scripts.bench_history import history_plan, simulate  # noqa: E402
from scripts.bench_peers import median_read_ms  # noqa: E402
from scripts.bench_stores import (  # noqa: E402
    goal_footprint,
    open_target,
    postgres_unreachable,
    snapshot_footprint,
)
from scripts.bench_workloads import WORKLOADS  # noqa: E402

__all__ = ["main", "measure"]

TARGET_MS = {"chain": 1.0, "long": 20.0}


def _write_goals(store: BatonStore) -> dict[str, str]:
    chain = start_goal(
        store, prepare_plan(WORKLOADS["chain"].plan(), source="bench chain plan"),
        {"payload": PAYLOAD}, concurrency=8,
    )
    # 10,007 events: 15 per task (three per attempt, each dispatch holding its readiness)
    simulate(history_plan(667, 5), "bench-long", failures=4, save=store.save)
    return {"chain": chain.id, "long": "bench-long"}


def measure(url: str, *, loads: int) -> dict[str, Any]:
    writer = open_store(url)
    try:
        goals = _write_goals(writer)
    finally:
        writer.close()
    return {name: _read_back(url, name, goal_id, loads=loads) for name, goal_id in goals.items()}


def _read_back(url: str, name: str, goal_id: str, *, loads: int) -> dict[str, Any]:
    reader = open_store(url)  # nothing of the goal in memory
    try:
        loaded, folded = reader.get(goal_id), reader.app.repository.get(goal_id)
        if loaded.state != folded.state or loaded.version != folded.version:
            raise RuntimeError(f"{name}: the snapshot path read another goal")
        snapshot_ms = median_read_ms(lambda: reader.get(goal_id), loads)
        fold_ms = median_read_ms(lambda: reader.app.repository.get(goal_id), max(3, loads // 5))
        events, size = goal_footprint(reader, goal_id)
        snapshots = reader.app.snapshots
        return {
            "goal_id": goal_id,
            "events": events,
            "event_bytes": size,
            "snapshot_bytes": snapshot_footprint(reader, goal_id),
            "snapshots": 0 if snapshots is None else len(
                snapshots.recorder.select_events(goal_id)
            ),
            "load_ms": round(snapshot_ms, 3),
            "fold_ms": round(fold_ms, 3),
            "target_ms": TARGET_MS[name],
            "met": snapshot_ms <= TARGET_MS[name],
        }
    finally:
        reader.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--loads", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="baton-bench-load-") as tmp:
        for store in [s for s in args.stores.split(",") if s]:
            if store == "postgres" and (why := postgres_unreachable()):
                result[store] = {"error": why}
                continue
            with open_target(store, Path(tmp)) as target:
                result[store] = measure(target.url, loads=args.loads)
    if args.json:
        print(json.dumps(result))
        return 0
    print("| goal | store | events | snapshots | load ms (snapshot) | fold every event ms "
          "| target | met |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for store, rows in result.items():
        if "error" in rows:
            print(f"| | {store} | {rows['error']} | | | | | |")
            continue
        for name, row in rows.items():
            print(f"| {name} | {store} | {row['events']} | {row['snapshots']} | "
                  f"{row['load_ms']:.2f} | {row['fold_ms']:.2f} | {row['target_ms']:g} | "
                  f"{'yes' if row['met'] else 'no'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
