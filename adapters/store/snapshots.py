"""Goal snapshots: a goal's folded state, stored beside its events so reading it back is cheap.

`status`, `resume` and a worker taking a goal up read the goal through `BatonStore.get`, which
used to fold every event each time (4-7 ms for a finished 50-task goal, a quarter of a second for
10,000 events). A snapshot is eventsourcing's own: a `CanSnapshotAggregate` event in the
application's snapshot store (its `stored_snapshots` / `baton_snapshots` table), encoded by the
application's mapper. Reading loads the latest snapshot and folds only the events after it.

A snapshot is a cache, never a record: the events stay the only truth, and replay, export, fork
and the read models never look at snapshots. So a snapshot is used only when it is certainly
what folding the events would give, and ignored otherwise (the goal is then folded from its
events, as before):

- its `format` is this code's: a digest of the state's shape (every field name and type of
  `GoalState`, `TaskState`, `Outcome`, `Usage`) and of the source of the modules whose code
  folds events into that state (`baton.domain.goal`, `.state`, `.lifecycle`). A snapshot
  written by another version of Baton, or before `GoalState` gained a field, does not match;
- the event at its version is still there with the timestamp the snapshot recorded (the
  history was not replaced underneath it);
- it decodes without error.

The state is encoded by the dataclasses' own field types (`dataclasses.fields`), so a field added
to `GoalState` is written and read without a change here, as long as its type is one of those
below; a field of any other type turns snapshots off (`UnsupportedState`) rather than store a
guess, and tests/test_snapshots.py fails until this module learns the type.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import operator
import threading
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args, get_origin, get_type_hints

from eventsourcing.domain import CanSnapshotAggregate, MetaDomainEvent
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic

from baton.domain import goal as goal_module
from baton.domain import lifecycle, state
from baton.domain.expansion import extended_plan, parse_fragment
from baton.domain.goal import Goal, canonical_plan
from baton.domain.plan import Plan
from baton.domain.state import GoalState

__all__ = [
    "SNAPSHOT_INTERVAL",
    "SNAPSHOT_MIN_EVENTS",
    "GoalSnapshot",
    "StaleSnapshot",
    "UnsupportedState",
    "crosses_interval",
    "postgres_snapshot_recorder",
    "select_goal_rows",
    "snapshot_due",
    "snapshot_format",
    "sqlite_snapshot_recorder",
    "take_snapshot",
]

# A running goal is snapshotted when a save crosses a multiple of this many events, or of its
# number of tasks if that is larger, so a reader folds fewer than that many on top of the
# snapshot; a goal that stops (completed, failed, cancelled, waiting for a human) is
# snapshotted by the save that stops it. Encoding a snapshot costs time in proportion to the
# tasks: at a fixed interval a 10,000-wide map spent most of its run encoding snapshots
# (quadratic); spaced by the tasks, it costs a bounded amount per event.
SNAPSHOT_INTERVAL = 200

# A goal that stops with fewer events than this is not snapshotted: folding its events costs
# what restoring a snapshot does (0.5-0.7 ms for a 3-task chain of 14 events on SQLite), and
# the snapshot's own write was a fifth of such a goal's CPU in a worker.
SNAPSHOT_MIN_EVENTS = 20

# Bump to ignore every snapshot written before a change to this module's encoding.
_ENCODING = 1

# The attributes a folded Goal has (eventsourcing's BaseAggregate plus `state`); a goal with any
# other attribute is not snapshotted, since restoring it would drop that attribute.
_GOAL_ATTRIBUTES = frozenset({"_id", "_version", "_created_on", "_modified_on", "state"})


class UnsupportedState(Exception):
    """The goal's state holds something this codec cannot write faithfully."""


class StaleSnapshot(Exception):
    """A snapshot written by other code, or for another history: fold the events instead."""


@dataclass(frozen=True)
class GoalSnapshot(CanSnapshotAggregate[str], metaclass=MetaDomainEvent):
    """A goal's state at `originator_version`; `timestamp` is that version's event's timestamp.

    `state` is `{"format": snapshot_format(), "goal": {...}}`; `topic` is the goal's class, as
    eventsourcing's own snapshots record it.
    """

    originator_id: str
    originator_version: int
    timestamp: datetime
    topic: str
    state: dict[str, Any]

    def mutate(self, _: None) -> Goal:
        """The goal as it was at this version; StaleSnapshot when it was written by other code."""
        if self.state.get("format") != snapshot_format():
            raise StaleSnapshot(f"goal {self.originator_id!r}: snapshot of another format")
        try:
            return _decode_goal(self.originator_id, self.originator_version, self.state["goal"])
        except Exception as exc:  # a cache: anything odd means "fold the events"
            raise StaleSnapshot(f"goal {self.originator_id!r}: {exc!r}") from None


def snapshot_due(goal: Goal, first_saved_version: int) -> bool:
    """Whether the save that just stored versions first_saved_version..goal.version should
    leave a snapshot: the goal stopped (with SNAPSHOT_MIN_EVENTS events or more), or the save
    crossed a multiple of the interval (SNAPSHOT_INTERVAL, or the goal's number of tasks if
    larger)."""
    if goal.state.status != "running":
        return goal.version >= SNAPSHOT_MIN_EVENTS
    return crosses_interval(first_saved_version, goal.version, every=len(goal.state.tasks))


def crosses_interval(first_saved_version: int, last_saved_version: int, every: int = 0) -> bool:
    interval = max(SNAPSHOT_INTERVAL, every)
    return (first_saved_version - 1) // interval < last_saved_version // interval


def take_snapshot(goal: Goal) -> GoalSnapshot:
    """The goal's current state as a snapshot; UnsupportedState when it cannot be written."""
    attributes = set(vars(goal)) - {"_pending_events"}
    if attributes != _GOAL_ATTRIBUTES:
        raise UnsupportedState(f"goal attributes {sorted(attributes)}")
    if getattr(goal, "_pending_events", None):
        raise UnsupportedState("the goal has unsaved events")
    encoded = {
        "created_on": goal.created_on,
        "modified_on": goal.modified_on,
        "state": _encoder(GoalState)(goal.state),
    }
    return GoalSnapshot(
        originator_id=goal.id,
        originator_version=goal.version,
        timestamp=goal.modified_on,
        topic=get_topic(Goal),
        state={"format": snapshot_format(), "goal": encoded},
    )


def _decode_goal(goal_id: str, version: int, data: dict[str, Any]) -> Goal:
    goal = object.__new__(Goal)
    object.__setattr__(goal, "__dict__", {
        "_id": goal_id,
        "_version": version,
        "_created_on": data["created_on"],
        "_modified_on": data["modified_on"],
        "_pending_events": [],
        "state": _decoder(GoalState)(data["state"]),
    })
    return goal


def select_goal_rows(app: Any, goal_id: str) -> tuple[StoredEvent | None, list[StoredEvent]]:
    """The goal's latest snapshot row (None if it has none) and its event rows from that
    snapshot's version on (every event when there is no snapshot), in one statement.

    eventsourcing's API reads them in two (`snapshots.get` then `events.get`), each its own
    round trip and, on PostgreSQL, its own pool checkout: ~0.3 ms each, a finished goal's whole
    load budget. The statement reads the same two tables of the same recorders.
    """
    events, snapshots = app.events.recorder, app.snapshots.recorder
    rows: list[tuple[int, int, str, Any]]
    if hasattr(events.datastore, "schema"):  # PostgreSQL
        statement = _pg_select_goal(
            events.datastore.schema, events.events_table_name, snapshots.events_table_name
        )
        # Binary results: the state columns arrive as they are stored, not hex-escaped text
        # decoded in Python (a 10,000-event goal's snapshot is ~200 kB).
        with events.datastore.get_connection() as conn, conn.cursor(binary=True) as curs:
            curs.execute(statement, (goal_id, goal_id), prepare=True)
            rows = [(r["k"], r["originator_version"], r["topic"], r["state"]) for r in curs]
    else:  # SQLite: table names are eventsourcing's fixed ones, no user input
        sql = _SELECT_GOAL.format(
            events=events.events_table_name, snapshots=snapshots.events_table_name
        )
        with events.datastore.transaction(commit=False) as c:
            c.execute(sql, (goal_id, goal_id))
            rows = [tuple(row) for row in c.fetchall()]
    stored = [
        (kind, StoredEvent(goal_id, version, topic, bytes(state)))
        for kind, version, topic, state in rows
    ]
    snapshot = next((row for kind, row in stored if kind == 0), None)
    return snapshot, [row for kind, row in stored if kind == 1]


_SELECT_GOAL = (
    "WITH s AS (SELECT originator_version AS v, topic, state FROM {snapshots} "
    "WHERE originator_id = ? ORDER BY originator_version DESC LIMIT 1) "
    "SELECT 0 AS k, v AS originator_version, topic, state FROM s "
    "UNION ALL "
    "SELECT 1 AS k, originator_version, topic, state FROM {events} "
    "WHERE originator_id = ? AND originator_version >= COALESCE((SELECT v FROM s), 0) "
    "ORDER BY 1, 2"
)


@functools.cache
def _pg_select_goal(schema: str, events: str, snapshots: str) -> Any:
    from psycopg.sql import SQL, Identifier

    def table(name: str) -> Any:
        return SQL("{}.{}").format(Identifier(schema), Identifier(name))

    # Rendered once: psycopg caches the conversion of plain text only.
    return SQL(_SELECT_GOAL.replace("?", "%s")).format(
        events=table(events), snapshots=table(snapshots)
    ).as_string(None)


# Only a goal's latest snapshot is ever read, so writing one deletes the goal's older ones in
# the same transaction: a 10,000-event goal snapshotted every 200 events would otherwise keep
# 50 copies of its state (10 MB for 500 tasks, more than its events).
_DELETE_OLDER = "DELETE FROM {table} WHERE originator_id = ? AND originator_version < ?"


def sqlite_snapshot_recorder(factory: Any) -> Any:
    """eventsourcing's SQLite snapshot recorder (table `stored_snapshots`), keeping each goal's
    latest snapshot only."""
    from eventsourcing.sqlite import SQLiteAggregateRecorder

    class LatestSnapshotRecorder(SQLiteAggregateRecorder):
        def insert_events(
            self, stored_events: Sequence[StoredEvent], **kwargs: Any
        ) -> Sequence[int] | None:
            delete = _DELETE_OLDER.format(table=self.events_table_name)
            with self.datastore.transaction(commit=True) as c:
                self._insert_events(c, stored_events, **kwargs)
                c.executemany(delete, [_older(event) for event in stored_events])
            return None

    recorder = LatestSnapshotRecorder(factory.datastore, events_table_name="stored_snapshots")
    if factory.env_create_table():
        recorder.create_table()
    return recorder


def _older(event: StoredEvent) -> tuple[Any, int]:
    return event.originator_id, event.originator_version


def postgres_snapshot_recorder(factory: Any) -> Any:
    """eventsourcing's PostgreSQL snapshot recorder (table `baton_snapshots`), its table created
    once per version under an advisory lock rather than on every open, as the events' is, and
    keeping each goal's latest snapshot only."""
    from eventsourcing.postgres import PostgresAggregateRecorder
    from psycopg.sql import SQL, Identifier

    from baton.projections.pg_schema import CreatedOnce

    class CreatedOnceSnapshotRecorder(CreatedOnce, PostgresAggregateRecorder):
        @property
        def marker_table(self) -> str:
            return str(self.events_table_name)

        def insert_events(
            self, stored_events: Sequence[StoredEvent], **kwargs: Any
        ) -> Sequence[int] | None:
            # One statement, so one round trip and its own transaction: the older snapshots
            # deleted, the new one inserted. A cache needs no durability, so the commit does
            # not wait for the WAL flush (a crash may lose the row, never half of it, and the
            # goal is then folded from its events). The library's way (BEGIN, a composite-typed
            # insert, the delete, COMMIT and its flush) was ~2 ms of a stopping goal's save.
            with self.datastore.get_connection() as conn:
                for event in stored_events:
                    conn.execute(self._replace_statement, {
                        "id": event.originator_id, "version": event.originator_version,
                        "topic": event.topic, "state": event.state,
                    }, prepare=True)
            return None

        @functools.cached_property
        def _replace_statement(self) -> str:
            table = SQL("{}.{}").format(
                Identifier(self.datastore.schema), Identifier(self.events_table_name)
            )
            return SQL(
                "WITH quick AS (SELECT set_config('synchronous_commit', 'off', true)), "
                "older AS (DELETE FROM {table} WHERE originator_id = %(id)s "
                "AND originator_version < %(version)s) "
                "INSERT INTO {table} (originator_id, originator_version, topic, state) "
                "SELECT %(id)s, %(version)s, %(topic)s, %(state)s FROM quick"
            ).format(table=table).as_string(None)

    recorder = CreatedOnceSnapshotRecorder(
        datastore=factory.datastore,
        events_table_name=(factory.env.name.lower() or "stored") + "_snapshots",
    )
    if factory.env_create_table():
        recorder.create_table()
    return recorder


# --- the format ------------------------------------------------------------------------------


def _state_classes() -> list[type]:
    """GoalState and every dataclass reachable from its field types."""
    found: list[type] = []

    def visit(hint: Any) -> None:
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            if hint not in found:
                found.append(hint)
                for hinted in get_type_hints(hint).values():
                    visit(hinted)
            return
        for arg in get_args(hint):
            visit(arg)

    visit(GoalState)
    return found


@functools.cache
def snapshot_format() -> str:
    """This code's snapshot format: the encoding, the state's shape, the folding code."""
    digest = hashlib.sha256(f"encoding {_ENCODING}\n".encode())
    for cls in _state_classes():
        for name, hint in get_type_hints(cls).items():
            digest.update(f"{cls.__qualname__}.{name}: {hint}\n".encode())
    for module in (goal_module, state, lifecycle):
        try:
            digest.update(inspect.getsource(module).encode())
        except OSError:  # no source installed: the shape alone, plus the release
            from importlib.metadata import version

            digest.update(f"baton {version('baton')}".encode())
    return digest.hexdigest()[:24]


# --- the codec, built from the field types ----------------------------------------------------
#
# Values map to what eventsourcing's JSON transcoder stores: JSON values as they are, datetimes
# as the transcoder's own datetime type, sets as sorted lists, dataclasses as a dict of their
# fields, the plan as its canonical JSON (what `Goal.Started` records; restored through the same
# per-text cache the fold uses).

Codec = typing.Callable[[Any], Any]

_PLAIN: tuple[Any, ...] = (Any, str, int, float, bool, type(None), datetime)


def _identity(value: Any) -> Any:
    return value


def _optional(inner: Codec) -> Codec:
    return lambda value: None if value is None else inner(value)


@functools.cache
def _encoder(hint: Any) -> Codec:
    if hint in _PLAIN or get_origin(hint) is Literal:
        return _identity
    if hint is Plan:
        return _encode_plan
    if hint is GoalState:
        _goal_state_fields()  # every field's encoder exists, or UnsupportedState now
        return _encode_goal_state
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _encode_fields(get_type_hints(hint))
    origin, args = get_origin(hint), get_args(hint)
    if origin in (types.UnionType, typing.Union) and type(None) in args and len(args) == 2:
        return _optional(_encoder(next(a for a in args if a is not type(None))))
    if origin is dict and (args[0] is str or _is_literal(args[0])):
        value_enc = _encoder(args[1])
        return lambda value: {key: value_enc(item) for key, item in value.items()}
    if origin is set and (args[0] is str or _is_literal(args[0])):
        return sorted
    if origin is list or (origin is tuple and len(args) == 2 and args[1] is Ellipsis):
        item_enc = _encoder(args[0])
        return lambda value: [item_enc(item) for item in value]
    raise UnsupportedState(f"cannot snapshot a value of type {hint}")


def _encode_fields(hints: dict[str, Any]) -> Codec:
    """A dataclass as the list of its fields' values, in order (positional: the format digest
    covers the field names and their order). The values are read in one `attrgetter` call and
    only the fields that need it are encoded: a wide goal's snapshot encodes every task's
    state, and a getattr and an identity call per field were a tenth of a fan-out's CPU."""
    names = list(hints)
    special = [(i, enc) for i, enc in enumerate(_encoder(h) for h in hints.values())
               if enc is not _identity]
    get = operator.attrgetter(*names)
    if len(names) == 1:
        only = _encoder(hints[names[0]])
        return lambda value: [only(get(value))]

    def encode(value: Any) -> list[Any]:
        values = list(get(value))
        for index, enc in special:
            values[index] = enc(values[index])
        return values

    return encode


@functools.cache
def _decoder(hint: Any) -> Codec:
    if hint in _PLAIN or get_origin(hint) is Literal:
        return _identity
    if hint is Plan:
        return _decode_plan
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        cls = hint
        fields = [(name, _decoder(sub)) for name, sub in get_type_hints(cls).items()]

        names = tuple(name for name, _ in fields)
        width = len(names)
        converted = [(index, name, dec) for index, (name, dec) in enumerate(fields)
                     if dec is not _identity]
        new = object.__new__

        def decode(data: list[Any]) -> Any:
            # Assigned as a fold leaves them: no __init__/__post_init__ (which would rebuild
            # GoalState's indexes from scratch rather than take the folded ones).
            if len(data) != width:
                raise StaleSnapshot(f"{cls.__name__}: {len(data)} fields, not {width}")
            values = dict(zip(names, data, strict=True))
            for index, name, dec in converted:
                item = data[index]
                if item is not None:
                    values[name] = dec(item)
            obj = new(cls)
            obj.__dict__ = values
            return obj

        if cls is not GoalState:
            return decode

        def decode_goal_state(data: list[Any]) -> Any:
            accepted = data[_ACCEPTED]
            goal_state: GoalState
            if not isinstance(accepted, list):
                goal_state = decode(data)
            else:
                goal_state = decode([*data[:_ACCEPTED], {}, *data[_ACCEPTED + 1:]])
                # Task ids: each entry the task's own output object, as the fold leaves it.
                goal_state.accepted = {
                    task_id: goal_state.tasks[task_id].output for task_id in accepted
                }
            if goal_state.plan is None and goal_state.plan_file is not None:  # see below
                goal_state.plan, goal_state.fragment_outputs = _rebuilt(goal_state)
            return goal_state

        return decode_goal_state
    origin, args = get_origin(hint), get_args(hint)
    if origin in (types.UnionType, typing.Union) and type(None) in args and len(args) == 2:
        return _optional(_decoder(next(a for a in args if a is not type(None))))
    if origin is dict:
        value_dec = _decoder(args[1])
        if value_dec is _identity:
            return dict
        return lambda value: {key: value_dec(item) for key, item in value.items()}
    if origin is set:
        return set
    if origin is list:
        item_dec = _decoder(args[0])
        return lambda value: [item_dec(item) for item in value]
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:  # tuple[X, ...]
        item_dec = _decoder(args[0])
        return lambda value: tuple(item_dec(item) for item in value)
    raise UnsupportedState(f"cannot snapshot a value of type {hint}")


def _encode_goal_state(goal_state: GoalState) -> list[Any]:
    """GoalState's fields; `accepted` (each succeeded task's output, kept by the fold for
    bindings) as the task ids alone when every entry is that task's own output, as a fold of
    `OutputAccepted` leaves it, so outputs are not stored twice.

    A plan that planners or maps extended is not stored: its added tasks hold ids no plan file
    may (`plan/x`, `search[3]`), so it would not survive validation. The plan the goal started
    with (`plan_file`) is, with the fragments and map widths already in the state; decoding
    places them again (`extended_plan`), and encoding checks first that this gives the very
    plan the fold built. The planners' output bindings (`fragment_outputs`) likewise."""
    extended = goal_state.plan_file is not None
    if extended:
        _check_rebuilds(goal_state)
    encoded: list[Any] = [
        None if extended and index in _REBUILT else encode(getattr(goal_state, name))
        for index, (name, encode) in enumerate(_goal_state_fields())
    ]
    accepted = goal_state.accepted
    tasks = goal_state.tasks
    if all(task_id in tasks and tasks[task_id].output is out for task_id, out in accepted.items()):
        encoded[_ACCEPTED] = list(accepted)
    return encoded


def _is_literal(hint: Any) -> bool:
    return get_origin(hint) is Literal


@functools.cache
def _goal_state_fields() -> list[tuple[str, Codec]]:
    return [(name, _encoder(sub)) for name, sub in get_type_hints(GoalState).items()]


_ACCEPTED = list(get_type_hints(GoalState)).index("accepted")
# Fields of a goal with an extended plan that decoding rebuilds from the others (`_rebuilt`).
_REBUILT = frozenset(
    list(get_type_hints(GoalState)).index(name) for name in ("plan", "fragment_outputs")
)

# Extended plans checked lately, by identity: a goal's plan changes only when a planner or a map
# adds tasks, so its snapshots every SNAPSHOT_INTERVAL events check it once.
_REBUILT_PLANS: dict[int, tuple[Plan, bool]] = {}


def _rebuilt(goal_state: GoalState) -> tuple[Plan, dict[str, Any]]:
    """An extended goal's plan and planners' output bindings, from the rest of its state."""
    assert goal_state.plan_file is not None
    fragments = goal_state.fragments
    plan = extended_plan(goal_state.plan_file, goal_state.children, fragments)
    outputs = {planner: parse_fragment(planner, fragment)[2]
               for planner, fragment in fragments.items()}
    return plan, outputs


def _check_rebuilds(goal_state: GoalState) -> None:
    plan = goal_state.plan
    if _recall(_REBUILT_PLANS, plan):
        return
    try:
        rebuilt = _rebuilt(goal_state)
    except Exception as exc:  # a fold this code does not rebuild: no snapshot, fold instead
        raise UnsupportedState(f"the extended plan does not rebuild: {exc!r}") from None
    if rebuilt != (plan, goal_state.fragment_outputs):
        raise UnsupportedState("the extended plan does not rebuild from its fragments")
    _remember(_REBUILT_PLANS, plan, True)


# Plans encoded lately, by identity: goals of one plan share one Plan object (the fold's
# cache), so a snapshot of each of them dumps and checks it once (~0.4 ms for 50 tasks).
_ENCODED_PLANS: dict[int, tuple[Plan, dict[str, Any]]] = {}
_PLANS_LOCK = threading.Lock()  # runners of several goals save from their own threads


def _recall(cache: dict[int, tuple[Plan, Any]], plan: Plan) -> Any:
    """What `cache` holds for this very Plan object (None if nothing)."""
    known = cache.get(id(plan))
    return known[1] if known is not None and known[0] is plan else None


def _remember(cache: dict[int, tuple[Plan, Any]], plan: Plan, value: Any) -> None:
    with _PLANS_LOCK:
        if len(cache) >= 16:
            cache.pop(next(iter(cache)))
        cache[id(plan)] = (plan, value)


def _encode_plan(plan: Plan) -> dict[str, Any]:
    known: dict[str, Any] | None = _recall(_ENCODED_PLANS, plan)
    if known is not None:
        return known
    data = canonical_plan(plan)
    try:
        survives = goal_module._validated_plan(data) == plan
    except ValueError:  # pydantic's ValidationError: e.g. a plan a planner or a map extended
        survives = False
    if not survives:  # the fold would rebuild another plan: no snapshot, the goal is folded
        raise UnsupportedState("the plan does not survive its canonical JSON")
    _remember(_ENCODED_PLANS, plan, data)
    return data


def _decode_plan(data: dict[str, Any]) -> Plan:
    return goal_module._validated_plan(data)

