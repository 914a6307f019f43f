"""The read models: they agree with the aggregates, rebuild to the same rows, and count exactly.

Every test runs on SQLite and PostgreSQL (the `store` / `store_url` fixtures).
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from eventsourcing.persistence import Tracking

from baton import projections
from baton.domain.decide import settle
from baton.domain.goal import Goal
from baton.projections.schema import TASK_STATUSES
from baton.readmodels import reading as readmodels
from baton.readmodels.reading import ReadModels
from baton.runtime.loading import prepare_plan
from baton.runtime.service import resolve_task, resume_goal
from baton.store.eventstore import BatonStore, open_store
from tests import agents
from tests.cli_support import baton
from tests.support import plan, projected, run, task, view_tables


@pytest.fixture(autouse=True)
def _reset_agents() -> Iterator[None]:
    agents.CALLS.clear()
    yield


def assert_matches_aggregate(store: BatonStore, goal_id: str) -> None:
    """The projected goal and tasks say what the aggregate itself says."""
    goal = store.get(goal_id)
    state = goal.state
    [summary] = projected(store, lambda m: m.goals(goal_id))
    tasks = projected(store, lambda m: m.tasks(goal_id))
    assert [row["task_id"] for row in tasks] == list(state.plan.order)
    for row in tasks:
        own = state.tasks[row["task_id"]]
        assert (row["status"], row["attempts"], row["last_error"]) == (
            own.status, own.attempts, own.last_error), row["task_id"]
        assert row["agent"] == state.plan.task_map[row["task_id"]].agent
        assert row["tokens"] == own.used.tokens
    assert (summary["status"], summary["reason"], summary["output"]) == (
        state.status, state.reason, state.output)
    assert (summary["attempts"], summary["tokens"]) == (state.attempts_used, state.used.tokens)
    assert summary["cost_usd"] == pytest.approx(state.used.cost_usd)
    assert summary["events"] == goal.version
    assert summary["updated_at"] == goal.modified_on
    counts = {status: summary[f"tasks_{status}"] for status in TASK_STATUSES}
    expected = {status: 0 for status in TASK_STATUSES}
    for own in state.tasks.values():
        expected[own.status] += 1
    assert counts == expected
    if state.status in ("running", "waiting"):
        assert summary["ended_at"] is None
    else:
        assert summary["started_at"] <= summary["ended_at"] <= summary["updated_at"]


SHAPES = {
    "completed": (plan(task("a", "upper", input={"text": "$goal.text"}),
                       task("b", "exclaim", input={"text": "$a.text"}), output="$b.text"), None),
    "failed": (plan(task("a", "always_fails", input={"text": "$goal.text"},
                         retry={"max_attempts": 2, "backoff_s": 0}),
                    task("b", "upper", input={"text": "$a.text"})), None),
    "retried": (plan(task("a", "flaky", input={"text": "$goal.text"},
                          retry={"max_attempts": 3, "backoff_s": 0}),
                     task("b", "costly", input={"text": "$a.text"})), None),
    "abandoned": (plan(task("a", "always_fails", input={"text": "$goal.text"},
                            on_failure="abandon", retry={"max_attempts": 1}),
                       task("b", "upper", input={"text": "$a.text"}),
                       task("c", "exclaim", input={"text": "$goal.text"}),
                       output="$c.text"), None),
    "low_confidence": (plan(task("a", "scored", input={"text": "$goal.text"},
                                 min_confidence=0.99, on_low_confidence="escalate")), None),
    "escalated_then_resolved": (
        plan(task("a", "always_fails", input={"text": "$goal.text"}, on_failure="escalate",
                  retry={"max_attempts": 1}),
             task("b", "upper", input={"text": "$a.text"}), output="$b.text"),
        {"text": "by hand"},
    ),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_projected_status_equals_the_aggregates_own(store: BatonStore, shape: str) -> None:
    data, human_output = SHAPES[shape]
    goal = run(store, data, {"text": "hi"})
    readmodels.refresh(store)
    assert_matches_aggregate(store, goal.id)
    if human_output is not None:
        assert goal.state.status == "waiting"
        [waiting] = projected(store, ReadModels.escalations)
        assert (waiting["goal_id"], waiting["task_id"]) == (goal.id, "a")
        resolve_task(store, goal.id, "a", action="output", output=human_output,
                     reason="typed it in", by="ana")
        readmodels.refresh(store)
        [resolved, _] = projected(store, lambda m: m.tasks(goal.id))
        assert resolved["last_reason"].startswith("ana: typed it in")
        resume_goal(store, goal.id)
        readmodels.refresh(store)
        assert_matches_aggregate(store, goal.id)
        assert projected(store, ReadModels.escalations) == []


def test_a_rebuild_reproduces_the_same_rows_whatever_the_batch_size(store: BatonStore) -> None:
    for shape in sorted(SHAPES):
        run(store, SHAPES[shape][0], {"text": shape})
    applied = readmodels.refresh(store)
    assert applied == projected(store, ReadModels.state).head
    before = view_tables(store)
    assert len(before["goal_summary"]) == len(SHAPES)
    assert projections.rebuild(store.app) == applied
    assert view_tables(store) == before
    assert projections.rebuild(store.app, page_size=3) == applied  # other batch boundaries
    assert view_tables(store) == before
    assert projected(store, ReadModels.state).lag == 0


def test_catching_up_applies_only_new_events_exactly_once(store: BatonStore) -> None:
    data = SHAPES["retried"][0]
    run(store, data, {"text": "one"})
    first = readmodels.refresh(store)
    assert readmodels.refresh(store) == 0  # nothing new: nothing applied again
    run(store, data, {"text": "two"})
    assert projected(store, ReadModels.state).lag > 0
    second = readmodels.refresh(store)
    assert second > 0 and first + second == projected(store, ReadModels.state).head
    incremental = view_tables(store)
    projections.rebuild(store.app)
    assert view_tables(store) == incremental


def test_concurrent_projectors_never_apply_an_event_twice(store: BatonStore) -> None:
    for index in range(4):
        run(store, SHAPES["retried"][0], {"text": f"g{index}"})
    head = projected(store, ReadModels.state).head
    applied: list[int] = []
    errors: list[BaseException] = []

    def project() -> None:
        try:
            applied.append(projections.catch_up(store.app, page_size=2))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=project) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(applied) == head  # every event applied once, by whichever projector got it
    together = view_tables(store)
    projections.rebuild(store.app)
    assert view_tables(store) == together


def test_a_refresher_skips_while_another_process_catches_up(store: BatonStore) -> None:
    """Workers refresh the read models every second; of N of them, one at a time does it (the
    others would read and decode the same pages for nothing). A plain `refresh` still waits.
    SQLite (one machine) does not coordinate: its refresher always catches up."""
    run(store, SHAPES["retried"][0], {"text": "one"})
    head = projected(store, ReadModels.state).head
    refresher = readmodels.Refresher(store)
    try:
        with projections.open_views(store.app) as views, views.alone() as alone:
            assert alone  # nobody else was at it
            skipped = refresher()
            if store.is_postgres:
                assert skipped == 0 and projected(store, ReadModels.state).lag == head
            else:
                assert skipped == head
        assert refresher() == (head if store.is_postgres else 0)  # the other has let go
    finally:
        refresher.close()
    assert projected(store, ReadModels.state).lag == 0


def test_latest_topics_name_each_goals_last_event(store: BatonStore) -> None:
    """What a worker checks before it claims (and folds) a goal that may have just ended."""
    ended = run(store, SHAPES["retried"][0], {"text": "one"})
    submitted = Goal.start(goal_id="submitted", plan=ended.state.plan, goal_input={},
                           concurrency=1, at=datetime.now(UTC))
    store.save(submitted)
    topics = store.latest_topics([ended.id, submitted.id, "no-such-goal"])
    assert {goal: topic.rsplit(".", 1)[-1] for goal, topic in topics.items()} == {
        ended.id: type(store.events(ended.id)[-1]).__name__, submitted.id: "Started"}
    assert type(store.events(ended.id)[-1]).__name__ == "GoalCompleted"


def test_a_forked_goal_is_projected_like_any_other(store_url: str, tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(yaml.safe_dump(SHAPES["retried"][0]))
    assert baton("run", str(plan_file), "--input", '{"text": "x"}', "--goal-id", "origin",
                 store=store_url).code == 0
    forked = baton("fork", "origin", "--at", "4", "--run", "--json", store=store_url)
    assert forked.code == 0, forked.err
    new_id = forked.json()["goal_id"]
    store = open_store(store_url)
    try:
        assert projected(store, ReadModels.state).lag == 0  # the CLI caught up before it exited
        [summary] = projected(store, lambda m: m.goals(new_id))
        assert summary["forked_from"] == "origin"
        assert_matches_aggregate(store, new_id)
        assert_matches_aggregate(store, "origin")
    finally:
        store.close()


def test_a_goal_resumed_after_a_crash_is_projected_like_the_aggregate(
    store_url: str, tmp_path: Path
) -> None:
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(yaml.safe_dump(SHAPES["retried"][0]))
    crashed = baton("run", str(plan_file), "--input", '{"text": "x"}', "--goal-id", "crashed",
                    store=store_url, env={"BATON_CRASH_AT_EVENT": "6"})
    assert crashed.code == -9, crashed.err  # SIGKILLed mid-run: it never caught up
    store = open_store(store_url)
    try:
        assert projected(store, ReadModels.state).position == 0
        resumed = baton("resume", "crashed", store=store_url)
        assert resumed.code == 0, resumed.err
        assert projected(store, ReadModels.state).lag == 0
        assert store.get("crashed").state.status == "completed"
        assert_matches_aggregate(store, "crashed")
    finally:
        store.close()


# --- agent_stats on a scenario computed by hand ---------------------------------------------

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def scripted_goal(store: BatonStore, goal_id: str, data: dict[str, Any],
                  script: list[tuple[str, str, dict[str, Any]]]) -> Goal:
    """Record a goal whose observations (and so durations and usage) are chosen by the test.

    Each step is (task, observation kind, fields) for the task's attempt in flight; the real
    decision core decides everything else, as the runner would.
    """
    loaded = prepare_plan(data)
    ticks = iter(range(1, 10_000))

    def at() -> datetime:
        return T0 + timedelta(seconds=next(ticks))

    goal = Goal.start(goal_id=goal_id, plan=loaded.plan, goal_input={"text": "hi"},
                      concurrency=4, at=T0)
    settle(goal, loaded.contracts)
    for task_id, kind, fields in script:
        if goal.state.tasks[task_id].in_flight is None:  # a zero backoff comes due
            goal.observe("ClockTicked", at=at())
            settle(goal, loaded.contracts)
        attempt = goal.state.tasks[task_id].in_flight
        assert attempt is not None, (task_id, goal.state.tasks[task_id].status)
        goal.observe(kind, at=at(), task=task_id, attempt=attempt, **fields)
        settle(goal, loaded.contracts)
    store.save(goal)
    return goal


def _returned(output: dict[str, Any], ms: float, tokens: int = 0,
              cost: float = 0.0) -> dict[str, Any]:
    usage = {"tokens": tokens, "cost_usd": cost} if tokens or cost else None
    return {"output": output, "duration_ms": ms, "usage": usage}


def _raised(ms: float) -> dict[str, Any]:
    return {"error_type": "RuntimeError", "message": "boom", "duration_ms": ms}


def test_agent_stats_match_a_hand_computed_scenario(store: BatonStore) -> None:
    retry = {"max_attempts": 3, "backoff_s": 0}
    first = plan(
        task("a", "upper", input={"text": "$goal.text"}, retry=retry),
        task("b", "scored", input={"text": "$a.text"}, retry=retry, min_confidence=0.7),
    )
    scripted_goal(store, "g1", first, [
        ("a", "AgentRaised", _raised(10.0)),
        ("a", "AgentReturned", _returned({"text": "HI"}, 30.0, tokens=100, cost=0.01)),
        ("b", "AgentReturned", _returned({"text": "HI", "confidence": 0.5}, 20.0)),
        ("b", "AgentReturned", _returned({"text": "HI", "confidence": 0.9}, 40.0, 50, 0.02)),
    ])
    second = plan(task("a", "upper", input={"text": "$goal.text"}, timeout_s=1,
                       retry={"max_attempts": 1}, on_failure="escalate"))
    scripted_goal(store, "g2", second, [("a", "AgentTimedOut", {"timeout_s": 1.0})])
    third = plan(task("a", "upper", input={"text": "$goal.text"}))
    scripted_goal(store, "g3", third, [
        ("a", "AgentReturned", _returned({"text": "HI"}, 50.0, tokens=1, cost=0.005)),
    ])
    readmodels.refresh(store)
    stats = {row["agent"]: row for row in projected(store, ReadModels.agents)}
    # upper: g1 raised (10 ms) then returned (30 ms); g2 timed out (no duration) and was
    # escalated; g3 returned (50 ms). Samples 10, 30, 50: nearest rank p50 = 2nd, p95 = 3rd.
    assert {k: stats["upper"][k] for k in (
        "attempts", "succeeded", "failed", "retries", "escalations", "rejected_outputs",
        "timed_out", "interrupted", "tokens", "latency_samples", "p50_ms", "p95_ms",
    )} == {
        "attempts": 4, "succeeded": 2, "failed": 2, "retries": 1, "escalations": 1,
        "rejected_outputs": 0, "timed_out": 1, "interrupted": 0, "tokens": 101,
        "latency_samples": 3, "p50_ms": 30.0, "p95_ms": 50.0,
    }
    assert stats["upper"]["cost_usd"] == pytest.approx(0.015)
    # scored: a low-confidence output (rejected, retried), then an accepted one.
    # Samples 20, 40: p50 = 1st (ceil(0.5 * 2)), p95 = 2nd (ceil(0.95 * 2)).
    assert {k: stats["scored"][k] for k in (
        "attempts", "succeeded", "failed", "retries", "escalations", "rejected_outputs",
        "tokens", "p50_ms", "p95_ms",
    )} == {
        "attempts": 2, "succeeded": 1, "failed": 1, "retries": 1, "escalations": 0,
        "rejected_outputs": 1, "tokens": 50, "p50_ms": 20.0, "p95_ms": 40.0,
    }
    [g1] = projected(store, lambda m: m.goals("g1"))
    assert (g1["status"], g1["attempts"], g1["tokens"]) == ("completed", 4, 150)
    assert g1["cost_usd"] == pytest.approx(0.03)
    assert g1["started_at"] == T0 and g1["ended_at"] == g1["updated_at"]
    [g2] = projected(store, lambda m: m.goals("g2"))
    assert (g2["status"], g2["tasks_escalated"]) == ("waiting", 1)
    assert view_tables(store)["agent_latency"][0]["duration_ms"] == 10.0


def test_a_fork_counts_in_agent_stats_only_the_attempts_it_ran_itself(store: BatonStore) -> None:
    """A fork copies its parent's history; no agent ran again for it. Counted again, a fork
    doubled the parent's attempts, tokens, cost and latency samples in `stats` (a cost audit
    read twice the spend). The fork's own goal row keeps its totals, as its status shows."""
    from baton.runtime.service import fork_from

    retry = {"max_attempts": 3, "backoff_s": 0}
    data = plan(task("a", "upper", input={"text": "$goal.text"}, retry=retry),
                task("b", "upper", input={"text": "$a.text"}))
    scripted_goal(store, "parent", data, [
        ("a", "AgentRaised", _raised(10.0)),
        ("a", "AgentReturned", _returned({"text": "HI"}, 30.0, tokens=100, cost=0.01)),
        ("b", "AgentReturned", _returned({"text": "HI"}, 20.0, tokens=10, cost=0.001)),
    ])
    readmodels.refresh(store)
    fields = ("attempts", "succeeded", "failed", "retries", "tokens", "cost_usd",
              "latency_samples")

    def upper_stats() -> dict[str, Any]:
        [row] = projected(store, ReadModels.agents)
        return {k: row[k] for k in fields}

    before = upper_stats()
    events = store.events("parent")
    kinds = [type(e).__name__ for e in events]
    whole = fork_from(store, events, at=len(events), goal_id="copy")  # nothing left to run
    retried = fork_from(store, events, at=kinds.index("RetryScheduled") + 1, goal_id="again")
    readmodels.refresh(store)
    assert upper_stats() == before
    [copy] = projected(store, lambda m: m.goals("copy"))
    assert (copy["forked_from"], copy["attempts"], copy["tokens"]) == ("parent", 3, 110)
    assert_matches_aggregate(store, whole.id)
    resume_goal(store, retried.id)  # a's second attempt and b run for real, in the fork
    readmodels.refresh(store)
    after = upper_stats()
    assert (after["attempts"], after["succeeded"], after["failed"], after["retries"]) == (
        before["attempts"] + 2, before["succeeded"] + 2, before["failed"], before["retries"])
    assert after["latency_samples"] == before["latency_samples"] + 2
    assert_matches_aggregate(store, retried.id)


def test_a_fork_escalating_an_unsafe_attempt_it_copied_counts_no_interruption(
    store: BatonStore,
) -> None:
    """The fork's escalation of the copied in-flight attempt ("outcome unknown") is its own
    decision and counts; the attempt ran, and was counted, in the parent."""
    from baton.runtime.service import fork_from

    data = plan(task("b", "exclaim", input={"text": "$goal.text"}, side_effects="unsafe"))
    loaded = prepare_plan(data)
    parent = Goal.start(goal_id="parent", plan=loaded.plan, goal_input={"text": "hi"},
                        concurrency=4, at=T0)
    settle(parent, loaded.contracts)
    store.save(parent)
    dispatched = store.events("parent")
    parent = store.get("parent")
    parent.observe("AgentReturned", at=T0 + timedelta(seconds=1), task="b", attempt=1,
                   output={"text": "hi!"}, duration_ms=5.0, usage=None)
    settle(parent, loaded.contracts)
    store.save(parent)
    fork_from(store, dispatched, at=len(dispatched), goal_id="fork")
    fork = store.get("fork")
    fork.observe("RunResumed", at=T0 + timedelta(seconds=2), concurrency=4)
    settle(fork, loaded.contracts)
    assert fork.state.tasks["b"].waiting_for == "outcome_unknown"
    store.save(fork)
    readmodels.refresh(store)
    [row] = projected(store, ReadModels.agents)
    assert {k: row[k] for k in ("attempts", "succeeded", "interrupted", "escalations")} == {
        "attempts": 1, "succeeded": 1, "interrupted": 0, "escalations": 1}


def test_an_attempt_a_crash_interrupted_counts_whatever_its_side_effects(
    store: BatonStore,
) -> None:
    # Two attempts in flight when the runner died: the `none` one is dispatched again
    # (AttemptInterrupted), the `unsafe` one escalated with its outcome unknown. Both were
    # left without an outcome by the crash, so both are `interrupted`: otherwise the unsafe
    # agent's attempt is neither succeeded, failed nor interrupted in `baton stats`.
    data = plan(task("a", "upper", input={"text": "$goal.text"}),
                task("b", "exclaim", input={"text": "$goal.text"}, side_effects="unsafe"))
    loaded = prepare_plan(data)
    goal = Goal.start(goal_id="killed", plan=loaded.plan, goal_input={"text": "hi"},
                      concurrency=4, at=T0)
    settle(goal, loaded.contracts)
    goal.observe("RunResumed", at=T0 + timedelta(seconds=1), concurrency=4)
    settle(goal, loaded.contracts)
    assert goal.state.tasks["b"].status == "escalated"
    store.save(goal)
    readmodels.refresh(store)
    stats = {row["agent"]: row for row in projected(store, ReadModels.agents)}
    assert {name: (row["attempts"], row["interrupted"], row["escalations"])
            for name, row in stats.items()} == {"upper": (2, 1, 0), "exclaim": (1, 1, 1)}


def test_an_attempt_a_cancel_or_a_deadline_ended_counts_as_interrupted(
    store: BatonStore,
) -> None:
    # The goal's deadline passes while `hangs` runs: the goal fails and the attempt is
    # cancelled with no outcome. It was an attempt in `baton stats` and none of its outcomes.
    data = plan(task("a", "hangs", input={"text": "$goal.text"}, timeout_s=20),
                budget={"deadline_s": 0.3})
    goal = run(store, data, {"text": "hi"})
    assert goal.state.tasks["a"].status == "cancelled"
    readmodels.refresh(store)
    [row] = projected(store, ReadModels.agents)
    assert (row["attempts"], row["succeeded"], row["failed"], row["interrupted"]) == (1, 0, 0, 1)


def test_status_shows_no_agent_time_for_a_task_that_measured_none(store: BatonStore) -> None:
    # A timed-out attempt reports no duration: `run` (from the events) leaves the ms cell
    # blank, and `status GOAL` (from the read models) said 0.0 ms for the same task.
    data = plan(task("a", "upper", input={"text": "$goal.text"}, timeout_s=1,
                     retry={"max_attempts": 1}, on_failure="abandon"),
                task("b", "exclaim", input={"text": "$goal.text"}))
    scripted_goal(store, "t", data, [("a", "AgentTimedOut", {"timeout_s": 1.0}),
                                     ("b", "AgentReturned", _returned({"text": "hi!"}, 12.5))])
    readmodels.refresh(store)
    shown = baton("status", "t", store=store.url)
    cells = [[cell.strip() for cell in line.split("│")[1:6]]
             for line in shown.out.splitlines() if line.startswith(("│ a ", "│ b "))]
    assert cells == [["a", "upper", "abandoned", "1", ""],  # no time measured: blank
                     ["b", "exclaim", "succeeded", "1", "12.5"]]


def test_dollar_sums_do_not_drift_like_binary_floats(store: BatonStore) -> None:
    # $0.1 three times is 0.30000000000000004 in binary floats: `status --json` and `stats
    # --json` printed that where replay (and the budget) say 0.3.
    data = plan(task("a", "upper", input={"text": "$goal.text"},
                     retry={"max_attempts": 4, "backoff_s": 0}))
    spent = {"usage": {"tokens": 1, "cost_usd": 0.1}}
    scripted_goal(store, "g", data, [
        ("a", "AgentRaised", {**_raised(1.0), **spent}),
        ("a", "AgentRaised", {**_raised(1.0), **spent}),
        ("a", "AgentReturned", _returned({"text": "HI"}, 1.0, tokens=1, cost=0.1)),
    ])
    readmodels.refresh(store)
    [goal] = projected(store, lambda m: m.goals("g"))
    [agent] = projected(store, ReadModels.agents)
    [model] = view_tables(store)["model_stats"]
    [row] = projected(store, lambda m: m.tasks("g"))
    assert (goal["cost_usd"], agent["cost_usd"], model["cost_usd"], row["cost_usd"]) == (
        0.3, 0.3, 0.3, 0.3)


def test_percentiles_stay_exact_whatever_the_batches(store: BatonStore) -> None:
    # Durations from a small set, so ties abound; caught up goal by goal (each batch moves the
    # percentiles from where the last one left them), then rebuilt in pages of other sizes.
    rng = random.Random(17)
    retry = {"max_attempts": 40, "backoff_s": 0}
    data = plan(task("a", "upper", input={"text": "$goal.text"}, retry=retry))
    for number in range(12):
        failures = rng.randrange(0, 30)
        script = [("a", "AgentRaised", _raised(float(rng.randrange(1, 7))))
                  for _ in range(failures)]
        script.append(("a", "AgentReturned", _returned({"text": "HI"}, rng.choice((0.5, 9.0)))))
        scripted_goal(store, f"g{number}", data, script)
        readmodels.refresh(store)
        samples = sorted((row["duration_ms"], row["position"])
                         for row in view_tables(store)["agent_latency"])
        [upper] = projected(store, ReadModels.agents)
        assert upper["latency_samples"] == len(samples)
        for prefix, percent in (("p50", 50), ("p95", 95)):
            rank = math.ceil(len(samples) * percent / 100)  # nearest rank, by hand
            assert (upper[f"{prefix}_ms"], upper[f"{prefix}_position"]) == samples[rank - 1]
    incremental = view_tables(store)
    for page_size in (1, 7, 500):
        projections.rebuild(store.app, page_size=page_size)
        assert view_tables(store) == incremental


def test_a_new_views_version_rebuilds_the_rows(store: BatonStore) -> None:
    run(store, SHAPES["completed"][0], {"text": "hi"})
    readmodels.refresh(store)
    before = view_tables(store)
    with readmodels.read(store) as models, models.views.datastore.transaction(commit=True) as c:
        views = models.views
        c.execute(views.sql(f"UPDATE {views.qualified('baton_views_meta')} SET version = ?"),
                  (0,))
        c.execute(f"DELETE FROM {views.qualified('task_status')}")  # rows an old version left
    assert readmodels.refresh(store) == projected(store, ReadModels.state).head  # projected again
    assert view_tables(store) == before


def test_a_nul_in_an_output_or_a_reason_does_not_stop_the_read_models(store_url: str) -> None:
    """PostgreSQL's text and jsonb cannot hold NUL: a goal whose output (or a human's reason)
    had one stopped every later catch-up at its event, for every goal of the store ("lag N
    events" for ever). The events keep the NUL; the views on PostgreSQL show U+FFFD."""
    import warnings

    import baton as api
    from baton.api.client import ReadModelsBehind

    data = {"version": 1, "name": "nul", "agents": {"up": "tests.agents:upper"},
            "tasks": [{"id": "t", "agent": "up", "input": {"text": "$goal.text"}}],
            "output": "$t"}
    with warnings.catch_warnings(), api.Baton(store_url) as bt:
        warnings.simplefilter("error", ReadModelsBehind)
        done = bt.run(api.load_plan(data), {"text": "a\x00b"})
        assert done.output == {"text": "A\x00B"}  # from the events
        shown = bt.status(done.goal_id)  # from the read models
        assert shown.status == "completed"
        assert shown.output in ({"text": "A\x00B"}, {"text": "A\ufffdB"})
        waiting = bt.submit(api.load_plan(data), {"text": "c"})
        cancelled = bt.cancel(waiting, reason="null\x00byte", by="ops")
        assert cancelled.status == "cancelled"
        assert bt.status(waiting).status == "cancelled"
        later = bt.run(api.load_plan(data), {"text": "after"})
        assert bt.status(later.goal_id).output == {"text": "AFTER"}


def test_a_follower_applies_nothing_on_views_a_rebuild_reset_under_it(store: BatonStore) -> None:
    """`projections follow` applies one event at a time, "if not applied already". When a
    `projections rebuild` reset the views under it, its next event went on top of the rebuild's
    first pages: the tracked position jumped past the rebuild's, which then skipped every event
    in between (or, for a goal not rebuilt yet, the follower died, exit 2: "event N
    (OutputAccepted) of goal 'g' precedes the goal's Started event")."""
    for index in range(2):
        run(store, SHAPES["retried"][0], {"text": f"g{index}"}, goal_id=f"g{index}")
    readmodels.refresh(store)
    app = store.app
    assert projections.GoalProjection.application_name == app.name
    with projections.open_views(app) as views:
        follower = projections.GoalProjection(view=views)  # subscribed where the views stand
        views.reset(app.name)  # a rebuild starts, and has applied its first page
        page = app.recorder.select_notifications(start=1, limit=3)
        assert views.apply_batch(app.name, [(app.mapper.to_domain_event(n), n.id)
                                            for n in page], after=0)
        head = app.recorder.max_notification_id() or 0
        run(store, SHAPES["completed"][0], {"text": "late"}, goal_id="late")  # a new event
        [new] = app.recorder.select_notifications(start=head + 1, limit=1)
        with pytest.raises(projections.ViewsReset, match="reset to event 3"):
            follower.process_event(app.mapper.to_domain_event(new),
                                   Tracking(app.name, new.id))
        assert views.position(app.name) == 3  # nothing written
    readmodels.refresh(store)  # the rebuild goes on
    caught_up = view_tables(store)
    assert {row["goal_id"] for row in caught_up["goal_summary"]} == {"g0", "g1", "late"}
    projections.rebuild(app)
    assert view_tables(store) == caught_up


def test_projections_follow_carries_on_through_a_rebuild(store_url: str) -> None:
    if not store_url.startswith("postgresql"):
        pytest.skip("SQLite's follower catches up in pages, each checked against the position")
    store = open_store(store_url)
    try:
        stop = threading.Event()
        failed: list[BaseException] = []

        def follow() -> None:
            try:
                readmodels.follow(store, interval_s=0.05, stop=stop)
            except BaseException as exc:  # surfaced below
                failed.append(exc)

        def caught_up() -> bool:
            deadline = datetime.now(UTC) + timedelta(seconds=30)
            while datetime.now(UTC) < deadline and not failed:
                if projected(store, ReadModels.state).lag == 0:
                    return True
                stop.wait(0.05)
            return False

        follower = threading.Thread(target=follow, daemon=True)
        follower.start()
        try:
            assert caught_up()
            # written once it follows: only its subscription applies these
            run(store, SHAPES["retried"][0], {"text": "one"}, goal_id="one")
            assert caught_up(), failed
            app = store.app
            with projections.open_views(app) as views:  # a rebuild resets and does one page
                views.reset(app.name)
                page = app.recorder.select_notifications(start=1, limit=2)
                views.apply_batch(app.name, [(app.mapper.to_domain_event(n), n.id)
                                             for n in page], after=0)
            run(store, SHAPES["completed"][0], {"text": "two"}, goal_id="two")
            assert caught_up(), failed
        finally:
            stop.set()
            follower.join(timeout=30)
        assert failed == []
        followed = view_tables(store)
        assert {row["goal_id"] for row in followed["goal_summary"]} == {"one", "two"}
        projections.rebuild(store.app)
        assert view_tables(store) == followed
    finally:
        store.close()


def test_projection_state_counts_the_lag_up_to_the_head_it_shows(
    store: BatonStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`projections status` read the head, then counted the lag: events written in between
    were counted but not in the head ("at event 380 of 985; lag 633")."""
    run(store, SHAPES["retried"][0], {"text": "one"})
    readmodels.refresh(store)
    head = store.app.recorder.max_notification_id() or 0
    run(store, SHAPES["completed"][0], {"text": "two"})  # written after the head was read
    monkeypatch.setattr(store.app.recorder, "max_notification_id", lambda: head)
    with projections.open_views(store.app) as views:
        state = projections.projection_state(store.app, views)
    assert (state.position, state.head, state.lag) == (head, head, 0)
