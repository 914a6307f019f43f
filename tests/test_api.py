"""The Python API (`import baton`): goals run, resolved, cancelled and debugged from plain code,
with the documented errors, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import baton
from baton import projections
from baton.readmodels.reading import read
from baton.runtime.service import start_goal
from baton.store.eventstore import open_store
from tests import agents
from tests.cli_support import ROOT


@pytest.fixture(autouse=True)
def _reset_agents() -> Iterator[None]:
    agents.CALLS.clear()
    yield



# Agents defined here, passed to load_plan as callables (no module path in the plan).


class Words(BaseModel):
    text: str


class Count(BaseModel):
    words: int


def split_count(inp: Words) -> Count:
    return Count(words=len(inp.text.split()))


def double(inp: Count) -> Count:
    return Count(words=inp.words * 2)


def refuses(inp: Count) -> Count:
    agents.CALLS["refuses"] += 1
    raise RuntimeError("the doubling service is down")


def _counting_plan(**second: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "name": "count",
        "tasks": [
            {"id": "count", "agent": "count", "input": {"text": "$goal.text"}},
            {"id": "double", "agent": "double", "input": {"words": "$count.words"}, **second},
        ],
        "output": "$double",
    }


def _escalating_plan() -> dict[str, Any]:
    data = _counting_plan(on_failure="escalate", retry={"max_attempts": 1})
    return data


def test_a_plan_given_as_a_dict_with_callables_runs_to_completion(bt: baton.Baton) -> None:
    plan = baton.load_plan(_counting_plan(), agents={"count": split_count, "double": double})
    result = bt.run(plan, {"text": "one two three"})
    assert result.status == "completed" and result.ok
    assert result.output == {"words": 6}
    assert {tid: (task.status, task.attempts) for tid, task in result.tasks.items()} == {
        "count": ("succeeded", 1), "double": ("succeeded", 1),
    }
    # The goal records where each callable lives, so `baton resume` finds it in any process.
    assert plan.plan.agents == {"count": "tests.test_api:split_count",
                                "double": "tests.test_api:double"}
    assert result.to_json() == bt.status(result.goal_id).to_json()


@pytest.mark.parametrize("goal_id", ["", " ", "a\x00b", ".", "..", "é" * 1001])
def test_a_goal_id_that_cannot_be_one_is_refused_not_replaced(
    bt: baton.Baton, goal_id: str
) -> None:
    plan = baton.load_plan(_counting_plan(), agents={"count": split_count, "double": double})
    for start in (bt.run, bt.submit):
        with pytest.raises(baton.BatonError, match=r"goal id .* cannot"):
            start(plan, {"text": "a"}, goal_id=goal_id)
    assert bt.status() == []  # nothing stored


def test_the_read_models_are_current_after_every_writing_method(bt: baton.Baton) -> None:
    plan = baton.load_plan(_escalating_plan(), agents={"count": split_count,
                                                       "double": refuses})
    goal_id = bt.run(plan, {"text": "a b"}).goal_id

    def summary() -> tuple[str, str]:  # straight from the tables, without a catch-up
        with read(bt.store) as models:
            goal, tasks = models.goal_with_tasks(goal_id)
            return goal["status"], {row["task_id"]: row["status"] for row in tasks}["double"]

    assert summary() == ("waiting", "escalated")
    bt.resolve(goal_id, "double", "output", output=Count(words=9), reason="counted by hand")
    bt.resume(goal_id)
    assert summary() == ("completed", "succeeded")


def test_status_in_a_loop_opens_the_read_models_once_and_sees_other_writers(
    bt: baton.Baton, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A service that polls `status` keeps one pool of read-model connections, and still sees
    what another process wrote (each call catches up first)."""
    opened: list[int] = []
    open_views = projections.open_views

    def counted(*args: Any, **kwargs: Any) -> Any:
        opened.append(1)
        return open_views(*args, **kwargs)

    monkeypatch.setattr(projections, "open_views", counted)
    plan = baton.load_plan(_counting_plan(), agents={"count": split_count, "double": double})
    goal_id = bt.run(plan, {"text": "a b"}).goal_id
    for _ in range(5):
        assert bt.status(goal_id).status == "completed"
    other = open_store(store_url)  # another writer, which leaves the read models behind
    try:
        written = start_goal(other, plan, {"text": "a b c"}).id
    finally:
        other.close()
    assert bt.status(written).output == {"words": 6}
    assert {summary.goal_id for summary in bt.status()} == {goal_id, written}
    assert len(opened) == 1


def test_a_closed_client_opens_afresh_and_kept_read_models_stay_closed(
    bt: baton.Baton,
) -> None:
    """After `close()`, the next call opens the store and its read models again, together;
    read models closed with their owner refuse to open a pool nothing would close."""
    from baton.readmodels.reading import KeptReadModels

    plan = baton.load_plan(_counting_plan(), agents={"count": split_count, "double": double})
    goal_id = bt.run(plan, {"text": "a b"}).goal_id
    first = bt._read_models
    bt.close()
    assert bt.status(goal_id).status == "completed"
    assert bt._read_models is not first and bt._read_models.store is bt.store
    kept = KeptReadModels(bt.store)
    with kept.read() as models:
        assert models.behind().events == 0
    kept.close()
    with pytest.raises(RuntimeError, match="closed with their owner"), kept.read():
        pass


def test_a_plan_file_runs_from_a_path(bt: baton.Baton) -> None:
    trip = json.loads(Path("examples/travel/trip.json").read_text())
    result = bt.run("examples/travel/plan.yaml", trip, goal_id="trip-1")
    assert (result.goal_id, result.status) == ("trip-1", "completed")
    assert [goal.goal_id for goal in bt.status()] == ["trip-1"]


def test_a_plan_built_as_pydantic_models_runs(bt: baton.Baton) -> None:
    plan = baton.Plan(
        version=1,
        name="models",
        agents={"upper": "tests.agents:upper"},
        tasks=[baton.TaskSpec(id="up", agent="upper", input={"text": "$goal.text"})],
        output="$up",
    )
    result = bt.run(baton.load_plan(plan), agents.Text(text="shout"))
    assert result.output == {"text": "SHOUT"}


def test_agents_given_to_load_plan_replace_the_plans_own(bt: baton.Baton) -> None:
    data = _counting_plan() | {"agents": {"count": "tests.agents:upper", "double": "os:system"}}
    plan = baton.load_plan(data, agents={"count": split_count, "double": double})
    assert bt.run(plan, {"text": "x y"}).output == {"words": 4}


def test_resolve_and_resume_from_code(bt: baton.Baton) -> None:
    plan = baton.load_plan(_escalating_plan(), agents={"count": split_count,
                                                       "double": refuses})
    waiting = bt.run(plan, {"text": "a b c"})
    assert waiting.status == "waiting" and waiting.tasks["double"].status == "escalated"
    retried = bt.resolve(waiting.goal_id, "double", "retry", reason="try once more", by="ana")
    assert retried.tasks["double"].status != "escalated"
    again = bt.resume(waiting.goal_id)
    assert again.status == "waiting" and again.tasks["double"].attempts == 2
    resolved = bt.resolve(waiting.goal_id, "double", "output", output={"words": 6},
                          reason="counted by hand", by="ana")
    done = bt.resume(resolved.goal_id)
    assert (done.status, done.output) == ("completed", {"words": 6})
    resolutions = [d for d in bt.audit(done.goal_id)["decisions"] if d["kind"] == "OutputAccepted"]
    assert resolutions, "the human's output is an accepted output in the audit trail"


def test_cancel_from_code(bt: baton.Baton) -> None:
    plan = baton.load_plan(_escalating_plan(), agents={"count": split_count,
                                                       "double": refuses})
    goal_id = bt.run(plan, {"text": "a"}).goal_id
    cancelled = bt.cancel(goal_id, reason="not needed", by="ana")
    assert cancelled.status == "cancelled"
    assert bt.status(goal_id).status == "cancelled"
    with pytest.raises(baton.CommandError, match="already ended"):
        bt.cancel(goal_id, reason="twice")


def test_submit_stores_the_goal_and_resume_drives_it(bt: baton.Baton) -> None:
    plan = baton.load_plan(_counting_plan(), agents={"count": split_count, "double": double})
    goal_id = bt.submit(plan, {"text": "a b"}, goal_id="later")
    assert goal_id == "later" and bt.status(goal_id).status == "running"
    assert agents.CALLS == {} and bt.resume(goal_id).output == {"words": 4}


def test_export_import_replay_and_fork(bt: baton.Baton, tmp_path: Path) -> None:
    plan = baton.load_plan(_counting_plan(), agents={"count": split_count, "double": double})
    result = bt.run(plan, {"text": "a b c"})
    assert bt.replay(result.goal_id).ok and bt.replay(result.goal_id, reexecute=True).ok
    assert bt.replay(result.goal_id, at=2).to_json()["events"] == 2
    written = bt.export_run(result.goal_id, tmp_path / "run.jsonl")
    with baton.Baton(f"sqlite:///{tmp_path}/other.db") as other:
        assert other.import_run(tmp_path / "run.jsonl") == result.goal_id
        assert other.status(result.goal_id).output == {"words": 6}
        assert other.replay(tmp_path / "run.jsonl").events == written
    forked = bt.fork(result.goal_id, at=3, goal_id="again", run=True)
    assert (forked.goal_id, forked.status, forked.output) == ("again", "completed", {"words": 6})


# --- the documented errors ---


def test_a_cancel_or_resolve_without_a_reason_records_nothing(bt: baton.Baton) -> None:
    plan = baton.load_plan(_escalating_plan(), agents={"count": split_count, "double": refuses})
    waiting = bt.run(plan, {"text": "a"})
    with pytest.raises(baton.CommandError, match="a reason is required"):
        bt.cancel(waiting.goal_id, reason=None)  # type: ignore[arg-type]
    with pytest.raises(baton.CommandError, match="a reason is required"):
        bt.resolve(waiting.goal_id, "double", "abandon", reason=" ")
    assert bt.status(waiting.goal_id).status == "waiting"


def test_a_humans_output_is_recorded_as_its_contract_reads_it(bt: baton.Baton) -> None:
    plan = baton.load_plan(_escalating_plan(), agents={"count": split_count, "double": refuses})
    waiting = bt.run(plan, {"text": "a"})
    bt.resolve(waiting.goal_id, "double", "output", output={"words": "9"}, reason="by hand")
    [resolved] = [e for e in bt.store.events(waiting.goal_id)
                  if type(e).__name__ == "HumanResolved"]
    assert resolved.output == {"words": 9}  # what downstream tasks and replay read
    assert bt.resume(waiting.goal_id).output == {"words": 9}


def test_an_agent_defined_in_the_script_being_run_is_refused(tmp_path: Path) -> None:
    """A worker or `baton resume` runs another `__main__`: the recorded path would not import."""
    script = tmp_path / "script.py"
    script.write_text(
        "import baton\n"
        "from tests.test_api import Count, Words\n"
        "def local(inp: Words) -> Count:\n"
        "    return Count(words=1)\n"
        "try:\n"
        "    baton.load_plan({'version': 1, 'name': 'm', 'agents': {},\n"
        "                     'tasks': [{'id': 'a', 'agent': 'e', 'input': {'text': 'x'}}]},\n"
        "                    agents={'e': local})\n"
        "except baton.PlanError as exc:\n"
        "    print(exc)\n"
    )
    shown = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                           cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    assert "agents.e: __main__:local is defined in the script being run" in shown.stdout


def test_every_error_has_one_root_and_says_what_and_where(bt: baton.Baton) -> None:
    callables = {"count": split_count, "double": double}
    with pytest.raises(baton.PlanError, match=r"tasks\[double\]") as bad_ref:
        baton.load_plan(_counting_plan(input={"words": "$count.nope"}), agents=callables)
    assert bad_ref.value.issues
    with pytest.raises(baton.PlanError, match=r"agents\.double: .*import back"):
        baton.load_plan(_counting_plan(), agents={"count": split_count,
                                                  "double": lambda inp: inp})
    with pytest.raises(baton.PlanError, match=r"(?i)no such file"):
        baton.load_plan("does/not/exist.yaml")
    with pytest.raises(baton.PlanError, match=r"agents: expected a mapping .* not list"):
        baton.load_plan(_counting_plan(), agents=["count", "double"])  # type: ignore[arg-type]
    with pytest.raises(baton.BatonError, match=r"goal id 5: expected a string, not int"):
        bt.submit(baton.load_plan(_counting_plan(), agents=callables), {"text": "a"},
                  goal_id=5)  # type: ignore[arg-type]
    with pytest.raises(baton.StoreError, match=r"store URL: expected a string"):
        baton.Baton(42)  # type: ignore[arg-type]
    with pytest.raises(baton.InputError, match="passengers"):
        bt.run("examples/travel/plan.yaml", {"origin": "LHR", "destination": "Lisbon"})
    assert baton.InputError is baton.domain.errors.GoalInputError  # the old name still imports
    with pytest.raises(baton.GoalNotFound, match="nope"):
        bt.resume("nope")
    with pytest.raises(baton.GoalNotFound):
        bt.status("nope")
    plan = baton.load_plan(_counting_plan(), agents=callables)
    done = bt.run(plan, {"text": "a"}, goal_id="g")
    with pytest.raises(baton.CommandError, match="already exists"):
        bt.run(plan, {"text": "a"}, goal_id="g")
    with pytest.raises(baton.CommandError, match="not escalated"):
        bt.resolve(done.goal_id, "double", "retry", reason="r")
    with pytest.raises(baton.CommandError, match="not escalated"):
        bt.resolve(done.goal_id, "double", "approve", reason="r")
    with pytest.raises(baton.CommandError, match="expected one of"):
        bt.resolve(done.goal_id, "double", "approved", reason="r")
    with pytest.raises(baton.CommandError, match="concurrency"):
        bt.run(plan, {"text": "a"}, concurrency=0)
    with pytest.raises(baton.StoreError, match="unsupported scheme"):
        baton.Baton("mysql://db/x").open()
    with pytest.raises(baton.RunFileError):
        bt.import_run(Path("README.md"))
    for error in (baton.PlanError, baton.InputError, baton.GoalNotFound, baton.GoalOwned,
                  baton.StoreError, baton.CommandError, baton.RunFileError):
        assert issubclass(error, baton.BatonError)
    assert [goal.goal_id for goal in bt.status()] == ["g"]  # nothing stored by the failures


def test_arguments_of_the_wrong_type_raise_batons_own_errors_and_record_nothing(
    bt: baton.Baton, tmp_path: Path
) -> None:
    """They raised TypeError from deep inside (`'<=' not supported between 'int' and 'str'`,
    `expected str, bytes or os.PathLike object`), or were recorded as they were (`by=5`:
    "cancelled by 5")."""
    plan = baton.load_plan(_escalating_plan(), agents={"count": split_count, "double": refuses})
    waiting = bt.run(plan, {"text": "a"}, goal_id="w")
    events = len(bt.store.events("w"))
    for at in ("2", 2.0, True):
        with pytest.raises(baton.BatonError, match=r"^at .*: expected a whole number of events"):
            bt.fork("w", at=at)  # type: ignore[arg-type]
        with pytest.raises(baton.BatonError, match=r"^at .*: expected a whole number of events"):
            bt.replay("w", at=at)  # type: ignore[arg-type]
    with pytest.raises(baton.CommandError, match=r"5: expected a goal id or a run file path"):
        bt.audit(5)  # type: ignore[arg-type]
    with pytest.raises(baton.CommandError, match=r"None: expected a run file path, not NoneType"):
        bt.import_run(None)  # type: ignore[arg-type]
    with pytest.raises(baton.CommandError, match=r"by 5: expected a name"):
        bt.cancel("w", reason="r", by=5)  # type: ignore[arg-type]
    with pytest.raises(baton.CommandError, match=r"by \['ana'\]: expected a name"):
        bt.resolve("w", "double", "abandon", reason="r", by=["ana"])  # type: ignore[arg-type]
    with pytest.raises(baton.CommandError, match=r"answer 5: expected text, not int"):
        bt.answer("w", "double", 5)  # type: ignore[arg-type]
    assert len(bt.store.events("w")) == events
    assert bt.status(waiting.goal_id).status == "waiting"
    assert [goal.goal_id for goal in bt.status()] == ["w"]  # no fork stored


def test_status_names_the_process_that_drives_the_goal(bt: baton.Baton, store_url: str) -> None:
    """As `status GOAL --json` does: a worker's goal seen from code said nothing of who drove
    it (`GoalResult` had no owner)."""
    import socket

    from baton.store.ownership import owning

    plan = baton.load_plan(_counting_plan(), agents={"count": split_count, "double": double})
    goal_id = bt.submit(plan, {"text": "a b"})
    assert bt.status(goal_id).owner is None
    driver = open_store(store_url)  # another process's store, holding the goal's lock
    try:
        with owning(driver, goal_id):
            owner = bt.status(goal_id).owner
            assert owner is not None
            assert (owner["pid"], owner["alive"]) == (os.getpid(), True)
            assert owner["host"] and socket.gethostname().startswith(owner["host"])
    finally:
        driver.close()
    assert bt.status(goal_id).owner is None
    assert "owner" not in bt.status(goal_id).to_json()  # the run --json shape, unchanged


def test_the_public_names_are_exactly_all() -> None:
    for name in baton.__all__:
        assert getattr(baton, name) is not None
    assert {"load_plan", "Baton", "AsyncBaton", "BatonError", "PlanError", "InputError",
            "GoalNotFound", "GoalOwned", "StoreError", "GoalResult"} <= set(baton.__all__)


def test_the_default_store_is_baton_store_then_baton_db(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BATON_STORE", raising=False)
    assert baton.Baton().url == "sqlite:///baton.db"
    monkeypatch.setenv("BATON_STORE", f"sqlite:///{tmp_path}/env.db")
    with baton.Baton() as bt:
        bt.run(baton.load_plan(_counting_plan(), agents={"count": split_count,
                                                         "double": double}), {"text": "a"})
    store = open_store(f"sqlite:///{tmp_path}/env.db")
    try:
        assert len(list(store.app.recorder.select_notifications(1, 100))) > 0
    finally:
        store.close()
