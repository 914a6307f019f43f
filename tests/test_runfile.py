"""Run files: export → import on the other store gives the same goal and timeline; an edited,
truncated or reordered file is refused (exit 2) or, with a forged chain, diverges (exit 1)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from baton.domain.history import payload
from baton.history.runfile import RunFileError, chain_digest, import_run, read_run
from baton.store.eventstore import StoreError, open_store
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
    pg_audit = baton("audit", "escalated", "--json", store=postgres_url)
    assert pg_audit.json() == source_audit
    # Byte for byte, as people read it too: key order does not depend on the store.
    assert pg_audit.out == baton("audit", "escalated", "--json", store=sqlite_url).out
    assert baton("audit", "escalated", store=postgres_url).out == baton(
        "audit", "escalated", store=sqlite_url).out
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


def test_export_to_stdout_is_the_same_file(exported: Path, sqlite_url: str) -> None:
    for args in ([], ["-o", "-"]):
        result = baton("export", "escalated", *args, store=sqlite_url)
        assert result.code == 0 and result.out == exported.read_text(), args


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


def _set_payload(kind: str, **fields: Any) -> Callable[[list[dict[str, Any]]], None]:
    return lambda content: line_of(content, kind)["payload"].update(fields)


def _replace_plan(content: list[dict[str, Any]]) -> None:
    content[0]["plan"] = content[1]["payload"]["plan"] = {"version": 1, "name": "no tasks"}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_set_payload("AgentReturned", attempt="1"), "AgentReturned payload: attempt: "),
        (_set_payload("AgentRaised", duration_ms="slow"), "duration_ms: Input should be"),
        (_set_payload("AgentReturned", usage={"tokens": "many", "cost_usd": 0}),
         "usage.tokens: Input should be a valid integer"),
        (_set_payload("TaskReady", task=5), "TaskReady payload: task: Input should be"),
        (_set_payload("TaskReady", task="nope"), "(TaskReady): no task 'nope' in the recorded"),
        (_set_payload("TaskReady", timestamp={"_type_": "weird", "_data_": "x"}),
         "payload cannot be decoded"),
        (_set_payload("TaskReady", timestamp={"_type_": "datetime_iso", "_data_": "noon"}),
         "payload cannot be decoded"),
        (_set_payload("Started", forked_from="elsewhere", forked_at=999),
         "forked_at 999 is outside"),
        (_set_payload("Started", forked_at=2), "forked_from and forked_at go together"),
        (_replace_plan, "event 1 (Started): the recorded plan: "),
    ],
)
def test_a_forged_file_with_values_of_the_wrong_shape_is_refused(
    exported: Path, edit: Callable[[list[dict[str, Any]]], None], message: str
) -> None:
    """A recomputed chain does not get values of the wrong type or a broken plan past the reader
    (which every command that takes a file uses): one line, exit 2, nothing imported."""
    forged = rewrite(exported, edit, rechain=True)
    with pytest.raises(RunFileError) as refused:
        read_run(str(forged))
    assert message in str(refused.value)
    target = f"sqlite:///{forged.parent}/target.db"
    result = baton("import", str(forged), store=target)
    assert result.code == 2 and message in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err
    assert not open_store(target).exists("escalated")


def test_every_command_that_reads_a_file_refuses_a_forged_one(exported: Path) -> None:
    forged = rewrite(exported, _set_payload("AgentReturned", attempt="1"), rechain=True)
    for command in (["replay"], ["replay", "--reexecute"], ["replay", "--at", "3"], ["audit"],
                    ["fork", "--at", "2"]):
        result = baton(command[0], str(forged), *command[1:],
                       store=f"sqlite:///{forged.parent}/x.db")
        assert result.code == 2, (command, result.out, result.err)
        assert "AgentReturned payload: attempt: Input should be a valid integer" in result.err
        assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err


def test_a_file_whose_events_cannot_make_a_goal_is_not_imported(exported: Path) -> None:
    """Events that are each well formed but break the lifecycle (a dispatch of a task that never
    became ready): replay reports it as a divergence, import refuses to store it."""
    def drop_first_readiness(content: list[dict[str, Any]]) -> None:
        # decided under rules 3: the first dispatch holds its task's readiness
        line_of(content, "TaskDispatched")["payload"]["ready"] = None

    forged = rewrite(exported, drop_first_readiness, rechain=True)
    replayed = baton("replay", str(forged), "--json")
    assert replayed.code == 1
    divergence = replayed.json()["divergence"]
    # Today's code makes 'a' ready with its first dispatch, where the file says it was already.
    assert divergence["seq"] == 2 and divergence["fields"] == ["ready"]
    assert divergence["recorded"]["ready"] is None
    assert divergence["replayed"]["ready"]["rule"] == "dag.inputs_ready"
    target = f"sqlite:///{forged.parent}/target.db"
    imported = baton("import", str(forged), store=target)
    assert imported.code == 2, imported.out
    assert "(TaskDispatched) cannot be applied: IllegalTransition: task 'a': cannot dispatch" in (
        imported.err)
    assert "nothing imported" in imported.err
    assert baton("audit", "escalated", store=target).code == 2


def test_exporting_a_goal_that_is_not_there_leaves_an_existing_file_as_it_was(
    sqlite_url: str, tmp_path: Path
) -> None:
    """`export TYPO -o run.jsonl` emptied run.jsonl, then said the goal was not found (and so
    did `Baton.export_run`): the file was opened for writing before the events were read."""
    import baton as api

    kept = tmp_path / "run.jsonl"
    kept.write_text("what the user exported yesterday\n")
    missing = baton("export", "no-such-goal", "-o", str(kept), store=sqlite_url)
    assert missing.code == 2 and "no goal 'no-such-goal'" in missing.err
    assert kept.read_text() == "what the user exported yesterday\n"
    with api.Baton(sqlite_url) as bt:
        with pytest.raises(api.GoalNotFound):
            bt.export_run("no-such-goal", kept)
        assert kept.read_text() == "what the user exported yesterday\n"
        with pytest.raises(api.CommandError, match="file 5: expected a path or an open text"):
            bt.export_run("no-such-goal", 5)  # type: ignore[arg-type]


def test_a_misspelt_run_file_is_named_as_a_missing_file_not_a_missing_goal(
    sqlite_url: str, tmp_path: Path
) -> None:
    # `fork run.jsonl --at 5` (or audit, replay) with the file's name misspelt took it for a
    # goal id: "no goal 'run.jsonl' in this store", though the user named a file.
    missing = tmp_path / "run.jsonl"
    for args in (["fork", str(missing), "--at", "5"], ["audit", str(missing)],
                 ["replay", str(missing)]):
        result = baton(*args, store=sqlite_url)
        assert result.code == 2
        assert result.err.strip() == (f"baton: error: run file {missing}: No such file or "
                                      f"directory (and no goal {str(missing)!r} in this store)")
