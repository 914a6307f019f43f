"""Bindings: `$goal` and `$task` paths, nested paths, list indexes, literals, the `$$` escape."""

from __future__ import annotations

import pytest

from baton.domain.errors import ResolveError
from baton.domain.references import Ref, parse_binding, resolve_binding

OUTPUTS = {
    "search": {"flights": [{"id": "F1", "price": 10}, {"id": "F2", "price": 20}], "n": 2},
    "price": {"best": {"offer": {"id": "O-7"}}, "total": 30.5},
}
GOAL = {"destination": "Lisbon", "who": {"name": "Ana"}}


def resolved(value: object) -> object:
    return resolve_binding(parse_binding(value), GOAL, OUTPUTS)


def test_goal_and_task_references() -> None:
    assert resolved("$goal.destination") == "Lisbon"
    assert resolved("$goal.who.name") == "Ana"
    assert resolved("$price.best.offer.id") == "O-7"
    assert resolved("$search.flights.1.price") == 20
    assert resolved("$search") == OUTPUTS["search"]


def test_literals_and_the_escape() -> None:
    assert resolved("plain text") == "plain text"
    assert resolved(42) == 42
    assert resolved("$$5 off") == "$5 off"
    assert resolved("$$goal.destination") == "$goal.destination"
    assert resolved(None) is None


def test_references_inside_literal_structures() -> None:
    assert resolved({"to": "$goal.destination", "ids": ["$search.flights.0.id", "x"]}) == {
        "to": "Lisbon",
        "ids": ["F1", "x"],
    }


def test_parse_binding_gives_refs() -> None:
    assert parse_binding("$price.best.offer") == Ref("price", ("best", "offer"))
    with pytest.raises(ValueError, match="empty name"):
        parse_binding("$price..total")


def test_a_missing_segment_is_named() -> None:
    with pytest.raises(ResolveError, match=r"\$price\.best has no 'offr'"):
        resolved("$price.best.offr.id")
    with pytest.raises(ResolveError, match="has no accepted output"):
        resolved("$book.confirmation")
    with pytest.raises(ResolveError, match="has no '5'"):
        resolved("$search.flights.5")
