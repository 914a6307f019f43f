"""Goal snapshots (baton.store.snapshots): reading a goal back through its latest snapshot gives
exactly the goal that folding every event gives, and a snapshot that may not be that goal (other
code wrote it, the history under it changed, it does not decode) is ignored."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from baton.domain.goal import Goal
from baton.domain.state import GoalState
from baton.history.runfile import read_run
from baton.runtime.service import resolve_task, resume_goal
from baton.store import eventstore, snapshots
from baton.store.eventstore import BatonStore, open_store
from baton.store.snapshots import (
    GoalSnapshot,
    select_goal_rows,
    snapshot_format,
    take_snapshot,
)
from tests.support import plan, run, task

GOLDEN = sorted((Path(__file__).parent / "golden").glob("*.jsonl"))


@pytest.fixture(autouse=True)
def _small_goals_snapshotted_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about the snapshot itself; their goals are small (a few tasks)."""
    monkeypatch.setattr(snapshots, "SNAPSHOT_MIN_EVENTS", 0)


def _same(loaded: Goal, folded: Goal) -> None:
    """Everything a goal is: id, version, timestamps and the whole folded state (its indexes
    included), compared field by field so a difference names the field."""
    assert (loaded.id, loaded.version) == (folded.id, folded.version)
    assert (loaded.created_on, loaded.modified_on) == (folded.created_on, folded.modified_on)
    for field in dataclasses.fields(folded.state):
        mine, theirs = getattr(loaded.state, field.name), getattr(folded.state, field.name)
        assert mine == theirs and type(mine) is type(theirs), field.name
    assert loaded.state == folded.state


def _folded(store: BatonStore, goal_id: str) -> Goal:
    """The goal folded from every event, no snapshot involved."""
    goal: Goal = store.app.repository.get(goal_id)
    return goal


def _stored_snapshot(store: BatonStore, goal_id: str) -> GoalSnapshot | None:
    assert store.app.snapshots is not None
    found = list(store.app.snapshots.get(goal_id, desc=True, limit=1))
    return found[0] if found else None  # type: ignore[return-value]


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_a_snapshot_after_any_event_of_a_golden_history_restores_the_folded_goal(
    path: Path, sqlite_url: str
) -> None:
    """After every event of every golden history: snapshot, store encoding (the mapper),
    restore, and compare with the fold."""
    store = open_store(sqlite_url)
    try:
        mapper = store.app.mapper
        goal: Any = None
        for event in read_run(str(path)).events:
            goal = event.mutate(goal)
            # Plans that planners and maps extended included: restored from the plan as
            # started plus the fragments and map widths the state holds.
            snapshot = take_snapshot(goal)
            stored = mapper.to_stored_event(snapshot)
            _same(mapper.to_domain_event(stored).mutate(None), goal)
    finally:
        store.close()


def _escalating_plan() -> dict[str, Any]:
    return plan(
        task("a", "flaky", input={"text": "$goal.text"}, retry={"max_attempts": 2}),
        task("b", "always_fails", input={"text": "$a.text"}, on_failure="escalate",
             retry={"max_attempts": 1}),
        task("c", "upper", input={"text": "$b.text"}),
        output="$c.text",
    )


def test_a_stopped_goal_is_read_from_its_snapshot_and_equals_the_fold(store_url: str) -> None:
    store = open_store(store_url)
    try:
        goal = run(store, _escalating_plan(), {"text": "snap"})
        assert goal.state.status == "waiting"
    finally:
        store.close()
    fresh = open_store(store_url)  # a new handle: nothing cached in memory
    try:
        snapshot = _stored_snapshot(fresh, goal.id)
        assert snapshot is not None and snapshot.originator_version == goal.version
        _, rows = select_goal_rows(fresh.app, goal.id)
        assert len(rows) == 1  # only the snapshot's own event, not the history
        _same(fresh.get(goal.id), _folded(fresh, goal.id))

        # A goal restored from its snapshot goes on as a folded one would: resolve, resume.
        resolve_task(fresh, goal.id, "b", action="output", output={"text": "by hand"},
                     reason="fixed", by="ana")
        done = resume_goal(fresh, goal.id)
        assert done.state.status == "completed" and done.state.output == "BY HAND"
        _same(fresh.get(goal.id), _folded(fresh, goal.id))
        _same(fresh.get(goal.id), done)
    finally:
        fresh.close()


def test_a_running_goal_is_snapshotted_every_interval_and_read_from_there(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Interval snapshots alone (the snapshot a stopping goal takes turned off): the goal is
    read from the last one taken, plus the events after it; only the latest is kept."""
    monkeypatch.setattr(snapshots, "SNAPSHOT_INTERVAL", 10)
    monkeypatch.setattr(eventstore, "snapshot_due",
                        lambda goal, first: snapshots.crosses_interval(first, goal.version))
    store = open_store(store_url)
    try:
        chain = [task("t0", "upper", input={"text": "$goal.text"})]
        chain += [task(f"t{i}", "upper", input={"text": f"$t{i - 1}.text"}) for i in range(1, 8)]
        goal = run(store, plan(*chain), {"text": "x"})
        assert goal.state.status == "completed" and goal.version > 2 * 10  # two intervals
        assert store.app.snapshots is not None
        versions = [s.originator_version for s in store.app.snapshots.get(goal.id)]
        assert len(versions) == 1  # each snapshot replaced the one before
        taken = versions[0]
        assert taken >= goal.version // 10 * 10 and goal.version - taken < 10 + 8
        _, rows = select_goal_rows(store.app, goal.id)
        assert len(rows) == goal.version - taken + 1
        _same(store.get(goal.id), _folded(store, goal.id))
    finally:
        store.close()


def _delete_snapshots(store: BatonStore, goal_id: str, *, version: int | None = None) -> None:
    assert store.app.snapshots is not None
    recorder = store.app.snapshots.recorder
    mark = "%s" if store.is_postgres else "?"
    table = recorder.events_table_name
    if store.is_postgres:
        table = f'"{recorder.datastore.schema}".{table}'
    sql, params = f"DELETE FROM {table} WHERE originator_id = {mark}", [goal_id]
    if version is not None:
        sql, params = sql + f" AND originator_version = {mark}", [goal_id, version]
    with recorder.datastore.transaction(commit=True) as c:
        c.execute(sql, params)


def _replace_snapshot(store: BatonStore, goal_id: str, **changes: Any) -> None:
    """Store another snapshot in place of the goal's latest: a snapshot as other code, or
    another history, would have left it."""
    current = _stored_snapshot(store, goal_id)
    assert current is not None and store.app.snapshots is not None
    _delete_snapshots(store, goal_id)
    store.app.snapshots.put([dataclasses.replace(current, **changes)])


_STATUS = [field.name for field in dataclasses.fields(GoalState)].index("status")


def _poisoned(snapshot: GoalSnapshot) -> dict[str, Any]:
    """The snapshot's state with a lie in it: the waiting goal recorded as completed."""
    goal = dict(snapshot.state["goal"])
    goal["state"] = list(goal["state"])
    goal["state"][_STATUS] = "completed"
    return {**snapshot.state, "goal": goal}


def test_a_snapshot_is_what_a_read_returns(store_url: str) -> None:
    """The control for the test below: a snapshot of this code's format, taken after the
    stored event at its version, is believed (so a lie in one is what a read would return)."""
    store = open_store(store_url)
    try:
        goal = run(store, _escalating_plan(), {"text": "trusted"})
        snapshot = _stored_snapshot(store, goal.id)
        assert snapshot is not None
        _replace_snapshot(store, goal.id, state=_poisoned(snapshot))
        assert store.get(goal.id).state.status == "completed"
        assert _folded(store, goal.id).state.status == "waiting"
    finally:
        store.close()


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda s: {"state": {**_poisoned(s), "format": "another-release"}},
                     id="another-format"),
        pytest.param(lambda s: {"state": _poisoned(s),
                                "timestamp": s.timestamp.replace(year=2001)},
                     id="another-history"),
        pytest.param(lambda s: {"state": {**s.state, "goal": {"state": [1, 2, 3]}}},
                     id="undecodable"),
        pytest.param(lambda s: {"state": {
            **s.state, "goal": {**s.state["goal"], "state": s.state["goal"]["state"][:-1]}}},
            id="a-field-short"),
    ],
)
def test_a_stale_or_foreign_snapshot_is_ignored_and_the_goal_folded_from_events(
    store_url: str, change: Any
) -> None:
    store = open_store(store_url)
    try:
        goal = run(store, _escalating_plan(), {"text": "stale"})
        snapshot = _stored_snapshot(store, goal.id)
        assert snapshot is not None
        _replace_snapshot(store, goal.id, **change(snapshot))
        assert _stored_snapshot(store, goal.id) != snapshot
        loaded = store.get(goal.id)
        assert loaded.state.status == "waiting"
        _same(loaded, _folded(store, goal.id))
    finally:
        store.close()


def test_the_format_changes_when_the_goal_state_gains_a_field(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = snapshot_format()
    grown = dataclasses.make_dataclass(
        "GoalState", [("new_field", "int", dataclasses.field(default=0))], bases=(GoalState,)
    )
    monkeypatch.setattr(snapshots, "_state_classes", lambda: [grown])
    snapshot_format.cache_clear()
    try:
        assert snapshot_format() != before
    finally:
        snapshot_format.cache_clear()
    monkeypatch.undo()
    assert snapshot_format() == before


def test_every_goal_state_field_has_a_codec() -> None:
    """A GoalState field of a type the codec does not know turns snapshots off (the goal is
    then folded from events); this test makes such a field visible: teach snapshots.py."""
    for cls in snapshots._state_classes():
        snapshots._encoder(cls)
        snapshots._decoder(cls)


def test_a_goal_whose_map_and_planner_added_tasks_is_read_from_its_snapshot(
    store_url: str,
) -> None:
    """A plan extended at run time is snapshotted too (the started plan plus the fragments and
    map widths), so reading a decomposed goal back does not fold its whole history."""
    from tests.test_decompose import GOOD, planner_plan

    # A planner adds `plan/a` and `plan/b`; a map over its items adds `each[0]`, `each[1]`.
    decomposed = planner_plan(
        {"id": "each", "agent": "upper", "for_each": "$plan.items", "as": "item",
         "input": {"text": "$item"}},
        output="$each",
    )
    store = open_store(store_url)
    try:
        goal = run(store, decomposed, {"text": "hi", "fragments": [GOOD]})
        assert goal.state.status == "completed", goal.state.reason
        assert {"plan/a", "plan/b", "each[0]", "each[1]"} <= set(goal.state.tasks)
    finally:
        store.close()
    fresh = open_store(store_url)
    try:
        snapshot = _stored_snapshot(fresh, goal.id)
        assert snapshot is not None and snapshot.originator_version == goal.version
        _, rows = select_goal_rows(fresh.app, goal.id)
        assert len(rows) == 1  # the snapshot's own event only
        _same(fresh.get(goal.id), _folded(fresh, goal.id))
    finally:
        fresh.close()


def test_a_running_goal_with_many_tasks_is_snapshotted_less_often() -> None:
    """Encoding a snapshot costs time in proportion to the tasks: a wide goal is snapshotted
    every as many events as it has tasks, so snapshots cost a bounded amount per event."""
    assert snapshots.crosses_interval(199, 200)  # a small goal: every 200 events
    assert not snapshots.crosses_interval(199, 200, every=5000)
    assert snapshots.crosses_interval(4990, 5003, every=5000)
    assert not snapshots.crosses_interval(5004, 9999, every=5000)


def test_a_goal_that_stops_small_is_not_snapshotted_and_reads_back_from_its_events(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Below SNAPSHOT_MIN_EVENTS, folding costs what restoring would: no snapshot is written."""
    monkeypatch.setattr(snapshots, "SNAPSHOT_MIN_EVENTS", 20)
    store = open_store(store_url)
    try:
        small = run(store, plan(task("a", "upper", input={"text": "$goal.text"})), {"text": "s"})
        chain = [task("t0", "upper", input={"text": "$goal.text"})]
        chain += [task(f"t{i}", "upper", input={"text": f"$t{i - 1}.text"}) for i in range(1, 6)]
        larger = run(store, plan(*chain), {"text": "l"})
        assert small.state.status == larger.state.status == "completed"
        assert small.version < 20 <= larger.version
        assert _stored_snapshot(store, small.id) is None
        assert _stored_snapshot(store, larger.id) is not None
        _same(store.get(small.id), _folded(store, small.id))
    finally:
        store.close()
