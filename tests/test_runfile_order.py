"""Run files round-trip byte for byte and replay like their source goal, whatever the order in
which a plan's bindings name its upstream tasks (plan order is the canonical order)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from baton.domain.replay import replay
from baton.history.runfile import RunFile, import_run, read_run, write_run
from baton.runtime.loading import prepare_plan
from baton.store.eventstore import open_store
from tests.cli_support import baton
from tests.support import plan, run, task

# `merge` reads web before plan, which neither plan order nor sorted keys give: the order a
# run file's sorted plan once changed, so the file's replay disagreed with the recorded run.
MIXED = plan(
    task("plan", "upper", input={"text": "$goal.text"}),
    task("web", "exclaim", input={"text": "$plan.text"}),
    task("papers", "upper", input={"text": "$goal.text"}),
    task("merge", "join", input={"right": "$web.text", "left": "$papers.text"}, after=["plan"]),
    output="$merge",
)


def _other_store(store_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if store_url.startswith("sqlite"):
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path}/other.db"


def test_a_run_file_replays_and_round_trips_byte_for_byte_across_stores(
    store_url: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store = open_store(store_url)
    try:
        goal = run(store, MIXED, {"text": "hi"}, goal_id="mixed")
        assert goal.state.status == "completed"
        # merge's readiness, recorded with its dispatch (rules 3), names its inputs in plan
        # order, whatever order its bindings were written in
        merge = [e for e in store.events("mixed")
                 if type(e).__name__ == "TaskDispatched" and e.task == "merge"]
        assert [e.ready["inputs"] for e in merge] == [["plan", "web", "papers"]]
        recorded_plan = store.events("mixed")[0].plan
    finally:
        store.close()
    first = tmp_path / "first.jsonl"
    assert baton("export", "mixed", "-o", str(first), store=store_url).code == 0
    header = json.loads(first.read_text().splitlines()[0])
    assert json.dumps(header["plan"]) == json.dumps(recorded_plan)  # the recorded plan, as is
    replayed = baton("replay", str(first), "--json")
    assert replayed.code == 0, replayed.out + replayed.err
    assert replayed.json()["ok"]

    other = _other_store(store_url, request, tmp_path)
    assert baton("import", str(first), store=other).code == 0
    assert baton("replay", "mixed", store=other).code == 0
    second = tmp_path / "second.jsonl"
    assert baton("export", "mixed", "-o", str(second), store=other).code == 0
    assert second.read_bytes() == first.read_bytes()


GOLDEN = sorted((Path(__file__).parent / "golden").glob("*.jsonl"))


def _through(store_url: str, run_file: RunFile) -> str:
    """Import a run into a store, replay it there, export it again."""
    store = open_store(store_url)
    try:
        import_run(store, run_file)
        events = list(store.events(run_file.goal_id))
        assert replay(events, prepare_plan(run_file.plan).contracts).ok
        out = io.StringIO()
        write_run(events, out)
        return out.getvalue()
    finally:
        store.close()


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_every_golden_replays_from_the_store_and_round_trips_byte_for_byte(
    path: Path, store_url: str, tmp_path: Path
) -> None:
    # The goldens name the aggregate by its pre-0.2 topic, which an export writes anew; from
    # the first export on, every round trip is the same bytes.
    exported = tmp_path / "exported.jsonl"
    exported.write_text(_through(store_url, read_run(str(path))), encoding="utf-8")
    again = _through(f"sqlite:///{tmp_path}/again.db", read_run(str(exported)))
    assert again == exported.read_text(encoding="utf-8")
