"""The read models from the command line: fresh after every writing command, exactly once after
a killed projector, kept current by `projections follow`, exported for analysts."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from baton import projections
from baton.projections.schema import TABLES, VIEWS_VERSION
from baton.projections.views import ViewReader
from baton.readmodels import reading as readmodels
from baton.readmodels.export import export_views
from baton.readmodels.reading import ReadModels
from baton.store.eventstore import BatonStore, open_store
from tests import agents
from tests.cli_support import ROOT, baton
from tests.support import plan, plan_file, projected, run, task, view_tables
from tests.web_goals import run_at

RETRIED = plan(task("a", "flaky", input={"text": "$goal.text"},
                    retry={"max_attempts": 3, "backoff_s": 0}),
               task("b", "costly", input={"text": "$a.text"}),
               task("c", "upper", input={"text": "$goal.text"}), output="$b.text")


@pytest.fixture(autouse=True)
def _reset_agents() -> Iterator[None]:
    agents.CALLS.clear()
    yield


def test_status_right_after_run_shows_the_result(store_url: str, tmp_path: Path) -> None:
    ran = baton("run", plan_file(tmp_path, RETRIED), "--input", '{"text": "hi"}',
                "--goal-id", "g-1", "--json", store=store_url)
    assert ran.code == 0, ran.err
    status = baton("status", "g-1", "--json", store=store_url)
    assert status.code == 0, status.err
    shown = status.json()
    assert shown.pop("owner") is None  # `status` also says who drives it: nobody, now
    assert shown == ran.json()  # the same shape and content as `run --json`
    assert status.err == ""  # no lag to report
    listed = baton("status", "--json", store=store_url).json()["goals"]
    assert [(g["goal_id"], g["plan"], g["status"]) for g in listed] == [
        ("g-1", "test-plan", "completed")]
    assert listed[0]["attempts"] == 4 and listed[0]["tokens"] == 100
    table = baton("status", store=store_url)
    assert table.code == 0 and "g-1" in table.out and "completed" in table.out


def test_stats_json_and_csv(store_url: str, tmp_path: Path) -> None:
    assert baton("run", plan_file(tmp_path, RETRIED), "--input", '{"text": "hi"}',
                 store=store_url).code == 0
    stats = baton("stats", "--json", store=store_url).json()["agents"]
    assert set(stats) == {"flaky", "costly", "upper"}
    for name in stats:
        assert {"attempts", "succeeded", "failed", "retries", "escalations", "rejected_outputs",
                "tokens", "cost_usd", "p50_ms", "p95_ms"} <= set(stats[name])
    assert (stats["flaky"]["attempts"], stats["flaky"]["failed"],
            stats["flaky"]["retries"]) == (2, 1, 1)
    assert stats["costly"]["tokens"] == 100
    csv_lines = baton("stats", "--format", "csv", store=store_url).out.splitlines()
    assert csv_lines[0].startswith("agent,attempts,succeeded,failed,retries,escalations")
    assert sorted(line.split(",")[0] for line in csv_lines[1:]) == ["costly", "flaky", "upper"]
    table = [line.split() for line in baton("stats", store=store_url).out.splitlines()]
    by_agent = next(row for row in table if row[:1] == ["costly"] and len(row) == 11)
    by_model = next(row for row in table if row[:1] == ["costly"] and len(row) == 7)
    assert by_agent[8] == by_model[6] == "0.010000"  # one precision: a cent's tenth is seen


def test_escalations_resolve_and_resume_keep_the_views_current(
    store_url: str, tmp_path: Path
) -> None:
    data = plan(task("a", "always_fails", input={"text": "$goal.text"}, on_failure="escalate",
                     retry={"max_attempts": 1}),
                task("b", "upper", input={"text": "$a.text"}), output="$b.text")
    ran = baton("run", plan_file(tmp_path, data), "--input", '{"text": "hi"}', "--goal-id",
                "w", store=store_url)
    assert ran.code == 3, ran.err
    [waiting] = baton("escalations", "--json", store=store_url).json()["escalations"]
    assert (waiting["goal_id"], waiting["task"]) == ("w", "a")
    assert "boom" in waiting["reason"] and waiting["since"]
    assert baton("resolve", "w", "a", "--output", '{"text": "ok"}', "--reason", "manual",
                 "--by", "ana", store=store_url).code == 0
    assert baton("escalations", "--json", store=store_url).json() == {"escalations": []}
    assert baton("status", "w", "--json", store=store_url).json()["tasks"]["a"] == {
        "status": "succeeded", "attempts": 1}
    assert baton("resume", "w", store=store_url).code == 0
    assert baton("status", "w", "--json", store=store_url).json()["status"] == "completed"


def test_status_lists_every_goal_newest_first_as_it_reads_them(store: BatonStore) -> None:
    """`status` without a goal lists every goal, newest first, in the table and in JSON, read
    from the views a batch at a time."""
    for minute, goal_id in enumerate(["g-b", "g-c", "g-a", "a-goal-with-a-rather-long-identifier-"
                                      "that-folds"]):
        run_at(store, RETRIED, goal_id, datetime(2026, 3, 1, 12, minute // 2, tzinfo=UTC))
    readmodels.refresh(store)
    rows = projected(store, ReadModels.goals)
    newest_first = ["a-goal-with-a-rather-long-identifier-that-folds", "g-a", "g-b", "g-c"]
    assert [row["goal_id"] for row in rows] == newest_first
    listed = baton("status", "--json", store=store.url)
    assert listed.code == 0 and listed.err == "", listed.err
    assert [goal["goal_id"] for goal in listed.json()["goals"]] == newest_first
    assert listed.out == json.dumps(listed.json(), indent=2) + "\n"
    row = rows[1]
    assert listed.json()["goals"][1] == {
        "goal_id": "g-a", "plan": "test-plan", "status": "completed",
        **{k: row[k].isoformat() for k in ("updated_at", "started_at", "ended_at")},
        **{k: row[k] for k in ("attempts", "tokens", "cost_usd")}}
    table = baton("status", store=store.url, env={"COLUMNS": "200"})
    assert table.code == 0, table.err
    shown = [line.split()[0] for line in table.out.splitlines()
             if line.strip() and line.split()[0] in newest_first]
    assert shown == newest_first


def test_a_read_commands_lag_note_counts_no_further_than_it_must(
    store: BatonStore, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Far behind (a rebuild after an upgrade), a read command says so without counting every
    event it is behind; `projections status` still counts them all."""
    from baton.cli.commands import views as view_commands
    from baton.readmodels import reading

    run(store, RETRIED, {"text": "hi"})  # through the library: nothing caught up
    head = projected(store, ReadModels.state).head
    with readmodels.read(store) as models:
        view_commands._warn_lag(models)
        assert f"are {head} event(s) behind" in capsys.readouterr().err
        monkeypatch.setattr(reading, "LAG_COUNTED", head - 1)
        view_commands._warn_lag(models)
        assert f"are more than {head - 1:,} event(s) behind" in capsys.readouterr().err
    assert projected(store, ReadModels.state).lag == head


def test_status_reports_a_lag_instead_of_hiding_it(store: BatonStore) -> None:
    run(store, RETRIED, {"text": "hi"})  # through the library: nothing caught up
    listed = baton("status", "--json", store=store.url)
    assert listed.json() == {"goals": []}
    assert "behind the log" in listed.err
    # Empty read models (a new store, or an upgrade's rebuild) say what fills them now
    assert "applied none yet" in listed.err
    assert "`baton projections update` fills them now" in listed.err
    where = baton("projections", "status", "--json", store=store.url).json()["projections"]
    assert where[0]["lag"] == where[0]["head"] > 0
    updated = baton("projections", "update", "--json", store=store.url).json()
    assert updated["lag"] == 0 and updated["applied"] == where[0]["head"]
    assert len(baton("status", "--json", store=store.url).json()["goals"]) == 1
    run(store, RETRIED, {"text": "again"})  # behind again, but not empty
    behind = baton("status", store=store.url).err
    assert "behind the log; `baton projections update` catches up now" in behind


def test_after_an_upgrade_status_says_how_to_fill_the_rebuilt_read_models(
    store: BatonStore,
) -> None:
    """A new views version empties the read models on first open; `status` must not just show
    no goals, but say so and what fills them."""
    run(store, RETRIED, {"text": "hi"})
    readmodels.refresh(store)
    with readmodels.read(store) as models, models.views.datastore.transaction(commit=True) as c:
        meta = models.views.qualified("baton_views_meta")
        c.execute(models.views.sql(f"UPDATE {meta} SET version = ?"), (VIEWS_VERSION - 1,))
    upgraded = baton("status", store=store.url)
    assert upgraded.code == 0
    assert "applied none yet (after an upgrade they are rebuilt from the log)" in upgraded.err
    assert baton("projections", "update", store=store.url).code == 0
    after = baton("status", "--json", store=store.url)
    assert len(after.json()["goals"]) == 1 and not after.err


@pytest.mark.parametrize("point", ["before_commit:7", "after_commit:7", "before_commit:20",
                                   "after_commit:33"])
def test_a_killed_projector_resumes_to_the_rows_of_a_clean_rebuild(
    store: BatonStore, point: str
) -> None:
    for index in range(3):
        run(store, RETRIED, {"text": f"g{index}"})
    head = projected(store, ReadModels.state).head
    env = {"BATON_PROJECTION_PAGE": "5", "BATON_CRASH_IN_PROJECTION": point}
    killed = baton("projections", "update", store=store.url, env=env)
    assert killed.code == -signal.SIGKILL
    stage, at = point.split(":")
    position = projected(store, ReadModels.state).position
    assert position < int(at) if stage == "before_commit" else position >= int(at)
    assert position < head
    resumed = baton("projections", "update", "--json", store=store.url,
                    env={"BATON_PROJECTION_PAGE": "5"})
    assert resumed.code == 0, resumed.err
    assert resumed.json()["applied"] == head - position
    after_crash = view_tables(store)
    projections.rebuild(store.app)
    assert view_tables(store) == after_crash


def test_rebuild_from_the_cli(store: BatonStore) -> None:
    run(store, RETRIED, {"text": "hi"})
    rebuilt = baton("projections", "rebuild", "--json", store=store.url)
    assert rebuilt.code == 0, rebuilt.err
    assert rebuilt.json()["lag"] == 0 and rebuilt.json()["applied"] > 0
    first = view_tables(store)
    assert baton("projections", "rebuild", store=store.url).code == 0
    assert view_tables(store) == first


def _wait_for(predicate: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_follow_keeps_the_views_current_for_other_writers(store: BatonStore) -> None:
    follower = subprocess.Popen(
        [sys.executable, "-m", "baton.cli", "projections", "follow", "--interval", "0.1"],
        cwd=ROOT, env={**os.environ, "BATON_STORE": store.url}, stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(lambda: projected(store, ReadModels.state).position == 0 and
                  _views_ready(store), "the follower to start")
        for index in range(3):  # written by this process, which never catches up itself
            goal_id = f"f{index}"
            run(store, RETRIED, {"text": f"g{index}"}, goal_id=goal_id)
            _wait_for(lambda g=goal_id: bool(_goal(store, g)) and
                      projected(store, ReadModels.state).lag == 0, f"goal {goal_id} projected")
            assert _goal(store, goal_id)[0]["status"] == "completed"
        followed = view_tables(store)
        follower.send_signal(signal.SIGTERM)
        _, err = follower.communicate(timeout=30)
        assert follower.returncode == 0, err
    finally:
        follower.kill()
    projections.rebuild(store.app)
    assert view_tables(store) == followed


def _goal(store: BatonStore, goal_id: str) -> list[dict[str, Any]]:
    return projected(store, lambda models: models.goals(goal_id))


def _views_ready(store: BatonStore) -> bool:
    try:
        projected(store, ReadModels.state)
    except Exception:
        return False
    return True


def test_export_csv_writes_every_table(store: BatonStore, tmp_path: Path) -> None:
    run(store, RETRIED, {"text": "hi"})
    out = tmp_path / "csv"
    stale = baton("projections", "export", str(out), "--format", "csv", store=store.url)
    assert stale.code == 0 and "behind the log" in stale.err  # said, not hidden
    readmodels.refresh(store)
    exported = baton("projections", "export", str(out), "--format", "csv", store=store.url)
    assert exported.code == 0 and exported.err == "", exported.err
    for table in TABLES:
        lines = (out / f"{table.name}.csv").read_text().splitlines()
        assert lines[0].split(",") == list(table.names)
    assert len((out / "task_status.csv").read_text().splitlines()) == 1 + 3


@pytest.mark.parametrize("fmt", ["parquet", "duckdb"])
def test_export_for_analysts(store: BatonStore, tmp_path: Path, fmt: str) -> None:
    duckdb = pytest.importorskip("duckdb", reason="the analytics extra is not installed")
    run(store, RETRIED, {"text": "hi"})
    readmodels.refresh(store)
    target = tmp_path / ("views.duckdb" if fmt == "duckdb" else "parquet")
    exported = baton("projections", "export", str(target), "--format", fmt, store=store.url)
    assert exported.code == 0, exported.err
    if fmt == "duckdb":
        connection = duckdb.connect(str(target), read_only=True)
        source = "task_status"
    else:
        connection = duckdb.connect()
        source = f"read_parquet('{target / 'task_status.parquet'}')"
    try:
        found = connection.execute(
            f"SELECT task_id, status, attempts FROM {source} ORDER BY plan_index").fetchall()
        assert found == [("a", "succeeded", 2), ("b", "succeeded", 1), ("c", "succeeded", 1)]
        if fmt == "duckdb":
            [(cost,)] = connection.execute("SELECT cost_usd FROM goal_summary").fetchall()
            assert cost == pytest.approx(0.01)
    finally:
        connection.close()


def test_bad_input_gets_one_line(sqlite_url: str, tmp_path: Path) -> None:
    made = open_store(sqlite_url)  # a store there (a CLI read makes none)
    assert not made.exists("g")  # (opened on first use: the file is made here)
    made.close()
    cases = [
        (["status", "no-such-goal"], "no goal 'no-such-goal'"),
        (["projections", "export", str(tmp_path / "no" / "dir"), "--format", "csv"],
         "does not exist"),
        (["projections"], "the following arguments are required"),
        (["stats", "--format", "xml"], "invalid choice"),
        # 0, a negative or nan polled without pause, a core at 100%, until stopped
        (["projections", "follow", "--interval", "0"], "above 0"),
        (["projections", "follow", "--interval", "-1"], "above 0"),
        (["projections", "follow", "--interval", "nan"], "above 0"),
        (["projections", "follow", "--interval", "soon"], "a number of seconds"),
    ]
    for args, message in cases:
        result = baton(*args, store=sqlite_url)
        assert result.code == 2, (args, result.err)
        assert message in result.err and len(result.err.strip().splitlines()) == 1, result.err
        assert "Traceback" not in result.err
    down = baton("status", store="postgresql://postgres@127.0.0.1:1/nowhere")
    assert down.code == 2 and "127.0.0.1" in down.err and "Traceback" not in down.err
    bad = baton("projections", "update", store=sqlite_url,
                env={"BATON_CRASH_IN_PROJECTION": "sometime"})
    assert bad.code == 2 and "BATON_CRASH_IN_PROJECTION" in bad.err


def test_follow_outlives_a_store_failure_once_it_has_caught_up(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A dropped connection, a failover, a lock held past its timeout: the follower said so
    and exited 2, and the read models fell behind until someone restarted it. (SQLite's poll;
    PostgreSQL's runner raises the same StoreError to the same loop.)"""
    import threading

    from baton.store.eventstore import StoreError, open_store

    store = open_store(sqlite_url)

    calls: list[int] = []
    refresh = readmodels.refresh
    stop = threading.Event()

    def fails_once(store_: BatonStore) -> int:
        calls.append(1)
        if len(calls) == 2:  # after the first catch-up; another process writes meanwhile
            run(store, RETRIED, {"text": "later"}, goal_id="later")
            raise StoreError("store x: server closed the connection unexpectedly")
        if len(calls) == 3:
            stop.set()
        return refresh(store_)

    monkeypatch.setattr(readmodels, "refresh", fails_once)
    monkeypatch.setattr(readmodels, "FOLLOW_RETRY_S", (0.0, 0.0), raising=False)
    try:
        readmodels.follow(store, interval_s=0.0, stop=stop)
    finally:
        store.close()
    assert capsys.readouterr().err == ("baton: warning: read models not followed: store x: "
                                       "server closed the connection unexpectedly; trying "
                                       "again in 0s\n")
    store = open_store(sqlite_url)
    try:
        assert _goal(store, "later")[0]["status"] == "completed"
    finally:
        store.close()


def test_an_export_is_one_snapshot_while_the_read_models_move(
    store: BatonStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`projections export` beside a follower or a worker: each table was read in a
    transaction of its own, so they came from different positions (PostgreSQL: a run showed
    144 goal attempts against 148 agent attempts, and goals whose task tokens did not add up
    to the goal's)."""
    run(store, RETRIED, {"text": "one"}, goal_id="one")
    readmodels.refresh(store)
    run(store, RETRIED, {"text": "two"}, goal_id="two")  # not projected yet
    read_rows = ViewReader.rows
    moved: list[int] = []

    def rows_then_a_projector_commits(self: ViewReader, *args: Any, **kwargs: Any) -> Any:
        found = read_rows(self, *args, **kwargs)
        if not moved:  # between the first table read and the next
            moved.append(readmodels.refresh(store))
        return found

    monkeypatch.setattr(ViewReader, "rows", rows_then_a_projector_commits)
    out = tmp_path / "csv"
    with readmodels.read(store) as models:
        export_views(models, str(out), fmt="csv")
    assert moved[0] > 0
    for table in TABLES:
        with (out / f"{table.name}.csv").open(newline="") as exported:
            goals = {row["goal_id"] for row in csv.DictReader(exported) if "goal_id" in row}
        assert goals <= {"one"}, table.name
    stats = {row["agent"]: row for row in csv.DictReader((out / "agent_stats.csv").open())}
    [goal] = csv.DictReader((out / "goal_summary.csv").open())
    assert sum(int(row["attempts"]) for row in stats.values()) == int(goal["attempts"])


@pytest.mark.parametrize("read", ["goal_with_tasks", "usage"])
def test_status_and_stats_read_one_snapshot_while_the_read_models_move(
    store: BatonStore, monkeypatch: pytest.MonkeyPatch, read: str
) -> None:
    """`status GOAL` read the goal row and its task rows, `stats` agent_stats and model_stats,
    in transactions of their own: beside a follower, a goal 'running' with every task
    succeeded, or per-model tokens that did not add up to the agent's."""
    goal = store.get(run(store, RETRIED, {"text": "one"}, goal_id="one").id)
    events = list(store.events(goal.id))
    readmodels.refresh(store)
    with projections.open_views(store.app) as views:  # the views as of the goal's start
        views.reset(store.app.name)
        [started] = store.app.recorder.select_notifications(start=1, limit=1)
        views.apply_batch(store.app.name, [(events[0], started.id)], after=0)
    read_rows = ViewReader.rows
    moved: list[int] = []

    def rows_then_a_projector_commits(self: ViewReader, *args: Any, **kwargs: Any) -> Any:
        found = read_rows(self, *args, **kwargs)
        if not moved:
            moved.append(readmodels.refresh(store))
        return found

    monkeypatch.setattr(ViewReader, "rows", rows_then_a_projector_commits)
    with readmodels.read(store) as models:
        if read == "goal_with_tasks":
            summary, tasks = models.goal_with_tasks("one")
            assert (summary["status"], [t["status"] for t in tasks]) == (
                "running", ["pending"] * 3)
        else:
            agents_rows, model_rows = models.usage()
            assert agents_rows == [] and model_rows == []
    assert moved[0] > 0
