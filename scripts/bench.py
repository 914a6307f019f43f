"""Baton's orchestration overhead against the raw store and against peers, in one run.

    python scripts/bench.py [--quick] [--json] [--plot docs/bench.png]

Workloads (every agent a no-op, so only orchestration and durability are timed): `chain`,
`fanout`, `retry` (goals driven through `prepare_plan` + `start_goal`), `replay` (replay-verify
of a 10,000-event goal) and `projection` (20,000 events into the read models), each on a SQLite
file and a PostgreSQL schema, each beside its raw floor measured in the same run. Peers
(LangGraph, DBOS) run too when installed. See docs/benchmarks.md for the method.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sqlite3
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a file: make `scripts.*` and the packages importable
    sys.path.insert(0, str(ROOT))

from scripts.bench_measure import (  # noqa: E402
    History,
    measure_goals,
    measure_projection,
    measure_replay,
)
from scripts.bench_peers import PEERS, run_peer  # noqa: E402
from scripts.bench_report import markdown_table, plot  # noqa: E402
from scripts.bench_stores import (  # noqa: E402
    PG_DSN,
    open_target,
    postgres_unreachable,
    sqlite_settings,
)
from scripts.bench_workloads import WORKLOADS  # noqa: E402

__all__ = ["main", "run"]

GOAL_WORKLOADS = ("chain", "fanout", "retry")
ALL_WORKLOADS = (*GOAL_WORKLOADS, "replay", "projection")



@dataclass(frozen=True)
class Profile:
    runs: int  # timed runs per measurement, after one warm-up
    replay_tasks: int  # the replay goal: a chain of this many tasks ...
    replay_attempts: int  # ... each needing this many attempts (20 events per task at 5)
    projection_goals: int  # chain-50 goals of 202 events each


# 500 tasks x 5 attempts record a 10,002-event goal; 100 goals x 202 events make 20,200 events.
PROFILES = {
    "quick": Profile(runs=5, replay_tasks=500, replay_attempts=5, projection_goals=100),
    "full": Profile(runs=15, replay_tasks=500, replay_attempts=5, projection_goals=100),
}


def machine() -> dict[str, Any]:
    import os

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "eventsourcing": version("eventsourcing"),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    try:
        import psycopg

        with psycopg.connect(PG_DSN, connect_timeout=3) as conn:
            row = conn.execute("show server_version").fetchone()
            sync = conn.execute("show synchronous_commit").fetchone()
        info["postgres"] = row[0] if row else None
        info["postgres_synchronous_commit"] = sync[0] if sync else None
    except Exception:
        info["postgres"] = None
    return info


def run(
    *,
    quick: bool,
    workloads: tuple[str, ...] = ALL_WORKLOADS,
    stores: tuple[str, ...] = ("sqlite", "postgres"),
    peers: bool = True,
    runs: int | None = None,
    log: Any = None,
) -> dict[str, Any]:
    """Measure everything asked for; returns the JSON-ready result."""
    profile = PROFILES["quick" if quick else "full"]
    runs = runs or profile.runs

    def say(text: str) -> None:
        if log is not None:
            print(text, file=log, flush=True)

    result: dict[str, Any] = {
        "machine": machine(),
        "profile": "quick" if quick else "full",
        "runs": runs,
        "workloads": {},
        "peers": {},
    }
    unreachable = postgres_unreachable() if "postgres" in stores else None
    history = None
    if {"replay", "projection"} & set(workloads):
        say("recording the long histories ...")
        history = History(
            replay_tasks=profile.replay_tasks,
            replay_attempts=profile.replay_attempts,
            projection_goals=profile.projection_goals,
        )
    with tempfile.TemporaryDirectory(prefix="baton-bench-") as tmp:
        workdir = Path(tmp)
        for name in workloads:
            rows: dict[str, Any] = {}
            for store in stores:
                if store == "postgres" and unreachable:
                    rows[store] = {"error": unreachable}
                    continue
                say(f"{name} on {store} ...")
                with open_target(store, workdir) as target:
                    if name in GOAL_WORKLOADS:
                        rows[store] = measure_goals(target, WORKLOADS[name], runs=runs)
                    elif name == "replay" and history is not None:
                        rows[store] = measure_replay(target, history, runs=runs)
                    elif history is not None:
                        rows[store] = measure_projection(target, history, runs=runs)
                    if target.sqlite_path is not None:  # as Baton's store left the file
                        result["machine"]["sqlite_store"] = sqlite_settings(target.sqlite_path)
            result["workloads"][name] = rows
        if peers:
            for peer in PEERS:
                say(f"peer {peer} ...")
                data = run_peer(peer, runs=runs, workdir=workdir / peer)
                if "error" not in data:
                    data["baton_ratio"] = _ratios(result, data)
                result["peers"][peer] = data
    return result


def _ratios(result: dict[str, Any], peer: dict[str, Any]) -> dict[str, float]:
    """Baton's per-task time on SQLite divided by the peer's, per goal workload."""
    ratios = {}
    for name in GOAL_WORKLOADS:
        baton = result["workloads"].get(name, {}).get("sqlite", {}).get("per_task_ms")
        if baton is not None and name in peer:
            ratios[name] = round(baton / peer[name]["per_task_ms"], 2)
    return ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (finishes in < 2 min)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--runs", type=int, help="timed runs per measurement (after a warm-up)")
    parser.add_argument(
        "--workloads", default=",".join(ALL_WORKLOADS), help="comma-separated subset"
    )
    parser.add_argument("--stores", default="sqlite,postgres", help="comma-separated subset")
    parser.add_argument("--no-peers", action="store_true", help="skip LangGraph and DBOS")
    parser.add_argument("--plot", type=Path, help="write the bar chart (needs matplotlib)")
    args = parser.parse_args(argv)
    workloads = tuple(w for w in args.workloads.split(",") if w)
    stores = tuple(s for s in args.stores.split(",") if s)
    unknown = [w for w in workloads if w not in ALL_WORKLOADS]
    unknown += [s for s in stores if s not in ("sqlite", "postgres")]
    if unknown or (args.runs is not None and args.runs < 1):
        print(f"bench: unknown workload or store, or bad --runs: {unknown}", file=sys.stderr)
        return 2
    if args.plot is not None and importlib.util.find_spec("matplotlib") is None:
        print("bench: --plot needs matplotlib (pip install -e '.[bench]')", file=sys.stderr)
        return 2
    result = run(
        quick=args.quick,
        workloads=workloads,
        stores=stores,
        peers=not args.no_peers,
        runs=args.runs,
        log=sys.stderr,
    )
    if args.plot:
        plot(result, args.plot)
    print(json.dumps(result) if args.json else markdown_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
