"""Small truths in what Baton prints: a human-granted attempt says so in the audit, a
re-execution divergence shows the kinds, CSV carries no float noise."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
import yaml

from baton.cli.debug_view import print_replay
from tests.cli_support import baton
from tests.support import plan, task

ESCALATED = str(Path(__file__).parent / "golden" / "escalated.jsonl")


def test_the_audit_says_a_human_granted_the_attempt() -> None:
    text = baton("audit", ESCALATED).out
    dispatched = [line for line in text.splitlines() if "TaskDispatched" in line]
    beyond = [line for line in dispatched if "attempt 3 (retry policy allows 2)" in line]
    assert beyond and "granted by a human: " in beyond[0]
    assert "granted by a human" not in dispatched[0]  # the policy's own first attempt
    entries = baton("audit", ESCALATED, "--json").json()["decisions"]
    granted = [e for e in entries if e.get("granted_by")]
    assert granted and all(e["kind"] == "TaskDispatched" for e in granted)
    assert {"by", "reason", "seq"} <= set(granted[0]["granted_by"])


def test_a_divergence_table_shows_the_kinds(capsys: pytest.CaptureFixture[str]) -> None:
    recorded = {"seq": 9, "kind": "OutputAccepted", "task": "a", "rule": "validation.contract"}
    replayed = {"seq": 9, "kind": "OutputRejected", "task": "a", "rule": "validation.confidence"}
    print_replay(
        {"ok": False, "inherited": 0, "events": 9, "decisions": 4,
         "divergence": {"seq": 9, "recorded": recorded, "replayed": replayed, "fields": ["rule"]},
         "state": {"status": "running", "tasks": {}, "used": {"attempts": 1, "tokens": 0,
                                                              "cost_usd": 0}}},
        source="g", mode="re-execution",
    )
    out = capsys.readouterr().out
    kind_row = next(line for line in out.splitlines() if " kind " in line)
    assert "OutputAccepted" in kind_row and "OutputRejected" in kind_row


def test_csv_rounds_money_and_durations(store_url: str, tmp_path: Path) -> None:
    six = plan(*(task(f"t{i}", "costly", input={"text": "$goal.text"}) for i in range(6)))
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(yaml.safe_dump(six))
    assert baton("run", str(plan_file), "--input", '{"text": "x"}', store=store_url).code == 0
    result = baton("stats", "--format", "csv", store=store_url)
    assert result.code == 0, result.err
    row = next(csv.DictReader(io.StringIO(result.out)))
    assert row["cost_usd"] == "0.06"  # six times 0.01 is 0.060000000000000005 in floats
    for column in ("p50_ms", "p95_ms"):
        assert len(row[column].partition(".")[2]) <= 3, row[column]
