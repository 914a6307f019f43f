"""`resolve --output` never reports a success that did not happen: an output the task's checks
would reject (here: below `min_confidence`) is refused up front and nothing is recorded."""

from __future__ import annotations

import json

from baton.store.eventstore import open_store
from tests.cli_support import baton

PLAN = "examples/travel/plan.yaml"
BERLIN = '{"origin": "LHR", "destination": "Berlin", "passengers": 2}'
OFFER = {"total": 150.0,
         "best_offer": {"id": "OF-PHONE", "price_per_passenger": 75.0,
                        "flight": {"id": "X1", "carrier": "XX", "origin": "LHR",
                                   "destination": "Berlin", "departs": "09:00",
                                   "fare": 60.0, "seats_left": 3}}}


def _events(store_url: str) -> int:
    store = open_store(store_url)
    try:
        return len(store.events("berlin"))
    finally:
        store.close()


def test_an_output_below_min_confidence_is_refused_and_nothing_recorded(
    store_url: str,
) -> None:
    assert baton("run", PLAN, "--input", BERLIN, "--goal-id", "berlin", store=store_url).code == 3
    before = _events(store_url)
    unsure = json.dumps({**OFFER, "confidence": 0.5})
    refused = baton("resolve", "berlin", "price", "--output", unsure, "--reason", "by phone",
                    store=store_url)
    assert refused.code == 2, refused.out
    assert "below min_confidence 0.7" in refused.err and "nothing recorded" in refused.err
    assert len(refused.err.strip().splitlines()) == 1 and "recorded:" not in refused.out
    assert _events(store_url) == before
    waiting = baton("escalations", "--json", store=store_url).json()["escalations"]
    assert [(e["goal_id"], e["task"]) for e in waiting] == [("berlin", "price")]

    sure = json.dumps({**OFFER, "confidence": 0.9})
    accepted = baton("resolve", "berlin", "price", "--output", sure, "--reason", "by phone",
                     store=store_url)
    assert accepted.code == 0, accepted.err
    assert baton("resume", "berlin", store=store_url).code == 0
