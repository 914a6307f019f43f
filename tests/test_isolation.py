"""`isolation: process`: a sync agent's timeout ends its process, so its side effect never lands."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.support import events_of, plan, run, task


def _plan(
    agent: str, directory: Path, *, sleep_s: float, isolation: str = "process",
    timeout_s: float = 5.0,
) -> dict:
    # The timeout covers the worker's start too (the fork server's first start on a loaded
    # machine takes a second or more): generous here, and far below the agent's sleep.
    return plan(
        task("work", agent, input={"directory": str(directory), "sleep_s": sleep_s},
             isolation=isolation, timeout_s=timeout_s, retry={"max_attempts": 1}),
        agents=[agent],
    ) | {"agents": {agent: f"tests.llm_models:{agent}"}}


def _wait_until(condition, timeout_s: float = 30) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_process_isolated_agent_that_times_out_never_writes_its_side_effect(
    sqlite_url, tmp_path
) -> None:
    from baton.store.eventstore import open_store

    store = open_store(sqlite_url)
    try:
        goal = run(store, _plan("sleeps_then_writes", tmp_path, sleep_s=60.0))
        assert goal.state.status == "failed"
        [timed_out] = events_of(store, goal.id, "AgentTimedOut")
        assert timed_out.attempt == 1
    finally:
        store.close()
    pid = int((tmp_path / "pid").read_text())  # the agent ran, in a process of its own
    assert pid != os.getpid()
    # Once that process is gone it can never write; it must be gone without waiting its sleep.
    assert _wait_until(lambda: _gone(pid), timeout_s=3.0)
    assert not (tmp_path / "side-effect").exists()


def test_a_process_isolated_agent_returns_its_output_from_the_worker_process(
    sqlite_url, tmp_path
) -> None:
    from baton.store.eventstore import open_store

    store = open_store(sqlite_url)
    try:
        goal = run(store, _plan("writes_at_once", tmp_path, sleep_s=0, timeout_s=30))
    finally:
        store.close()
    assert goal.state.status == "completed"
    pid = (tmp_path / "side-effect").read_text()
    assert goal.state.tasks["work"].output == {"wrote": pid}
    assert int(pid) != os.getpid()


def test_a_thread_isolated_agent_that_times_out_keeps_running_which_is_why_process_exists(
    sqlite_url, tmp_path
) -> None:
    from baton.store.eventstore import open_store

    store = open_store(sqlite_url)
    try:
        goal = run(store, _plan("sleeps_then_writes", tmp_path, sleep_s=1.5, isolation="thread",
                                timeout_s=0.5))
    finally:
        store.close()
    assert goal.state.status == "failed"
    assert _wait_until(lambda: (tmp_path / "side-effect").exists(), timeout_s=10)


def test_process_isolation_of_an_async_agent_is_a_plan_error() -> None:
    import pytest

    from baton.domain.errors import PlanError
    from baton.runtime.loading import prepare_plan

    data = plan(task("t", "async_upper", input={"text": "x"}, isolation="process"))
    with pytest.raises(PlanError, match=r"tasks\[t\]\.isolation: process isolation is for sync"):
        prepare_plan(data)
