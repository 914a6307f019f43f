"""A store holding the goals the web tests look at: completed, failed, waiting, with a secret."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from baton.runtime.loading import load_plan_file
from baton.runtime.runner import Runner
from baton.runtime.service import start_goal
from baton.store.eventstore import BatonStore, open_store
from tests import gate_agents
from tests.replay_agents import SECRET
from tests.support import load, plan, run, task

BERLIN = {"origin": "LHR", "destination": "Berlin", "passengers": 2}
LISBON = {"origin": "LHR", "destination": "Lisbon", "passengers": 2, "max_price": 150}


@pytest.fixture(name="store")
def gated_store(store_url: str) -> Iterator[BatonStore]:
    """The test's store, the gate agents' memory of approvals reset (import it as `store`)."""
    gate_agents.reset()
    opened = open_store(store_url)
    yield opened
    opened.close()


def form_key(page: str) -> str:
    """The key a page's forms carry (a form posted without it is refused)."""
    found = re.search(r'name="form_key" value="([^"]+)"', page)
    assert found, "the page has no form"
    return found.group(1)


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
