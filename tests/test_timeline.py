"""The attempt timeline: bars from the events, and `baton timeline -o FILE.png|svg`."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import pytest

from baton.history.runfile import read_run
from baton.web.timeline import timeline_of
from tests.cli_support import baton

GOLDEN = Path(__file__).parent / "golden"


def test_bars_of_a_retried_goal() -> None:
    run = read_run(GOLDEN / "retried.jsonl")
    at = {event.originator_version: event.timestamp for event in run.events}
    line = timeline_of(run.events)
    assert line.tasks == ["a", "b"]
    assert [(b.task, b.kind, b.outcome, b.start, b.end) for b in line.bars] == [
        ("a", "attempt", "error", at[3], at[4]),   # dispatched, raised
        ("a", "backoff", "wait", at[5], at[7]),    # retry scheduled, ready again
        ("a", "attempt", "ok", at[8], at[9]),
        ("b", "attempt", "ok", at[12], at[13]),
    ]
    assert line.bars[0].detail == "ConnectionError: upstream reset"


def test_a_backoff_ends_at_the_dispatch_that_holds_the_readiness() -> None:
    run = read_run(GOLDEN / "retried-rules3.jsonl")  # decision rules 3: no TaskReady events
    at = {event.originator_version: event.timestamp for event in run.events}
    kinds = {event.originator_version: type(event).__name__ for event in run.events}
    assert [kinds[n] for n in (4, 5, 6)] == ["RetryScheduled", "ClockTicked", "TaskDispatched"]
    assert [(b.task, b.kind, b.outcome, b.start, b.end) for b in timeline_of(run.events).bars] == [
        ("a", "attempt", "error", at[2], at[3]),
        ("a", "backoff", "wait", at[4], at[6]),    # retry scheduled, dispatched again
        ("a", "attempt", "ok", at[6], at[7]),
        ("b", "attempt", "ok", at[9], at[10]),
    ]


def test_human_waits_end_when_a_human_resolves() -> None:
    run = read_run(GOLDEN / "escalated.jsonl")
    at = {event.originator_version: event.timestamp for event in run.events}
    waits = [(b.task, b.start, b.end, b.label) for b in timeline_of(run.events).bars
             if b.kind == "human"]
    assert waits == [
        ("s", at[12], at[31], "bo: output"),
        ("a", at[14], at[16], "ana: retry"),
        ("a", at[26], at[28], "ana: output"),
    ]


def test_a_resume_and_the_goal_s_end_are_marked_across_the_rows() -> None:
    run = read_run(GOLDEN / "crashed.jsonl")
    at = {event.originator_version: event.timestamp for event in run.events}
    kinds = {event.originator_version: type(event).__name__ for event in run.events}
    resumed = next(n for n, kind in kinds.items() if kind == "RunResumed")
    line = timeline_of(run.events)
    assert [(m.kind, m.label, m.at) for m in line.marks] == [
        ("RunResumed", "resumed", at[resumed]),
        ("GoalCompleted", "goal completed", at[max(at)]),
    ]


def test_timeline_command_draws_png_and_svg(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the timeline extra is not installed")
    svg, png = tmp_path / "run.svg", tmp_path / "run.png"
    result = baton("timeline", str(GOLDEN / "retried.jsonl"), "-o", str(svg))
    assert result.code == 0, result.err
    text = svg.read_text()
    for gid in ("attempt-a-1", "backoff-a-1", "attempt-a-2", "attempt-b-1",
                "mark-GoalCompleted-1"):
        assert f'id="{gid}"' in text
    assert "goal retried · test-plan · completed" in text
    assert baton("timeline", str(GOLDEN / "escalated.jsonl"), "-o", str(png)).code == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_timeline_command_errors(tmp_path: Path) -> None:
    bad = baton("timeline", str(GOLDEN / "retried.jsonl"), "-o", str(tmp_path / "x.jpg"))
    assert bad.code == 2
    assert bad.err.strip().splitlines() == [
        f"baton: error: -o {tmp_path / 'x.jpg'}: the picture must be a .png or .svg file"]
    missing = baton("timeline", "nope", "-o", str(tmp_path / "x.png"),
                    store=f"sqlite:///{tmp_path}/b.db")
    assert missing.code == 2 and len(missing.err.strip().splitlines()) == 1
    nowhere = baton("timeline", str(GOLDEN / "retried.jsonl"), "-o",
                    str(tmp_path / "no" / "such" / "x.png"))
    assert nowhere.code == 2 and len(nowhere.err.strip().splitlines()) == 1, nowhere.err


def test_open_bars_reach_the_present_while_the_goal_has_not_ended() -> None:
    run = read_run(GOLDEN / "escalated.jsonl")
    waiting = run.events[:15]  # GoalSuspended: a human is needed on `s` and `a`
    later = waiting[-1].timestamp + timedelta(minutes=5)
    line = timeline_of(waiting, now=later)
    assert line.ended_at == later
    assert [(b.task, b.end) for b in line.bars if b.kind == "human"] == [("s", later),
                                                                         ("a", later)]
    ended = timeline_of(run.events, now=later)  # completed: the present changes nothing
    assert ended.ended_at == run.events[-1].timestamp


@pytest.mark.parametrize("title", ["goal $\\frac{$ · p · completed", "goal cost $5 and $6"])
def test_a_title_with_dollars_is_drawn_as_written(title: str) -> None:
    pytest.importorskip("matplotlib", reason="the timeline extra is not installed")
    from baton.web.plot import draw_timeline

    figure = draw_timeline(timeline_of(read_run(GOLDEN / "retried.jsonl").events), title=title)
    [axes] = figure.axes
    assert axes.get_title() == title
    # not TeX: the dollars are kept (task ids cannot hold one, but are data all the same)
    assert not any(t.get_parse_math() for t in [axes.title, *axes.get_yticklabels()])
    figure.savefig(io.BytesIO(), format="svg")  # `$\frac{$` raised ValueError here
