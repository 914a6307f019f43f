"""Human gates on both stores: a task that asks a question waits for `answer` and runs again with
every answer; `max_clarifications` bounds the loop; `approval: required` stops a task before its
first dispatch until `resolve --approve|--reject`; `escalations` and `status` say what waits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import baton
from baton.runtime.service import CommandError
from tests import gate_agents

GATES = "tests.gate_agents"


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    gate_agents.reset()
    yield



def gated_plan(
    *, ask: str = "ask_once", output: str = "$publish", **ask_fields: Any
) -> dict[str, Any]:
    """ask (may ask a question) -> draft -> publish (unsafe, needs approval)."""
    return {
        "version": 1,
        "name": "gates",
        "input": f"{GATES}:Question",
        "agents": {name: f"{GATES}:{name}" for name in (ask, "write", "publish")},
        "tasks": [
            {"id": "ask", "agent": ask, "input": {"question": "$goal.question"}, **ask_fields},
            {"id": "draft", "agent": "write", "input": {"question": "$ask.text"}},
            {"id": "publish", "agent": "publish", "input": {"text": "$draft.text"},
             "side_effects": "unsafe", "approval": "required"},
        ],
        "output": output,
    }


def kinds(bt: baton.Baton, goal_id: str) -> list[str]:
    return [type(event).__name__ for event in bt.store.events(goal_id)]


def escalations(bt: baton.Baton) -> list[dict[str, Any]]:
    from baton.readmodels.reading import read

    with read(bt.store) as models:
        return models.escalations()


# --- clarification --------------------------------------------------------------------------


def test_a_question_waits_for_an_answer_and_the_task_runs_again_with_it(
    bt: baton.Baton,
) -> None:
    first = bt.run(baton.load_plan(gated_plan()), {"question": "sales"}, goal_id="g")
    assert first.status == "waiting"
    assert first.tasks["ask"].status == "escalated"
    assert first.tasks["ask"].waiting_for == "clarification"
    assert first.tasks["ask"].question == "which period does 'sales' mean?"
    assert first.tasks["draft"].status == "pending"  # the question is never forwarded
    [row] = escalations(bt)
    assert (row["task_id"], row["waiting_for"], row["question"]) == (
        "ask", "clarification", "which period does 'sales' mean?")

    answered = bt.answer("g", "ask", "Q1 2026", by="ann")
    assert answered.tasks["ask"].status == "ready" and answered.status == "waiting"
    assert escalations(bt) == []  # nothing waits for a human until the runner takes it up
    resumed = bt.resume("g")
    assert resumed.tasks["ask"].status == "succeeded"
    assert resumed.tasks["ask"].attempts == 2
    # The second attempt got the question and its answer; the first had none.
    assert [seen["clarifications"] for seen in gate_agents.SEEN] == [
        [], [{"question": "which period does 'sales' mean?", "answer": "Q1 2026"}]]
    [answer] = [e for e in bt.store.events("g") if type(e).__name__ == "HumanAnswered"]
    assert (answer.answer, answer.by) == ("Q1 2026", "ann")
    assert resumed.tasks["publish"].waiting_for == "approval"  # the next gate
    assert bt.replay("g").ok


def test_a_question_in_a_plain_dict_is_asked_even_though_it_fails_the_contract(
    bt: baton.Baton,
) -> None:
    plan = gated_plan(ask="asks_as_dict")
    assert bt.run(baton.load_plan(plan), {"question": "x"}, goal_id="g").status == "waiting"
    assert "OutputRejected" not in kinds(bt, "g")
    bt.answer("g", "ask", "Portuguese")
    done = bt.resume("g")
    assert done.tasks["draft"].status == "succeeded"
    assert bt.replay("g").ok


def test_max_clarifications_bounds_the_loop_and_on_failure_decides(bt: baton.Baton) -> None:
    plan = gated_plan(ask="always_asks", max_clarifications=2, on_failure="escalate")
    result = bt.run(baton.load_plan(plan), {"question": "x"}, goal_id="g")
    for answer in ("one", "two"):
        assert result.tasks["ask"].waiting_for == "clarification"
        bt.answer("g", "ask", answer)
        result = bt.resume("g")
    # The third question is beyond the bound: a rejected output, not retried, then on_failure.
    assert result.tasks["ask"].status == "escalated"
    assert result.tasks["ask"].waiting_for == "failure"
    assert result.tasks["ask"].attempts == 3
    rejected = [e for e in bt.store.events("g") if type(e).__name__ == "OutputRejected"]
    assert [e.rule for e in rejected] == ["clarification.limit"]
    assert "max_clarifications 2" in rejected[0].errors[0]
    with pytest.raises(CommandError, match="no question waiting"):
        bt.answer("g", "ask", "three")
    assert bt.replay("g").ok


def test_the_plan_default_bound_fails_the_goal_by_default(bt: baton.Baton) -> None:
    plan = {**gated_plan(ask="always_asks"), "defaults": {"max_clarifications": 0}}
    result = bt.run(baton.load_plan(plan), {"question": "x"}, goal_id="g")
    assert result.status == "failed"
    assert result.tasks["ask"].status == "failed"
    assert "clarification.limit" in kinds_reasons(bt, "g")


def kinds_reasons(bt: baton.Baton, goal_id: str) -> str:
    return " ".join(str(getattr(e, "rule", "")) for e in bt.store.events(goal_id))


# --- approval -------------------------------------------------------------------------------


def _to_approval(bt: baton.Baton, plan: dict[str, Any] | None = None) -> baton.GoalResult:
    bt.run(baton.load_plan(plan or gated_plan()), {"question": "sales"}, goal_id="g")
    bt.answer("g", "ask", "Q1")
    return bt.resume("g")


def test_approval_stops_the_task_before_its_first_dispatch_with_its_input_shown(
    bt: baton.Baton,
) -> None:
    waiting = _to_approval(bt)
    assert waiting.status == "waiting"
    assert waiting.tasks["publish"].status == "escalated"
    assert waiting.tasks["publish"].attempts == 0
    assert gate_agents.PUBLISHED == []
    [row] = escalations(bt)
    assert row["waiting_for"] == "approval"
    assert row["approval_input"] == {"text": "draft on sales during Q1"}

    approved = bt.resolve("g", "publish", "approve", reason="reviewed", by="bob")
    assert approved.tasks["publish"].status == "ready"
    done = bt.resume("g")
    assert done.status == "completed"
    assert done.output == {"url": "https://example.test/1"}
    assert gate_agents.PUBLISHED == ["draft on sales during Q1"]
    [asked] = [e for e in bt.store.events("g") if type(e).__name__ == "ApprovalRequested"]
    assert asked.input == {"text": "draft on sales during Q1"}
    rules = [e.rule for e in bt.store.events("g") if getattr(e, "task", None) == "publish"
             and hasattr(e, "rule")]
    assert rules[:3] == ["dag.inputs_ready", "approval.required", "approval.granted"]
    assert bt.replay("g").ok


def test_a_refusal_abandons_the_task_and_skips_its_dependants(bt: baton.Baton) -> None:
    plan = gated_plan(output="$draft")
    plan["tasks"].append({"id": "announce", "agent": "write",
                          "input": {"question": "$publish.url"}})
    _to_approval(bt, plan)
    refused = bt.resolve("g", "publish", "reject", reason="not yet", by="bob")
    assert refused.tasks["publish"].status == "abandoned"
    assert refused.tasks["announce"].status == "skipped"
    done = bt.resume("g")
    assert done.status == "completed"  # the goal's output does not read the refused task
    assert done.output == {"text": "draft on sales during Q1"}
    assert gate_agents.PUBLISHED == []
    assert bt.replay("g").ok


def test_a_refused_task_the_output_reads_fails_the_goal(bt: baton.Baton) -> None:
    _to_approval(bt)
    bt.resolve("g", "publish", "reject", reason="no", by="bob")
    assert bt.resume("g").status == "failed"


@pytest.mark.parametrize(
    ("task", "action", "message"),
    [
        ("publish", "retry", "waits for approval: resolve it with approve or reject"),
        ("publish", "output", "waits for approval"),
        ("ask", "approve", "is succeeded, not escalated"),
    ],
)
def test_a_decision_that_does_not_fit_the_gate_is_refused_and_nothing_recorded(
    bt: baton.Baton, task: str, action: str, message: str
) -> None:
    _to_approval(bt)
    before = len(bt.store.events("g"))
    with pytest.raises(CommandError, match=message):
        bt.resolve("g", task, action, reason="r", output={"url": "x"})
    assert len(bt.store.events("g")) == before


def test_approving_a_task_escalated_for_a_failure_is_refused(bt: baton.Baton) -> None:
    plan = gated_plan(ask="always_asks", max_clarifications=0, on_failure="escalate")
    bt.run(baton.load_plan(plan), {"question": "x"}, goal_id="g")
    with pytest.raises(CommandError, match="not waiting for approval"):
        bt.resolve("g", "ask", "approve", reason="r")


# --- resume, replay, fork, export ----------------------------------------------------------


def test_resuming_a_goal_that_waits_at_a_gate_dispatches_nothing(
    bt: baton.Baton, store_url: str
) -> None:
    bt.run(baton.load_plan(gated_plan()), {"question": "sales"}, goal_id="g")
    before = kinds(bt, "g")
    with baton.Baton(store_url) as other:  # another process, after this one stopped
        again = other.resume("g")
    assert again.status == "waiting" and again.tasks["ask"].waiting_for == "clarification"
    assert kinds(bt, "g").count("TaskDispatched") == before.count("TaskDispatched")
    with baton.Baton(store_url) as other:
        other.answer("g", "ask", "Q2")
        assert other.resume("g").tasks["publish"].waiting_for == "approval"


def test_export_import_fork_and_replay_reproduce_answers_and_approvals(
    bt: baton.Baton, tmp_path: Path, store_url: str
) -> None:
    _to_approval(bt)
    bt.resolve("g", "publish", "approve", reason="ok", by="bob")
    assert bt.resume("g").status == "completed"
    events = bt.store.events("g")
    assert bt.export_run("g", tmp_path / "run.jsonl") == len(events)

    with baton.Baton(f"sqlite:///{tmp_path}/other.db") as other:
        assert other.import_run(tmp_path / "run.jsonl") == "g"
        replayed = other.replay("g")
        assert replayed.ok and replayed.events == len(events)
    assert bt.replay(str(tmp_path / "run.jsonl")).ok

    # Fork from just before the answer: the fork waits for its own answer, and gets another.
    answered_at = next(i for i, e in enumerate(events) if type(e).__name__ == "HumanAnswered")
    fork_id = bt.fork("g", at=answered_at).goal_id
    assert bt.status(fork_id).tasks["ask"].status == "escalated"
    bt.answer(fork_id, "ask", "Q4")
    bt.resume(fork_id)
    bt.resolve(fork_id, "publish", "approve", reason="ok")
    assert bt.resume(fork_id).status == "completed"
    assert gate_agents.PUBLISHED[-1] == "draft on sales during Q4"
    assert bt.replay(fork_id).ok


def test_what_if_without_the_approval_gate_stops_where_the_recorded_approval_applies(
    bt: baton.Baton,
) -> None:
    import json

    from baton.domain.whatif import what_if
    from baton.runtime.loading import prepare_plan

    _to_approval(bt)
    bt.resolve("g", "publish", "approve", reason="ok", by="bob")
    bt.resume("g")
    events = list(bt.store.events("g"))
    data = json.loads(json.dumps(events[0].plan))  # type: ignore[attr-defined]
    for spec in data["tasks"]:
        spec.pop("approval", None)
    loaded = prepare_plan(data)
    result = what_if(events, loaded.plan, loaded.contracts)
    assert not result.ok
    recorded = [d["kind"] for d in result.differences[0].recorded]
    assert recorded[-2:] == ["ApprovalRequested", "GoalSuspended"]
    assert "TaskDispatched" in [d["kind"] for d in result.differences[0].whatif]
    assert result.stopped is not None
    assert "resolved 'publish', which under the changed plan is running" in result.stopped[
        "reason"]


def test_what_if_an_answer_meets_a_task_that_waits_for_something_else(bt: baton.Baton) -> None:
    import json

    from baton.domain.whatif import what_if
    from baton.runtime.loading import prepare_plan

    bt.run(baton.load_plan(gated_plan()), {"question": "sales"}, goal_id="g")
    bt.answer("g", "ask", "Q1")
    events = list(bt.store.events("g"))
    data = json.loads(json.dumps(events[0].plan))  # type: ignore[attr-defined]
    data["tasks"][0].update(max_clarifications=0, on_failure="escalate")
    loaded = prepare_plan(data)
    result = what_if(events, loaded.plan, loaded.contracts)
    assert result.state.tasks["ask"].waiting_for == "failure"
    assert result.stopped is not None
    assert result.stopped["reason"] == (
        "a human's answer for 'ask' does not apply: under the changed plan it waits for "
        "failure, not clarification")


def test_the_async_api_answers_and_approves(store_url: str) -> None:
    import asyncio

    async def main() -> baton.GoalResult:
        async with baton.AsyncBaton(store_url) as abt:
            await abt.run(baton.load_plan(gated_plan()), {"question": "sales"}, goal_id="g")
            await abt.answer("g", "ask", "Q1", by="ann")
            await abt.resume("g")
            await abt.resolve("g", "publish", "approve", reason="ok", by="bob")
            return await abt.resume("g")

    assert asyncio.run(main()).status == "completed"
    assert gate_agents.PUBLISHED == ["draft on sales during Q1"]


def test_approval_on_a_map_asks_for_each_instance_and_one_refusal_abandons_the_map(
    bt: baton.Baton,
) -> None:
    agents = {"split": "tests.decompose_agents:split", "upper": "tests.agents:upper",
              "collect": "tests.decompose_agents:collect"}
    plan = {
        "version": 1,
        "name": "map-approval",
        "agents": agents,
        "tasks": [
            {"id": "split", "agent": "split", "input": {"text": "a,b"}},
            {"id": "each", "agent": "upper", "for_each": "$split.items", "as": "item",
             "input": {"text": "$item"}, "approval": "required"},
            {"id": "all", "agent": "collect", "input": {"texts": "$each"}},
        ],
        "output": "$all.text",
    }
    waiting = bt.run(baton.load_plan(plan), {}, goal_id="m")
    assert waiting.status == "waiting"
    escalated = {task for task, row in waiting.tasks.items() if row.status == "escalated"}
    assert escalated == {"each[0]", "each[1]"}
    assert sorted((row["task_id"], row["approval_input"]) for row in escalations(bt)) == [
        ("each[0]", {"text": "a"}), ("each[1]", {"text": "b"})]

    bt.resolve("m", "each[0]", "approve", reason="fine", by="bob")
    bt.resolve("m", "each[1]", "reject", reason="not this one", by="bob")
    done = bt.resume("m")
    assert done.tasks["each[0]"].status == "succeeded"  # the approved instance still ran
    assert done.tasks["each[1]"].status == "abandoned"
    assert done.tasks["each"].status == "abandoned"  # its list of outputs can never be whole
    assert done.tasks["all"].status == "skipped"
    assert done.status == "failed"
    assert bt.replay("m").ok
    from baton.readmodels.reading import read

    with read(bt.store) as models:
        rows = [(row["task_id"], row["added_by"]) for row in models.tasks("m")]
    assert rows == [("split", None), ("each", None), ("all", None),
                    ("each[0]", "each"), ("each[1]", "each")]
