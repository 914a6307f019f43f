"""`baton replay` on the command line: its JSON shape and exit codes 0/1/2 (docs/reference.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from baton.history.runfile import chain_digest
from baton.store.eventstore import open_store
from tests import agents
from tests.cli_support import baton
from tests.replay_support import SHAPES


@pytest.fixture
def retried_url(store_url: str) -> str:
    agents.CALLS.clear()
    store = open_store(store_url)
    try:
        SHAPES["retried"](store)
    finally:
        store.close()
    return store_url


def test_replay_json_shape_and_exit_0(retried_url: str) -> None:
    result = baton("replay", "retried", "--json", store=retried_url)
    assert result.code == 0, result.err
    data = result.json()
    assert set(data) >= {"ok", "events", "decisions", "divergence", "state"}
    assert data["ok"] is True and data["divergence"] is None
    assert data["state"]["status"] == "completed"
    assert data["state"]["tasks"]["a"] == {"status": "succeeded", "attempts": 2}
    assert data["state"]["used"]["attempts"] == 3
    readable = baton("replay", "retried", store=retried_url)
    assert readable.code == 0 and "ok" in readable.out and "re-decided identically" in readable.out


def test_replay_at_n(retried_url: str) -> None:
    result = baton("replay", "retried", "--at", "3", "--json", store=retried_url)
    assert result.code == 0
    data = result.json()
    assert data["events"] == 3
    assert data["state"]["tasks"]["a"] == {"status": "running", "attempts": 1}
    assert data["state"]["tasks"]["b"] == {"status": "pending", "attempts": 0}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--at", "999"], "outside 1.."),
        (["--at", "0"], "must be at least 1"),
        (["--at", "x"], "argument --at: expected an event number, got 'x'"),
        (["--at", "2", "--reexecute"], "--at applies to plain replay"),
        (["--reexecute", "--plan", "x.yaml"], "not allowed with argument"),
    ],
)
def test_replay_usage_errors_exit_2(retried_url: str, args: list[str], message: str) -> None:
    result = baton("replay", "retried", *args, store=retried_url)
    assert result.code == 2 and message in result.err and "Traceback" not in result.err


def test_a_divergence_exits_1_and_shows_both_sides(retried_url: str, tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    assert baton("export", "retried", "-o", str(path), store=retried_url).code == 0
    content = [json.loads(line) for line in path.read_text().splitlines()]
    retry = next(line for line in content if line.get("topic", "").endswith(".RetryScheduled"))
    retry["payload"]["delay_s"] = 99.0  # as if an older Baton had waited longer
    previous = ""
    for line in content:
        line["digest"] = previous = chain_digest(previous, line)
    path.write_text("".join(json.dumps(line) + "\n" for line in content))
    result = baton("replay", str(path), "--json")
    assert result.code == 1
    divergence = result.json()["divergence"]
    assert divergence["seq"] == retry["seq"] and divergence["fields"] == ["delay_s"]
    assert divergence["recorded"]["delay_s"] == 99.0
    assert divergence["replayed"]["delay_s"] != 99.0
    readable = baton("replay", str(path))
    assert readable.code == 1
    assert f"diverged at event {retry['seq']}" in readable.out and "delay_s" in readable.out
