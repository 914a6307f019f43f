"""Where Baton's time goes on a goal workload: pyinstrument, cProfile, or per-stage wall time.

    python scripts/bench_profile.py chain [--store URL|memory] [--goals 20] [--cprofile|--stages]

`--stages` times each stage of the runner's loop with `perf_counter` wrappers (no profiler, so
small calls are not inflated) and prints microseconds per task, wall time (and the process's
CPU time, every thread's, steadier on a busy machine); the lines indented "in save"
split `store.save` (on PostgreSQL: mapping, pool checkout, the insert function's transaction,
handing the NOTIFY to the thread that sends it). `--store memory` runs on
a SQLite file on tmpfs: what is left is the orchestration's own CPU, with no
durability cost. Needs `pip install pyinstrument` (in the `bench` extra) unless `--cprofile` or
`--stages` is given.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import baton.domain.goal  # noqa: E402
import baton.runtime.runner  # noqa: E402
from baton.runtime.loading import prepare_plan  # noqa: E402
from baton.runtime.service import start_goal  # noqa: E402
from baton.store.eventstore import BatonStore, open_store  # noqa: E402
from scripts.bench_agents import PAYLOAD  # noqa: E402
from scripts.bench_workloads import WORKLOADS  # noqa: E402

__all__ = ["main"]


def _timed_stages(store: BatonStore) -> Counter[str]:
    """Wrap the runner's stages so each call adds its wall time (ns) to the counter."""
    spent: Counter[str] = Counter()

    def wrap(owner: Any, name: str, label: str) -> None:
        inner: Callable[..., Any] = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter_ns()
            try:
                return inner(*args, **kwargs)
            finally:
                spent[label] += time.perf_counter_ns() - started

        setattr(owner, name, timed)

    runner = baton.runtime.runner.Runner
    wrap(baton.runtime.runner, "settle", "settle: decide + record decisions")
    wrap(store, "save", "store.save (map, insert, commit)")
    wrap(runner, "_next_observation", "wait for the agent's completion")
    wrap(runner, "_queued_observations", "take completions already queued")
    wrap(runner, "_launch", "launch: submit the calls just saved")
    wrap(baton.domain.goal.Goal, "observe", "record observations")
    wrap(baton.domain.goal.Goal, "start", "Goal.start (plan, state)")
    wrap(store, "exists", "store.exists")
    wrap(baton.runtime.runner.CallPool, "__init__", "call pool: create")
    wrap(baton.runtime.runner.CallPool, "close", "call pool: close")
    wrap(store.app.mapper, "to_stored_event", "  in save: map (encode) events")
    if store.is_postgres:
        _time_pg_insert(store, spent)
    return spent


def _time_pg_insert(store: BatonStore, spent: Counter[str]) -> None:
    """The PostgreSQL recorder's insert, stage by stage (the same statements, timed)."""
    from baton.store.pg_recorder import INSERT_FUNCTION

    recorder = store.recorder

    def insert(stored_events: Any) -> Any:
        columns = tuple([getattr(e, f) for e in stored_events]
                        for f in ("originator_id", "originator_version", "topic", "state"))
        t0 = time.perf_counter_ns()
        with recorder.datastore.get_connection() as conn, conn.cursor() as curs:
            t1 = time.perf_counter_ns()
            curs.execute(recorder.sql_insert, columns, prepare=True)
            ids = [row[INSERT_FUNCTION] for row in curs.fetchall()]
            t2 = time.perf_counter_ns()
        t3 = time.perf_counter_ns()
        recorder.notifier.poke()  # the NOTIFY itself goes out from the notifier's thread
        t4 = time.perf_counter_ns()
        spent["  in save: pool checkout and return"] += (t1 - t0) + (t3 - t2)
        spent["  in save: insert function (one transaction, commit)"] += t2 - t1
        spent["  in save: hand the NOTIFY to its thread"] += t4 - t3
        return ids

    recorder._insert = insert


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("workload", choices=sorted(WORKLOADS))
    parser.add_argument("--store", help="store URL, or 'memory' (default: a fresh SQLite file)")
    parser.add_argument("--goals", type=int, default=20)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--cprofile", action="store_true", help="cProfile, sorted by own time")
    mode.add_argument("--stages", action="store_true", help="wall time per runner stage")
    args = parser.parse_args(argv)
    workload = WORKLOADS[args.workload]
    loaded = prepare_plan(workload.plan())
    # "memory": a SQLite file on tmpfs, where durability costs next to nothing (eventsourcing's
    # in-memory recorder cannot stand in: `BatonStore.get` reads a goal in one SQL statement).
    tmpfs = "/dev/shm" if args.store == "memory" and Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(dir=tmpfs) as tmp:
        in_tmp = f"sqlite:///{tmp}/profile.db"
        store: BatonStore = open_store(in_tmp if args.store in (None, "memory") else args.store)
        start_goal(store, loaded, {"payload": PAYLOAD})  # warm-up: tables, imports, caches

        def goals() -> None:
            for _ in range(args.goals):
                start_goal(store, loaded, {"payload": PAYLOAD})

        if args.stages:
            spent = _timed_stages(store)
            cpu_started = time.process_time_ns()
            started = time.perf_counter_ns()
            goals()
            total = time.perf_counter_ns() - started
            cpu = time.process_time_ns() - cpu_started  # every thread's: agents' and runner's
            per_task = args.goals * workload.tasks * 1000  # ns -> us per task
            print(f"{workload.name} on {store.url}: {total / per_task:.1f} us per task "
                  f"(process CPU {cpu / per_task:.1f} us)")
            outer = sum(ns for label, ns in spent.items() if not label.startswith("  in save"))
            for label, ns in [*spent.most_common(), ("other", total - outer)]:
                print(f"  {label:36} {ns / per_task:7.1f} us  {100 * ns / total:5.1f} %")
        elif args.cprofile:
            import cProfile
            import pstats

            stats = cProfile.Profile()
            stats.runcall(goals)
            pstats.Stats(stats).sort_stats("tottime").print_stats(40)
        else:
            from pyinstrument import Profiler

            with Profiler(interval=0.0005) as profiler:
                goals()
            print(profiler.output_text(unicode=True, color=False, show_all=False))
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
