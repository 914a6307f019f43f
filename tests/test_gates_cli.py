"""`baton answer`, `resolve --approve|--reject`, `escalations` and `status` for human gates, on
both stores: what waits is shown with its kind, a misfit decision is a one-line error (exit 2)
that records nothing, and every escalation kind is named, rebuilt the same from the events."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from baton.store.eventstore import open_store
from tests import gate_agents
from tests.inprocess import cli
from tests.support import plan_file
from tests.test_gates import gated_plan

# Fast: the command in this process. One subprocess test below checks the real entry point.


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    gate_agents.reset()
    yield


def _events(store_url: str, goal_id: str = "g") -> int:
    store = open_store(store_url)
    try:
        return len(store.events(goal_id))
    finally:
        store.close()


def _escalations(store_url: str) -> list[dict[str, Any]]:
    shown = cli("--store", store_url, "escalations", "--json")
    assert shown.code == 0, shown.err
    entries: list[dict[str, Any]] = shown.json()["escalations"]
    return entries


def test_answer_and_approve_from_the_command_line(store_url: str, tmp_path: Path) -> None:
    plan = plan_file(tmp_path, gated_plan())
    first = cli("--store", store_url, "run", plan, "--input", '{"question": "sales"}',
                "--goal-id", "g", "--json")
    assert first.code == 3, first.err
    assert first.json()["tasks"]["ask"] == {
        "status": "escalated", "attempts": 1, "waiting_for": "clarification",
        "question": "which period does 'sales' mean?"}
    assert first.json()["tasks"]["draft"] == {"status": "pending", "attempts": 0}
    [entry] = _escalations(store_url)
    assert (entry["kind"], entry["question"]) == ("clarification",
                                                   "which period does 'sales' mean?")
    text = cli("--store", store_url, "escalations").out
    assert "g  ask  clarification" in text and "baton answer g ask TEXT" in text
    asked = cli("--store", store_url, "status", "g").out.splitlines()
    assert asked[-1] == "answer with: baton answer g ask TEXT"  # the command for its kind
    status = cli("--store", store_url, "status", "g", "--json").json()
    assert status["tasks"]["ask"]["waiting_for"] == "clarification"

    answered = cli("--store", store_url, "answer", "g", "ask", "Q1 2026", "--by", "ann")
    assert answered.code == 0, answered.err
    assert answered.out.splitlines() == ["recorded: answer to ask by ann; goal g is waiting — a "
                                         "worker picks it up; without workers: baton resume g"]
    at_gate = cli("--store", store_url, "resume", "g")
    assert at_gate.code == 3  # now at the approval gate: the command that decides it is given
    assert at_gate.out.splitlines()[-1] == (
        "decide with: baton resolve g publish --approve|--reject --reason TEXT")
    assert cli("--store", store_url, "status", "g").out.splitlines()[-1] == (
        "decide with: baton resolve g publish --approve|--reject --reason TEXT")
    [entry] = _escalations(store_url)
    assert entry["kind"] == "approval" and entry["task"] == "publish"
    assert entry["input"] == {"text": "draft on sales during Q1 2026"}
    assert "question" not in entry
    assert "decide with: baton resolve g publish --approve|--reject" in cli(
        "--store", store_url, "escalations").out

    approved = cli("--store", store_url, "resolve", "g", "publish", "--approve",
                   "--reason", "reviewed", "--by", "bob")
    assert approved.code == 0, approved.err
    assert cli("--store", store_url, "resume", "g").code == 0
    assert gate_agents.PUBLISHED == ["draft on sales during Q1 2026"]
    assert _escalations(store_url) == []
    audit = cli("--store", store_url, "audit", "g", "--json").json()
    kinds = [d["kind"] for d in audit["decisions"]]
    assert "ClarificationRequested" in kinds and "ApprovalRequested" in kinds
    shown = cli("--store", store_url, "audit", "g").out  # the text audit shows what was approved
    assert 'ApprovalRequested publish' in shown and 'input {"text": "draft on sales' in shown
    assert "HumanAnswered ask #1 · ann: answered — Q1 2026" in shown
    assert cli("--store", store_url, "replay", "g").code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("answer", "g", "publish", "x"), "task 'publish' is pending, not escalated"),
        (("answer", "g", "ask", "  "), "the answer is empty"),
        (("answer", "nope", "ask", "x"), "nope"),
        (("resolve", "g", "ask", "--approve", "--reason", "r"),
         "task 'ask' waits for clarification"),
        (("resolve", "g", "ask", "--retry", "--reason", "r"),
         "answer it (`baton answer`, Baton.answer)"),
        (("resolve", "g", "draft", "--reject", "--reason", "r"), "pending, not escalated"),
    ],
)
def test_a_misfit_is_one_line_exit_2_and_records_nothing(
    store_url: str, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    plan = plan_file(tmp_path, gated_plan())
    cli("--store", store_url, "run", plan, "--input", '{"question": "s"}', "--goal-id", "g")
    before = _events(store_url)
    refused = cli("--store", store_url, *args)
    assert refused.code == 2, refused.out
    assert message in refused.err and len(refused.err.strip().splitlines()) == 1
    assert "Traceback" not in refused.err
    assert _events(store_url) == before


def test_every_escalation_kind_is_named_and_rebuilt_the_same(
    store_url: str, tmp_path: Path
) -> None:
    """failure, low_confidence and budget beside clarification and approval (outcome_unknown
    needs a crash: tests/test_crash.py escalates one; its kind is checked in the fold below)."""
    tasks = [
        {"id": "fails", "agent": "always_fails", "input": {"text": "x"},
         "on_failure": "escalate", "retry": {"max_attempts": 1}},
        {"id": "unsure", "agent": "scored", "input": {"text": "x@0.2"},
         "min_confidence": 0.5, "on_low_confidence": "escalate"},
    ]
    plan = {"version": 1, "name": "kinds", "tasks": tasks,
            "agents": {"always_fails": "tests.agents:always_fails",
                       "scored": "tests.agents:scored"}}
    budget = {"version": 1, "name": "budget", "agents": {"upper": "tests.agents:upper"},
              "budget": {"max_attempts": 1, "on_exhausted": "escalate"},
              "tasks": [{"id": "a", "agent": "upper", "input": {"text": "a"}},
                        {"id": "b", "agent": "upper", "input": {"text": "$a.text"}}]}
    assert cli("--store", store_url, "run", plan_file(tmp_path, plan), "--goal-id", "k").code == 3
    (tmp_path / "b").mkdir()
    assert cli("--store", store_url, "run", plan_file(tmp_path / "b", budget),
               "--goal-id", "b").code == 3
    (tmp_path / "g").mkdir()
    cli("--store", store_url, "run", plan_file(tmp_path / "g", gated_plan()),
        "--input", '{"question": "s"}', "--goal-id", "g")
    kinds = {(e["goal_id"], e["task"]): e["kind"] for e in _escalations(store_url)}
    assert kinds == {("k", "fails"): "failure", ("k", "unsure"): "low_confidence",
                     ("b", "b"): "budget", ("g", "ask"): "clarification"}
    before = _escalations(store_url)
    assert cli("--store", store_url, "projections", "rebuild").code == 0
    assert _escalations(store_url) == before


def test_the_fold_names_an_unknown_outcome() -> None:
    from baton.domain.gates import escalation_kind

    assert escalation_kind("TaskEscalated", "side_effects.unsafe") == "outcome_unknown"
    assert escalation_kind("TaskEscalated", "on_failure.escalate") == "failure"
    assert escalation_kind("TaskEscalated", "budget.tokens") == "budget"


def test_a_worker_continues_an_answered_goal_without_resume(
    store_url: str, tmp_path: Path
) -> None:
    from tests.cli_support import baton

    plan = plan_file(tmp_path, gated_plan())
    assert baton("run", plan, "--input", '{"question": "s"}', "--goal-id", "g",
                 store=store_url).code == 3
    assert baton("answer", "g", "ask", "Q2", store=store_url).code == 0
    worker = baton("worker", "--burst", store=store_url)
    assert worker.code == 0, worker.err
    [entry] = _escalations(store_url)  # driven on to the approval gate, without a resume
    assert (entry["task"], entry["kind"]) == ("publish", "approval")


def test_a_runner_killed_at_the_approval_gate_resumes_to_it_and_publishes_once(
    store_url: str, tmp_path: Path
) -> None:
    from tests.cli_support import baton

    data = gated_plan()
    data["tasks"] = data["tasks"][1:]  # draft -> publish (approval, unsafe)
    data["tasks"][0]["input"] = {"question": "$goal.question"}
    plan = plan_file(tmp_path, data)
    assert cli("--store", store_url, "run", plan, "--input", '{"question": "q"}',
               "--goal-id", "ref").code == 3
    store = open_store(store_url)
    try:
        kinds = [type(e).__name__ for e in store.events("ref")]
    finally:
        store.close()
    gate = kinds.index("ApprovalRequested") + 1

    killed = baton("run", plan, "--input", '{"question": "q"}', "--goal-id", "g",
                   store=store_url, env={"BATON_CRASH_AT_EVENT": str(gate)})
    assert killed.code == -9, killed.err
    resumed = baton("resume", "g", "--json", store=store_url)
    assert resumed.code == 3, resumed.err
    assert resumed.json()["tasks"]["publish"] == {"status": "escalated", "attempts": 0,
                                                  "waiting_for": "approval"}
    assert baton("resolve", "g", "publish", "--approve", "--reason", "ok",
                 store=store_url).code == 0
    assert baton("resume", "g", store=store_url).code == 0
    store = open_store(store_url)
    try:
        dispatched = [e.task for e in store.events("g") if type(e).__name__ == "TaskDispatched"]
    finally:
        store.close()
    assert dispatched == ["draft", "publish"]
