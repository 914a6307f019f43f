"""Goals of every shape for the replay tests, and a way to see their states as they ran."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from baton.domain.goal import Goal, GoalEvent
from baton.domain.history import state_summary
from baton.domain.replay import ReplayResult, replay
from baton.runtime.loading import prepare_plan
from baton.runtime.service import answer_task, cancel_goal, resolve_task, resume_goal
from baton.store.eventstore import BatonStore
from tests.support import plan, run, task


@contextmanager
def decided_under(rules: int) -> Iterator[None]:
    """Goals started inside are decided under decision rules `rules` (`Goal.start`'s default
    is today's RULES): histories as an earlier release recorded them."""
    defaults = Goal.start.__func__.__kwdefaults__  # type: ignore[attr-defined]
    today = defaults["rules"]
    defaults["rules"] = rules
    try:
        yield
    finally:
        defaults["rules"] = today


def contracts_of(events: Any) -> Any:
    return prepare_plan(events[0].plan).contracts


def replayed(store: BatonStore, goal_id: str, **kwargs: Any) -> ReplayResult:
    events = list(store.events(goal_id))
    return replay(events, contracts_of(events), **kwargs)


def seq_of(events: list[GoalEvent], kind: str, nth: int = 0) -> int:
    return [e.originator_version for e in events if type(e).__name__ == kind][nth]


def completed(store: BatonStore, goal_id: str = "completed") -> Goal:
    data = plan(task("a", "upper", input={"text": "$goal.text"}),
                task("b", "exclaim", input={"text": "$a.text"}),
                task("c", "join", input={"left": "$a.text", "right": "$b.text"}))
    return run(store, data, {"text": "hi"}, goal_id=goal_id)


def retried(store: BatonStore, goal_id: str = "retried") -> Goal:
    """A first attempt fails; the retry waits out a real (tiny) backoff: a ClockTicked."""
    data = plan(task("a", "flaky", input={"text": "$goal.text"},
                     retry={"max_attempts": 3, "backoff_s": 0.02}),
                task("b", "upper", input={"text": "$a.text"}))
    return run(store, data, {"text": "retried"}, goal_id=goal_id)


def failed(store: BatonStore, goal_id: str = "failed") -> Goal:
    data = plan(task("a", "always_fails", input={"text": "$goal.text"},
                     retry={"max_attempts": 2, "backoff_s": 0}),
                task("b", "upper", input={"text": "$a.text"}))
    return run(store, data, {"text": "x"}, goal_id=goal_id)


def escalated(store: BatonStore, goal_id: str = "escalated") -> Goal:
    """Escalated twice (a failure, a low confidence), resolved by humans, resumed, completed."""
    data = plan(
        task("a", "always_fails", input={"text": "$goal.text"}, on_failure="escalate",
             retry={"max_attempts": 2, "backoff_s": 0}),
        task("s", "scored", input={"text": "$goal.score"}, min_confidence=0.7,
             on_low_confidence="escalate"),
        task("b", "upper", input={"text": "$a.text"}),
    )
    goal = run(store, data, {"text": "x", "score": "low@0.4"}, goal_id=goal_id)
    assert goal.state.status == "waiting"
    resolve_task(store, goal.id, "a", action="retry", reason="one more go", by="ana")
    goal = resume_goal(store, goal.id)
    assert goal.state.status == "waiting"  # failed again, escalated again
    resolve_task(store, goal.id, "a", action="output", reason="typed by hand", by="ana",
                 output={"text": "manual"})
    resolve_task(store, goal.id, "s", action="output", reason="checked", by="bo",
                 output={"text": "ok", "confidence": 0.9})
    return resume_goal(store, goal.id)


def abandoned_then_cancelled(store: BatonStore, goal_id: str = "cancelled") -> Goal:
    data = plan(
        task("a", "always_fails", input={"text": "$goal.text"}, on_failure="abandon",
             retry={"max_attempts": 1}),
        task("b", "upper", input={"text": "$a.text"}),
        task("c", "always_fails", input={"text": "$goal.text"}, on_failure="escalate",
             retry={"max_attempts": 1}),
    )
    goal = run(store, data, {"text": "x"}, goal_id=goal_id)
    assert goal.state.status == "waiting"
    return cancel_goal(store, goal.id, reason="no longer needed", by="ops")


def gated(store: BatonStore, goal_id: str = "gated") -> Goal:
    """A question answered, an approval granted, another refused, and an agent told why its
    first attempt was refused (its attempt context, recorded with the dispatch)."""
    from tests.gate_agents import reset

    reset()
    agents_ = "tests.gate_agents"
    data = {
        "version": 1, "name": "gated", "input": f"{agents_}:Question",
        "agents": {name: f"{agents_}:{name}"
                   for name in ("ask_once", "write", "publish", "picky")},
        "tasks": [
            {"id": "ask", "agent": "ask_once", "input": {"question": "$goal.question"}},
            {"id": "draft", "agent": "write", "input": {"question": "$ask.text"}},
            {"id": "publish", "agent": "publish", "input": {"text": "$draft.text"},
             "side_effects": "unsafe", "approval": "required"},
            {"id": "again", "agent": "publish", "input": {"text": "$draft.text"},
             "approval": "required"},
            {"id": "polish", "agent": "picky", "input": {"text": "$draft.text"},
             "retry": {"backoff_s": 0, "jitter": 0}},
        ],
        "output": "$publish",
    }
    goal = run(store, data, {"question": "sales"}, goal_id=goal_id)
    answer_task(store, goal.id, "ask", answer="Q1 2026", by="ana")
    resume_goal(store, goal.id)
    resolve_task(store, goal.id, "publish", action="approve", reason="reviewed", by="bo")
    resolve_task(store, goal.id, "again", action="reject", reason="once is enough", by="bo")
    return resume_goal(store, goal.id)


SHAPES = {
    "completed": completed,
    "retried": retried,
    "failed": failed,
    "escalated": escalated,
    "cancelled": abandoned_then_cancelled,
    "gated": gated,
}


@contextmanager
def states_as_they_ran() -> Iterator[dict[tuple[str, int], dict[str, Any]]]:
    """(goal id, version) -> state summary, taken from the live aggregate after every event."""
    seen: dict[tuple[str, int], dict[str, Any]] = {}
    original = Goal._trigger  # every event Goal records goes through it

    def capture(self: Goal, *args: Any, **kwargs: Any) -> None:
        seen.setdefault((self.id, self.version), state_summary(self.state))  # before: Started
        original(self, *args, **kwargs)
        seen[(self.id, self.version)] = state_summary(self.state)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Goal, "_trigger", capture)
        yield seen
