"""Baton's orchestration overhead against the raw store and against peers, in one run.

    python scripts/bench.py [--quick] [--json] [--plot docs/bench.png]

Workloads (every agent a no-op, so only orchestration and durability are timed): `chain`,
`fanout`, `retry` (goals driven through `prepare_plan` + `start_goal`), `replay` (replay-verify
of a 10,000-event goal) and `projection` (20,000 events into the read models), each on a SQLite
file and a PostgreSQL schema, each beside its raw floor measured in the same run. Peers
(LangGraph, Burr, DBOS) run too when installed, on both stores, in the same rounds as Baton.
See docs/benchmarks.md for the method.
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

__all__ = ["cells", "main", "run"]

GOAL_WORKLOADS = ("chain", "fanout", "retry")
ALL_WORKLOADS = (*GOAL_WORKLOADS, "replay", "projection")



@dataclass(frozen=True)
class Profile:
    runs: int  # timed runs per measurement and round, after one warm-up
    rounds: int  # rounds of (Baton, every peer) for the goal workloads
    replay_tasks: int  # the replay goal: a chain of this many tasks ...
    replay_attempts: int  # ... each needing this many attempts (15 events per task at 5)
    projection_goals: int  # chain-50 goals of 152 events each (202 before decision rules 3)


# 667 tasks x 5 attempts record a 10,007-event goal (decision rules 3: 15 events per task);
# 132 goals x 152 events make 20,064 events.
PROFILES = {
    "quick": Profile(runs=5, rounds=1, replay_tasks=667, replay_attempts=5, projection_goals=132),
    "full": Profile(runs=5, rounds=3, replay_tasks=667, replay_attempts=5, projection_goals=132),
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
    rounds: int | None = None,
    log: Any = None,
) -> dict[str, Any]:
    """Measure everything asked for; returns the JSON-ready result.

    The goal workloads run in `rounds`: each round measures Baton (beside its floor) on every
    store, then every peer on every store, `runs` timed runs each; a cell's figure is its
    median round. Commit latency on a shared machine drifts over minutes; rounds spread that
    drift over every system instead of giving it to whichever ran last.
    """
    profile = PROFILES["quick" if quick else "full"]
    rounds = rounds or profile.rounds
    runs = runs or profile.runs

    def say(text: str) -> None:
        if log is not None:
            print(text, file=log, flush=True)

    result: dict[str, Any] = {
        "machine": machine(),
        "profile": "quick" if quick else "full",
        "runs": runs,
        "rounds": rounds,
        "workloads": {},
        "peers": {},
    }
    unreachable = postgres_unreachable() if "postgres" in stores else None
    goal_workloads = [name for name in workloads if name in GOAL_WORKLOADS]
    baton: dict[str, dict[str, list[dict[str, Any]]]] = {}
    peer_rounds: dict[str, dict[str, list[dict[str, Any]]]] = {}
    with tempfile.TemporaryDirectory(prefix="baton-bench-") as tmp:
        workdir = Path(tmp)
        for index in range(rounds):
            for name in goal_workloads:
                for store in stores:
                    if store == "postgres" and unreachable:
                        continue
                    say(f"round {index + 1}/{rounds}: {name} on {store} ...")
                    with open_target(store, workdir) as target:
                        row = measure_goals(target, WORKLOADS[name], runs=runs)
                        if target.sqlite_path is not None:  # as Baton's store left the file
                            result["machine"]["sqlite_store"] = sqlite_settings(
                                target.sqlite_path
                            )
                    baton.setdefault(name, {}).setdefault(store, []).append(row)
            if peers and goal_workloads:
                for peer in PEERS:
                    for store in stores:
                        if store == "postgres" and unreachable:
                            continue
                        say(f"round {index + 1}/{rounds}: peer {peer} on {store} ...")
                        data = run_peer(peer, runs=runs, workdir=workdir / peer, store=store)
                        peer_rounds.setdefault(peer, {}).setdefault(store, []).append(data)
        for name in goal_workloads:
            result["workloads"][name] = {
                store: (
                    {"error": unreachable}
                    if store == "postgres" and unreachable
                    else _median_round(baton[name][store])
                )
                for store in stores
            }
        history = None
        if {"replay", "projection"} & set(workloads):
            say("recording the long histories ...")
            history = History(
                replay_tasks=profile.replay_tasks,
                replay_attempts=profile.replay_attempts,
                projection_goals=profile.projection_goals,
            )
        for name in workloads:
            if name in GOAL_WORKLOADS or history is None:
                continue
            rows: dict[str, Any] = {}
            for store in stores:
                if store == "postgres" and unreachable:
                    rows[store] = {"error": unreachable}
                    continue
                say(f"{name} on {store} ...")
                with open_target(store, workdir) as target:
                    if name == "replay":
                        rows[store] = measure_replay(target, history, runs=runs * rounds)
                    else:
                        rows[store] = measure_projection(target, history, runs=runs * rounds)
            result["workloads"][name] = rows
    for peer, by_store in peer_rounds.items():
        result["peers"][peer] = _peer_result(result, by_store, unreachable)
    result["cells"] = cells(result)
    return result


def _median_round(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The round whose per-task time is the median (its other figures with it), and every
    round's per-task time."""
    ordered = sorted(rows, key=lambda row: row["per_task_ms"])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["rounds_per_task_ms"] = [row["per_task_ms"] for row in rows]
    return chosen


def _peer_result(
    result: dict[str, Any], by_store: dict[str, list[dict[str, Any]]], unreachable: str | None
) -> dict[str, Any]:
    """One peer: its SQLite cells at the top (the shape of earlier runs), PostgreSQL's under
    `postgres`, and Baton's per-task time divided by the peer's, per store."""
    merged: dict[str, Any] = {}
    for store, rounds in by_store.items():
        good = [data for data in rounds if "error" not in data]
        if not good:
            data = rounds[-1]
        else:
            data = {key: value for key, value in good[0].items() if key not in GOAL_WORKLOADS}
            for name in GOAL_WORKLOADS:
                cells = [round_[name] for round_ in good if name in round_]
                if cells:
                    data[name] = _median_round(cells)
            data["baton_ratio"] = _ratios(result, data, store)
        if store == "sqlite":
            merged.update(data)
        else:
            merged[store] = data
    if "postgres" not in merged and unreachable:
        merged["postgres"] = {"error": unreachable}
    return merged


def _ratios(result: dict[str, Any], peer: dict[str, Any], store: str) -> dict[str, float]:
    """Baton's per-task time on `store` divided by the peer's, per goal workload."""
    ratios = {}
    for name in GOAL_WORKLOADS:
        baton = result["workloads"].get(name, {}).get(store, {}).get("per_task_ms")
        if baton is not None and name in peer:
            ratios[name] = round(baton / peer[name]["per_task_ms"], 2)
    return ratios


def _peer_cell(data: dict[str, Any], store: str, name: str) -> dict[str, Any] | None:
    scope = data if store == "sqlite" else data.get(store, {})
    cell = scope.get(name)
    return cell if isinstance(cell, dict) and "per_task_ms" in cell else None


def cells(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The goal workloads x stores: Baton, the best (fastest) peer, Baton ÷ peer, Baton ÷ the
    raw floor, and every system's load-back time and bytes per task."""
    found = []
    for name in GOAL_WORKLOADS:
        for store, row in result["workloads"].get(name, {}).items():
            if "per_task_ms" not in row:
                continue
            peers = {
                peer: cell
                for peer, data in result["peers"].items()
                if (cell := _peer_cell(data, store, name)) is not None
            }
            best = min(peers, key=lambda p: peers[p]["per_task_ms"], default=None)
            found.append({
                "workload": name,
                "store": store,
                "baton_ms": row["per_task_ms"],
                "best_peer": best,
                "best_peer_ms": None if best is None else peers[best]["per_task_ms"],
                "baton_per_best_peer": (
                    None if best is None
                    else round(row["per_task_ms"] / peers[best]["per_task_ms"], 2)
                ),
                "baton_per_floor": row["ratio"],
                "load_ms": {"baton": row.get("load_ms"),
                            **{peer: cell.get("load_ms") for peer, cell in peers.items()}},
                "bytes_per_task": {"baton": row.get("bytes_per_task"),
                                   **{peer: cell.get("bytes_per_task")
                                      for peer, cell in peers.items()}},
            })
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (finishes in < 2 min)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--runs", type=int, help="timed runs per measurement (after a warm-up)")
    parser.add_argument(
        "--rounds", type=int, help="rounds of Baton and every peer (goal workloads)"
    )
    parser.add_argument(
        "--workloads", default=",".join(ALL_WORKLOADS), help="comma-separated subset"
    )
    parser.add_argument("--stores", default="sqlite,postgres", help="comma-separated subset")
    parser.add_argument("--no-peers", action="store_true", help="skip LangGraph, Burr and DBOS")
    parser.add_argument("--plot", type=Path, help="write the bar chart (needs matplotlib)")
    args = parser.parse_args(argv)
    workloads = tuple(w for w in args.workloads.split(",") if w)
    stores = tuple(s for s in args.stores.split(",") if s)
    unknown = [w for w in workloads if w not in ALL_WORKLOADS]
    unknown += [s for s in stores if s not in ("sqlite", "postgres")]
    if unknown or any(n is not None and n < 1 for n in (args.runs, args.rounds)):
        print(f"bench: unknown workload or store, or bad --runs/--rounds: {unknown}",
              file=sys.stderr)
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
        rounds=args.rounds,
        log=sys.stderr,
    )
    if args.plot:
        plot(result, args.plot)
    print(json.dumps(result) if args.json else markdown_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
