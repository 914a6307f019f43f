"""The SQLite application recorder (baton.store.sqlite_recorder): a save's rows in one
statement, with the library's rows, notification ids and conflicts."""

from __future__ import annotations

from pathlib import Path

import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

from baton.store.eventstore import open_store
from baton.store.sqlite_recorder import MAX_ROWS, OneStatementSQLiteRecorder
from tests.support import plan, run, task


def _recorders(tmp_path: Path) -> tuple[SQLiteApplicationRecorder, OneStatementSQLiteRecorder]:
    library = SQLiteApplicationRecorder(
        SQLiteDatastore(str(tmp_path / "library.db"), originator_id_type="text")
    )
    ours = OneStatementSQLiteRecorder(
        SQLiteDatastore(str(tmp_path / "ours.db"), originator_id_type="text")
    )
    library.create_table()
    ours.create_table()
    return library, ours


def _events(goal: str, first: int, count: int) -> list[StoredEvent]:
    return [
        StoredEvent(goal, version, f"t{version}", f"state {goal} {version}".encode())
        for version in range(first, first + count)
    ]


@pytest.mark.parametrize("count", [1, 4, MAX_ROWS, MAX_ROWS + 1])
def test_rows_and_notification_ids_are_the_library_s(tmp_path: Path, count: int) -> None:
    library, ours = _recorders(tmp_path)
    for recorder in (library, ours):
        ids = [recorder.insert_events(_events("a", 1, 3))]
        ids.append(recorder.insert_events(_events("b", 1, count)))
        ids.append(recorder.insert_events(_events("a", 4, 2)))
        assert ids == [[1, 2, 3], list(range(4, 4 + count)), [4 + count, 5 + count]]
    assert ours.select_notifications(1, 1000) == library.select_notifications(1, 1000)
    assert ours.select_events("a") == library.select_events("a")


def test_a_conflict_raises_the_library_s_error_and_writes_nothing(tmp_path: Path) -> None:
    _, ours = _recorders(tmp_path)
    ours.insert_events(_events("a", 1, 2))
    with pytest.raises(IntegrityError):
        ours.insert_events(_events("a", 2, 3))  # version 2 is taken: versions 3, 4 not written
    assert [e.originator_version for e in ours.select_events("a")] == [1, 2]
    assert ours.insert_events(_events("a", 3, 1)) == [3]


def test_goals_run_on_it(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/baton.db")
    try:
        assert isinstance(store.recorder, OneStatementSQLiteRecorder)
        goal = run(store, plan(task("a", "upper", input={"text": "$goal.text"})), {"text": "x"})
        assert goal.state.status == "completed"
        ids = [n.id for n in store.recorder.select_notifications(1, 100)]
        assert ids == list(range(1, goal.version + 1))
    finally:
        store.close()
