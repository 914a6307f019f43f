"""A waiting goal's `reason` after a human's decision, on both stores: `resolve --json`,
`answer --json`, `status GOAL --json` (the read models) and `replay --at N` say what the goal
waits for now, not the reason recorded when it was suspended; the events are not changed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from baton.domain.replay import replay
from baton.domain.state import RESOLVED_WAIT
from baton.history.runfile import read_run
from baton.runtime.loading import prepare_plan
from tests import gate_agents
from tests.inprocess import cli
from tests.support import plan_file
from tests.test_gates import gated_plan
from tests.test_resolve_planner import NOT_A_LIST

GOLDEN = Path(__file__).parent / "golden"

FAILS = "retries exhausted after 1 failed attempts; last error: RuntimeError: boom #1; " \
    "on_failure is escalate"
UNSURE = "attempt 1: confidence: 0.2 is below min_confidence 0.5; on_low_confidence is escalate"

TWO_ESCALATIONS = {
    "version": 1, "name": "two",
    "agents": {"always_fails": "tests.agents:always_fails", "scored": "tests.agents:scored"},
    "tasks": [
        {"id": "fails", "agent": "always_fails", "input": {"text": "x"},
         "on_failure": "escalate", "retry": {"max_attempts": 1}},
        {"id": "unsure", "agent": "scored", "input": {"text": "x@0.2"},
         "min_confidence": 0.5, "on_low_confidence": "escalate"},
    ],
}


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    from tests import agents

    gate_agents.reset()
    agents.CALLS.clear()
    yield


def _reason(store_url: str, *args: str) -> str | None:
    shown = cli("--store", store_url, *args, "--json")
    assert shown.code in (0, 3), shown.err
    reason: str | None = shown.json()["reason"]
    return reason


def test_resolving_one_of_two_escalations_names_the_one_left(
    store_url: str, tmp_path: Path
) -> None:
    plan = plan_file(tmp_path, TWO_ESCALATIONS)
    ran = cli("--store", store_url, "run", plan, "--goal-id", "g", "--json")
    assert ran.code == 3, ran.err
    both = f"waiting for a human on fails ({FAILS}), unsure ({UNSURE})"
    assert ran.json()["reason"] == both
    # A second goal waiting on the same tasks: a rebuild folds both in one batch.
    other = cli("--store", store_url, "run", plan, "--goal-id", "other", "--json")
    assert other.code == 3, other.err

    left = f"waiting for a human on unsure ({UNSURE})"
    resolved = _reason(store_url, "resolve", "g", "fails", "--abandon", "--reason", "not needed",
                       "--by", "ann")
    assert resolved == left
    assert _reason(store_url, "status", "g") == left  # the read models agree
    assert cli("--store", store_url, "projections", "rebuild").code == 0
    assert _reason(store_url, "status", "g") == left  # not the other goal's escalations
    assert _reason(store_url, "status", "other") == other.json()["reason"]
    assert other.json()["reason"].startswith("waiting for a human on fails (")

    resolved = _reason(store_url, "resolve", "g", "unsure", "--output",
                       '{"text": "ok", "confidence": 0.9}', "--reason", "checked", "--by", "bo")
    assert resolved == RESOLVED_WAIT
    assert _reason(store_url, "status", "g") == RESOLVED_WAIT
    assert cli("--store", store_url, "projections", "rebuild").code == 0
    assert _reason(store_url, "status", "g") == RESOLVED_WAIT  # rebuilt from the events alike

    assert cli("--store", store_url, "resume", "g").code == 0
    assert _reason(store_url, "status", "g") == "every task finished"
    assert cli("--store", store_url, "replay", "g").code == 0


def test_an_answered_question_leaves_no_escalation_reason(
    store_url: str, tmp_path: Path
) -> None:
    plan = plan_file(tmp_path, gated_plan())
    ran = cli("--store", store_url, "run", plan, "--input", '{"question": "sales"}',
              "--goal-id", "g", "--json")
    assert ran.code == 3, ran.err
    assert ran.json()["reason"].startswith("waiting for a human on ask (attempt 1 asked")

    assert _reason(store_url, "answer", "g", "ask", "Q1 2026", "--by", "ann") == RESOLVED_WAIT
    assert _reason(store_url, "status", "g") == RESOLVED_WAIT

    assert cli("--store", store_url, "resume", "g").code == 3  # at the approval gate
    waiting = _reason(store_url, "status", "g")
    assert waiting is not None and waiting.startswith("waiting for a human on publish")
    approved = _reason(store_url, "resolve", "g", "publish", "--approve", "--reason", "ok")
    assert approved == RESOLVED_WAIT
    assert _reason(store_url, "status", "g") == RESOLVED_WAIT
    assert cli("--store", store_url, "replay", "g").code == 0


def test_a_recorded_history_folds_the_reason_that_is_true_at_each_event() -> None:
    """The golden `escalated` history: waiting on a and s; a human retries a (events 16-17)."""
    run = read_run(str(GOLDEN / "escalated.jsonl"))
    contracts = prepare_plan(run.plan).contracts
    suspended = replay(run.events, contracts, at=15).state
    assert suspended.reason is not None and suspended.reason.startswith("waiting for a human on a")
    after = replay(run.events, contracts, at=17).state
    assert after.status == "waiting"
    assert after.reason == f"waiting for a human on s ({after.tasks['s'].reason})"
    assert after.reason == "waiting for a human on s " + suspended.reason.split("), s ", 1)[1]
    assert replay(run.events, contracts).ok


def test_a_retry_that_escalates_again_names_the_task_again(
    store_url: str, tmp_path: Path
) -> None:
    """A human retries a map whose list is still not one: the map is escalated again while the
    goal waits, so the goal waits on it, not "a human resolved every escalation"."""
    plan = plan_file(tmp_path, NOT_A_LIST)
    ran = cli("--store", store_url, "run", plan, "--input", '{"items": "notalist"}',
              "--goal-id", "g", "--json")
    assert ran.code == 3, ran.err
    assert ran.json()["reason"].startswith("waiting for a human on m (")

    retried = _reason(store_url, "resolve", "g", "m", "--retry", "--reason", "try again")
    assert retried is not None and retried.startswith("waiting for a human on m ("), retried
    assert "map.not_a_list" in retried
    assert _reason(store_url, "resume", "g") == retried  # resumed, it still waits on m
    assert _reason(store_url, "status", "g") == retried  # the read models agree
    assert cli("--store", store_url, "projections", "rebuild").code == 0
    assert _reason(store_url, "status", "g") == retried  # rebuilt from the events alike
    assert cli("--store", store_url, "replay", "g").code == 0
