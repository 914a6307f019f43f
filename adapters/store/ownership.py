"""One owner per goal: the store's own locks, which end with the process that holds them.

PostgreSQL: a session-level advisory lock keyed by (schema, goal); a process holds all its
goals' locks on one session of its own (a `--wait` that waited for another process keeps its
goal on the session it waited on) and asks who holds what on a second one, which holds
nothing. The owner is read back from `pg_locks` joined with `pg_stat_activity` (the holder's
`application_name` says host, pid and since: when that lock session started). SQLite: an
`fcntl.flock` on `<db>.locks/<hash>.lock`, the owner written inside. Either lock is released
by the operating system or the server the moment its process dies: no lease, no heartbeat,
nothing to time out. An in-memory store gets an in-process lock (also the test double).

A lock only keeps honest runners apart; the aggregate version is the fence. A runner whose save
conflicts with a write by another *runner* stops driving the goal (`FencedOut`) rather than
executing dispatches it did not record (docs/reference.md, "Workers").
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import socket
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from baton.domain.errors import BatonError, GoalOwned, still_running, unrecorded_outcomes
from baton.store.eventstore import BatonStore, describe_store

__all__ = [
    "FencedOut",
    "GoalLock",
    "Owner",
    "Ownership",
    "close_ownership",
    "owner_json",
    "ownership_of",
    "owning",
]


class FencedOut(BatonError):
    """Another runner wrote to the goal while this one drove it: this one stopped."""

    def __init__(
        self, goal_id: str, unrecorded: Sequence[str] = (), running: Sequence[str] = ()
    ) -> None:
        self.goal_id = goal_id
        self.unrecorded = list(unrecorded)  # see `unrecorded_outcomes`
        # Unsafe attempts in flight here when it stopped (`pay #1`): their outcomes are
        # recorded by no one, and the new owner escalates them as outcome unknown.
        self.running = list(running)
        super().__init__(
            f"goal {goal_id!r}: another runner recorded events while this one drove it; "
            f"this runner stopped and left the goal to it{self.what_is_lost()}"
        )

    def what_is_lost(self) -> str:
        return unrecorded_outcomes(self.unrecorded) + still_running(self.running)


@dataclass(frozen=True)
class Owner:
    """Who drives (or, with alive=False, last drove and died driving) a goal."""

    host: str
    pid: int
    since: str  # UTC, ISO 8601 to the second
    alive: bool

    def as_json(self) -> dict[str, Any]:
        return {"host": self.host, "pid": self.pid, "since": self.since, "alive": self.alive}


class GoalLock(Protocol):
    goal_id: str

    def release(self) -> None: ...


class Ownership(Protocol):
    """The port: claim a goal, see who holds one. Implementations are thread-safe."""

    def try_acquire(self, goal_id: str) -> GoalLock | None: ...

    def acquire(self, goal_id: str) -> GoalLock: ...  # blocks until the holder lets go

    def owner(self, goal_id: str) -> Owner | None: ...

    def held(self, goal_ids: Iterable[str]) -> set[str]: ...  # those a live process holds

    def close(self) -> None: ...


def _me() -> tuple[str, int, str]:
    since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return socket.gethostname(), os.getpid(), since


# --- in memory (a SQLite URI naming a shared in-memory database, `file::memory:…`) ---


@dataclass
class _MemoryLock:
    goal_id: str
    owners: MemoryOwnership

    def release(self) -> None:
        with self.owners.guard:
            self.owners.holders.pop(self.goal_id, None)
            self.owners.guard.notify_all()


class MemoryOwnership:
    def __init__(self) -> None:
        self.guard = threading.Condition()
        self.holders: dict[str, Owner] = {}

    def try_acquire(self, goal_id: str) -> GoalLock | None:
        with self.guard:
            if goal_id in self.holders:
                return None
            host, pid, since = _me()
            self.holders[goal_id] = Owner(host, pid, since, True)
            return _MemoryLock(goal_id, self)

    def acquire(self, goal_id: str) -> GoalLock:
        with self.guard:
            while (lock := self.try_acquire(goal_id)) is None:
                self.guard.wait()
            return lock

    def owner(self, goal_id: str) -> Owner | None:
        with self.guard:
            return self.holders.get(goal_id)

    def held(self, goal_ids: Iterable[str]) -> set[str]:
        with self.guard:
            return {goal_id for goal_id in goal_ids if goal_id in self.holders}

    def close(self) -> None:
        pass


# --- SQLite: a file lock per goal beside the database ---


@dataclass
class _FileLock:
    goal_id: str
    fd: int

    def release(self) -> None:
        # Emptied on a clean release: an owner left in the file means its holder died driving.
        with suppress(OSError):
            os.ftruncate(self.fd, 0)
        os.close(self.fd)  # closing the descriptor drops the flock


class FileOwnership:
    def __init__(self, db_path: str) -> None:
        self.directory = Path(db_path + ".locks")

    def _path(self, goal_id: str) -> Path:
        return self.directory / (hashlib.sha256(goal_id.encode()).hexdigest()[:32] + ".lock")

    def _lock(self, goal_id: str, *, block: bool) -> GoalLock | None:
        self.directory.mkdir(exist_ok=True)
        fd = os.open(self._path(goal_id), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if block else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        host, pid, since = _me()
        data = json.dumps({"goal_id": goal_id, "host": host, "pid": pid, "since": since})
        os.ftruncate(fd, 0)
        os.pwrite(fd, data.encode(), 0)
        return _FileLock(goal_id, fd)

    def try_acquire(self, goal_id: str) -> GoalLock | None:
        return self._lock(goal_id, block=False)

    def acquire(self, goal_id: str) -> GoalLock:
        lock = self._lock(goal_id, block=True)
        assert lock is not None
        return lock

    def _probe(self, goal_id: str) -> tuple[bool, str]:
        """(held by a live process, the owner written in the file)."""
        try:
            fd = os.open(self._path(goal_id), os.O_RDONLY)
        except FileNotFoundError:
            return False, ""
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                alive = False
            except BlockingIOError:
                alive = True
            return alive, os.pread(fd, 4096, 0).decode(errors="replace")
        finally:
            os.close(fd)

    def owner(self, goal_id: str) -> Owner | None:
        alive, text = self._probe(goal_id)
        for _ in range(50):  # a new holder writes itself in just after taking the lock
            if not (alive and not text):
                break
            time.sleep(0.01)
            alive, text = self._probe(goal_id)
        try:
            data = json.loads(text)
        except ValueError:  # empty: released cleanly, or the holder has not written yet
            return Owner("unknown", 0, "unknown", True) if alive else None
        return Owner(str(data["host"]), int(data["pid"]), str(data["since"]), alive)

    def held(self, goal_ids: Iterable[str]) -> set[str]:
        return {goal_id for goal_id in goal_ids if self._probe(goal_id)[0]}

    def close(self) -> None:
        pass


# --- PostgreSQL: session-level advisory locks, all on one session per process ---

_APP_NAME = re.compile(r"^baton (\d+)@(\S*) (\S+)$")
_HOST_CHARS = 28  # application_name keeps 63 bytes: "baton " pid "@" host " " since


@dataclass(eq=False)
class _AdvisoryLock:
    goal_id: str
    key: int
    conn: Any  # the session that holds it: the shared one, or (own) a waiter's own
    since: str  # that session's start, as its application_name says
    own: bool
    owners: PostgresOwnership

    def release(self) -> None:
        self.owners._give_back(self)


class PostgresOwnership:
    """Every lock this process takes is held on one shared session (`self.session`).

    Advisory locks are re-entrant within a session, so the session alone cannot keep two
    threads of this process apart: `self.keys` can, the goals held or being claimed here. A
    blocking `acquire` whose goal another process holds waits on a session of its own and
    keeps holding the goal there (no gap in which a third process could take it); the shared
    session serves the other threads meanwhile. psycopg runs one statement at a time on a
    connection, so every statement on the shared session is a short one: who holds what
    (`owner`, `held`: a `pg_locks` lookup, tens of ms for a thousand goals) is asked on a
    second session that holds nothing, named "baton PID lookups".
    """

    def __init__(self, env: dict[str, str]) -> None:
        from baton.store.postgres import connect_kwargs

        # The URL's libpq parameters too (sslmode, ...); application_name is set per session.
        self.connect_args: dict[str, Any] = {**connect_kwargs(env), "autocommit": True}
        self.namespace = env.get("POSTGRES_SCHEMA", "public")
        self.guard = threading.Condition()  # over `keys`
        self.keys: dict[int, _AdvisoryLock | None] = {}  # held here (None: being claimed)
        self.session_guard = threading.Lock()  # over `session` and `since`
        self.session: Any = None
        self.since = ""
        self.probe_guard = threading.Lock()  # over `probe`, for owner()/held()
        self.probe: Any = None

    def key(self, goal_id: str) -> int:
        digest = hashlib.blake2b(f"baton:{self.namespace}:{goal_id}".encode(), digest_size=8)
        return int.from_bytes(digest.digest(), "big", signed=True)

    def _connect(self, name: str | None = None) -> tuple[Any, str]:
        """A new session named for this process's locks (or `name`), and when it opened."""
        import psycopg

        host, pid, since = _me()
        name = name or f"baton {pid}@{host[:_HOST_CHARS]} {since}"
        return psycopg.connect(**{**self.connect_args, "application_name": name}), since

    def _shared(self) -> tuple[Any, str]:
        """The shared session (opened again if the server cut it) and its start."""
        with self.session_guard:
            if self.session is None or self.session.closed or self.session.broken:
                if self.session is not None:
                    self.session.close()  # its locks went with it
                self.session, self.since = self._connect()
            return self.session, self.since

    def _on_shared(self, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, str, list[Any]]:
        """One statement on the shared session; on a new one if the old one was found cut."""
        for attempt in (1, 2):
            conn, since = self._shared()
            try:
                return conn, since, conn.execute(sql, params).fetchall()
            except Exception:
                if attempt == 2 or not (conn.closed or conn.broken):
                    raise
        raise AssertionError("unreachable")

    def _claimed(self, key: int, lock: _AdvisoryLock | None) -> None:
        with self.guard:
            if lock is None:
                del self.keys[key]
            else:
                self.keys[key] = lock
            self.guard.notify_all()

    def try_acquire(self, goal_id: str) -> GoalLock | None:
        key = self.key(goal_id)
        with self.guard:
            if key in self.keys:  # another thread of this process holds it (or is claiming it)
                return None
            self.keys[key] = None
        lock = None
        try:
            lock = self._try_shared(goal_id, key)
            return lock
        finally:
            self._claimed(key, lock)

    def acquire(self, goal_id: str) -> GoalLock:
        key = self.key(goal_id)
        with self.guard:
            while key in self.keys:  # held by another thread of this process: wait for it
                self.guard.wait()
            self.keys[key] = None
        lock = None
        try:
            lock = self._try_shared(goal_id, key) or self._wait_on_own_session(goal_id, key)
            return lock
        finally:
            self._claimed(key, lock)

    def _try_shared(self, goal_id: str, key: int) -> _AdvisoryLock | None:
        conn, since, rows = self._on_shared("SELECT pg_try_advisory_lock(%s)", (key,))
        return _AdvisoryLock(goal_id, key, conn, since, False, self) if rows[0][0] else None

    def _wait_on_own_session(self, goal_id: str, key: int) -> _AdvisoryLock:
        """Another process holds it: wait on a session of our own, and keep the goal there."""
        conn, since = self._connect()
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", (key,))
        except BaseException:
            conn.close()
            raise
        return _AdvisoryLock(goal_id, key, conn, since, True, self)

    def _give_back(self, lock: _AdvisoryLock) -> None:
        with self.guard:
            if self.keys.get(lock.key) is not lock:
                return  # released already
        try:
            if lock.own or lock.conn is self.session:
                # A lock of a session found cut and replaced went with that session; never
                # unlock it on the new one (whose count for the key would then be wrong).
                lock.conn.execute("SELECT pg_advisory_unlock(%s)", (lock.key,))
        except Exception:  # the session is gone, and the lock with it
            pass
        finally:
            if lock.own:
                lock.conn.close()
            self._claimed(lock.key, None)

    def _holders(self, keys: Iterable[int]) -> dict[int, str]:
        """application_name of the session holding each of `keys`, for those held."""
        wanted = {((k & 0xFFFFFFFFFFFFFFFF) >> 32, k & 0xFFFFFFFF): k for k in set(keys)}
        if not wanted:
            return {}
        sql = (
            "SELECT l.classid::bigint, l.objid::bigint, a.application_name "
            "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND (l.classid::bigint, l.objid::bigint) IN "
            "(SELECT * FROM unnest(%s::bigint[], %s::bigint[]))"
        )
        params = ([c for c, _ in wanted], [o for _, o in wanted])
        with self.probe_guard:
            for attempt in (1, 2):
                try:
                    if self.probe is None or self.probe.closed or self.probe.broken:
                        self.probe, _ = self._connect(f"baton {os.getpid()} lookups")
                    rows = self.probe.execute(sql, params).fetchall()
                    break
                except Exception:
                    probe = self.probe
                    if attempt == 2 or not (probe is None or probe.closed or probe.broken):
                        raise
        return {wanted[(int(c), int(o))]: str(name or "") for c, o, name in rows}

    def _here(self, key: int) -> Owner | None:
        """This process, if one of its threads holds `key` (or is claiming it)."""
        with self.guard:
            if key not in self.keys:
                return None
            lock = self.keys[key]
            since = lock.since if lock is not None else self.since
        host, pid, _ = _me()
        return Owner(host[:_HOST_CHARS], pid, since or "unknown", True)

    def owner(self, goal_id: str) -> Owner | None:
        key = self.key(goal_id)
        name = self._holders([key]).get(key)
        if name is None:  # nobody on the server; a thread of ours may be claiming it, or
            return self._here(key)  # still driving it after its session was cut
        match = _APP_NAME.match(name)
        if match is None:
            return Owner("unknown", 0, "unknown", True)
        return Owner(match[2], int(match[1]), match[3], True)

    def held(self, goal_ids: Iterable[str]) -> set[str]:
        by_key = {self.key(goal_id): goal_id for goal_id in goal_ids}
        with self.guard:
            here = {by_key[key] for key in self.keys if key in by_key}
        return here | {by_key[key] for key in self._holders(by_key)}

    def close(self) -> None:
        with self.session_guard:
            session, self.session = self.session, None
        with self.probe_guard:
            probe, self.probe = self.probe, None
        for conn in (session, probe):
            if conn is not None:
                conn.close()


# --- per store ---

_BY_STORE: weakref.WeakKeyDictionary[BatonStore, Ownership] = weakref.WeakKeyDictionary()
_BY_STORE_GUARD = threading.Lock()


def ownership_of(store: BatonStore) -> Ownership:
    """The ownership of `store`'s goals (one per opened store, closed with it)."""
    with _BY_STORE_GUARD:
        found = _BY_STORE.get(store)
        if found is None:
            found = _new_ownership(store)
            _BY_STORE[store] = found
            weakref.finalize(store, found.close)
        return found


def close_ownership(store: BatonStore) -> None:
    """Release every goal `store`'s ownership holds and close its sessions (`store.close()`)."""
    with _BY_STORE_GUARD:
        found = _BY_STORE.pop(store, None)
    if found is not None:
        found.close()


def _new_ownership(store: BatonStore) -> Ownership:
    if store.is_postgres:
        return PostgresOwnership(store.env)
    path = store.env["SQLITE_DBNAME"]
    if path.startswith("file::memory:"):  # (a `:memory:` store is a private file by now)
        return MemoryOwnership()
    return FileOwnership(path)


@contextmanager
def owning(store: BatonStore, goal_id: str, *, wait: bool = False) -> Iterator[GoalLock]:
    """Hold `goal_id` for the block: `GoalOwned` names the live owner (or wait for it)."""
    owners = ownership_of(store)
    lock = _claim(owners, store, goal_id, wait=wait)
    released = False
    try:
        yield lock
    except FencedOut as fenced:
        lock.release()
        released = True
        current = owners.owner(goal_id)
        if current is not None and current.alive:
            raise _owned(goal_id, current, fenced.unrecorded, fenced.running) from None
        raise
    finally:
        if not released:
            lock.release()


def _owned(
    goal_id: str, owner: Owner, unrecorded: Sequence[str] = (), running: Sequence[str] = ()
) -> GoalOwned:
    """`GoalOwned` naming `owner`, and saying so when that is this very process (a second
    thread or call of a service that drives the goal already)."""
    host, pid, _ = _me()
    here = owner.pid == pid and bool(owner.host) and host.startswith(owner.host)
    return GoalOwned(goal_id, host=owner.host, pid=owner.pid, since=owner.since,
                     unrecorded=unrecorded, running=running, this_process=here)


def _claim(owners: Ownership, store: BatonStore, goal_id: str, *, wait: bool) -> GoalLock:
    try:
        if wait:
            return owners.acquire(goal_id)
        for _ in range(3):
            lock = owners.try_acquire(goal_id)
            if lock is not None:
                return lock
            found = owners.owner(goal_id)
            if found is not None:
                raise _owned(goal_id, found)
            # the holder let go between our try and our look: try again
    except OSError as exc:
        raise BatonError(
            f"store {describe_store(store.url)}: cannot lock goal {goal_id!r}: {exc}"
        ) from None
    raise GoalOwned(goal_id, host="unknown", pid=0, since="unknown")


def owner_json(
    store: BatonStore, goal_id: str, *, status: str | None = None
) -> dict[str, Any] | None:
    """`status GOAL`'s "owner": the live owner, or (SQLite) the last one if it died driving,
    unless the goal (its `status`, when given) has ended since."""
    found = ownership_of(store).owner(goal_id)
    if found is None or (not found.alive and status not in (None, "running", "waiting")):
        return None
    return found.as_json()
