"""Timing one workload on one store: Baton through its real path, and the raw floor beside it.

Both sides get one untimed warm-up, then `runs` timed runs; the figure is the median.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from baton.runtime.loading import prepare_plan
from baton.runtime.runner import DEFAULT_CONCURRENCY
from baton.runtime.service import start_goal
from baton.store.eventstore import BatonStore, open_store
from scripts.bench_agents import PAYLOAD
from scripts.bench_history import (
    history_plan,
    insert_history,
    projection_floor,
    projection_runner,
    read_floor,
    replay_runner,
    reset_projection_floor,
    simulate,
)
from scripts.bench_peers import median_read_ms
from scripts.bench_stores import Target, goal_footprint, snapshot_footprint
from scripts.bench_workloads import FloorWriter, Workload

__all__ = [
    "History",
    "count_saves",
    "load_ms",
    "measure_goals",
    "measure_projection",
    "measure_replay",
    "timed",
    "timed_pair",
]


def timed(
    run: Callable[[], Any], *, runs: int, setup: Callable[[], Any] | None = None
) -> list[float]:
    """Wall seconds of `runs` calls after one warm-up; `setup` runs untimed before each."""
    return timed_alternately(run, runs=runs, setup=setup)[0]


def timed_pair(
    first: Callable[[], Any], second: Callable[[], Any], *, runs: int
) -> tuple[list[float], list[float]]:
    """Like `timed`, for two things at once, alternating run by run.

    The store's commit latency drifts on a shared machine (other writers' fsyncs); alternating
    Baton's goal and the floor's makes both see the same conditions, so their ratio holds still.
    """
    one, two = timed_alternately(first, second, runs=runs)
    return one, two


def timed_alternately(
    *calls: Callable[[], Any], runs: int, setup: Callable[[], Any] | None = None
) -> list[list[float]]:
    """Wall seconds of each call, round by round, after one warm-up round."""
    samples: list[list[float]] = [[] for _ in calls]
    for index in range(runs + 1):
        for run, kept in zip(calls, samples, strict=True):
            if setup is not None:
                setup()
            started = time.perf_counter()
            run()
            elapsed = time.perf_counter() - started
            if index:  # the first round is the warm-up
                kept.append(elapsed)
    return samples


def count_saves(store: BatonStore) -> list[int]:
    """Count the store's transactions: the list gets the goal version after each save."""
    versions: list[int] = []
    save = store.save

    def counted(goal: Any) -> Any:
        saved = save(goal)
        versions.append(goal.version)
        return saved

    store.save = counted  # type: ignore[method-assign]
    return versions


def _summary(samples: list[float], per: int, floor: list[float]) -> dict[str, Any]:
    per_task = statistics.median(samples) * 1000 / per
    floor_per_task = statistics.median(floor) * 1000 / per
    return {
        "per_task_ms": round(per_task, 4),
        "floor_per_task_ms": round(floor_per_task, 4),
        "ratio": round(per_task / floor_per_task, 2),
        "median_ms": round(statistics.median(samples) * 1000, 2),
        "min_ms": round(min(samples) * 1000, 2),
        "max_ms": round(max(samples) * 1000, 2),
        "runs": len(samples),
    }


def measure_goals(
    target: Target, workload: Workload, *, runs: int, concurrency: int = DEFAULT_CONCURRENCY
) -> dict[str, Any]:
    """Median wall time per goal through `start_goal`, against the floor on the same store."""
    loaded = prepare_plan(workload.plan(), source=f"bench {workload.name} plan")
    store = open_store(target.url)
    goal_ids: list[str] = []
    saves = count_saves(store)
    try:

        def run_goal() -> None:
            saves.clear()
            goal = start_goal(store, loaded, {"payload": PAYLOAD}, concurrency=concurrency)
            if goal.state.status != "completed":
                raise RuntimeError(f"{workload.name}: goal ended {goal.state.status}")
            goal_ids.append(goal.id)

        conn = target.connect()
        try:
            writer = FloorWriter(conn, postgres=target.pg_schema is not None)
            samples, floor = timed_pair(run_goal, lambda: workload.floor(writer), runs=runs)
        finally:
            conn.close()
        rows, size = goal_footprint(store, goal_ids[-1])
        snapshot_size = snapshot_footprint(store, goal_ids[-1])
    finally:
        store.close()
    return {
        **_summary(samples, workload.tasks, floor),
        "load_ms": round(load_ms(target.url, goal_ids[-1]), 3),
        "events_per_task": round(rows / workload.tasks, 2),
        "bytes_per_task": round(size / workload.tasks),
        "snapshot_bytes_per_task": round(snapshot_size / workload.tasks),
        "saves_per_task": round(len(saves) / workload.tasks, 2),  # store transactions
        "tasks": workload.tasks,
        "concurrency": concurrency,
    }


def load_ms(url: str, goal_id: str) -> float:
    """Median ms of `store.get(goal_id)` on a store handle opened for it (not the one that
    ran the goal: nothing of the goal is in memory), as `baton status` or a worker reads it."""
    store = open_store(url)
    try:
        return median_read_ms(lambda: store.get(goal_id))
    finally:
        store.close()


class History:
    """The long histories, recorded once per benchmark run and written into each store."""

    def __init__(self, *, replay_tasks: int, replay_attempts: int, projection_goals: int) -> None:
        self.replay_tasks = replay_tasks
        self.projection_tasks = projection_goals * 50
        self.replay_plan = history_plan(replay_tasks, replay_attempts)
        self.replay_events = simulate(
            self.replay_plan, "bench-replay", failures=replay_attempts - 1
        )
        chain = history_plan(50, 1)
        self.projection_events = [
            simulate(chain, f"bench-projection-{index:04d}", failures=0)
            for index in range(projection_goals)
        ]

    def load(self, store: BatonStore, *, replay: bool) -> int:
        """Write the replay goal, or the projection goals; returns how many events."""
        if replay:
            insert_history(store, self.replay_events)
            return len(self.replay_events)
        for events in self.projection_events:
            insert_history(store, events)
        return sum(len(events) for events in self.projection_events)


def measure_replay(target: Target, history: History, *, runs: int) -> dict[str, Any]:
    """Replay-verify the 10,000-event goal (and `--at` its middle); floor: read and decode."""
    store = open_store(target.url)
    try:
        events = history.load(store, replay=True)
        full, middle, method = replay_runner(
            store, history.replay_plan, "bench-replay", events // 2
        )
        samples = timed(full, runs=runs)
        # `--at` the middle is a secondary figure: fewer runs keep --quick within its budget.
        at_samples = timed(middle, runs=max(3, runs // 2))
        _, size = goal_footprint(store, "bench-replay")
    finally:
        store.close()
    conn = target.connect()
    try:
        postgres = target.pg_schema is not None
        floor = timed(
            lambda: read_floor(conn, postgres=postgres, goal_id="bench-replay"), runs=runs
        )
    finally:
        conn.close()
    return {
        **_summary(samples, events, floor),
        "unit": "event",
        "events": events,
        "events_per_task": round(events / history.replay_tasks, 2),
        "bytes_per_task": round(size / history.replay_tasks),
        "at": events // 2,
        "at_ms": round(statistics.median(at_samples) * 1000, 2),
        "method": method,
        "under_1s": statistics.median(samples) < 1.0,
    }


def measure_projection(target: Target, history: History, *, runs: int) -> dict[str, Any]:
    """Project every event of many goals into the read models; floor: one view, paged."""
    store = open_store(target.url)
    try:
        events = history.load(store, replay=False)
        size = sum(
            goal_footprint(store, goal[0].originator_id)[1] for goal in history.projection_events
        )
        run, method = projection_runner(store)
        samples = timed(run, runs=runs) if run is not None else None
    finally:
        store.close()
    conn = target.connect()
    postgres = target.pg_schema is not None
    try:
        floor = timed(
            lambda: projection_floor(conn, postgres=postgres),
            runs=runs,
            setup=lambda: reset_projection_floor(conn),
        )
    finally:
        conn.close()
    written = {
        "events": events,
        "events_per_task": round(events / history.projection_tasks, 2),
        "bytes_per_task": round(size / history.projection_tasks),
    }
    if samples is None:
        floor_per = statistics.median(floor) * 1000 / events
        return {
            "per_task_ms": None,
            "floor_per_task_ms": round(floor_per, 4),
            "ratio": None,
            "unit": "event",
            **written,
            "method": method,
            "floor_events_per_s": round(1000 / floor_per),
        }
    per_event = statistics.median(samples) / events
    return {
        **_summary(samples, events, floor),
        "unit": "event",
        **written,
        "method": method,
        "floor_events_per_s": round(events / statistics.median(floor)),
        "events_per_s": round(1 / per_event),
    }
