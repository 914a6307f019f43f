"""Run files: export → import on the other store gives the same goal and timeline; an edited,
truncated or reordered file is refused (exit 2) or, with a forged chain, diverges (exit 1)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.runfile import RunFileError, chain_digest, import_run, read_run
from adapters.store import StoreError, open_store
from domain.history import payload
from tests import agents
from tests.cli_support import baton
from tests.replay_support import SHAPES


@pytest.fixture(autouse=True)
def _reset_agents() -> Iterator[None]:
    agents.CALLS.clear()
    yield


@pytest.fixture
def exported(sqlite_url: str, tmp_path: Path) -> Path:
    """The escalated-and-resolved goal (the richest shape), exported from SQLite."""
    store = open_store(sqlite_url)
    try:
        SHAPES["escalated"](store)
    finally:
        store.close()
    path = tmp_path / "escalated.jsonl"
    result = baton("export", "escalated", "-o", str(path), store=sqlite_url)
    assert result.code == 0, result.err
    return path


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(text) for text in path.read_text().splitlines()]


def rewrite(path: Path, edit: Callable[[list[dict[str, Any]]], None], *, rechain: bool) -> Path:
    """Apply `edit` to the lines; with `rechain`, a forger recomputes every digest."""
    content = lines(path)
    edit(content)
    if rechain:
        previous = ""
        for line in content:
            line["digest"] = previous = chain_digest(previous, line)
    out = path.with_name("edited.jsonl")
    out.write_text("".join(json.dumps(line) + "\n" for line in content))
    return out


def line_of(content: list[dict[str, Any]], topic_kind: str) -> dict[str, Any]:
    return next(line for line in content if line.get("topic", "").endswith("." + topic_kind))


@pytest.mark.postgres
def test_export_import_audit_is_the_same_timeline_on_the_other_store(
    sqlite_url: str, postgres_url: str, exported: Path, tmp_path: Path
) -> None:
    source_audit = baton("audit", "escalated", "--json", store=sqlite_url).json()
    imported = baton("import", str(exported), store=postgres_url)
    assert imported.code == 0, imported.err
    assert imported.out.strip() == "escalated"
    assert baton("audit", "escalated", "--json", store=postgres_url).json() == source_audit
    assert baton("audit", str(exported), "--json").json() == source_audit  # no store needed
    assert baton("replay", "escalated", "--json", store=postgres_url).json()["ok"]
    pg, lite = open_store(postgres_url), open_store(sqlite_url)
    try:
        theirs, ours = list(lite.events("escalated")), list(pg.events("escalated"))
        assert [(type(e), e.originator_version, payload(e)) for e in ours] == [
            (type(e), e.originator_version, payload(e)) for e in theirs
        ]
    finally:
        pg.close()
        lite.close()
    # And back: PostgreSQL → a second SQLite store, byte for byte the same run file.
    again = tmp_path / "again.jsonl"
    assert baton("export", "escalated", "-o", str(again), store=postgres_url).code == 0
    assert again.read_text() == exported.read_text()
    other = f"sqlite:///{tmp_path}/other.db"
    assert baton("import", str(again), store=other).code == 0
    assert baton("audit", "escalated", "--json", store=other).json() == source_audit


def test_import_preserves_ids_and_refuses_a_goal_that_exists(
    exported: Path, tmp_path: Path
) -> None:
    target = open_store(f"sqlite:///{tmp_path}/target.db")
    try:
        run = read_run(str(exported))
        assert import_run(target, run) == "escalated"
        assert [e.originator_version for e in target.events("escalated")] == list(
            range(1, len(run.events) + 1))
        with pytest.raises(StoreError, match="already exists"):
            import_run(target, run)
    finally:
        target.close()


def test_replay_and_audit_read_a_file_without_a_store(exported: Path, tmp_path: Path) -> None:
    nowhere = f"sqlite:///{tmp_path}/never.db"
    replayed = baton("replay", str(exported), "--json", store=nowhere)
    assert replayed.code == 0 and replayed.json()["ok"]
    assert baton("replay", str(exported), "--reexecute", store=nowhere).code == 0
    assert baton("audit", str(exported), store=nowhere).code == 0
    assert not (tmp_path / "never.db").exists()


@pytest.mark.parametrize(
    ("name", "edit", "message"),
    [
        ("an edited output", lambda c: line_of(c, "AgentReturned")["payload"].update(
            output={"text": "forged"}), "digest mismatch"),
        ("an edited reason", lambda c: line_of(c, "TaskFailed" if any(
            "TaskFailed" in x.get("topic", "") for x in c) else "TaskEscalated")["payload"].update(
            reason="nothing to see"), "digest mismatch"),
        ("a dropped last event", lambda c: c.pop(), "announces"),
        ("two events swapped", lambda c: c.insert(3, c.pop(4)), "digest mismatch"),
        ("a dropped middle event", lambda c: c.pop(5), "digest mismatch"),
    ],
)
def test_an_edited_export_is_refused(
    exported: Path, name: str, edit: Callable[[list[dict[str, Any]]], None], message: str
) -> None:
    edited = rewrite(exported, edit, rechain=False)
    for command in ("replay", "audit", "import"):
        result = baton(command, str(edited), store=f"sqlite:///{edited.parent}/x.db")
        assert result.code == 2, (name, command, result.out)
        assert message in result.err and "Traceback" not in result.err
        assert len(result.err.strip().splitlines()) == 1


def test_a_forged_chain_still_fails_replay(exported: Path) -> None:
    """A forger who recomputes the digests edits a decision: replay re-decides and disagrees."""
    def forge(content: list[dict[str, Any]]) -> None:
        line_of(content, "TaskEscalated")["payload"]["reason"] = "nothing to see here"

    forged = rewrite(exported, forge, rechain=True)
    result = baton("replay", str(forged), "--json")
    assert result.code == 1
    divergence = result.json()["divergence"]
    assert divergence["recorded"]["reason"] == "nothing to see here"
    assert divergence["fields"] == ["reason"]


def test_a_forged_observation_shows_downstream(exported: Path) -> None:
    def forge(content: list[dict[str, Any]]) -> None:
        human = line_of(content, "HumanResolved")
        for line in content:
            if line.get("topic", "").endswith(".HumanResolved") and line["payload"][
                    "action"] == "output" and line["payload"]["task"] == "a":
                human = line
        human["payload"]["output"] = {"text": "forged"}

    result = baton("replay", str(rewrite(exported, forge, rechain=True)), "--json")
    assert result.code == 1
    divergence = result.json()["divergence"]
    # The downstream input changed, so its dispatch digest no longer matches.
    assert divergence["recorded"]["kind"] == "TaskDispatched"
    assert divergence["fields"] == ["input_digest"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: line_of(c, "ClockTicked" if any(
            "ClockTicked" in x.get("topic", "") for x in c) else "RunResumed").update(
            topic="os:system"), "unknown event topic 'os:system'"),
        (lambda c: c[1]["payload"].update(originator_topic="os:system"),
         "Started names aggregate"),
        (lambda c: c[2]["payload"].update(surprise=1), "unknown fields ['surprise']"),
        (lambda c: c[0].update(version=99), "format version 99"),
        (lambda c: c[0].update(plan={"name": "other"}), "header plan or input differs"),
    ],
)
def test_a_forged_file_that_cannot_be_events_is_refused(
    exported: Path, edit: Callable[[list[dict[str, Any]]], None], message: str
) -> None:
    forged = rewrite(exported, edit, rechain=True)
    with pytest.raises(RunFileError, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_run(str(forged))
    result = baton("replay", str(forged))
    assert result.code == 2 and "Traceback" not in result.err


def test_not_a_run_file(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("{not json\n")
    result = baton("replay", str(garbage))
    assert result.code == 2 and "line 1: not JSON" in result.err
    other = tmp_path / "other.jsonl"
    other.write_text('{"hello": 1}\n')
    result = baton("import", str(other), store=f"sqlite:///{tmp_path}/x.db")
    assert result.code == 2 and "not a Baton run file" in result.err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert baton("audit", str(empty)).code == 2
