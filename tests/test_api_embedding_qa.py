"""The Python API as a service embedding it uses it: goal ids of the wrong type, agents given
as callables of every kind that imports back, and the library's errors from the top level."""

from __future__ import annotations

from typing import Any

import pytest

import baton
from tests.test_api import _counting_plan, double, split_count


def test_a_goal_id_that_is_not_a_string_is_refused_by_every_goal_method(
    bt: baton.Baton, tmp_path: Any
) -> None:
    """`bt.status(5)`, `bt.cancel(None, ...)` raised a bare TypeError from inside the store
    (`argument of type 'int' is not iterable`), not one of Baton's errors."""
    plan = baton.load_plan(_counting_plan(), agents={"count": split_count, "double": double})
    done = bt.run(plan, {"text": "a b"})
    calls = {
        "status": lambda g: bt.status(g),
        "resume": lambda g: bt.resume(g),
        "resolve": lambda g: bt.resolve(g, "double", "retry", reason="r"),
        "answer": lambda g: bt.answer(g, "double", "yes"),
        "cancel": lambda g: bt.cancel(g, reason="r"),
        "export_run": lambda g: bt.export_run(g, tmp_path / "run.jsonl"),
    }
    for name, call in calls.items():
        for wrong in (5, b"g", ["g"]) + ((None,) if name != "status" else ()):
            with pytest.raises(baton.CommandError,
                               match=rf"goal id .*: expected a string, not {type(wrong).__name__}"):
                call(wrong)
    assert not (tmp_path / "run.jsonl").exists()
    assert [goal.goal_id for goal in bt.status()] == [done.goal_id]
