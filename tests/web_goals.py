"""A store holding the goals the web tests look at: completed, failed, waiting, with a secret."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from baton.runtime.loading import load_plan_file
from baton.runtime.runner import Runner
from baton.runtime.service import start_goal
from baton.store.eventstore import BatonStore
from tests.replay_agents import SECRET
from tests.support import load, plan, run, task

BERLIN = {"origin": "LHR", "destination": "Berlin", "passengers": 2}
LISBON = {"origin": "LHR", "destination": "Lisbon", "passengers": 2, "max_price": 150}


def failing_plan() -> dict[str, Any]:
    return plan(task("a", "always_fails", input={"text": "$goal.text"},
                     retry={"max_attempts": 2, "backoff_s": 0}),
                task("b", "upper", input={"text": "$a.text"}), name="failing")


def escalating_plan() -> dict[str, Any]:
    """`a` fails once and waits for a human; `b` runs on what the human gives."""
    return plan(task("a", "always_fails", input={"text": "$goal.text"},
                     retry={"max_attempts": 1}, on_failure="escalate"),
                task("b", "upper", input={"text": "$a.text"}), name="escalating")


def secret_plan() -> dict[str, Any]:
    return {
        "version": 1, "name": "secrets", "input": "tests.replay_agents:Login",
        "agents": {"login_dict": "tests.replay_agents:login_dict",
                   "use_session": "tests.replay_agents:use_session"},
        "tasks": [
            {"id": "login", "agent": "login_dict",
             "input": {"user": "$goal.user", "api_key": "$goal.api_key"}},
            {"id": "use", "agent": "use_session",
             "input": {"user": "$login.user", "token": "$login.token"}},
        ],
    }


def fill(store: BatonStore) -> None:
    """done (completed), broken (failed), berlin (waiting), human (waiting), secret."""
    travel = load_plan_file("examples/travel/plan.yaml")
    start_goal(store, travel, LISBON, goal_id="done")
    start_goal(store, travel, BERLIN, goal_id="berlin")
    run(store, failing_plan(), {"text": "x"}, goal_id="broken")
    run(store, escalating_plan(), {"text": "x"}, goal_id="human")
    run(store, secret_plan(), {"user": "ada", "api_key": SECRET}, goal_id="secret")


def upper_plan(name: str) -> dict[str, Any]:
    """One task that completes: a goal of plan `name`, completed."""
    return plan(task("a", "upper", input={"text": "$goal.text"}), name=name)


def run_at(store: BatonStore, data: dict[str, Any], goal_id: str, when: datetime) -> None:
    """Run a goal whose every event happens at `when` (its runner's clock), in `when`'s zone."""
    loaded = load(data)
    start_goal(store, loaded, {"text": "x"}, goal_id=goal_id,
               runner=Runner(store=store, loaded=loaded, clock=lambda: when))
