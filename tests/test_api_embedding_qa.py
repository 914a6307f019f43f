"""The Python API as a service embedding it uses it: goal ids of the wrong type, agents given
as callables of every kind that imports back, and the library's errors from the top level."""

from __future__ import annotations

from typing import Any

import pytest

import baton
from tests.test_api import Count, Words, _counting_plan, double, split_count


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


class Counters:
    @classmethod
    def by_class(cls, inp: Words) -> Count:
        return Count(words=len(inp.text.split()) + 100)

    @staticmethod
    def by_static(inp: Words) -> Count:
        return Count(words=len(inp.text.split()) + 10)


def test_a_classmethod_given_as_a_callable_runs_as_its_path_does(bt: baton.Baton) -> None:
    """`agents={"count": Counters.by_class}` was refused ("does not import back as this
    callable") though `"tests.test_api_embedding_qa:Counters.by_class"` ran: each access to a
    classmethod makes a new (equal) bound method."""
    for agent, words in ((Counters.by_class, 102), (Counters.by_static, 12)):
        plan = baton.load_plan(_counting_plan(), agents={"count": agent, "double": double})
        assert bt.run(plan, {"text": "a b"}).output == {"words": words * 2}
        submitted = bt.submit(plan, {"text": "a b"})  # resumed: imported back by its path
        assert bt.resume(submitted).output == {"words": words * 2}
    with pytest.raises(baton.PlanError, match=r"agents\.count: .*<locals>\.inner does not"):
        baton.load_plan(_counting_plan(), agents={"count": _closure(), "double": double})


def _closure() -> Any:
    def inner(inp: Words) -> Count:
        return Count(words=1)
    return inner
