"""The store's event encoder (baton.store.transcoder): orjson writes exactly the bytes
eventsourcing's own JSON transcoder writes, falls back to it for what orjson refuses, and
histories stored by the library's encoder read back unchanged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import JSONTranscoder, Mapper

from baton.history.runfile import read_run
from baton.store.eventstore import BatonApplication, open_store
from baton.store.transcoder import OrjsonTranscoder
from tests.support import plan, run, task

GOLDEN = sorted((Path(__file__).parent / "golden").glob("*.jsonl"))


def _library_transcoder() -> JSONTranscoder:
    transcoder = JSONTranscoder()
    BatonApplication.register_transcodings(None, transcoder)  # type: ignore[arg-type]
    return transcoder


def _fields(event: Any) -> dict[str, Any]:
    state = dict(event.__dict__)
    state.pop("originator_id")
    state.pop("originator_version")
    return state


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_every_golden_event_encodes_to_the_library_s_own_bytes(path: Path) -> None:
    ours, library = OrjsonTranscoder(), _library_transcoder()
    BatonApplication.register_transcodings(None, ours)  # type: ignore[arg-type]
    for event in read_run(str(path)).events:
        assert ours.encode(_fields(event)) == library.encode(_fields(event)), type(event)


def test_a_value_orjson_refuses_is_stored_by_the_library_s_encoder(store_url: str) -> None:
    big = 2**70  # beyond orjson's 64-bit integers; JSON and Baton accept it
    store = open_store(store_url)
    try:
        goal = run(store, plan(task("a", "upper", input={"text": "$goal.text"})),
                   {"text": "x", "n": big})
        assert goal.state.status == "completed"
        started = store.events(goal.id)[0]
        assert started.input == {"text": "x", "n": big}  # type: ignore[attr-defined]
    finally:
        store.close()


def test_a_history_stored_by_the_library_s_encoder_reads_back(store_url: str) -> None:
    """What releases before orjson wrote: the same events, the library's bytes."""
    events = read_run(str(Path(__file__).parent / "golden" / "retried.jsonl")).events
    store = open_store(store_url)
    try:
        library = Mapper(transcoder=_library_transcoder())
        store.recorder.insert_events([library.to_stored_event(e) for e in events])
        goal_id = events[0].originator_id
        assert list(store.events(goal_id)) == list(events)
        assert store.get(goal_id).version == len(events)
    finally:
        store.close()
