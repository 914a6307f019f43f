"""Goal events built by `Goal._trigger` (baton.domain.goal._new_event) are the events their
dataclass `__init__` builds: same attributes, same order (the order they are encoded in)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from baton.domain.goal import Goal, _new_event
from baton.history.runfile import read_run

GOLDEN = sorted((Path(__file__).parent / "golden").glob("*.jsonl"))
HEAD = ("originator_id", "originator_version", "timestamp")


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_every_golden_event_builds_the_same(path: Path) -> None:
    for event in read_run(str(path)).events:
        if isinstance(event, Goal.Started):
            continue  # created by eventsourcing's _create, not triggered
        fields = {k: v for k, v in vars(event).items() if k not in HEAD}
        built = _new_event(type(event), event.originator_id, event.originator_version,
                           event.timestamp, fields)
        again = type(event)(**vars(event))
        assert list(vars(built).items()) == list(vars(again).items())
        assert built == again and type(built) is type(event)


def test_defaults_are_filled_and_bad_fields_refused_as_by_init() -> None:
    at: Any = None
    built = _new_event(Goal.TaskFailed, "g", 2, at, {"task": "a", "error": "e", "rule": "r",
                                                     "reason": "why"})
    assert list(vars(built)) == [*HEAD, "task", "error", "rule", "reason", "policy"]
    assert built.policy is None  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="Can't construct event"):
        _new_event(Goal.TaskFailed, "g", 2, at, {"task": "a", "error": "e", "rule": "r"})
    with pytest.raises(TypeError, match="Can't construct event"):
        _new_event(Goal.TaskFailed, "g", 2, at, {"task": "a", "error": "e", "rule": "r",
                                                 "reason": "why", "nope": 1})


def test_a_field_the_aggregate_sets_is_refused() -> None:
    at: Any = None
    with pytest.raises(TypeError, match="Can't construct event"):
        _new_event(Goal.ClockTicked, "g", 2, at, {"timestamp": at})
