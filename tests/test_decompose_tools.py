"""Every debugging tool covers decomposition: audit shows the fragment and why it was accepted
or rejected; what-if under a changed `max_tasks` or allowlist; fork, export and import reproduce
the added tasks; the read models, `status` and `graph` show them and who added them; traces and
the web view take their ids. SQLite and PostgreSQL where a store is involved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from baton.domain.whatif import what_if
from baton.history.runfile import read_run
from baton.runtime.loading import prepare_plan
from baton.store.eventstore import BatonStore
from tests.cli_support import baton
from tests.support import projected

GOLDEN = Path(__file__).parent / "golden"
ROOT = Path(__file__).resolve().parents[1]
RESEARCH = str(ROOT / "examples/research/plan.yaml")
QUESTION = (ROOT / "examples/research/question.json").read_text()


def run_research(store_url: str, goal_id: str, *options: str) -> Any:
    """Run the research example up to its approval gate, approve the publish, resume."""
    waiting = baton("run", RESEARCH, "--input", QUESTION, "--goal-id", goal_id, *options,
                    store=store_url)
    assert waiting.code == 3, waiting.err  # publish has `approval: required`
    approved = baton("resolve", goal_id, "publish", "--approve", "--reason", "read it",
                     store=store_url)
    assert approved.code == 0, approved.err
    return baton("resume", goal_id, "--json", store=store_url)


def research_data(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(Path(RESEARCH).read_text())
    data.update(changes)
    return data


def test_what_if_a_smaller_max_tasks_or_allowlist_rejects_what_the_recording_accepted() -> None:
    run = read_run(str(GOLDEN / "research.jsonl"))
    same = prepare_plan(run.plan)
    assert what_if(run.events, same.plan, same.contracts).ok
    # max_tasks 3: the fragment's task fits, the map of three more does not
    small = prepare_plan(research_data(limits={"max_tasks": 3}))
    result = what_if(run.events, small.plan, small.contracts)
    first = result.differences[0]
    assert "MapExpanded" in [d["kind"] for d in first.recorded]
    failed = next(d for d in first.whatif if d["kind"] == "TaskFailed")
    assert (failed["task"], failed["rule"]) == ("search", "on_failure.fail")
    assert "limits.max_tasks: 3 more tasks would make 4" in failed["error"]
    assert first.whatif[-1]["kind"] == "GoalFailed"
    # may_use without summarise: the recorded fragment is rejected and the planner retried
    data = research_data()
    data["tasks"][0]["expands"]["may_use"] = ["search"]
    narrow = prepare_plan(data)
    result = what_if(run.events, narrow.plan, narrow.contracts)
    first = result.differences[0]
    assert first.recorded[0]["kind"] == "PlanExtended"
    assert [d["kind"] for d in first.whatif] == ["OutputRejected", "RetryScheduled"]
    assert "not in tasks[plan].expands.may_use (search)" in first.whatif[0]["errors"][0]
    assert result.stopped is not None  # the recording has no second plan attempt


def test_audit_shows_the_fragment_and_why(store_url: str) -> None:
    imported = baton("import", str(GOLDEN / "decomposed.jsonl"), store=store_url)
    assert imported.code == 0, imported.err
    audit = baton("audit", "decomposed", "--json", store=store_url).json()
    by_kind = {d["kind"]: d for d in reversed(audit["decisions"])}
    rejected, extended = by_kind["OutputRejected"], by_kind["PlanExtended"]
    assert rejected["rule"] == "expands.check"
    assert "not in tasks[plan].expands.may_use (upper)" in rejected["errors"][0]
    assert extended["fragment"]["tasks"][0]["agent"] == "upper"
    assert extended["added"] == ["plan/a"] and "contract types" in extended["checks"]
    assert by_kind["MapExpanded"]["reason"] == "$plan.items holds 3 elements: each[0] .. each[2]"
    text = baton("audit", "decomposed", store=store_url).out
    assert "PlanExtended plan" in text and "fragment of 1 tasks (plan/a)" in text
    one = baton("audit", "decomposed", "--task", "each[1]", "--json", store=store_url)
    assert one.code == 0, one.err
    assert {d["task"] for d in one.json()["decisions"]} == {"each[1]"}
    none = baton("audit", "decomposed", "--task", "each[3]", store=store_url)
    assert none.code == 2  # the tasks the run added are named among the goal's
    assert none.err.strip().endswith(
        "goal decomposed has no such task (plan, each, all, plan/a, each[0], each[1], each[2])"
    ), none.err


def test_fork_export_and_import_reproduce_added_tasks(store_url: str, tmp_path: Path) -> None:
    ran = run_research(store_url, "r", "--concurrency", "1")
    assert ran.code == 0, ran.err
    expected = ran.json()
    out = tmp_path / "r.jsonl"
    assert baton("export", "r", "-o", str(out), store=store_url).code == 0
    other = f"sqlite:///{tmp_path}/other.db"
    assert baton("import", str(out), store=other).code == 0
    again = baton("status", "r", "--json", store=other).json()
    assert again["tasks"] == expected["tasks"] and again["output"] == expected["output"]
    assert baton("replay", "r", "--json", store=other).json()["ok"]
    events = read_run(str(out)).events
    kinds = [type(e).__name__ for e in events]
    for at in (kinds.index("PlanExtended") + 1, kinds.index("MapExpanded") + 2):
        forked = baton("fork", "r", "--at", str(at), "--json", store=store_url)
        assert forked.code == 0, forked.err
        fork_id = forked.json()["goal_id"]
        waiting = baton("resume", fork_id, store=store_url)
        assert waiting.code == 3, waiting.err  # the fork asks for its own approval
        assert baton("resolve", fork_id, "publish", "--approve", "--reason", "ok",
                     store=store_url).code == 0
        resumed = baton("resume", fork_id, "--json", store=store_url)
        assert resumed.code == 0, resumed.err
        assert resumed.json()["output"] == expected["output"]
        assert set(resumed.json()["tasks"]) == set(expected["tasks"])


def test_read_models_status_and_graph_show_added_tasks(store: BatonStore,
                                                       store_url: str) -> None:
    ran = run_research(store_url, "r")
    assert ran.code == 0, ran.err
    summary, tasks = projected(store, lambda models: models.goal_with_tasks("r"))
    rows = {row["task_id"]: row for row in tasks}
    assert rows["plan/scope"]["agent"] == "summarise"
    assert [rows[f"search[{i}]"]["status"] for i in range(3)] == ["succeeded"] * 3
    assert summary["tasks"] == 8 and summary["tasks_succeeded"] == 8
    status = baton("status", "r", "--json", store=store_url).json()
    assert status["tasks"]["search[2]"]["status"] == "succeeded"
    graph = baton("graph", "r", store=store_url).out
    assert '["plan/scope<br/>(summarise) · succeeded"]' in graph
    assert "plan -.->|added|" in graph and "search -.->|added|" in graph
    dot = baton("graph", "r", "--format", "dot", store=store_url).out
    assert '"search" -> "search[0]" [style=dashed, label="added"];' in dot


def test_traces_and_the_web_view_take_added_task_ids(tmp_path: Path) -> None:
    pytest.importorskip("opentelemetry.sdk")
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from baton.store.eventstore import open_store
    from baton.telemetry.spans import goal_spans
    from baton.web.app import create_app

    run = read_run(str(GOLDEN / "decomposed.jsonl"))
    spans = {span.name: span for span in goal_spans(run.events)}
    assert spans["task each[2]"].parent_id == spans["task each"].span_id  # who added it
    assert spans["task plan/a"].parent_id == spans["task plan"].span_id
    url = f"sqlite:///{tmp_path}/w.db"
    assert baton("import", str(GOLDEN / "decomposed.jsonl"), store=url).code == 0
    with TestClient(create_app(open_store(url))) as client:
        page = client.get("/goals/decomposed")
        assert page.status_code == 200
        assert 'data-task="each[1]" data-status="abandoned"' in page.text
        for task_id in ("plan/a", "each[1]"):
            detail = client.get("/goals/decomposed", params={"task": task_id})
            assert detail.status_code == 200 and task_id in detail.text
        at = client.get("/goals/decomposed", params={"at": "12"})  # before the map expanded
        assert at.status_code == 200 and 'data-task="each[0]"' not in at.text


def test_the_python_api_runs_planners_and_maps(store_url: str) -> None:
    import baton

    with baton.Baton(store_url) as bt:
        result = bt.run(baton.load_plan(RESEARCH), {"question": "Tides and moons"})
        assert result.tasks["publish"].waiting_for == "approval"
        bt.resolve(result.goal_id, "publish", "approve", reason="read it")
        result = bt.resume(result.goal_id)
        assert result.status == "completed"
        assert result.tasks["search[1]"].status == "succeeded"
        assert result.tasks["plan/scope"].status == "succeeded"
        assert bt.replay(result.goal_id).ok
