"""A store shared with another release of Baton (a rolling deploy: old and new processes side by
side). What a newer Baton wrote is refused in one line, never folded into a wrong state, and
never stalls what this Baton can drive (docs/reference.md, "Upgrading")."""

from __future__ import annotations

from typing import Any

import pytest
from eventsourcing.persistence import InfrastructureFactory, StoredEvent
from eventsourcing.utils import Environment

import baton as baton_package
from baton.domain.state import RULES
from baton.projections import VIEWS_VERSION, ProjectionError
from baton.projections.projector import view_class
from baton.readmodels.reading import KeptReadModels
from baton.store.eventstore import open_store
from tests.cli_support import baton
from tests.support import kinds

PLAN = "examples/travel/plan.yaml"
TRIP = "@examples/travel/trip.json"
FUTURE_TOPIC = "baton.domain.goal:Goal.SomethingNewer"  # an event type of a later release


def _submitted_with_a_newer_event(store_url: str, goal_id: str) -> None:
    """A submitted goal that a newer Baton has gone on with: its event 2 is of a type this
    Baton does not know (as a worker from before decision rules 3 meets `StopRequested`)."""
    assert baton("submit", PLAN, "--input", TRIP, "--goal-id", goal_id,
                 store=store_url).code == 0
    store = open_store(store_url)
    try:
        state = b'{"timestamp":{"_type_":"datetime_iso","_data_":"2026-12-04T14:00:30+00:00"}}'
        store.app.events.recorder.insert_events([StoredEvent(goal_id, 2, FUTURE_TOPIC, state)])
    finally:
        store.close()


def test_a_goal_with_an_event_of_a_newer_baton_is_refused_in_one_line(store_url: str) -> None:
    """It was `baton: internal error: TopicError: Failed to resolve topic ...`, exit 70, from
    status, resume, audit, replay, export and resolve alike."""
    _submitted_with_a_newer_event(store_url, "newer")
    for command in (("status", "newer"), ("resume", "newer"), ("audit", "newer"),
                    ("replay", "newer"), ("export", "newer", "-o", "-"),
                    ("cancel", "newer", "--reason", "x")):
        result = baton(*command, store=store_url)
        assert result.code == 2, (command, result.err)
        errors = [line for line in result.err.splitlines() if "error" in line]
        assert errors == [
            f"baton: error: goal 'newer': event 2 is a '{FUTURE_TOPIC}', which this Baton "
            "does not know (written by a newer Baton? upgrade this one to read the goal)"
        ], command


def test_an_event_stored_at_a_later_version_of_its_class_is_refused(store_url: str) -> None:
    """A newer Baton's version of an event this one knows was read as this one's version (no
    upcaster runs down), its new fields ignored: the goal folded, and was decided on, as if
    they were not there (as a pre-rules-3 worker read rules 3's `TaskDispatched` v3 and lost
    the readiness it carries)."""
    assert baton("submit", PLAN, "--input", TRIP, "--goal-id", "later", store=store_url).code == 0
    store = open_store(store_url)
    try:
        state = (b'{"timestamp":{"_type_":"datetime_iso","_data_":"2026-12-04T14:00:30+00:00"},'
                 b'"concurrency":8,"class_version":9,"what_v9_adds":true}')
        topic = "baton.domain.goal:Goal.RunResumed"
        store.app.events.recorder.insert_events([StoredEvent("later", 2, topic, state)])
    finally:
        store.close()
    for command in (("status", "later"), ("resume", "later"), ("replay", "later")):
        result = baton(*command, store=store_url)
        assert result.code == 2, (command, result.err)
        assert [line for line in result.err.splitlines() if "error" in line] == [
            f"baton: error: goal 'later': event 2 is version 9 of '{topic}', which this Baton "
            "does not know (written by a newer Baton? upgrade this one to read the goal)"
        ], command
    updated = baton("projections", "update", store=store_url)  # stops there, says where
    assert updated.code == 2 and "version 9" in updated.err, updated.err


def test_a_worker_leaves_a_goal_it_cannot_read_and_drives_the_others(store_url: str) -> None:
    """One goal a newer Baton wrote used to stop every claim after it: the worker said
    'cannot read the store: TopicError' every 0.5 s for ever and drove nothing else (and
    `--burst` never exited)."""
    _submitted_with_a_newer_event(store_url, "newer")
    assert baton("submit", PLAN, "--input", TRIP, "--goal-id", "mine",
                 store=store_url).code == 0
    worker = baton("worker", "--burst", store=store_url, timeout=60)
    assert worker.code == 0, worker.err
    assert "goal mine: completed" in worker.err, worker.err
    said = [line for line in worker.err.splitlines() if "goal newer" in line]
    assert len(said) == 1 and "ERROR" in said[0] and FUTURE_TOPIC in said[0], worker.err
    assert "cannot read the store" not in worker.err
    assert "left 1 whose history cannot be read here" in worker.err
    # which release said so, for an operator reading the logs of two side by side
    assert (f"worker started: 4 goal(s) at a time (baton {baton_package.__version__}, decision "
            f"rules {RULES}, read models {VIEWS_VERSION})") in worker.err
    store = open_store(store_url)
    try:  # nothing recorded on it: the newer Baton's history is left as it wrote it
        assert [e.originator_version for e in store.app.events.recorder.select_events(
            "newer")] == [1, 2]
        assert kinds(store, "mine")[-1] == "GoalCompleted"
    finally:
        store.close()


def _views(store_url: str, table: str, statement: str, *params: object) -> list[object]:
    """A statement on one read-model table (`{}` its name, `?` the parameters)."""
    store = open_store(store_url)  # the views' recorder as open_views makes it, unchecked
    factory = InfrastructureFactory[Any].construct(Environment("baton_views", store.app.env))
    try:
        views = factory.tracking_recorder(view_class(store.app))
        with views.datastore.transaction(commit=True) as c:
            name = views.tracking_table() if table == "tracking" else views.qualified(table)
            c.execute(views.sql(statement.format(name)), params)
            rows = c.fetchall() if "SELECT" in statement else []
            return [next(iter(row.values())) if isinstance(row, dict) else row[0]
                    for row in rows]
    finally:
        factory.close()
        store.close()


def test_read_models_a_newer_baton_built_are_left_to_it(store_url: str) -> None:
    """A process of the previous release dropped them (another version: rebuilt from the whole
    log) and the newer one dropped them back: while both shared the store, each rebuilt from
    the first event in turn and `status` was empty in between."""
    assert baton("run", PLAN, "--input", TRIP, "--goal-id", "one", store=store_url).code == 0
    _views(store_url, "baton_views_meta", "UPDATE {} SET version = ? WHERE name = ?",
           VIEWS_VERSION + 1, "baton_views")
    for command in (("status",), ("stats",), ("escalations",), ("projections", "update")):
        refused = baton(*command, store=store_url)
        assert refused.code == 2, (command, refused.err)
        assert refused.err.splitlines() == [
            f"baton: error: the read models were built by a newer Baton (read models version "
            f"{VIEWS_VERSION + 1}; this Baton's is {VIEWS_VERSION}): left as they are; upgrade "
            "this Baton to read or update them (after a downgrade: `baton projections "
            "rebuild`)"], command
    ran = baton("run", PLAN, "--input", TRIP, "--goal-id", "two", store=store_url)
    assert ran.code == 0 and "newer Baton" in ran.err, ran.err  # recorded; a warning only
    # untouched: neither dropped nor written by this Baton
    assert _views(store_url, "baton_views_meta", "SELECT version FROM {}") == [VIEWS_VERSION + 1]
    assert _views(store_url, "goal_summary", "SELECT goal_id FROM {}") == ["one"]
    # after a downgrade, the operator takes them back
    assert baton("projections", "rebuild", store=store_url).code == 0
    listed = baton("status", "--json", store=store_url)
    assert listed.code == 0, listed.err
    assert {g["goal_id"] for g in listed.json()["goals"]} == {"one", "two"}


def test_read_models_kept_open_are_not_written_once_another_release_rebuilt_them(
    store_url: str,
) -> None:
    """A worker or server opens the read models once and catches them up every second. Another
    release rebuilding them meanwhile (its own version, its tracking cleared) was not noticed:
    the rows left were applied to again (counted twice) and kept the other version's mark."""
    assert baton("run", PLAN, "--input", TRIP, "--goal-id", "one", store=store_url).code == 0
    attempts = _views(store_url, "agent_stats", "SELECT sum(attempts) FROM {}")
    store = open_store(store_url)
    kept = KeptReadModels(store, connections=2)
    try:
        assert kept.catch_up() == 0  # opened, and up to date
        for version in (VIEWS_VERSION - 1, VIEWS_VERSION + 1):  # an older release, a newer one
            _views(store_url, "baton_views_meta", "UPDATE {} SET version = ?", version)
            _views(store_url, "goal_summary", "DELETE FROM {}")
            _views(store_url, "tracking", "DELETE FROM {} WHERE application_name = ?",
                   store.app.name)
            if version > VIEWS_VERSION:
                with pytest.raises(ProjectionError, match="newer Baton"):
                    kept.catch_up()
                assert _views(store_url, "goal_summary", "SELECT goal_id FROM {}") == []
                assert _views(store_url, "baton_views_meta", "SELECT version FROM {}") == [
                    version]
            else:  # made this release's again: rebuilt from the log, counted once
                assert kept.catch_up() > 0
                assert _views(store_url, "baton_views_meta", "SELECT version FROM {}") == [
                    VIEWS_VERSION]
                assert _views(store_url, "goal_summary", "SELECT goal_id FROM {}") == ["one"]
                assert _views(store_url, "agent_stats", "SELECT sum(attempts) FROM {}") == (
                    attempts)
    finally:
        kept.close()
        store.close()


def test_the_web_view_of_a_goal_a_newer_baton_wrote_says_so(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The goal's page and its replay were a bare 500 with a traceback in the server's log."""
    pytest.importorskip("starlette", reason="the web extra is not installed")
    from starlette.testclient import TestClient

    from baton.web.app import create_app

    _submitted_with_a_newer_event(sqlite_url, "newer")
    store = open_store(sqlite_url)
    try:
        with TestClient(create_app(store, catch_up_s=0), raise_server_exceptions=False) as client:
            for path in ("/goals/newer", "/goals/newer/replay"):
                page = client.get(path)
                assert page.status_code == 409, (path, page.status_code)
                assert "Written by a newer Baton" in page.text and "event 2 is a" in page.text
            assert client.get("/").status_code == 200  # the other pages go on
        logged = capsys.readouterr().err.strip().splitlines()
        assert logged and all(line.startswith("baton serve: GET /goals/newer")
                              and "which this Baton does not know" in line for line in logged)
    finally:
        store.close()
