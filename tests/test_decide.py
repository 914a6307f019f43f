"""The decision core as pure unit tests: an in-memory Goal, observations in, decisions out.

No store, no threads, no clock: time is whatever the test says it is.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from baton.domain.decide import decide
from baton.domain.policies import backoff_delay, jitter_fraction
from tests.sim import Sim
from tests.support import load, plan, task


def chain(**b_fields: Any) -> dict[str, Any]:
    return plan(
        task("a", "upper", input={"text": "$goal.text"}),
        task("b", "exclaim", input={"text": "$a.text"}, **b_fields),
        output="$b.text",
    )


def test_first_decisions_make_roots_ready_and_dispatch_them() -> None:
    sim = Sim(chain())
    assert sim.summary() == [("TaskDispatched", "a")]  # rules 3: its readiness is in it
    assert sim.status("a") == "running" and sim.status("b") == "pending"
    ready = sim.last[0].fields["ready"]
    assert ready == {"rule": "dag.inputs_ready", "reason": "reads only the goal input",
                     "inputs": []}


def test_under_rules_2_readiness_and_dispatch_are_two_decisions() -> None:
    sim = Sim(chain(), rules=2)
    assert sim.summary() == [("TaskReady", "a"), ("TaskDispatched", "a")]
    ready, dispatched = (decision.fields for decision in sim.last)
    assert ready["rule"] == "dag.inputs_ready" and ready["reason"] == "reads only the goal input"
    assert dispatched["ready"] is None
    assert sim.returned("a", {"text": "HI"}) == [
        ("OutputAccepted", "a"), ("TaskReady", "b"), ("TaskDispatched", "b"),
    ]


def test_accepted_output_makes_dependants_ready_with_the_inputs_named() -> None:
    sim = Sim(chain())
    assert sim.returned("a", {"text": "HI"}) == [("OutputAccepted", "a"), ("TaskDispatched", "b")]
    assert sim.last[1].fields["ready"] == {
        "rule": "dag.inputs_ready", "reason": "inputs arrived from a", "inputs": ["a"]
    }
    assert sim.goal.state.tasks["b"].reason == "inputs arrived from a"
    assert sim.returned("b", {"text": "HI!"})[-1] == ("GoalCompleted", None)
    assert sim.goal.state.status == "completed" and sim.goal.state.output == "HI!"


def test_dispatch_records_a_digest_of_the_exact_input_and_a_stable_key() -> None:
    sim = Sim(chain(), goal_id="g-key")
    first = sim.last[0].fields
    other = Sim(chain(), goal_input={"text": "other"}, goal_id="g-key").last[0].fields
    assert first["input_digest"].startswith("sha256:")
    assert first["input_digest"] != other["input_digest"]  # the input differs
    assert first["idempotency_key"] == other["idempotency_key"]  # same goal, same task


def test_a_contract_violation_is_rejected_and_never_forwarded() -> None:
    sim = Sim(chain())
    decisions = sim.returned("a", {"txt": "HI"})
    assert decisions[:2] == [("OutputRejected", "a"), ("RetryScheduled", "a")]
    assert sim.last[0].fields["errors"] == ["text: Field required"]
    assert sim.last[0].fields["rule"] == "validation.contract"
    assert sim.status("b") == "pending"
    assert "a" not in sim.goal.state.outputs()


def test_concurrency_limits_dispatches_and_frees_slots() -> None:
    data = plan(*(task(f"t{i}", "upper", input={"text": "$goal.text"}) for i in range(3)))
    sim = Sim(data, concurrency=2)
    dispatched = [t for kind, t in sim.summary() if kind == "TaskDispatched"]
    assert dispatched == ["t0", "t1"]
    assert sim.status("t2") == "ready"
    assert sim.returned("t1", {"text": "X"}) == [("OutputAccepted", "t1"),
                                                 ("TaskDispatched", "t2")]


def test_retry_backoff_is_exponential_with_derived_jitter() -> None:
    data = chain()
    data["tasks"][0]["retry"] = {"max_attempts": 4, "backoff_s": 2, "multiplier": 3,
                                 "max_backoff_s": 10, "jitter": 0.1}
    sim = Sim(data)
    delays = []
    for attempt in (1, 2, 3):
        decisions = sim.raised("a", f"boom {attempt}")
        assert decisions[0] == ("RetryScheduled", "a")
        fields = sim.last[0].fields
        delays.append(fields["delay_s"])
        assert fields["due_at"] == sim.now + timedelta(seconds=fields["delay_s"])
        assert fields["failure"] == f"RuntimeError: boom {attempt}"
        assert fields["policy"]["max_attempts"] == 4
        # time passes until the backoff is due
        assert sim.observe("ClockTicked", seconds=fields["delay_s"]) == [("TaskDispatched", "a")]
        assert sim.last[0].fields["ready"]["rule"] == "retry.backoff_elapsed"
    for failures, (delay, base) in enumerate(zip(delays, [2, 6, 10], strict=True), start=1):
        assert base * 0.9 <= delay <= base * 1.1
        assert delay == backoff_delay(
            load(data).plan.retry_for(load(data).plan.task_map["a"]),
            failures=failures, jitter=jitter_fraction("g-1", "a", failures),
        )
    assert len(set(delays)) == 3


def test_a_backoff_not_yet_due_waits() -> None:
    data = chain()
    data["tasks"][0]["retry"] = {"backoff_s": 5, "jitter": 0}
    sim = Sim(data)
    sim.raised("a")
    assert sim.observe("ClockTicked", seconds=4.9) == []
    assert sim.status("a") == "retry_wait"


@pytest.mark.parametrize(("backoff_s", "delays"), [(1, [1, 30, 30]), (0, [0, 0, 0])])
def test_a_backoff_past_the_largest_float_is_capped_not_a_crash(
    backoff_s: float, delays: list[float]
) -> None:
    # 1e200 ** 2 overflows (as 2.0 ** 1024 does on the 1025th failure of a long policy): the
    # delay is max_backoff_s (0 without a backoff), not an OverflowError out of decide.
    data = chain()
    data["tasks"][0]["retry"] = {"max_attempts": 5, "backoff_s": backoff_s, "multiplier": 1e200,
                                 "max_backoff_s": 30, "jitter": 0}
    sim = Sim(data)
    for delay in delays:
        assert sim.raised("a")[0] == ("RetryScheduled", "a")
        assert sim.last[0].fields["delay_s"] == delay
        sim.observe("ClockTicked", seconds=delay)


def test_a_backoff_past_the_calendar_is_due_at_its_end_not_a_crash() -> None:
    # `max_backoff_s: 1e300` passes the plan check; `now + timedelta(1e300 s)` raised
    # OverflowError out of decide (exit 70 at the first failure, the goal left running).
    data = chain()
    data["tasks"][0]["retry"] = {"backoff_s": 1e300, "max_backoff_s": 1e300, "jitter": 0}
    sim = Sim(data)
    assert sim.raised("a")[0] == ("RetryScheduled", "a")
    fields = sim.last[0].fields
    last = datetime.max.replace(tzinfo=UTC)
    assert last - timedelta(seconds=1) < fields["due_at"] <= last
    assert fields["due_at"] == sim.now + timedelta(seconds=fields["delay_s"])
    assert f"next attempt after {fields['delay_s']:g}s" in fields["reason"]
    assert sim.status("a") == "retry_wait"


def test_retries_exhausted_fail_the_goal_and_skip_the_rest() -> None:
    data = chain()
    data["tasks"][0]["retry"] = {"max_attempts": 2, "backoff_s": 0}
    sim = Sim(data)
    sim.raised("a", "first")
    decisions = sim.raised("a", "second")
    assert decisions == [("TaskFailed", "a"), ("TaskSkipped", "b"), ("GoalFailed", "a")]
    failed = sim.last[0].fields
    assert failed["rule"] == "on_failure.fail"
    assert "retries exhausted after 2 failed attempts" in failed["reason"]
    assert sim.goal.state.reason == "task 'a' failed: RuntimeError: second"
    assert sim.goal.state.tasks["a"].attempts == 2


def test_abandon_skips_only_the_dependants() -> None:
    data = plan(
        task("a", "upper", input={"text": "$goal.text"}, on_failure="abandon",
             retry={"max_attempts": 1}),
        task("b", "exclaim", input={"text": "$a.text"}),
        task("c", "exclaim", input={"text": "$b.text"}),
        task("side", "exclaim", input={"text": "$goal.text"}),
        output={"side": "$side.text"},
    )
    sim = Sim(data)
    assert sim.raised("a") == [("TaskAbandoned", "a"), ("TaskSkipped", "b"), ("TaskSkipped", "c")]
    assert sim.status("c") == "skipped"
    skip_c = sim.goal.state.tasks["c"].reason
    assert "'b' was skipped" in skip_c
    assert "'a' was abandoned" in sim.goal.state.tasks["b"].reason
    assert sim.returned("side", {"text": "hi!"})[-1] == ("GoalCompleted", None)
    assert sim.goal.state.output == {"side": "hi!"}


def test_abandoning_a_task_the_output_reads_fails_the_goal() -> None:
    data = chain()
    data["tasks"][1].update(on_failure="abandon", retry={"max_attempts": 1})
    sim = Sim(data)
    sim.returned("a", {"text": "HI"})
    assert sim.raised("b")[-1] == ("GoalFailed", "b")
    assert sim.goal.state.status == "failed"
    assert "output reads 'b' (abandoned)" in sim.goal.state.reason


def test_escalation_waits_for_a_human_and_a_retry_resumes() -> None:
    data = chain()
    data["tasks"][0].update(on_failure="escalate", retry={"max_attempts": 1})
    sim = Sim(data)
    assert sim.raised("a") == [("TaskEscalated", "a"), ("GoalSuspended", None)]
    assert sim.goal.state.status == "waiting"
    decisions = sim.observe("HumanResolved", task="a", action="retry", reason="flaky", by="ana")
    assert decisions == [("TaskReady", "a")]  # nothing is dispatched until a runner resumes
    assert sim.last[0].fields["rule"] == "human.retry"
    assert sim.goal.state.status == "waiting"
    assert sim.observe("RunResumed", concurrency=8) == [
        ("GoalResumed", None), ("TaskDispatched", "a"),
    ]
    assert sim.goal.state.tasks["a"].attempts == 2


def test_a_human_output_is_validated_and_accepted() -> None:
    data = chain()
    data["tasks"][0].update(on_failure="escalate", retry={"max_attempts": 1})
    sim = Sim(data)
    sim.raised("a")
    bad = sim.observe("HumanResolved", task="a", action="output", output={"nope": 1},
                      reason="typo", by="ana")
    assert bad == [("OutputRejected", "a")]
    assert sim.status("a") == "escalated"
    good = sim.observe("HumanResolved", task="a", action="output", output={"text": "BY HAND"},
                       reason="checked manually", by="ana")
    assert good == [("OutputAccepted", "a"), ("TaskReady", "b")]
    assert sim.last[0].fields["rule"] == "human.output"
    assert sim.goal.state.outputs()["a"] == {"text": "BY HAND"}


def test_low_confidence_escalates_or_retries() -> None:
    data = plan(task("s", "scored", input={"text": "$goal.text"}, min_confidence=0.7,
                     on_low_confidence="escalate"))
    sim = Sim(data, {"text": "x@0.4"})
    decisions = sim.returned("s", {"text": "x@0.4", "confidence": 0.4})
    assert decisions[:2] == [("OutputRejected", "s"), ("TaskEscalated", "s")]
    assert sim.last[0].fields["errors"] == ["confidence: 0.4 is below min_confidence 0.7"]
    assert sim.last[1].fields["policy"] == {"min_confidence": 0.7,
                                            "on_low_confidence": "escalate"}
    data["tasks"][0]["on_low_confidence"] = "retry"
    sim = Sim(data, {"text": "x@0.4"})
    assert sim.returned("s", {"text": "x", "confidence": 0.4})[1] == ("RetryScheduled", "s")


def test_the_attempt_budget_stops_exactly_at_the_cap() -> None:
    data = plan(task("a", "upper", input={"text": "$goal.text"},
                     retry={"max_attempts": 10, "backoff_s": 0}),
                budget={"max_attempts": 3})
    sim = Sim(data)
    sim.raised("a")
    sim.raised("a")
    decisions = sim.raised("a")
    assert decisions == [("RetryScheduled", "a"), ("TaskReady", "a"),
                         ("BudgetExhausted", "a"), ("TaskSkipped", "a"), ("GoalFailed", "a")]
    exhausted = sim.last[2].fields
    assert (exhausted["budget"], exhausted["limit"], exhausted["used"]) == ("attempts", 3, 3)
    assert sim.goal.state.attempts_used == 3


def test_token_estimates_are_reserved_before_dispatch() -> None:
    data = plan(*(task(f"t{i}", "costly", input={"text": "$goal.text"},
                       estimate={"tokens": 100}) for i in range(3)),
                budget={"max_tokens": 250, "on_exhausted": "escalate"})
    sim = Sim(data)
    # two estimates fit in 250 tokens; the third would not, so it is not started: it is
    # recorded ready, to be dispatched when the reservations allow
    assert sim.summary() == [("TaskReady", "t2"), ("TaskDispatched", "t0"),
                             ("TaskDispatched", "t1")]
    assert sim.status("t2") == "ready"
    decisions = sim.returned("t0", {"text": "x", "usage": {"tokens": 40, "cost_usd": 0}},
                             usage={"tokens": 40, "cost_usd": 0.0})
    # reconciled: 40 spent + 100 reserved + 100 estimate = 240 fits
    assert decisions == [("OutputAccepted", "t0"), ("TaskDispatched", "t2")]
    decisions = sim.returned("t1", {"text": "x", "usage": {"tokens": 200, "cost_usd": 0}},
                             usage={"tokens": 200, "cost_usd": 0.0})
    assert sim.goal.state.used.tokens == 240


def test_budget_escalation_lets_a_human_grant_one_more_attempt() -> None:
    data = plan(task("a", "upper", input={"text": "$goal.text"},
                     retry={"max_attempts": 5, "backoff_s": 0}),
                budget={"max_attempts": 1, "on_exhausted": "escalate"})
    sim = Sim(data)
    assert sim.raised("a")[-2:] == [("TaskEscalated", "a"), ("GoalSuspended", None)]
    sim.observe("HumanResolved", task="a", action="retry", reason="ok", by="ana")
    decisions = sim.observe("RunResumed", concurrency=8)
    assert ("TaskDispatched", "a") in decisions
    assert sim.goal.state.tasks["a"].attempts == 2


def test_after_a_restart_unsafe_escalates_and_safe_redispatches_with_the_same_key() -> None:
    data = plan(
        task("pay", "book", input={"text": "$goal.text"}, side_effects="unsafe"),
        task("mail", "book", input={"text": "$goal.text"}, side_effects="idempotent"),
    )
    sim = Sim(data)
    key = sim.goal.state.tasks["mail"].idempotency_key
    decisions = sim.observe("RunResumed", concurrency=8)
    assert decisions == [("TaskEscalated", "pay"), ("AttemptInterrupted", "mail"),
                         ("TaskDispatched", "mail")]
    assert "outcome unknown" in sim.last[0].fields["reason"]
    assert sim.last[2].fields["idempotency_key"] == key
    assert sim.last[2].fields["attempt"] == 2


def test_cancel_stops_everything_and_late_results_are_ignored() -> None:
    sim = Sim(chain())
    attempt = sim.goal.state.tasks["a"].in_flight
    decisions = sim.observe("CancelRequested", reason="wrong trip", by="ana")
    assert decisions == [("TaskCancelled", "a"), ("TaskCancelled", "b"),
                         ("GoalCancelled", None)]
    late = sim.observe("AgentReturned", task="a", attempt=attempt, output={"text": "HI"},
                       duration_ms=1.0)
    assert late == []
    assert sim.status("a") == "cancelled"


def test_an_input_that_cannot_be_built_fails_without_retrying() -> None:
    sim = Sim(chain(), goal_input={"other": "field"})
    assert sim.summary()[:3] == [("TaskReady", "a"), ("InputRejected", "a"), ("TaskFailed", "a")]
    assert sim.last[1].fields["errors"] == ["$goal.text: $goal has no 'text'"]


@pytest.mark.parametrize("goal_id", ["g-1", "another"])
def test_decide_is_a_pure_function_of_the_state(goal_id: str) -> None:
    sim = Sim(chain(), goal_id=goal_id)
    sim.raised("a")
    assert decide(sim.goal.state, sim.loaded.contracts) == decide(
        sim.goal.state, sim.loaded.contracts
    )


def test_a_backoff_blocks_only_its_own_task() -> None:
    data = plan(
        task("a", "upper", input={"text": "$goal.text"}, retry={"backoff_s": 30}),
        task("b", "exclaim", input={"text": "$goal.text"}),
        task("c", "exclaim", input={"text": "$b.text"}),
    )
    sim = Sim(data)
    sim.raised("a")
    assert sim.status("a") == "retry_wait"
    assert sim.returned("b", {"text": "hi!"}) == [("OutputAccepted", "b"), ("TaskDispatched", "c")]


@pytest.mark.parametrize("rules", [2, 3, 5])
def test_after_a_stop_requested_nothing_is_dispatched_until_a_runner_resumes(rules: int) -> None:
    """`StopRequested`: ready tasks stay ready, a zero-backoff retry waits ready too; outcomes
    are still judged; the next `RunResumed` dispatches them."""
    sim = Sim(chain(retry={"max_attempts": 2, "backoff_s": 0}), rules=rules)
    assert sim.observe("StopRequested") == []
    assert sim.returned("a", {"text": "HI"}) == [("OutputAccepted", "a"), ("TaskReady", "b")]
    assert sim.status("b") == "ready" and sim.observe("ClockTicked") == []
    assert sim.observe("RunResumed", concurrency=8) == [("TaskDispatched", "b")]
    assert sim.observe("StopRequested") == []
    assert sim.raised("b") == [("RetryScheduled", "b"), ("TaskReady", "b")]  # due at once
    assert sim.observe("RunResumed", concurrency=8) == [("TaskDispatched", "b")]
    assert sim.returned("b", {"text": "HI!"})[-1] == ("GoalCompleted", None)


def _escalating_beside_a_running_task() -> dict[str, Any]:
    return plan(
        task("a", "upper", input={"text": "$goal.text"}, on_failure="escalate",
             retry={"max_attempts": 1}),
        task("side", "exclaim", input={"text": "$goal.text"}),
        output={"a": "$a.text", "side": "$side.text"},
    )


@pytest.mark.parametrize("action", ["resolve", "answer"])
def test_a_human_decision_on_a_running_goal_dispatches_nothing_until_a_runner_records(
    action: str,
) -> None:
    """Rules 6: `resolve`/`answer` record from a command, which runs nothing: the retried task
    waits ready for the next observation of a runner (here the running one's outcome), which
    dispatches it, rather than being dispatched by the command and orphaned."""
    data = _escalating_beside_a_running_task()
    if action == "answer":
        data["tasks"][0].pop("retry")
    sim = Sim(data)
    if action == "resolve":
        assert sim.raised("a") == [("TaskEscalated", "a")]  # `side` still runs: not waiting
        decided = sim.observe("HumanResolved", task="a", action="retry", reason="flaky", by="ana")
    else:
        assert sim.returned("a", {"text": "", "clarification": "which?"})[0][1] == "a"
        decided = sim.observe("HumanAnswered", task="a", answer="this one", by="ana")
    assert sim.goal.state.status == "running" and decided == [("TaskReady", "a")]
    assert sim.observe("ClockTicked") == [("TaskDispatched", "a")]  # (a runner's: it drives)


def test_under_rules_5_a_human_decision_on_a_running_goal_dispatched_as_recorded() -> None:
    """Goals started before rules 6 decide as their histories recorded: the command's save
    held the dispatch."""
    sim = Sim(_escalating_beside_a_running_task(), rules=5)
    sim.raised("a")
    decided = sim.observe("HumanResolved", task="a", action="retry", reason="flaky", by="ana")
    assert decided == [("TaskDispatched", "a")]


def test_a_runner_taking_the_goal_up_after_a_resolve_dispatches_the_retry() -> None:
    sim = Sim(_escalating_beside_a_running_task())
    sim.raised("a")
    sim.observe("HumanResolved", task="a", action="retry", reason="flaky", by="ana")
    decided = sim.observe("RunResumed", concurrency=8)
    assert "a" not in sim.goal.state.orphaned  # only `side`, which was dispatched and ran
    assert ("TaskDispatched", "a") in decided and ("AttemptInterrupted", "a") not in decided
