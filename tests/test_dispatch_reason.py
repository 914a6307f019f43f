"""The dispatch after a human answered a task's question says so (decision rules 2), on both
stores; goals decided under rules 1 (every history recorded before `Started` v3) keep the
wording they were decided with, so they replay, re-execute and continue as before."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import baton
from baton.domain.goal import Goal
from baton.domain.history import HistoryError, check_history
from baton.domain.replay import replay
from baton.domain.state import RULES
from baton.history.recorded import reexecute
from baton.history.runfile import read_run, write_run
from baton.runtime.loading import prepare_plan
from tests import gate_agents
from tests.support import as_recorded_before
from tests.test_gates import gated_plan

GATED = Path(__file__).parent / "golden" / "gated.jsonl"
ANSWERED = (
    "attempt 2: runs again because a human answered its question (1 answered so far); "
    "a question is not a failure: 0 failed attempts of the 3 the retry policy allows"
)
OLD = "attempt 2 (retry policy allows 3)"


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    gate_agents.reset()
    yield



def _dispatches(events: Sequence[Any], task: str) -> list[Any]:
    return [e for e in events if type(e).__name__ == "TaskDispatched" and e.task == task]


def test_the_dispatch_after_an_answer_says_why_it_runs_again(
    bt: baton.Baton, tmp_path: Path
) -> None:
    bt.run(baton.load_plan(gated_plan()), {"question": "sales"}, goal_id="g")
    bt.answer("g", "ask", "Q1 2026", by="ann")
    assert bt.resume("g").tasks["ask"].status == "succeeded"
    events = list(bt.store.events("g"))
    assert events[0].rules == RULES == 6
    first, again = _dispatches(events, "ask")
    assert first.reason == "attempt 1 (retry policy allows 3)"
    assert (again.rule, again.reason) == ("dag.dispatch", ANSWERED)
    [draft] = _dispatches(events, "draft")
    assert draft.reason == "attempt 1 (retry policy allows 3)"
    # The record verifies: re-decided, re-executed, and after a round trip through a run file.
    assert bt.replay("g").ok
    loaded = prepare_plan(gated_plan())
    assert reexecute(events, loaded).ok
    bt.export_run("g", tmp_path / "g.jsonl")
    run = read_run(str(tmp_path / "g.jsonl"))
    assert run.events[0].rules == RULES
    assert replay(run.events, loaded.contracts).ok
    audit = bt.audit("g")
    assert ANSWERED in [d["reason"] for d in audit["decisions"]]


def test_the_dispatch_after_a_human_retry_says_who_asked_and_why(bt: baton.Baton) -> None:
    """Rules 1 worded it "attempt 3 (retry policy allows 2)": a breach of the policy, on the
    face of it. Rules 2 says a human asked, and that the policy counts again from there."""
    from tests.test_api import _counting_plan, refuses, split_count

    data = _counting_plan(on_failure="escalate", retry={"max_attempts": 2, "backoff_s": 0})
    plan = baton.load_plan(data, agents={"count": split_count, "double": refuses})
    assert bt.run(plan, {"text": "a b"}, goal_id="g").status == "waiting"
    bt.resolve("g", "double", "retry", reason="service back up", by="ana")
    bt.resume("g")
    events = list(bt.store.events("g"))
    reasons = [d.reason for d in _dispatches(events, "double")]
    assert reasons[:2] == ["attempt 1 (retry policy allows 2)",
                           "attempt 2 (retry policy allows 2)"]
    assert reasons[2] == ("attempt 3: retry requested by ana: service back up; the retry "
                          "policy's 2 attempts count again from this one")
    assert reasons[3] == "attempt 4 (retry policy allows 2)"  # the policy's own retry
    assert bt.replay("g").ok
    assert reexecute(events, prepare_plan(data, agents={"count": split_count,
                                                        "double": refuses})).ok


def test_a_goal_decided_under_rules_1_keeps_its_wording(bt: baton.Baton, tmp_path: Path) -> None:
    """The golden `gated` history (Started v2: rules 1) up to its question, imported, answered
    and resumed with today's code: the dispatch is worded as rules 1 words it, and the whole
    history, recorded then and now, replays."""
    golden = read_run(str(GATED))
    assert golden.events[0].rules == 1  # recorded before `rules`: the field's default
    [_, again, *_] = _dispatches(golden.events, "ask")
    assert again.reason == OLD
    asked = next(i for i, e in enumerate(golden.events) if type(e).__name__ == "GoalSuspended")
    prefix = tmp_path / "asked.jsonl"
    with prefix.open("w", encoding="utf-8") as out:
        write_run(golden.events[: asked + 1], out)
    goal_id = bt.import_run(prefix)
    bt.answer(goal_id, "ask", "Q1 2026", by="ana")
    bt.resume(goal_id)
    events = list(bt.store.events(goal_id))
    assert events[0].rules == 1
    [_, again] = _dispatches(events, "ask")
    assert again.reason == OLD
    assert bt.replay(goal_id).ok


def test_a_human_retry_under_a_one_attempt_policy_reads_right(bt: baton.Baton) -> None:
    from tests.test_api import _counting_plan, refuses, split_count

    data = _counting_plan(on_failure="escalate", retry={"max_attempts": 1})
    plan = baton.load_plan(data, agents={"count": split_count, "double": refuses})
    bt.run(plan, {"text": "a b"}, goal_id="g")
    bt.resolve("g", "double", "retry", reason="again", by="ana")
    bt.resume("g")
    granted = _dispatches(list(bt.store.events("g")), "double")[1].reason
    assert granted == ("attempt 2: retry requested by ana: again; the retry policy's 1 attempt "
                       "counts again from this one")


@pytest.mark.parametrize("rules", [2, 3])
def test_the_goldens_since_rules_2_hold_the_new_wordings(rules: int) -> None:
    """tests/golden/*-rules2.jsonl and *-rules3.jsonl, recorded under those rules beside the
    rules-1 goldens of the same shapes: the golden tests replay all of them, so a change to
    either wording fails there."""
    golden = Path(__file__).parent / "golden"
    gated = read_run(str(golden / f"gated-rules{rules}.jsonl")).events
    escalated = read_run(str(golden / f"escalated-rules{rules}.jsonl")).events
    assert gated[0].rules == escalated[0].rules == rules
    assert _dispatches(gated, "ask")[1].reason == ANSWERED
    granted = _dispatches(escalated, "a")[2].reason
    assert granted.startswith("attempt 3: retry requested by ana: one more go; ")
    assert read_run(str(GATED)).events[0].rules == 1  # the frozen one, beside it


def test_a_v2_started_event_upcasts_to_rules_1(sqlite_url: str) -> None:
    from baton.store.eventstore import open_store

    def as_v2(state: dict[str, Any]) -> None:
        assert state.pop("class_version") == 3 and state.pop("rules") == RULES
        state["class_version"] = 2  # as recorded before `rules`

    store = open_store(sqlite_url)
    try:
        with baton.Baton(sqlite_url) as client:
            client.submit(baton.load_plan(gated_plan()), {"question": "s"}, goal_id="g")
        [started] = list(store.events("g"))
        upcast = as_recorded_before(store, started, as_v2)
    finally:
        store.close()
    assert isinstance(upcast, Goal.Started)
    assert upcast.rules == 1
    assert upcast.mutate(None).state.rules == 1


def test_a_stored_goal_under_newer_rules_is_not_driven_here(store_url: str) -> None:
    """A newer Baton (rules 3, say) submitted it to a shared store: this one neither resumes
    it nor lets a worker take it up, and records nothing (its replay would refuse them)."""
    from baton.runtime.loading import prepare_plan
    from baton.store.eventstore import open_store
    from tests.cli_support import baton as cli

    store = open_store(store_url)
    try:
        goal = Goal.start(goal_id="newer", plan=prepare_plan(gated_plan()).plan,
                          goal_input={"question": "q"}, concurrency=1,
                          at=datetime.now(UTC), rules=RULES + 1)
        store.save(goal)
    finally:
        store.close()
    resumed = cli("resume", "newer", store=store_url)
    assert resumed.code == 2, resumed.err
    assert resumed.err.strip().splitlines() == [
        f"baton: error: goal newer: started under decision rules {RULES + 1}; this Baton "
        f"knows rules 1..{RULES} (upgrade it to drive this goal)"]
    worker = cli("worker", "--burst", store=store_url)
    assert worker.code == 0 and "drove 0 goal(s)" in worker.err, worker.err
    assert f"goal newer: started under decision rules {RULES + 1}" in worker.err
    store = open_store(store_url)
    try:
        assert [type(e).__name__ for e in store.events("newer")] == ["Started"]
    finally:
        store.close()


def test_a_history_decided_under_unknown_rules_is_refused() -> None:
    events = read_run(str(GATED)).events
    object.__setattr__(events[0], "rules", RULES + 1)
    with pytest.raises(HistoryError, match=f"decided under rules {RULES + 1}"):
        check_history(events)
