"""Histories recorded by release 0.1 keep working after the move to one import name `baton`.

Release 0.1 stored its events under the topics `domain.goal:Goal.<Event>`; today's classes live in
`baton.domain.goal`. The golden run files in tests/golden/ were recorded by 0.1 and must import,
replay and export on both stores, and a store whose rows still carry the old topics must keep
serving `status`, `replay` and `export` (docs/reference.md, "Stored events and run files").
Registering the old topic must not take the name `domain` away from a user's own package.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from baton.cli.main import main
from baton.history.runfile import read_run
from baton.store.eventstore import BatonStore, open_store

GOLDEN = sorted((Path(__file__).parent / "golden").glob("*.jsonl"))
RELEASE_0_1 = {"cancelled", "completed", "crashed", "escalated", "failed", "retried", "secrets",
               "travel"}
ROOT = Path(__file__).resolve().parents[1]
OLD, NEW = "domain.goal:Goal", "baton.domain.goal:Goal"


@pytest.fixture(autouse=True)
def _close_cli_stores(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The CLI leaves its store open for the process to end; in-process, every call would keep
    a PostgreSQL connection. Close each store a call opened when the call returns."""
    opened = _OPENED
    original = BatonStore.__init__

    def tracked(self: BatonStore, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        opened.append(self)

    monkeypatch.setattr(BatonStore, "__init__", tracked)
    yield
    _close_opened()


_OPENED: list[BatonStore] = []


def _close_opened() -> None:
    while _OPENED:
        _OPENED.pop().close()


def _cli(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> tuple[int, str]:
    """`baton --store URL ARGS…` in-process: (exit code, stdout)."""
    capsys.readouterr()
    try:
        code = main(["--store", url, *args])
    finally:
        _close_opened()
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err, captured.err
    return code, captured.out


def _topics(path: Path) -> list[str]:
    lines = [json.loads(text) for text in path.read_text(encoding="utf-8").splitlines() if text]
    return [line["topic"] for line in lines[1:]]


def _started_payload(path: Path) -> dict[str, Any]:
    second = path.read_text(encoding="utf-8").splitlines()[1]
    payload: dict[str, Any] = json.loads(second)["payload"]
    return payload


def _expected_status(path: Path) -> str:
    """The goal status the recorded events end in (GoalCompleted -> completed, …)."""
    ends = {"GoalCompleted": "completed", "GoalFailed": "failed", "GoalCancelled": "cancelled",
            "GoalSuspended": "waiting", "GoalResumed": "running"}
    status = "running"
    for topic in _topics(path):
        status = ends.get(topic.rpartition(".")[2], status)
    return status


def test_the_golden_run_files_were_recorded_with_the_release_0_1_topics() -> None:
    """If this fails, tests/golden was regenerated: the old-topic coverage below is gone with it.
    Keep (or restore from git) run files recorded by release 0.1."""
    recorded_by_0_1 = [path for path in GOLDEN if path.stem in RELEASE_0_1]
    assert len(recorded_by_0_1) == len(RELEASE_0_1)
    for path in recorded_by_0_1:  # (later goldens, e.g. decomposition, came after 0.1)
        topics = _topics(path)
        assert topics and all(topic.startswith(OLD + ".") for topic in topics), path.name
        assert _started_payload(path)["originator_topic"] == OLD, path.name


def test_an_old_run_file_imports_replays_exports_and_imports_again(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    second_store = f"sqlite:///{tmp_path}/second.db"
    for path in GOLDEN:
        goal_id = read_run(str(path)).goal_id
        assert _cli(capsys, store_url, "import", str(path)) == (0, goal_id + "\n")

        code, out = _cli(capsys, store_url, "replay", goal_id, "--json")
        replayed = json.loads(out)
        assert (code, replayed["ok"]) == (0, True), (path.name, replayed["divergence"])
        assert replayed["events"] == len(_topics(path))

        exported = tmp_path / f"{goal_id}.jsonl"
        assert _cli(capsys, store_url, "export", goal_id, "-o", str(exported))[0] == 0
        # Exports name today's classes; the events themselves are the same.
        assert all(topic.startswith(NEW + ".") for topic in _topics(exported))
        assert [t.rpartition(".")[2] for t in _topics(exported)] == [
            t.rpartition(".")[2] for t in _topics(path)
        ]
        assert [e.__dict__ for e in read_run(str(exported)).events] == [
            e.__dict__ for e in read_run(str(path)).events
        ]
        assert _cli(capsys, second_store, "import", str(exported)) == (0, goal_id + "\n")
        code, out = _cli(capsys, second_store, "replay", goal_id, "--json")
        assert (code, json.loads(out)["ok"]) == (0, True), path.name

    code, out = _cli(capsys, store_url, "status", "--json")
    listed = {goal["goal_id"]: goal["status"] for goal in json.loads(out)["goals"]}
    assert listed == {read_run(str(p)).goal_id: _expected_status(p) for p in GOLDEN}


def _rewrite_topics_to_release_0_1(url: str, table: str) -> int:
    """Put the old topics back in the stored rows, as a store written by release 0.1 holds them."""
    sql = (f"UPDATE {{table}} SET topic = replace(topic, '{NEW}', '{OLD}') "
           "WHERE topic LIKE 'baton.%'")
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        with sqlite3.connect(parts.path[1:]) as conn:
            return conn.execute(sql.format(table=table)).rowcount
    import psycopg

    schema = parse_qs(parts.query)["schema"][0]
    base = parts._replace(query="").geturl()
    with psycopg.connect(base, autocommit=True) as conn:
        return conn.execute(sql.format(table=f'"{schema}".{table}')).rowcount


def test_a_store_whose_events_carry_the_old_topics_still_serves_every_read(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    travel = next(p for p in GOLDEN if p.stem == "travel")
    escalated = next(p for p in GOLDEN if p.stem == "escalated")
    for path in (travel, escalated):
        assert _cli(capsys, store_url, "import", str(path))[0] == 0
    store = open_store(store_url)
    try:
        table = store.recorder.events_table_name
        assert table == ("baton_events" if store.is_postgres else "stored_events")
    finally:
        store.close()
    # Events recorded after the move (by the import) carry the new topics; make them old again.
    rewritten = _rewrite_topics_to_release_0_1(store_url, table)
    assert rewritten == len(_topics(travel)) + len(_topics(escalated))

    store = open_store(store_url)
    try:
        goal = store.get("travel")  # the aggregate folds from rows with old topics
        assert goal.state.status == "completed" and goal.version == len(_topics(travel))
        assert type(store.events("travel")[0]).__qualname__ == "Goal.Started"
    finally:
        store.close()

    # The read models are rebuilt from the old-topic rows, then read.
    assert _cli(capsys, store_url, "projections", "rebuild")[0] == 0
    code, out = _cli(capsys, store_url, "status", "travel", "--json")
    status = json.loads(out)
    assert (code, status["status"]) == (0, "completed")
    assert set(status["tasks"]) == {"search", "price", "book", "notify"}
    assert all(task["status"] == "succeeded" for task in status["tasks"].values())

    code, out = _cli(capsys, store_url, "replay", "travel", "--json")
    assert (code, json.loads(out)["ok"]) == (0, True)
    code, out = _cli(capsys, store_url, "audit", "escalated", "--json")
    assert code == 0 and json.loads(out)["goal_id"] == "escalated"

    exported = tmp_path / "travel-again.jsonl"
    assert _cli(capsys, store_url, "export", "travel", "-o", str(exported))[0] == 0
    assert [e.__dict__ for e in read_run(str(exported)).events] == [
        e.__dict__ for e in read_run(str(travel)).events
    ]
    elsewhere = f"sqlite:///{tmp_path}/elsewhere.db"
    assert _cli(capsys, elsewhere, "import", str(exported)) == (0, "travel\n")


def test_the_old_topic_does_not_claim_a_users_own_domain_package(tmp_path: Path) -> None:
    """A project with its own `domain` package (and `domain.goal`) keeps it after importing Baton,
    while an old history's topic still names Baton's Goal."""
    package = tmp_path / "domain"
    package.mkdir()
    (package / "__init__.py").write_text("OWNER = 'user'\n")
    (package / "x.py").write_text("VALUE = 'the user module'\n")
    (package / "goal.py").write_text("class Goal:\n    MINE = True\n")
    script = textwrap.dedent(
        f"""
        import baton, baton.store.eventstore
        from eventsourcing.utils import resolve_topic
        from baton.domain.goal import Goal as BatonGoal
        import domain, domain.x, domain.goal
        assert domain.OWNER == 'user' and domain.x.VALUE == 'the user module', domain.__file__
        assert domain.__file__.startswith({str(tmp_path)!r}), domain.__file__
        assert domain.goal.Goal.MINE and domain.goal.Goal is not BatonGoal
        assert resolve_topic('domain.x:VALUE') == 'the user module'
        assert resolve_topic('{OLD}.Started') is BatonGoal.Started
        print('ok')
        """
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout.strip()) == (0, "ok"), proc.stderr
