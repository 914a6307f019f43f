"""The event store: eventsourcing's own SQLite and PostgreSQL persistence, chosen by a URL.

`sqlite:///baton.db` (relative), `sqlite:////abs/path.db` (absolute) or
`postgresql://user:pass@host:port/db[?schema=NAME&sslmode=...]` (any libpq parameter). Driver
errors are translated here, at the boundary, into `StoreError` with one line naming the store.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import shutil
import sqlite3
import tempfile
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from eventsourcing.application import Application, Repository
from eventsourcing.persistence import (
    EventStore,
    IntegrityError,
    InterfaceError,
    Mapper,
    MapperDeserialisationError,
    OperationalError,
    PersistenceError,
    StoredEvent,
    Transcoder,
)
from eventsourcing.sqlite import SQLiteFactory
from eventsourcing.utils import TopicError, register_topic, resolve_topic

from baton.domain.errors import BatonError
from baton.domain.goal import Goal, GoalEvent
from baton.projections.collector import collector_paused
from baton.settings import DEFAULT_STORE, settings
from baton.store.snapshots import (
    StaleSnapshot,
    UnsupportedState,
    postgres_snapshot_recorder,
    select_goal_rows,
    snapshot_due,
    sqlite_snapshot_recorder,
    take_snapshot,
)
from baton.store.transcoder import OrjsonTranscoder

__all__ = [
    "DEFAULT_STORE",
    "BatonStore",
    "GoalNotFound",
    "StoreError",
    "StoreReplaced",
    "UnknownEvent",
    "describe_store",
    "open_store",
    "store_env",
    "store_url",
]

logger = logging.getLogger(__name__)

# Histories stored before Baton had one import name (release 0.1) name the aggregate and its
# events `domain.goal:Goal[.Event]`; they resolve to the same classes. Only this exact class
# is registered, never the `domain` prefix: a user's own `domain` package stays theirs.
OLD_GOAL_TOPIC = "domain.goal:Goal"
register_topic(OLD_GOAL_TOPIC, Goal)

# The PostgreSQL application recorder, by topic (imported on first use: SQLite never imports
# psycopg). It writes without eventsourcing's table lock; its readers never pass a gap.
PG_RECORDER_TOPIC = "baton.store.pg_recorder:OrderedInsertPostgresRecorder"
# The SQLite application recorder: the library's, writing a save's rows in one statement.
SQLITE_RECORDER_TOPIC = "baton.store.sqlite_recorder:OneStatementSQLiteRecorder"


class StoreError(BatonError):
    """The store is unreachable, misconfigured, or refused a write."""


class StoreReplaced(StoreError):
    """The SQLite file this process opened was deleted or replaced: no retry can reach it again
    (a long-lived process stops, and is restarted on the file now there)."""


class GoalNotFound(BatonError):
    def __init__(self, goal_id: str) -> None:
        self.goal_id = goal_id
        super().__init__(f"no goal {goal_id!r} in this store")


class UnknownEvent(BatonError):
    """A stored event of a type this Baton does not know: written by a newer Baton sharing the
    store (or by something that is not Baton). Nothing of the goal is read or decided here."""

    def __init__(self, goal_id: str, seq: int, topic: str, version: int | None = None) -> None:
        self.goal_id = goal_id
        what = f"a {topic!r}" if version is None else f"version {version} of {topic!r}"
        super().__init__(
            f"goal {goal_id!r}: event {seq} is {what}, which this Baton does not know "
            f"(written by a newer Baton? upgrade this one to read the goal)"
        )


class NewerEventVersion(ValueError):
    """A stored event of a later version of its class than this Baton's (a newer Baton's)."""

    def __init__(self, topic: str, version: int, known: int) -> None:
        self.version = version
        super().__init__(f"{topic} is stored at version {version}; this Baton reads versions "
                         f"up to {known}")


class CheckedMapper(Mapper[str]):
    """eventsourcing's mapper, refusing an event stored at a later version of its class than
    this Baton's: the library reads it as this version (nothing upcasts down), its new fields
    ignored unseen, and a goal a newer Baton wrote would be folded, and decided, as if they
    were not there. Otherwise the library's `to_domain_event`, step for step."""

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        cls = resolve_topic(stored_event.topic)
        stored_state = stored_event.state
        try:
            if self.cipher:
                stored_state = self.cipher.decrypt(stored_state)
            if self.compressor:
                stored_state = self.compressor.decompress(stored_state)
            event_state: dict[str, Any] = self.transcoder.decode(stored_state)
        except Exception as e:
            raise MapperDeserialisationError(
                f"Failed to deserialise state of stored event with topic "
                f"'{stored_event.topic}', originator_id '{stored_event.originator_id}' and "
                f"originator_version {stored_event.originator_version}: {e}"
            ) from e
        event_state["originator_id"] = stored_event.originator_id  # ids are str: no convertor
        event_state["originator_version"] = stored_event.originator_version
        class_version = getattr(cls, "class_version", 1)
        from_version = event_state.pop("class_version", 1)
        if from_version > class_version:
            raise NewerEventVersion(stored_event.topic, from_version, class_version)
        while from_version < class_version:
            getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(event_state)
            from_version += 1
        domain_event = object.__new__(cls)
        object.__setattr__(domain_event, "__dict__", event_state)
        return domain_event


def _decoded(mapper: Any, goal_id: str, rows: Sequence[StoredEvent]) -> list[Any]:
    """The stored rows as events; a row this Baton cannot read as it was written (a type it
    does not know, a later version of one) is an `UnknownEvent` naming its seq and type."""
    to_event = mapper.to_domain_event
    events = []
    for row in rows:
        try:
            events.append(to_event(row))
        except TopicError:
            raise UnknownEvent(goal_id, row.originator_version, row.topic) from None
        except NewerEventVersion as exc:
            raise UnknownEvent(goal_id, row.originator_version, row.topic,
                               exc.version) from None
    return events


class BatonApplication(Application[str]):
    """eventsourcing's application: repository, recorder and notification log for goals, and
    a snapshot store (baton.store.snapshots) that `BatonStore.get` reads first."""

    name = "baton"
    is_snapshotting_enabled = True

    def __init__(self, env: Any = None) -> None:
        """The library's, closing what it opened when a store refuses it (down, a missing
        schema): left to the garbage collector, a PostgreSQL pool's worker threads lived on
        after each failed open, and a collection that ran on one of them printed `Exception
        ignored in Application.__del__ ... cannot join current thread` to the user's stderr."""
        try:
            super().__init__(env)
        except BaseException:
            factory = getattr(self, "factory", None)
            if factory is not None:
                with contextlib.suppress(Exception):
                    factory.close()
            raise

    def construct_mapper(self) -> Mapper[str]:
        """The library's mapper, refusing events of a later version (`CheckedMapper`)."""
        return self.factory.mapper(transcoder=self.construct_transcoder(),
                                   mapper_class=CheckedMapper)

    def construct_transcoder(self) -> Transcoder:
        """The library's JSON transcoder and transcodings, encoding through orjson
        (baton.store.transcoder): the same bytes, a tenth of the time."""
        transcoder = OrjsonTranscoder()
        self.register_transcodings(transcoder)
        return transcoder

    def construct_repository(self) -> Repository[str]:
        """The repository folds events only: snapshots are read by `BatonStore.get`, which
        checks each one's format before trusting it (eventsourcing's own use would not)."""
        repository = super().construct_repository()
        repository.snapshot_store = None
        return repository

    def construct_snapshot_store(self) -> EventStore[str]:
        """eventsourcing's snapshot recorders, keeping each goal's latest snapshot only; on
        PostgreSQL its table created once, not on every open (as for the events): several
        processes opening one store at once must not race on DDL."""
        if isinstance(self.factory, SQLiteFactory):
            recorder = sqlite_snapshot_recorder(self.factory)
        else:  # store_env admits SQLite and PostgreSQL only
            recorder = postgres_snapshot_recorder(self.factory)
        return self.factory.event_store(mapper=self.mapper, recorder=recorder)


def store_env(url: str) -> dict[str, str]:
    """The eventsourcing environment for a store URL (settings read in this one place)."""
    if "\x00" in url:  # no file name, host or database name can hold one
        raise StoreError(f"store {describe_store(url)!r}: contains a NUL byte")
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        raw_path = unquote(parts.path)
        path = raw_path[1:] if raw_path.startswith("/") else raw_path
        if not path:
            raise StoreError(f"store {url!r}: no database file (try sqlite:///baton.db)")
        if path != ":memory:":
            parent = Path(path).parent
            if not parent.is_dir():
                raise StoreError(f"store {url!r}: directory {str(parent)!r} does not exist")
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": path,
            "SQLITE_LOCK_TIMEOUT": "30",
            "ORIGINATOR_ID_TYPE": "text",
            "APPLICATION_RECORDER_TOPIC": SQLITE_RECORDER_TOPIC,
        }
    if parts.scheme in ("postgresql", "postgres"):
        return _postgres_env(url)
    raise StoreError(
        f"store {describe_store(url)!r}: unsupported scheme {parts.scheme!r} "
        "(use sqlite:/// or postgresql://)"
    )


def _postgres_env(url: str) -> dict[str, str]:
    """A PostgreSQL URL's settings: libpq's own parameters pass through (an unknown one is
    refused, as libpq would), `schema` picks the schema."""
    from baton.store.postgres import LIBPQ_PARAMS, UrlError, extra_params, parse_postgres_url

    try:
        params, schema = parse_postgres_url(url)
    except UrlError as exc:
        raise StoreError(f"store {describe_store(url)!r}: {exc}") from None
    if not params.get("dbname"):
        raise StoreError(f"store {describe_store(url)!r}: no database name in the URL")
    env = {
        # eventsourcing's, its pool reconnecting promptly and given the URL's libpq parameters
        "PERSISTENCE_MODULE": "baton.store.postgres",
        "POSTGRES_DBNAME": params["dbname"],
        "POSTGRES_HOST": params.get("host") or "127.0.0.1",
        "POSTGRES_PORT": params.get("port") or "5432",
        "POSTGRES_USER": params.get("user") or os.environ.get("PGUSER", "postgres"),
        "POSTGRES_PASSWORD": params.get("password") or os.environ.get("PGPASSWORD", ""),
        "POSTGRES_CONNECT_TIMEOUT": params.get("connect_timeout") or "5",
        "ORIGINATOR_ID_TYPE": "text",
        "APPLICATION_RECORDER_TOPIC": PG_RECORDER_TOPIC,
    }
    if extra := extra_params(params):
        env[LIBPQ_PARAMS] = json.dumps(extra, sort_keys=True)
    if schema is not None:
        env["POSTGRES_SCHEMA"] = schema
    return env


def _named_connect_failure(url: str, env: dict[str, str]) -> StoreError | None:
    """The server's reason (a missing database, a refused login) when the pool only timed out."""
    if not env["PERSISTENCE_MODULE"].endswith("postgres"):
        return None
    from baton.store.postgres import connect_problem

    problem = connect_problem(env)
    return None if problem is None else StoreError(f"store {describe_store(url)}: {problem}")


# A dropped connection (server restart, failover, pg_terminate_backend) is retried this many
# times, waiting 0.05 s doubling to 1 s between tries (about 5 s in all): long enough for a pool
# to replace every dead connection it holds, short enough that a store that stays down ends the
# run promptly, in one line.
RECONNECT_ATTEMPTS = 10


def insert_surviving_drops(
    recorder: Any, stored_events: Sequence[Any], insert: Any, *, attempts: int = RECONNECT_ATTEMPTS
) -> Sequence[int] | None:
    """`insert(stored_events)`, retried after a dropped connection.

    eventsourcing re-raises psycopg's errors as its own `OperationalError`/`InterfaceError`
    (the reason a retry keyed on psycopg's classes never fired). A retry is safe because of the
    aggregate version: the dropped insert either committed or it did not. If it did, the retry
    conflicts, and finding exactly these events stored means the save succeeded; a conflict with
    anything else is a real one, for the caller.
    """
    delay = 0.05
    for attempt in range(attempts):
        try:
            return insert(stored_events)  # type: ignore[no-any-return]
        except IntegrityError:
            if attempt and _already_stored(recorder, stored_events):
                return None  # the dropped attempt committed
            raise
        except (InterfaceError, OperationalError):
            if attempt == attempts - 1:
                raise  # the store stays down: a StoreError at the boundary
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
    raise AssertionError("unreachable")


def _already_stored(recorder: Any, stored_events: Sequence[Any]) -> bool:
    by_aggregate: dict[Any, list[Any]] = {}
    for event in stored_events:
        by_aggregate.setdefault(event.originator_id, []).append(event)
    for originator_id, ours in by_aggregate.items():
        versions = [event.originator_version for event in ours]
        found = recorder.select_events(originator_id, gt=min(versions) - 1, lte=max(versions))
        mine = {(e.originator_version, e.topic, bytes(e.state)) for e in ours}
        if {(e.originator_version, e.topic, bytes(e.state)) for e in found} != mine:
            return False
    return True


def _sqlite_file(env: dict[str, str]) -> str | None:
    """The absolute path of a SQLite store's file (a `:memory:` store's is its private file);
    None for PostgreSQL. Absolute: an agent that changes the working directory must not make
    the store seem another file."""
    path = env.get("SQLITE_DBNAME")
    return None if path is None else os.path.abspath(path)


def _file_identity(path: str | None) -> tuple[int, int] | None:
    """The device and inode of a SQLite store's file: which file the path names now."""
    if path is None:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return (-1, -1)  # gone: differs from any file's identity
    return (stat.st_dev, stat.st_ino)


# libpq parameters a URL's query may carry that are secrets (`?password=...` logs in as well
# as `user:pass@`): masked in messages like the password of the netloc.
_SECRET_PARAMS = re.compile(r"(?<=[?&])((?:ssl)?password=)[^&#]*")


def describe_store(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(":" + parts.password + "@", ":***@")
        url = parts._replace(netloc=netloc).geturl()
    return _SECRET_PARAMS.sub(r"\1***", url)


@contextlib.contextmanager
def translated_errors(url: str) -> Iterator[None]:
    """Turn driver and library errors into one-line StoreErrors naming the store."""
    try:
        yield
    except (BatonError, IntegrityError):
        raise  # ours already, or a version conflict the caller resolves by re-reading
    except Exception as exc:
        if not _is_store_failure(exc):
            raise
        detail = " ".join(_without_sql_context(str(exc)).split()) or type(exc).__name__
        raise StoreError(f"store {describe_store(url)}: {_explained(detail, url)}") from None


def _without_sql_context(message: str) -> str:
    """A PostgreSQL error without the statement it quotes: its `LINE n:` excerpt with a caret
    under it, and its `CONTEXT:` (a PL/pgSQL function's statement), are Baton's own SQL, no
    help to a user who mistyped `?schema=` or lacks a privilege; `DETAIL:` and `HINT:` stay."""
    kept, quoting = [], False
    for line in message.splitlines():
        if line.startswith(("LINE ", "CONTEXT:")):
            quoting = True
        elif line.startswith(("DETAIL:", "HINT:")):
            quoting = False
        if not quoting:
            kept.append(line)
    return "\n".join(kept)


def with_lock_timeout(env: dict[str, str]) -> dict[str, str]:
    """The store environment with the SQLite lock wait of BATON_SQLITE_LOCK_TIMEOUT: how long a
    command waits for another writer's transaction before failing in one line."""
    if env.get("PERSISTENCE_MODULE") != "eventsourcing.sqlite":
        return env
    return {**env, "SQLITE_LOCK_TIMEOUT": str(settings().sqlite_lock_timeout)}


def _explained(detail: str, url: str) -> str:
    if detail == "database is locked":
        waited = settings().sqlite_lock_timeout
        return (f"database is locked by another writer (waited {waited} s; "
                "BATON_SQLITE_LOCK_TIMEOUT sets how long)")
    if detail == "unable to open database file":
        return f"{detail}{_why_not_opened(url)}"
    return detail


def _why_not_opened(url: str) -> str:
    """What SQLite's "unable to open database file" does not say: the usual reasons, when one
    holds (a read-only directory fails reads too: WAL mode opens -wal and -shm files there)."""
    path = _sqlite_file(store_env(url))
    if path is None:
        return ""
    parent = str(Path(path).parent)
    if Path(path).is_dir():
        return f" ({path!r} is a directory)"
    if not os.access(parent, os.W_OK):
        return (f" (directory {parent!r} is not writable: SQLite keeps its -wal and -shm "
                "files beside the database)")
    if Path(path).exists() and not os.access(path, os.R_OK | os.W_OK):
        return f" ({path!r} is not readable and writable by this user)"
    return ""


def _is_store_failure(exc: Exception) -> bool:
    """The library's persistence errors, and driver errors it lets through (a SQLite file that
    is not a database fails in `PRAGMA journal_mode` before eventsourcing wraps anything)."""
    return isinstance(exc, PersistenceError | OSError | sqlite3.Error) or type(
        exc
    ).__module__.startswith("psycopg")  # by module: SQLite users never import psycopg


@functools.cache
def _pg_latest_topics(schema: str, table: str) -> str:
    from psycopg.sql import SQL, Identifier

    return SQL(
        "SELECT g.id AS goal, e.topic FROM unnest(%s::text[]) AS g(id) "
        "CROSS JOIN LATERAL (SELECT topic FROM {}.{} WHERE originator_id = g.id "
        "ORDER BY originator_version DESC LIMIT 1) AS e"
    ).format(Identifier(schema), Identifier(table)).as_string(None)


# Where a `sqlite:///:memory:` store keeps its file: the first of these that exists (a tmpfs),
# else the system's temporary directory.
MEMORY_DIRS = ("/dev/shm",)


class BatonStore:
    """Goals in and out of the event store; the one place that touches persistence."""

    def __init__(self, *, url: str, creates: bool = True) -> None:
        self.url = url
        self.env = with_lock_timeout(store_env(url))
        self._remove_memory_file: Callable[[], Any] | None = None
        if self.env.get("SQLITE_DBNAME") == ":memory:":
            # SQLite's ":memory:" is a database per connection: the pool's second connection
            # (a second thread, the read models) found no tables. The store is a file of its own
            # instead, in memory where the system has a tmpfs, removed when the store closes.
            parent = next((path for path in MEMORY_DIRS if os.path.isdir(path)), None)
            memory_dir = tempfile.mkdtemp(prefix="baton-memory-", dir=parent)
            self._remove_memory_file = weakref.finalize(
                self, shutil.rmtree, memory_dir, ignore_errors=True)  # on close, or when dropped
            self.env["SQLITE_DBNAME"] = os.path.join(memory_dir, "baton.db")
            Path(self.env["SQLITE_DBNAME"]).touch()  # an empty file: a new, empty database
        self.sqlite_file = _sqlite_file(self.env)  # resolved now, in the opening directory
        # False for a command that only reads or changes what is recorded: a SQLite file, or a
        # PostgreSQL schema's tables, that do not exist are then not created (an empty
        # `baton.db` in the wrong directory, or an empty schema named by a misspelt
        # `?schema=`, hid that the command looked in the wrong place, and stayed behind).
        self.creates = creates
        self._no_pg_tables = not creates and self._pg_tables_missing()
        if not self._would_create_a_file() and not self._no_pg_tables:
            self.app  # noqa: B018 -- opened now, as it always was; errors surface here

    @property
    def missing(self) -> bool:
        """A store with nothing in it yet (no SQLite file, no tables in the PostgreSQL schema),
        opened by a command that creates none."""
        return (not self.creates and not self.is_open
                and (self._would_create_a_file() or self._no_pg_tables))

    def _would_create_a_file(self) -> bool:
        return self.sqlite_file is not None and not Path(self.sqlite_file).exists()

    def _pg_tables_missing(self) -> bool:
        """Asked on a connection of its own: a server that refuses it is the command's one-line
        error at once (opening the pool would wait ~5 s for a server that is down)."""
        if not self.is_postgres:
            return False
        import psycopg

        from baton.store.postgres import holds_events_table, server_words

        try:
            return not holds_events_table(self.env, f"{BatonApplication.name}_events")
        except psycopg.Error as exc:
            raise StoreError(f"store {describe_store(self.url)}: {server_words(exc)}") from None

    def _nothing_recorded(self) -> str:
        if self.sqlite_file is not None:
            return f"there is no file {self.sqlite_file!r}"
        schema = self.env.get("POSTGRES_SCHEMA") or "public"
        return (f"schema {schema!r} of database {self.env['POSTGRES_DBNAME']!r} has no "
                "Baton tables")

    @functools.cached_property
    def app(self) -> BatonApplication:
        """A new SQLite file is created on first use only: a command refused before it reads or
        writes (an invalid goal input) creates none, nor does one that creates no goal. Every
        other store opens at once."""
        if self.missing:
            raise StoreError(f"store {describe_store(self.url)}: {self._nothing_recorded()}: "
                             "nothing has been recorded there (--store or $BATON_STORE names "
                             "the store)")
        try:
            with translated_errors(self.url):
                app = BatonApplication(env=self.env)
        except StoreError:
            named = _named_connect_failure(self.url, self.env)
            if named is None:
                raise
            raise named from None
        self._opened_file = _file_identity(self.sqlite_file)
        return app

    def check_same_file(self) -> None:
        """A SQLite file deleted or replaced (a restored backup) while this process has it open
        keeps taking the writes of the connections opened before, into an unlinked file: a run
        went on, and reported success, with its later events lost. A save that finds another
        file (or none) at the path ends the command in one line instead; whichever file that
        save reached, `baton resume` goes on from what the file at the path now holds."""
        opened = getattr(self, "_opened_file", None)
        if opened is None:  # PostgreSQL, or not opened
            return
        if _file_identity(self.sqlite_file) != opened:
            raise StoreReplaced(
                f"store {describe_store(self.url)}: the database file {self.sqlite_file!r} was "
                "deleted or replaced while this process had it open; nothing more is written")

    @property
    def is_open(self) -> bool:
        """Whether the store was opened (a SQLite file exists from then on)."""
        return "app" in self.__dict__

    @property
    def recorder(self) -> Any:
        return self.app.recorder

    @property
    def is_postgres(self) -> bool:
        return self.env["PERSISTENCE_MODULE"].endswith("postgres")

    def get(self, goal_id: str) -> Goal:
        """The goal as its events fold it: from its latest usable snapshot plus the events
        after it, else from every event (baton.store.snapshots says when a snapshot is used)."""
        if "\x00" in goal_id or self.missing:  # (a NUL: no goal's id; PostgreSQL refuses it)
            raise GoalNotFound(goal_id)
        with translated_errors(self.url), collector_paused():
            snapshot_row, rows = select_goal_rows(self.app, goal_id)
            if not rows:
                raise GoalNotFound(goal_id)
            events: list[Any] = _decoded(self.app.mapper, goal_id, rows)
            goal: Goal | None = None
            if snapshot_row is not None:
                try:
                    snapshot = self.app.mapper.to_domain_event(snapshot_row)
                except (TopicError, NewerEventVersion):  # a newer Baton's: a cache, not a record
                    snapshot = None
                goal = None if snapshot is None else self._restored(snapshot, events[0])
                # an unusable snapshot: every event
                events = self._all_events(goal_id) if goal is None else events[1:]
            for event in events:
                goal = event.mutate(goal)
        assert goal is not None
        return goal

    @staticmethod
    def _restored(snapshot: Any, at_event: Any) -> Goal | None:
        """The snapshot's goal when it is usable: of this code's format, and taken after the
        very event still stored at its version (same timestamp: not a replaced history)."""
        try:
            goal: Goal = snapshot.mutate(None)
        except StaleSnapshot:
            return None
        if at_event.originator_version != goal.version or at_event.timestamp != snapshot.timestamp:
            return None
        return goal

    def exists(self, goal_id: str) -> bool:
        try:
            self.get(goal_id)
        except GoalNotFound:
            return False
        return True

    def save(self, goal: Goal) -> Sequence[GoalEvent]:
        """Save pending events in one transaction, and return them; a conflict propagates for
        the caller.

        Straight through the application's mapper, then one recorder insert (what its event
        store's `put` does, without the `Recording` and `Notification` it builds per event):
        `Application.save` adds runtime-checked protocol tests per aggregate, snapshot and
        follower hooks that Baton does not use (no repository cache, no followers; snapshots
        are taken here, by Baton's own rule), about a fifth of a no-op task's orchestration.
        If a repository cache is configured the full `Application.save` runs. After the events,
        in a transaction of its own, a snapshot when `snapshot_due` says so.
        """
        with translated_errors(self.url):
            if self.app.repository.cache is not None:
                recordings = self.app.save(goal)
                self.check_same_file()
                return [recording.domain_event for recording in recordings]  # type: ignore[misc]
            pending = goal.collect_events()
            if pending:  # the application's event store, less the notifications it builds
                to_stored = self.app.mapper.to_stored_event
                self.app.recorder.insert_events([to_stored(event) for event in pending])
                self.check_same_file()  # after the insert: it may have gone to a dead file
        if pending and snapshot_due(goal, pending[0].originator_version):
            self._snapshot(goal)
        return pending

    def _snapshot(self, goal: Goal) -> None:
        """Store a snapshot of the goal as just saved. A cache only: a goal it cannot encode,
        or a store that refuses the row, loses nothing (the goal is then folded from events)."""
        snapshots = self.app.snapshots
        if snapshots is None:
            return
        try:
            snapshots.put([take_snapshot(goal)])
        except (UnsupportedState, PersistenceError) as exc:
            logger.debug("no snapshot of goal %r at version %d: %s", goal.id, goal.version, exc)

    def latest_topics(self, goal_ids: Sequence[str]) -> dict[str, str]:
        """The topic of each goal's latest event, read from the table in one statement (not
        through the notification log, whose readers may lag a commit): what a worker checks
        before it claims, and folds, a goal that may have just ended."""
        if not goal_ids:
            return {}
        recorder: Any = self.app.events.recorder  # the dialect's: its table and datastore
        with translated_errors(self.url):
            if self.is_postgres:
                statement = _pg_latest_topics(recorder.datastore.schema,
                                              recorder.events_table_name)
                with recorder.datastore.get_connection() as conn:
                    rows = conn.execute(statement, (list(goal_ids),), prepare=True).fetchall()
                return {row["goal"]: row["topic"] for row in rows}
            marks = ", ".join("?" * len(goal_ids))
            table = recorder.events_table_name  # eventsourcing's fixed name, no user input
            with recorder.datastore.transaction(commit=False) as c:
                c.execute(
                    f"SELECT originator_id, topic FROM {table} AS e WHERE originator_id IN "
                    f"({marks}) AND originator_version = (SELECT max(originator_version) "
                    f"FROM {table} WHERE originator_id = e.originator_id)", list(goal_ids))
                return {row[0]: row[1] for row in c.fetchall()}

    def events(self, goal_id: str) -> Sequence[GoalEvent]:
        """Every event of a goal, in order (no agent, no network needed to read them)."""
        if "\x00" in goal_id or self.missing:  # as in `get`
            raise GoalNotFound(goal_id)
        with translated_errors(self.url), collector_paused():
            events = self._all_events(goal_id)
        if not events:
            raise GoalNotFound(goal_id)
        return events

    def _all_events(self, goal_id: str) -> list[Any]:
        return _decoded(self.app.mapper, goal_id, self.app.events.recorder.select_events(goal_id))

    def close(self) -> None:
        from baton.store.ownership import close_ownership  # it imports this module

        close_ownership(self)  # its lock sessions, not left for the garbage collector
        if self.is_open:  # never opened: nothing to close, nothing to create
            notifier = getattr(self.app.recorder, "notifier", None)
            if notifier is not None:  # PostgreSQL: the last saves' NOTIFY, before the pool goes
                notifier.flush()
            self.app.close()
        if self._remove_memory_file is not None:
            self._remove_memory_file()


def store_url(url: str | None) -> str:
    """`url`, else $BATON_STORE, else sqlite:///baton.db. An empty one is refused: a setting
    read as "" (`--store "$UNSET"`) silently meant the default store."""
    if url is not None and not url.strip():
        raise StoreError("store URL is empty: leave it out for $BATON_STORE, then "
                         "sqlite:///baton.db")
    return url or settings().store


def open_store(url: str | None = None, *, creates: bool = True) -> BatonStore:
    """Open the store at `store_url(url)`; one that `creates` nothing refuses to read a store
    with nothing recorded (`BatonStore.missing`)."""
    return BatonStore(url=store_url(url), creates=creates)
