"""Hostile agent results: each is a recorded rejection with its reason, never a wedged goal,
a dead worker thread, a fake timeout or a hang; `--json` output stays valid JSON."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from baton.domain.replay import replay
from baton.store.eventstore import BatonStore
from tests.replay_support import contracts_of
from tests.support import events_of, plan, run, task

H = "tests.hostile_agents"


@pytest.fixture
def thread_deaths(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every exception that escapes a thread (the call pool's worker dying)."""
    died: list[str] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: died.append(repr(args.exc_value)))
    yield died


def one_task_plan(agent: str) -> dict[str, Any]:
    data = plan(
        task("t", agent, input={"text": "$goal.text"}, retry={"max_attempts": 1}),
        defaults={"timeout_s": None},  # a dead worker would hang the run forever
    )
    data["agents"] = {agent: f"{H}:{agent}"}
    return data


@pytest.mark.parametrize(
    ("agent", "reason"),
    [
        ("lone_surrogate", "at text: string 'a\\\\ud800b' is not valid Unicode"),
        ("surrogate_key", "key '\\\\udcff' is not valid Unicode"),
        ("nested_5000", "nested more than 100 levels deep"),
        ("async_nested_5000", "nested more than 100 levels deep"),
        ("items_raise", "output could not be read: RuntimeError: items() is broken"),
        ("huge_tokens", "tokens must be at most 1e+15, not a 401-digit number"),
        ("nan_confidence", "at confidence: nan is not a finite number"),
        ("nan_as_text", "at confidence: nan is not a finite number"),
        ("infinite_cost", "at usage.cost_usd: inf is not a finite number"),
        ("infinite_cost_pair", "cost_usd must be a finite number, not inf"),
    ],
)
def test_a_result_that_cannot_be_stored_is_a_recorded_rejection(
    store: BatonStore, thread_deaths: list[str], agent: str, reason: str
) -> None:
    goal = run(store, one_task_plan(agent), {"text": "hi"})
    assert goal.state.status == "failed"  # the goal moved on: not wedged, not hung
    rejected = events_of(store, goal.id, "OutputRejected")
    assert len(rejected) == 1 and reason in rejected[0].reason, rejected[0].reason
    assert not events_of(store, goal.id, "AgentTimedOut")  # never a fake timeout
    assert thread_deaths == []
    events = list(store.events(goal.id))
    assert replay(events, contracts_of(events)).divergence is None


def test_an_exception_message_with_a_lone_surrogate_is_recorded(
    store: BatonStore, thread_deaths: list[str]
) -> None:
    goal = run(store, one_task_plan("raises_surrogate"), {"text": "hi"})
    assert goal.state.status == "failed"
    raised = events_of(store, goal.id, "AgentRaised")
    assert raised[0].message == "bad \\ud800 byte"
    assert thread_deaths == []


def test_json_output_is_valid_json_even_for_a_nan_recorded_earlier(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from baton.cli.render import print_json

    print_json({"output": {"total": float("nan"), "cost_usd": float("inf")}, "n": [1.5]})
    assert json.loads(capsys.readouterr().out) == {
        "output": {"total": None, "cost_usd": None}, "n": [1.5]}
