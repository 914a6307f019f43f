"""`baton worker`: drive every goal of the store that something can move, one owner at a time.

No job table. The event log is the only queue (docs/reference.md, "Workers"):

- **What exists**: the worker follows the store's notification log (eventsourcing's recorder,
  in order) and keeps, per goal that has not ended, the version it last saw. It starts from the
  read models' position, with the goals not ended as of it (what the log up to there says).
- **What is runnable** is decided from the goal's own events, under its lock: a submitted goal
  (only `Started`); a goal that resuming would move now (a `RunResumed` folded in memory, then
  `settle`: an attempt left in flight by a dead owner, a human's resolution); or a backoff that
  fell due. Nothing else is written, so nothing can disagree with the log.
- **Who drives it** is the ownership lock (`baton.store.ownership`): a worker claims a goal by
  taking its lock, and a dead worker's goals are free the moment it dies.
- **When to look again**: PostgreSQL's NOTIFY, sent after every save commits (LISTEN on the
  recorder's channel); a poll every `poll_s` (owners that die send nothing, nor does a save
  that rolled back, which may have held later rows back from readers; SQLite has no NOTIFY);
  the earliest backoff due. A goal another live process holds is looked up again every
  `poll_s`, not on each of its owner's saves. A worker with every slot taken does not read
  the log on a wake-up (every save anywhere sends one, and nothing it read could be claimed);
  it catches up when a slot frees, or, with goals already known and waiting for a slot, every
  `poll_s`. A wake-up looks only at goals new or changed since they were last looked at and at
  those whose timer fell due, never at every goal known: goals waiting for a human cost it
  nothing.

A goal that only waits for a timer is parked (its slot and lock let go) and claimed again, by
any worker, when the timer falls due (a `burst` worker does not wait for it when it drives
nothing else). A goal whose recorded plan does not load with today's code is said once and left
alone (looked at again when its events change, and every minute): nothing is recorded, so it
runs once the code is fixed.
"""

from __future__ import annotations

import heapq
import importlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING

import baton
from baton import projections
from baton.domain.decide import settle
from baton.domain.errors import BatonError, PlanError, UnknownRules
from baton.domain.goal import Goal
from baton.domain.lifecycle import GOAL_FINAL
from baton.domain.state import RULES
from baton.runtime.loading import LoadedPlan
from baton.runtime.runner import WATCH_S, Driving, Runner, ends_goal, utc_now
from baton.runtime.service import load_goal_plan
from baton.store.eventstore import (
    BatonStore,
    StoreError,
    StoreReplaced,
    UnknownEvent,
    describe_store,
)
from baton.store.ownership import FencedOut, GoalLock, ownership_of

if TYPE_CHECKING:
    from baton.readmodels.reading import CatchUpThread

__all__ = ["Worker"]

log = logging.getLogger("baton.worker")

PAGE = 2_000
LOOKUP = 64  # candidates whose owners are looked up in one query
PLANS_KEPT = 256  # distinct plans a worker keeps loaded, the least recently used dropped
# The source of the PlanError of a plan whose agents no call could reach from here (no key)
CANNOT_CALL = "its agents cannot be called from this worker"
UNLOADABLE_RETRY_S = 60.0  # a goal whose plan does not load is tried again this often
LISTEN_RETRY_S = 5.0  # a lost NOTIFY connection is opened again this often
# A goal whose save the store refused (a read-only role or replica, a deleted SQLite file) is
# looked at again after 1 s, doubling to 60 s while the store keeps refusing it.
REFUSED_RETRY_S = (1.0, 60.0)


@dataclass
class _Seen:
    version: int
    wake: float | None  # monotonic time to look again; None: only when a new event arrives
    elsewhere: bool = False  # another live process held it: look again, but not ours to wait for


@dataclass
class Worker:
    """Claims and drives runnable goals, `concurrency` at a time, until stopped."""

    store: BatonStore
    concurrency: int = 4
    # Exit once nothing is runnable now and nothing is driven here: goals driven elsewhere, and
    # goals whose backoff has not fallen due, don't count (a burst never sleeps for a timer
    # alone; one that falls due while other goals are still driven here is taken up).
    burst: bool = False
    poll_s: float = 0.5
    refresh_s: float = 1.0  # bring the read models up to date this often (0: never)
    # A goal driven here whose agents have said nothing this long is looked up: ended by a
    # command elsewhere (`baton cancel`), it is left and its slot freed (Runner.watch_s).
    watch_s: float = WATCH_S
    make_runner: Callable[[BatonStore, LoadedPlan], Runner] = field(
        default=lambda store, loaded: Runner.from_settings(store=store, loaded=loaded)
    )

    def __post_init__(self) -> None:
        self.owners = ownership_of(self.store)
        self.position = 0  # last notification id read
        self._followed = float("-inf")  # when the log was last read (monotonic)
        self.versions: dict[str, int] = {}  # goals not ended -> last version seen
        self.seen: dict[str, _Seen] = {}
        # What a wake-up looks at, so that its work does not grow with the goals that wait
        # (for a human, or driven elsewhere): goals new or changed since last looked at, in
        # the order they came (a superset: each is checked again), the looks due at a time
        # (a heap; an entry no longer in `seen` is stale), and the goals whose own timer runs.
        self.fresh: dict[str, None] = {}
        self.timers: list[tuple[float, str]] = []
        self.timed: set[str] = set()
        # What each drive returns: None, or seconds to wait before looking at the goal again.
        self.driving: dict[str, Future[float | None]] = {}
        self.runners = Driving()  # woken on a stop request
        self.plans: OrderedDict[str, LoadedPlan] = OrderedDict()  # least recently used first
        self._plans_lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = threading.Event()  # no new goals; leave goals when no unsafe call runs
        self.stopping_now = threading.Event()  # leave goals after the current save
        # Distinct goals driven here (`driven`: what `run` returns and "drove N goal(s)" says),
        # and the claims that drove them: a goal claimed again (resolved by a human, its backoff
        # due, its owner gone) is one goal driven in two claims. Only goals left unended are
        # kept by id (they may be claimed again); an ended one is counted: a long-lived worker
        # does not keep every goal id it ever drove.
        self._driven_open: set[str] = set()
        self._driven_ended = 0
        self.claims = 0
        self._count = threading.Lock()
        # Goals whose recorded plan does not load with today's code (an agent module gone, a
        # callable that lived in __main__), with what was said: left alone, and looked at again
        # when their events change or every `UNLOADABLE_RETRY_S` (a transient import failure
        # needed a restart); said again only when the problem changes.
        self.unloadable: dict[str, str] = {}
        # Goals whose history does not read or fold here (an event type of a newer Baton),
        # with what was said: left alone until their events change.
        self.unreadable: dict[str, str] = {}
        # Goals whose last drive ended on a store that refused a save: the wait before the
        # next look (under `_count`: the goals' threads write it).
        self.refused: dict[str, float] = {}

    # --- control ---

    # The store error that stopped the worker (its SQLite file replaced), None otherwise:
    # `baton worker` exits 2 with it.
    failed: StoreError | None = None

    def request_stop(self) -> None:
        """First call: take no new goal, leave each at a safe point. Second: leave at once."""
        if self.stopping.is_set():
            self.stopping_now.set()
        self.stopping.set()
        self.wake.set()
        self.runners.wake_all()  # waiting for an agent: leave now if it is safe to

    def _say_stopping(self, said: int) -> int:
        """Say, once each, that a stop (and a second one) was heard: by the loop, not the
        signal handler (logging there could deadlock on the handler's lock)."""
        if said < 1 and not self.driving:
            log.info("stopping: taking no new goal (none driven here)")
        elif said < 1:
            log.info("stopping: taking no new goal; leaving the %d goal(s) driven here at a safe "
                     "point (a second SIGTERM: after their current save)", len(self.driving))
        if said < 2 and self.stopping_now.is_set():
            log.info("stopping now: leaving each goal after its current save (attempts in "
                     "flight follow the crash rules with the next owner)")
            return 2
        return max(said, 1)

    @property
    def driven(self) -> int:
        """How many distinct goals this worker has driven so far."""
        with self._count:
            return len(self._driven_open) + self._driven_ended

    def run(self) -> int:
        """Loop until stopped (or, with `burst`, until nothing is runnable); how many distinct
        goals it drove."""
        listener = self._listen()
        self._start_from_views()
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="baton-goal")
        catching_up = self._catch_up_beside()
        log.info("worker started: %d goal(s) at a time (baton %s, decision rules %d, read "
                 "models %d) on %s", self.concurrency, baton.__version__, RULES,
                 projections.VIEWS_VERSION,  # which release this is, beside others (upgrades)
                 describe_store(self.store.url))  # which store: a misspelt ?schema= idles
        said_stop = 0  # 1: the stop was said, 2: the second stop too
        try:
            while True:
                self.wake.clear()
                try:
                    self._reap()
                    if self.stopping.is_set():  # before the log: a store that is down (each
                        said_stop = self._say_stopping(said_stop)  # read failing) must not
                        if not self.driving:  # keep a stopped worker from leaving
                            break
                        self.wake.wait(self.poll_s)
                        continue
                    if len(self.driving) < self.concurrency and self._log_worth_reading():
                        self._follow()
                    claimed = self._claim(pool)
                except Exception as exc:  # the store went away for a moment: look again
                    log.warning("cannot read the store: %s: %s", type(exc).__name__,
                                " ".join(str(exc).split()))
                    self.wake.wait(self.poll_s)
                    continue
                if self.burst and not self.driving and not claimed:
                    break  # what waits for a timer only is left parked (see `burst`)
                self.wake.wait(self._timeout())
        finally:
            pool.shutdown(wait=True)
            self._reap()
            if listener is not None:
                listener.set()
            if catching_up is not None:
                self._last_catch_up(catching_up)
        left = len(self.unloadable)
        unread = len(self.unreadable)
        parked = len(self.timed - self.unloadable.keys() - self.unreadable.keys())
        driven = self.driven
        log.info("worker stopped: drove %d goal(s)%s%s%s%s", driven,
                 f" in {self.claims} claims" if self.claims > driven else "",
                 f"; left {parked} parked until a backoff falls due" if parked else "",
                 f"; left {left} whose plan does not load (or whose agents cannot be called) here"
                 if left else "",
                 f"; left {unread} whose history cannot be read here" if unread else "")
        return driven

    # --- the read models ---

    def _catch_up_beside(self) -> CatchUpThread | None:
        """Bring the read models up to date every `refresh_s` (unless another worker is doing
        it) beside the loop, not in it: a catch-up of a busy store's last second takes a good
        part of a second, and in the loop it kept this worker from refilling its slots (the
        worker that caught up for the others drove a fraction of their goals)."""
        if not self.refresh_s:
            return None
        from baton.readmodels.reading import CatchUpThread

        return CatchUpThread(self.store, self.refresh_s, _not_refreshed).start()

    def _last_catch_up(self, catching_up: CatchUpThread) -> None:
        """At stop: once more, waiting for another process's catch-up if one runs, so that
        `status` after `worker --burst` shows every goal this worker drove."""
        from baton.readmodels.reading import refresh

        catching_up.close()
        try:
            refresh(self.store)
        except Exception as exc:  # the events are stored; any later catch-up applies them
            _not_refreshed(exc)

    # --- the log ---

    def _start_from_views(self) -> None:
        """Begin where the read models are: the goals not ended as of their position, then the
        log after it. Read from its first event, the log would cost every start time in
        proportion to every event ever stored (seconds per million); the views say the same
        in one query. Read models that cannot be read: the log from its first event."""
        try:
            with projections.open_views(self.store.app) as views:
                self.position, self.versions = views.open_goals(self.store.app.name)
        except Exception as exc:
            log.warning("read models unreadable; reading the log from its first event: %s",
                        " ".join(str(exc).split()))
            self.position, self.versions = 0, {}
        self.fresh = dict.fromkeys(self.versions)

    def _follow(self) -> None:
        self._followed = time.monotonic()
        recorder = self.store.recorder
        while True:
            notes = recorder.select_notifications(start=self.position + 1, limit=PAGE)
            for note in notes:
                goal_id = str(note.originator_id)
                if ends_goal(note.topic):
                    self._forget(goal_id)
                else:
                    self.versions[goal_id] = note.originator_version
                    self.fresh[goal_id] = None
                self.position = note.id
            if len(notes) < PAGE:
                return

    def _log_worth_reading(self) -> bool:
        """With every slot taken, never: nothing read could be claimed (and every save anywhere
        wakes us). With goals already known and waiting for a slot, every `poll_s`: each read
        of the ordered log costs the server milliseconds under load, and those goals come
        first anyway."""
        now = time.monotonic()
        return now - self._followed >= self.poll_s or next(self._candidates(now), None) is None

    def _forget(self, goal_id: str) -> None:
        """The goal ended: nothing more to drive or to look at."""
        self.versions.pop(goal_id, None)
        self.unloadable.pop(goal_id, None)
        self.unreadable.pop(goal_id, None)
        with self._count:
            self.refused.pop(goal_id, None)
        self._unsee(goal_id)
        self.fresh.pop(goal_id, None)

    def _unreadable_goal(self, goal_id: str, exc: Exception, said: str | None) -> None:
        """A goal whose history this Baton cannot read or fold: said once per problem (`said`:
        the one said last time), looked at again when its events change, and also on a timer
        when the cause is not an event this Baton does not know (a bug, or trouble that may
        pass: said with its traceback). Raised out of the claim, it stopped every claim
        after it, for good: one goal a newer Baton wrote stalled the worker, which said
        'cannot read the store' every poll."""
        internal = not isinstance(exc, UnknownEvent)
        detail = " ".join(str(exc).split())
        problem = f"{type(exc).__name__}: {detail}" if internal else detail
        self.unreadable[goal_id] = problem
        if problem != said and internal:
            log.exception("goal %s: left alone (looked at again every %gs and when its events "
                          "change); internal error looking at it: %s", goal_id,
                          UNLOADABLE_RETRY_S, problem)
        elif problem != said:
            log.error("goal %s: left alone (looked at again when its events change); its "
                      "history cannot be read here: %s", goal_id, problem)
        wake = time.monotonic() + UNLOADABLE_RETRY_S if internal else None
        self._see(goal_id, _Seen(self.versions[goal_id], wake))

    def _see(self, goal_id: str, seen: _Seen) -> None:
        """Looked at, and not claimed: look again when it changes or when `seen.wake` falls."""
        self.seen[goal_id] = seen
        self.fresh.pop(goal_id, None)
        if seen.wake is not None:
            heapq.heappush(self.timers, (seen.wake, goal_id))
        if seen.wake is not None and not seen.elsewhere:
            self.timed.add(goal_id)
        else:
            self.timed.discard(goal_id)

    def _unsee(self, goal_id: str) -> None:
        self.seen.pop(goal_id, None)
        self.timed.discard(goal_id)

    def _listen(self) -> threading.Event | None:
        """PostgreSQL: wake the loop on every NOTIFY of the event table's channel. A lost
        connection (a server restart, a terminated session) is said once and opened again
        every `LISTEN_RETRY_S` (it stopped for good: the worker polled for the rest of its
        life); the poll finds everything meanwhile, and the loop is woken on reconnecting."""
        if not self.store.is_postgres:
            return None
        import psycopg

        from baton.store.postgres import connect_kwargs

        def connect() -> psycopg.Connection[tuple[object, ...]]:
            conn = psycopg.connect(**{
                **connect_kwargs(self.store.env), "autocommit": True,
                "application_name": f"baton {os.getpid()} listener",
            })
            try:
                conn.execute(f'LISTEN "{self.store.recorder.channel_name}"')
            except BaseException:
                conn.close()
                raise
            return conn

        first = connect()  # at start: a store that cannot be reached is the caller's error
        done = threading.Event()

        def listen() -> None:
            conn: psycopg.Connection[tuple[object, ...]] | None = first
            try:
                while not done.is_set():
                    try:
                        if conn is None:
                            conn = connect()
                            log.info("NOTIFY listener reconnected")
                            self.wake.set()  # what was sent meanwhile is in the log
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self.wake.set()
                    except Exception as exc:  # the connection went: the poll finds everything
                        if conn is not None:
                            conn.close()
                            conn = None
                            log.warning("NOTIFY listener lost its connection (%s); polling "
                                        "every %.1fs until it reconnects",
                                        " ".join(str(exc).split()), self.poll_s)
                        done.wait(LISTEN_RETRY_S)
            finally:
                if conn is not None:
                    conn.close()

        threading.Thread(target=listen, name="baton-listen", daemon=True).start()
        return done

    # --- claiming ---

    def _claim(self, pool: ThreadPoolExecutor) -> int:
        """Claim runnable goals into free slots; returns how many it claimed.

        Owners are looked up only with a slot free, `LOOKUP` candidates at a time: with a
        backlog of goals, looking up all of them on every wake-up (every save anywhere sends
        one) cost more CPU than driving the goals.
        """
        if len(self.driving) >= self.concurrency:
            return 0
        now = time.monotonic()
        candidates = self._candidates(now)
        claimed = 0
        while batch := list(islice(candidates, LOOKUP)):
            held = self.owners.held(batch)
            topics = self.store.latest_topics(batch)
            for goal_id in batch:
                if len(self.driving) >= self.concurrency:
                    return claimed
                if ends_goal(topics.get(goal_id, "")):
                    # Ended since the log was read (its reader lags a commit behind the
                    # writers): neither claimed nor folded just to find that out.
                    self._forget(goal_id)
                    continue
                if goal_id in held:
                    self._see(goal_id, _Seen(self.versions[goal_id], now + self.poll_s, True))
                    continue
                lock = self.owners.try_acquire(goal_id)
                if lock is None:
                    continue
                said = self.unreadable.pop(goal_id, None)  # as `unloadable` in `_due`
                try:
                    goal, loaded, due = self._due(goal_id)
                except StoreError:
                    lock.release()
                    raise  # the store's trouble, not this goal's: the loop looks again
                except Exception as exc:  # its history does not fold here (an event of a
                    lock.release()  # newer Baton): left alone, the other goals claimed
                    self._unreadable_goal(goal_id, exc, said)
                    continue
                except BaseException:
                    lock.release()
                    raise
                if loaded is None or due is None or due > 0:
                    lock.release()
                    self._see(goal_id, _Seen(goal.version, None if due is None else now + due))
                    continue
                self._unsee(goal_id)  # fresh still: looked at again once its driving ends
                self.driving[goal_id] = pool.submit(self._drive, goal, loaded, lock)
                claimed += 1
            if len(self.driving) >= self.concurrency:
                return claimed
        return claimed

    def _candidates(self, now: float) -> Iterator[str]:
        """Goals known from the log, not driven here, worth looking at now: the fresh ones and
        those whose time to look again has come, never every goal known."""
        while self.timers and self.timers[0][0] <= now:
            wake, goal_id = heapq.heappop(self.timers)
            if self._timer_stands(wake, goal_id):
                self.fresh[goal_id] = None
        for goal_id in tuple(self.fresh):
            if goal_id in self.driving:
                continue  # stays fresh: looked at again once its driving ends
            version = self.versions.get(goal_id)
            if version is not None and self._worth_a_look(goal_id, version, now):
                yield goal_id
            else:
                self.fresh.pop(goal_id, None)

    def _worth_a_look(self, goal_id: str, version: int, now: float) -> bool:
        seen = self.seen.get(goal_id)
        if seen is None:
            return True
        if seen.elsewhere:
            # Its owner's saves are no news: looked up again every poll_s, not on each save
            # (with N workers each looked up, and raced for, every goal the others drive).
            return seen.wake is not None and seen.wake <= now
        return seen.version != version or (seen.wake is not None and seen.wake <= now)

    def _due(self, goal_id: str) -> tuple[Goal, LoadedPlan | None, float | None]:
        """The goal as stored, its plan loaded (None: it cannot be, or need not be), and in how
        many seconds it can move, or be looked at again when its plan did not load (None: not
        by itself)."""
        goal = self.store.get(goal_id)
        said = self.unloadable.pop(goal_id, None)
        if goal.state.status in GOAL_FINAL:
            return goal, None, None
        if goal.state.rules > RULES:  # started by a newer Baton: deciding here would record
            log.error("goal %s: %s", goal_id,  # what that Baton's replay refuses
                      UnknownRules(goal_id, goal.state.rules, RULES))
            return goal, None, None  # looked at again only when it changes
        if said is not None:
            importlib.invalidate_caches()  # a module file put back since is found
        try:
            loaded = self._plan(goal)
        except PlanError as exc:
            # Not runnable until someone fixes the code, and no failure of the goal: nothing
            # is recorded (it may be resumed once its agents import). Looked at again when its
            # events change (cancelled, resolved) and every UNLOADABLE_RETRY_S; said again
            # only when the problem is not the one said.
            problem = " ".join(str(exc).split())
            self.unloadable[goal_id] = problem
            if problem != said:
                log.error("goal %s: left alone (looked at again every %gs and when its events "
                          "change); %s", goal_id, UNLOADABLE_RETRY_S,
                          problem if exc.source == CANNOT_CALL else
                          f"its plan does not load: {problem}")
            return goal, None, UNLOADABLE_RETRY_S
        if goal.version == 1:
            return goal, loaded, 0.0  # submitted: nothing decided yet
        probe = self.store.get(goal_id)  # folded in memory only, never saved
        probe.observe("RunResumed", at=utc_now(), concurrency=probe.state.concurrency)
        if settle(probe, loaded.contracts):
            return goal, loaded, 0.0
        now = utc_now()
        dues = [
            (task.due_at - now).total_seconds()
            for task in goal.state.tasks.values()
            if task.status == "retry_wait" and task.due_at is not None
        ]
        return goal, loaded, (max(0.0, min(dues)) if dues else None)

    def _plan(self, goal: Goal) -> LoadedPlan:
        started = goal.state.started_plan
        key = json.dumps(
            started.model_dump(mode="json", exclude_unset=True, by_alias=True), sort_keys=True
        )
        with self._plans_lock:  # the loop and the goals' threads both ask
            loaded = self.plans.get(key)
            if loaded is not None:
                self.plans.move_to_end(key)
                return loaded
        loaded = load_goal_plan(goal)  # imports the agents: not under the lock
        # An agent every call of which fails at once here (an `openai:` model and no API key
        # in this worker's environment): driven, each attempt failed and was retried until the
        # goal failed, for want of a setting. Such a plan is not kept: the goal waits for a
        # worker that can call it, as `run` refuses before storing anything. Once per load.
        loaded.check_calls(CANNOT_CALL)
        with self._plans_lock:
            self.plans[key] = loaded
            while len(self.plans) > PLANS_KEPT:  # plans made per goal must not pile up
                self.plans.popitem(last=False)
        return loaded

    # --- driving ---

    def _drive(self, goal: Goal, loaded: LoadedPlan, lock: GoalLock) -> float | None:
        """Drive the goal; None, or how long to leave it alone when the store refused a save:
        claimed again at once, such a goal was claimed and refused hundreds of times a
        second, each an ERROR line, for as long as the store stayed read-only."""
        goal_id = goal.id
        try:
            runner = self.make_runner(self.store, loaded)
            runner.park_on_timers = True
            runner.watch_s = self.watch_s
            runner.should_stop = self.stopping.is_set  # leaves at a safe point (Runner)
            runner.must_stop = self.stopping_now.is_set
            runner.on_stopping = _waits_for_unsafe
            self.runners.add(goal_id, runner)
            if goal.version == 1:
                log.info("goal %s: claimed (submitted)", goal_id)
            else:
                log.info("goal %s: claimed (resumed at event %d)", goal_id, goal.version)
            # A submitted goal too, as `resume` does: its first decisions follow an observation
            # of this runner's, stamped now, not the time it was submitted (its dispatches were
            # dated before the queue's wait, and attempts seemed to last through it).
            goal = runner.resume(goal, concurrency=goal.state.concurrency)
            with self._count:
                self.claims += 1
                self.refused.pop(goal_id, None)
                if goal.state.status in GOAL_FINAL:
                    self._driven_open.discard(goal_id)
                    self._driven_ended += 1
                else:
                    self._driven_open.add(goal_id)
            log.info("goal %s: %s", goal_id, self._outcome(goal))
        except FencedOut as fenced:
            log.warning("goal %s: another runner recorded events in it; left to that runner%s",
                        goal_id, fenced.what_is_lost())
        except StoreReplaced as exc:  # no retry reaches the file again: stop, to be restarted
            log.error("goal %s: %s; the worker stops", goal_id, exc)
            self.failed = exc
            self.request_stop()
        except StoreError as exc:
            with self._count:
                wait = self.refused[goal_id] = min(
                    self.refused.get(goal_id, REFUSED_RETRY_S[0] / 2) * 2, REFUSED_RETRY_S[1])
            log.error("goal %s: %s (looked at again in %gs)", goal_id, exc, wait)
            return wait
        except BatonError as exc:
            log.error("goal %s: %s", goal_id, exc)
        except Exception as exc:
            log.exception("goal %s: internal error: %s: %s", goal_id, type(exc).__name__, exc)
        finally:
            self.runners.remove(goal_id)
            lock.release()
            self.wake.set()
        return None

    @staticmethod
    def _outcome(goal: Goal) -> str:
        state = goal.state
        if state.status in ("waiting", "failed", "cancelled"):
            # The reason names the task and why: the operator reading the log needs no look-up.
            reason = state.reason or ""
            if reason.startswith(state.status):
                return reason
            return f"{state.status} — {reason}" if reason else state.status
        if state.status in GOAL_FINAL:
            return state.status
        running = [t for t in state.tasks.values() if t.in_flight is not None and t.outcome is None]
        if running:  # which, and what becomes of them: an operator greps the goal's lines
            return "left with attempts in flight (stopping): " + ", ".join(
                f"{t.id} #{t.in_flight} ({effects})"
                for t in running
                for effects in [state.plan.task_map[t.id].side_effects]
            ) + ("; the next owner runs none and idempotent ones again (same key) and "
                 "escalates unsafe ones as outcome unknown")
        if state.stop_requested:
            return ("left at a safe point (stopping): its unsafe attempts recorded, nothing new "
                    "dispatched; the next owner goes on")
        if state.by_status.get("retry_wait"):
            return "parked until its backoff falls due"
        return "left running"

    def _reap(self) -> None:
        for goal_id, future in list(self.driving.items()):
            if future.done():
                del self.driving[goal_id]
                try:
                    wait = future.result()
                except Exception:  # `_drive`'s own clean-up failed: said, the worker goes on
                    log.exception("goal %s: internal error after driving it", goal_id)
                    continue
                if wait is not None and goal_id in self.versions:
                    # Like a goal driven elsewhere, looked at again when the wait is over,
                    # not on news of it: a refused save may have reached a deleted file,
                    # whose events this worker's log reader still sees.
                    self._see(goal_id, _Seen(self.versions[goal_id],
                                             time.monotonic() + wait, elsewhere=True))

    # --- waiting ---

    def _timeout(self) -> float:
        now = time.monotonic()
        while self.timers:  # the earliest look due, stale entries dropped on the way
            wake, goal_id = self.timers[0]
            if self._timer_stands(wake, goal_id):
                return max(0.0, min(self.poll_s, wake - now))
            heapq.heappop(self.timers)
        return self.poll_s

    def _timer_stands(self, wake: float, goal_id: str) -> bool:
        """Whether a heap entry is still the goal's look-again time (not since replaced,
        claimed or ended)."""
        seen = self.seen.get(goal_id)
        return seen is not None and seen.wake == wake


def _waits_for_unsafe(goal: Goal) -> None:
    """A stopping worker waits for a goal's unsafe attempts (up to their timeout): said, so
    that the silence until then is not taken for a hung worker (and SIGKILLed: outcome
    unknown)."""
    waits = ", ".join(goal.state.unsafe_attempts_in_flight())
    log.info("goal %s: stopping: waits for its unsafe attempt(s) in flight (%s) to return, then "
             "leaves it; nothing new is dispatched (a second SIGTERM leaves at once: outcome "
             "unknown)", goal.id, waits)


def _not_refreshed(exc: Exception) -> None:
    log.warning("read models not brought up to date: %s", " ".join(str(exc).split()))
