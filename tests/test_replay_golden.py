"""Golden run files (tests/golden/*.jsonl): recorded histories of every shape must replay `ok`
with today's code, by re-decision and by re-execution. When a change must alter decisions, these
fail first: version the rule, or regenerate them on purpose (`python -m tests.golden.regenerate`).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from baton.domain.replay import replay
from baton.history.recorded import reexecute
from baton.history.runfile import read_run
from baton.runtime.loading import prepare_plan

GOLDEN = sorted((Path(__file__).parent / "golden").glob("*.jsonl"))
DECIDE = importlib.import_module("baton.domain.decide")


def test_there_are_goldens_of_every_shape() -> None:
    names = {path.stem for path in GOLDEN}
    assert {"completed", "retried", "failed", "escalated", "cancelled", "crashed", "travel",
            "secrets", "decomposed", "research", "gated"} <= names


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_a_golden_run_replays_ok(path: Path) -> None:
    run = read_run(str(path))
    loaded = prepare_plan(run.plan)
    result = replay(run.events, loaded.contracts)
    assert result.ok, result.divergence
    assert result.events == len(run.events)
    again = reexecute(run.events, loaded)
    assert again.ok, again.divergence


def test_a_deliberately_changed_rule_makes_the_goldens_with_retries_diverge(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(DECIDE, "backoff_delay", lambda policy, *, failures, jitter: 0.123)
    diverged = set()
    for path in GOLDEN:
        run = read_run(str(path))
        result = replay(run.events, prepare_plan(run.plan).contracts)
        if not result.ok:
            assert result.divergence is not None and result.divergence.replayed is not None
            assert result.divergence.replayed["kind"] == "RetryScheduled"
            assert result.divergence.replayed["delay_s"] == 0.123
            diverged.add(path.stem)
    with_retries = {p.stem for p in GOLDEN if ".RetryScheduled" in p.read_text()}
    assert diverged == with_retries and "retried" in diverged
