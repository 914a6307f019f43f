"""Run files: a goal's whole history as self-contained JSON Lines, for replay anywhere.

Line 1 is a header (format, version, goal id, plan, input, event count); then one line per event
in order: `{"seq", "topic", "payload", "digest"}`. The payload is the event's fields in
eventsourcing's JSON transcoding (datetimes as `{"_type_": "datetime_iso", ...}`), so an import
stores exactly what was exported. Each line's `digest` is SHA-256 over the previous digest and the
line's canonical JSON: any edit, reordering or truncation breaks the chain and the file is refused.
The chain detects edits, not forgery (there is no key): an edit with a recomputed chain still has
to survive replay, which re-decides every decision.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    IntegrityError,
    JSONTranscoder,
    UUIDAsHex,
)

from baton.domain.errors import BatonError
from baton.domain.goal import DECISION_KINDS, OBSERVATION_KINDS, Goal, GoalEvent
from baton.domain.history import (
    HistoryError,
    check_history,
    payload,
    payload_problems,
    started_event,
)
from baton.store.eventstore import BatonStore, StoreError, translated_errors

__all__ = [
    "FORMAT",
    "VERSION",
    "RunFile",
    "RunFileError",
    "chain_digest",
    "import_run",
    "read_run",
    "run_lines",
    "write_run",
]

FORMAT = "baton-run"
# Version 2: `Started` may carry `schemas` (the contracts' JSON schemas, for replay without the
# agent modules); version 1 files hold the same events without them and read as before.
VERSION = 2
_READABLE = (1, 2)
_TOPIC_PREFIX = "baton.domain.goal:Goal."
_GOAL_TOPIC = "baton.domain.goal:Goal"
# Run files written before Baton had one import name (release 0.1) name the same classes by
# their old module path; they read as the same events.
_OLD_TOPIC_PREFIX = "domain.goal:Goal."
_OLD_GOAL_TOPIC = "domain.goal:Goal"
_KINDS: dict[str, type[GoalEvent]] = {**OBSERVATION_KINDS, **DECISION_KINDS}


class RunFileError(BatonError):
    """A run file that cannot be trusted: unreadable, malformed, edited or truncated."""


@dataclass(frozen=True)
class RunFile:
    source: str
    goal_id: str
    plan: dict[str, Any]
    input: Any
    events: list[GoalEvent]


def _transcoder() -> JSONTranscoder:
    # The same transcodings eventsourcing's Application registers, so payloads round-trip.
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    return transcoder


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_digest(previous: str, line: dict[str, Any]) -> str:
    """A line's digest: SHA-256 over the previous line's digest and this line's canonical JSON."""
    text = previous + "\n" + _canonical({k: v for k, v in line.items() if k != "digest"})
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def run_lines(events: Sequence[GoalEvent]) -> Iterable[dict[str, Any]]:
    """The lines of a run file for this history, digests included."""
    started = started_event(events)
    transcoder = _transcoder()
    header: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "goal_id": started.originator_id,
        "plan": started.plan,
        "input": started.input,
        "forked_from": started.forked_from,
        "events": len(events),
    }
    header["digest"] = previous = chain_digest("", header)
    yield header
    for event in events:
        line: dict[str, Any] = {
            "seq": event.originator_version,
            "topic": _TOPIC_PREFIX + type(event).__name__,
            "payload": json.loads(transcoder.encode(payload(event))),
        }
        line["digest"] = previous = chain_digest(previous, line)
        yield line


def write_run(events: Sequence[GoalEvent], out: IO[str]) -> None:
    """Canonical JSON lines (sorted keys): the same history gives the same bytes from any store
    (PostgreSQL hands payload keys back in its own order)."""
    for line in run_lines(events):
        out.write(_canonical(line) + "\n")


def read_run(path: str) -> RunFile:
    """Read and verify a run file; a one-line RunFileError naming file and line if not sound."""
    try:
        with open(path, encoding="utf-8") as fh:
            raw_lines = fh.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RunFileError(f"run file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    lines = []
    for number, text in enumerate(raw_lines, start=1):
        if not text.strip():
            continue
        try:
            line = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RunFileError(f"run file {path} line {number}: not JSON ({exc.msg})") from None
        if not isinstance(line, dict):
            raise RunFileError(f"run file {path} line {number}: not a JSON object")
        lines.append((number, line))
    if not lines:
        raise RunFileError(f"run file {path}: empty")
    return _verify(path, lines)


def _verify(path: str, lines: list[tuple[int, dict[str, Any]]]) -> RunFile:
    number, header = lines[0]
    where = f"run file {path} line {number}"
    if header.get("format") != FORMAT:
        raise RunFileError(f'{where}: not a Baton run file (no "format": "{FORMAT}" header)')
    if header.get("version") not in _READABLE:
        raise RunFileError(
            f"{where}: format version {header.get('version')!r}, this Baton reads versions "
            + " and ".join(map(str, _READABLE))
        )
    previous = ""
    for number, line in lines:
        expected = chain_digest(previous, line)
        if line.get("digest") != expected:
            raise RunFileError(
                f"run file {path} line {number}: digest mismatch: the file was edited or is corrupt"
            )
        previous = expected
    goal_id = header.get("goal_id")
    count = header.get("events")
    if not isinstance(goal_id, str) or not goal_id or not isinstance(count, int):
        raise RunFileError(f"{where}: header lacks goal_id or events")
    if len(lines) - 1 != count:
        raise RunFileError(
            f"run file {path}: the header announces {count} events, "
            f"the file holds {len(lines) - 1} (truncated?)"
        )
    transcoder = _transcoder()
    events = [
        _event(f"run file {path} line {number}", line, seq, goal_id, transcoder)
        for seq, (number, line) in enumerate(lines[1:], start=1)
    ]
    started = started_event(events)
    if _canonical(started.plan) != _canonical(header.get("plan")) or _canonical(
        started.input
    ) != _canonical(header.get("input")):
        raise RunFileError(f"{where}: header plan or input differs from the Started event's")
    try:
        check_history(events)
    except HistoryError as exc:
        raise RunFileError(f"run file {path}: {exc}") from None
    return RunFile(path, goal_id, started.plan, started.input, events)


def _event(
    where: str, line: dict[str, Any], seq: int, goal_id: str, transcoder: JSONTranscoder
) -> GoalEvent:
    """One line back into the domain event it was, refusing anything that is not a Goal event."""
    if line.get("seq") != seq:
        raise RunFileError(f"{where}: seq {line.get('seq')!r}, expected {seq}")
    topic = line.get("topic")
    kind, event_class = "", None
    for prefix in (_TOPIC_PREFIX, _OLD_TOPIC_PREFIX):
        if isinstance(topic, str) and topic.startswith(prefix):
            kind = topic[len(prefix) :]
            event_class = _KINDS.get(kind)
    if event_class is None:
        raise RunFileError(f"{where}: unknown event topic {topic!r}")
    raw = line.get("payload")
    if not isinstance(raw, dict):
        raise RunFileError(f"{where}: payload is not an object")
    try:
        state: dict[str, Any] = transcoder.decode(_canonical(raw).encode())
    except Exception as exc:  # an unknown `_type_` or a malformed date, for instance
        raise RunFileError(f"{where}: payload cannot be decoded: {_short(exc)}") from None
    fields = {f.name: f for f in dataclasses.fields(event_class)}
    unknown = sorted(set(state) - set(fields))
    missing = sorted(
        name
        for name, f in fields.items()
        if name not in state
        and name not in ("originator_id", "originator_version")
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    )
    if unknown or missing:
        raise RunFileError(
            f"{where}: {kind} payload has unknown fields {unknown} or lacks {missing}"
        )
    if not isinstance(state.get("timestamp"), datetime):
        raise RunFileError(f"{where}: timestamp is not a datetime")
    problems = payload_problems(event_class, state)
    if problems:
        raise RunFileError(f"{where}: {kind} payload: {'; '.join(problems)}")
    if event_class is Goal.Started and state.get("originator_topic") not in (
        _GOAL_TOPIC,
        _OLD_GOAL_TOPIC,
    ):
        raise RunFileError(f"{where}: Started names aggregate {state.get('originator_topic')!r}")
    for name, f in fields.items():  # as an upcaster would: a field added since has its default
        if name not in state and f.default is not dataclasses.MISSING:
            state[name] = f.default
    state |= {"originator_id": goal_id, "originator_version": seq}
    # As eventsourcing's mapper does: the stored fields become the event, no __init__ re-run.
    event = object.__new__(event_class)
    object.__setattr__(event, "__dict__", state)
    return event


def _short(exc: Exception) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:300]


def _fold(run: RunFile) -> None:
    """Fold the events into a goal, as every later `get` will: a file whose events cannot make a
    goal is refused here rather than stored as a goal that no command can read."""
    goal: Any = None
    for event in run.events:
        try:
            goal = event.mutate(goal)
        except Exception as exc:  # an illegal transition, a malformed usage figure, ...
            kind = type(event).__name__
            raise RunFileError(
                f"run file {run.source}: event {event.originator_version} ({kind}) cannot be "
                f"applied: {_short(exc)}; nothing imported"
            ) from None


def import_run(store: BatonStore, run: RunFile) -> str:
    """Store the run's events under the same goal id and versions, in one transaction."""
    _fold(run)
    if store.exists(run.goal_id):
        raise StoreError(f"goal {run.goal_id!r} already exists in this store; nothing imported")
    try:
        with translated_errors(store.url):
            store.app.save(*run.events)
    except IntegrityError:
        raise StoreError(
            f"goal {run.goal_id!r} was written concurrently; nothing imported"
        ) from None
    return run.goal_id
