"""`baton.Baton`: goals from Python, over the same service as the command line.

Every method is the CLI command of the same name (docs/reference.md, "Python API"): the same
checks, the same events, the same errors (as exceptions instead of exit codes), and the read
models caught up after every command that writes events, as the CLI does.
"""

from __future__ import annotations

import asyncio
import io
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import wraps
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from pydantic import BaseModel

from baton.api.plans import PlanSource, load_plan
from baton.api.results import GoalResult, GoalSummary
from baton.domain.goal import Goal
from baton.domain.replay import ReplayResult
from baton.history import service as history
from baton.runtime import service
from baton.runtime.loading import LoadedPlan
from baton.runtime.runner import DEFAULT_CONCURRENCY, Driving
from baton.store.eventstore import BatonStore, StoreError, open_store, store_url

if TYPE_CHECKING:  # the read side is imported on first use
    from baton.readmodels.reading import KeptReadModels

__all__ = ["Baton", "ReadModelsBehind"]

P = ParamSpec("P")
R = TypeVar("R")


class ReadModelsBehind(RuntimeWarning):
    """The events were stored but the read models could not be caught up with them."""


def _warn_behind(exc: Exception) -> None:
    warnings.warn(
        f"baton: read models not brought up to date: {exc} (the events are stored; the next "
        "catch-up applies them)",
        ReadModelsBehind,
        stacklevel=_callers_level(),
    )


def _callers_level() -> int:
    """The `stacklevel` of the first frame outside Baton (and the context managers it runs
    in): the warning names the caller's line, not one inside contextlib."""
    level, frame = 2, sys._getframe(2)  # 1: this warning's `warn`, 2: whoever called it
    while frame.f_back is not None and (
        frame.f_globals.get("__name__", "").partition(".")[0] in ("baton", "contextlib")
    ):
        level, frame = level + 1, frame.f_back
    return level


def _using(method: Callable[P, R]) -> Callable[P, R]:
    """A method of `Baton` that `close()` waits for."""
    @wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        with args[0]._in_use():  # type: ignore[attr-defined]
            return method(*args, **kwargs)
    return call


class Baton:
    """A store of goals, opened from a URL: `sqlite:///path.db` or `postgresql://…`.

    The default is `$BATON_STORE`, then `sqlite:///baton.db`. Use it as a context manager (or
    call `close()`); the store opens on first use. Methods block until done; `run` and `resume`
    drive the goal until it ends or waits for a human. Safe to share between threads.
    """

    def __init__(self, url: str | None = None) -> None:
        if url is not None and not isinstance(url, str):
            raise StoreError(f"store URL: expected a string such as 'sqlite:///baton.db', not "
                             f"{type(url).__name__}")
        self.url = store_url(url)
        self._store: BatonStore | None = None
        # One catch-up of the read models at a time from this object: concurrent ones (goals
        # run from several threads or tasks) would only race to apply the same events.
        self._catching_up = threading.Lock()
        self._opening = threading.Lock()
        self._kept: KeptReadModels | None = None  # the read models, opened on first use
        # Calls in progress (from any thread): a `close()` meanwhile is done by the last of them
        # to return, so a goal driven on another thread (or on after an awaiting
        # `AsyncBaton.run` was cancelled) is not left saving into a closed store.
        self._calls = 0
        self._driving = Driving()  # the runners of the goals driven through this object
        self._close_when_idle = False
        self._idle = threading.Lock()

    # --- the store ---

    @property
    def store(self) -> BatonStore:
        with self._opening:
            return self._opened_store()

    def _opened_store(self) -> BatonStore:  # under `_opening`
        if self._store is None:
            self._store = open_store(self.url)
        return self._store

    def open(self) -> Baton:
        """Open the store now (a bad URL or an unreachable server raises `StoreError` here)."""
        _ = self.store
        return self

    @property
    def _read_models(self) -> KeptReadModels:
        """The read models kept open for this object's reads and catch-ups: `status` in a
        loop opens no pool (on PostgreSQL: no new sessions) per call."""
        from baton.readmodels.reading import KeptReadModels

        with self._opening:  # with the store, under one hold: a `close()` cannot come between
            store = self._opened_store()
            if self._kept is None:
                self._kept = KeptReadModels(store, connections=4)
            return self._kept

    def close(self) -> None:
        """Close the store now, or when the calls in progress on other threads have returned:
        a goal driven there runs on until it ends or waits for a human, as it would have. A
        call made after `close()` opens the store afresh."""
        with self._idle:
            if self._calls:
                self._close_when_idle = True  # done by the last call to return
                return
            self._close_now()

    def _close_now(self) -> None:  # under `_idle`, no call in progress
        self._close_when_idle = False
        with self._opening:
            if self._kept is not None:
                self._kept.close()
                self._kept = None
            if self._store is not None:
                self._store.close()
                self._store = None

    @contextmanager
    def _in_use(self) -> Iterator[None]:
        with self._idle:
            self._calls += 1
        try:
            yield
        finally:
            with self._idle:
                self._calls -= 1
                if not self._calls and self._close_when_idle:
                    self._close_now()

    def __enter__(self) -> Baton:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        from baton.store.eventstore import describe_store

        return f"Baton({describe_store(self.url)!r})"

    # --- goals ---

    def run(
        self,
        plan: PlanSource | LoadedPlan,
        input: Any = None,
        *,
        goal_id: str | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> GoalResult:
        """Start a goal and drive it until it completes, fails, is cancelled or waits for a
        human (`status == "waiting"`). An invalid plan or input raises and stores nothing."""
        return self._run(plan, input, goal_id=goal_id, concurrency=concurrency)

    @_using
    def submit(
        self,
        plan: PlanSource | LoadedPlan,
        input: Any = None,
        *,
        goal_id: str | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> str:
        """Store a goal without running it (a worker, or `resume`, drives it); its id."""
        loaded, goal_input = _prepared(plan, input)
        with self._writing():
            goal = service.submit_goal(
                self.store, loaded, goal_input, goal_id=goal_id, concurrency=concurrency
            )
        return goal.id

    def resume(self, goal_id: str, *, concurrency: int | None = None) -> GoalResult:
        """Drive an interrupted, submitted or resolved goal on from its events."""
        return self._resume(_checked_goal_id(goal_id), concurrency=concurrency)

    @_using
    def resolve(
        self,
        goal_id: str,
        task: str,
        action: str,
        *,
        output: Any = None,
        reason: str,
        by: str | None = None,
    ) -> GoalResult:
        """A human's decision on an escalated task: `"retry"`, `"abandon"`, or `"output"` (with
        `output`, validated against the task's output contract); on a task waiting for approval,
        `"approve"` or `"reject"`. Recorded with `by` (default $BATON_USER, then the login name)
        and `reason`; `resume` then drives the goal on."""
        _checked_goal_id(goal_id)
        if isinstance(output, BaseModel):
            output = output.model_dump(mode="json")
        with self._writing():
            goal = service.resolve_task(
                self.store, goal_id, task, action=action, reason=reason, by=service.who(by),
                output=output,
            )
        return GoalResult.of_goal(goal)

    @_using
    def answer(self, goal_id: str, task: str, answer: str, *, by: str | None = None) -> GoalResult:
        """Answer the question a task asked (its output's `clarification`); recorded with `by`,
        and the task runs again with every question and answer when the goal is resumed.
        `CommandError` when the task has no question waiting."""
        _checked_goal_id(goal_id)
        with self._writing():
            goal = service.answer_task(
                self.store, goal_id, task, answer=answer, by=service.who(by)
            )
        return GoalResult.of_goal(goal)

    @_using
    def cancel(self, goal_id: str, *, reason: str, by: str | None = None) -> GoalResult:
        """Stop a goal; `CommandError` if it has already ended."""
        _checked_goal_id(goal_id)
        with self._writing():
            goal = service.cancel_goal(self.store, goal_id, reason=reason, by=service.who(by))
        # A `run` of it here waiting for an agent or a backoff returns now, not when that ends.
        self._driving.wake_all()
        return GoalResult.of_goal(goal)

    @overload
    def status(self, goal_id: str) -> GoalResult: ...

    @overload
    def status(self, goal_id: None = None) -> list[GoalSummary]: ...

    @_using
    def status(self, goal_id: str | None = None) -> GoalResult | list[GoalSummary]:
        """One goal (as `run` returns it), or every goal, newest first: from the read models,
        caught up with the event log first (so what other processes wrote is included)."""
        from baton.readmodels.reading import goal_status_json
        from baton.store.ownership import owner_json

        if goal_id is not None:
            _checked_goal_id(goal_id)
        self._catch_up()
        with self._read_models.read() as models:
            if goal_id is None:
                return [GoalSummary.of_row(row) for row in models.goals()]
            goal, tasks = models.goal_with_tasks(goal_id)
        owner = owner_json(self.store, goal_id, status=goal["status"])  # as `status GOAL`
        return GoalResult.of_json({**goal_status_json(goal, tasks), "owner": owner})

    # --- debugging a run (a goal id, or the path of a run file) ---

    @_using
    def audit(self, goal: str | os.PathLike[str], *, task: str | None = None) -> dict[str, Any]:
        """The decision timeline, as `audit --json`: `{"goal_id", "decisions", ...}`."""
        return history.audit_history(self._history(goal), task=task)

    @_using
    def replay(
        self, goal: str | os.PathLike[str], *, at: int | None = None, reexecute: bool = False
    ) -> ReplayResult:
        """Re-decide the recorded events with today's code (`.ok`, `.divergence`, `.to_json()`);
        `at`: stop after event N; `reexecute`: the whole pipeline again, agents replaced by their
        recorded outputs. No agent is called."""
        result = history.replay_history(self._history(goal), at=at, reexecute_agents=reexecute)
        assert isinstance(result, ReplayResult)
        return result

    def fork(
        self,
        goal: str | os.PathLike[str],
        *,
        at: int,
        goal_id: str | None = None,
        run: bool = False,
    ) -> GoalResult:
        """A new goal from the first `at` events of `goal`; `run=True` drives it on."""
        return self._fork(goal, at=at, goal_id=goal_id, run=run)

    @_using
    def export_run(self, goal_id: str, file: str | os.PathLike[str] | IO[str]) -> int:
        """Write the goal's run file (JSON Lines) to a path or an open text file; the number of
        events written."""
        _checked_goal_id(goal_id)
        where = os.fspath(file) if isinstance(file, str | os.PathLike) else f"file {file!r}"
        if not isinstance(file, str | os.PathLike):
            if not callable(getattr(file, "write", None)):
                raise service.CommandError(
                    f"file {file!r}: expected a path or an open text file, not "
                    f"{type(file).__name__}"
                )
            if isinstance(file, io.RawIOBase | io.BufferedIOBase) or "b" in str(
                getattr(file, "mode", "")
            ):
                raise service.CommandError(
                    f"file {file!r}: expected a file open for text ('w'), not a binary one"
                )
            if getattr(file, "closed", False):
                raise service.CommandError(f"file {file!r}: is closed")
        try:
            return history.export_goal(self.store, goal_id, file)
        except OSError as exc:  # a full disk, a closed pipe, a directory that is not there
            raise service.CommandError(f"{where}: {exc.strerror or exc}") from None

    @_using
    def import_run(self, file: str | os.PathLike[str]) -> str:
        """Load a run file into this store (refused whole if edited); the goal's id."""
        with self._writing():
            run = history.import_file(file, lambda: self.store)
        return run.goal_id

    # --- shared with AsyncBaton, which passes its caller's event loop for async agents ---

    @_using
    def _run(
        self,
        plan: PlanSource | LoadedPlan,
        input: Any,
        *,
        goal_id: str | None,
        concurrency: int,
        agent_loop: asyncio.AbstractEventLoop | None = None,
    ) -> GoalResult:
        loaded, goal_input = _prepared(plan, input)
        with self._writing():
            goal = service.start_goal(
                self.store, loaded, goal_input, goal_id=goal_id, concurrency=concurrency,
                agent_loop=agent_loop, driving=self._driving,
            )
        return GoalResult.of_goal(goal)

    @_using
    def _resume(
        self,
        goal_id: str,
        *,
        concurrency: int | None,
        agent_loop: asyncio.AbstractEventLoop | None = None,
    ) -> GoalResult:
        with self._writing():
            goal = service.resume_goal(
                self.store, goal_id, concurrency=concurrency, agent_loop=agent_loop,
                driving=self._driving,
            )
        return GoalResult.of_goal(goal)

    @_using
    def _fork(
        self,
        goal: str | os.PathLike[str],
        *,
        at: int,
        goal_id: str | None,
        run: bool,
        agent_loop: asyncio.AbstractEventLoop | None = None,
    ) -> GoalResult:
        events = self._history(goal).events
        with self._writing():
            forked: Goal = service.fork_from(
                self.store, events, at=at, goal_id=goal_id, run=run, agent_loop=agent_loop,
                driving=self._driving,
            )
        return GoalResult.of_goal(forked)

    def _history(self, goal: str | os.PathLike[str]) -> history.History:
        return history.load_history(goal, lambda: self.store)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Around a command that writes events: the read models caught up afterwards, as the
        CLI does after its writing commands (even when the command failed part-way)."""
        try:
            yield
        finally:
            self._catch_up()

    def _catch_up(self) -> None:
        with self._catching_up:
            service.catch_up_read_models(self.store, warn=_warn_behind, kept=self._read_models)


def _checked_goal_id(goal_id: object) -> str:
    """A goal id given to a method that reads or writes an existing goal: a string (the API's
    callers are not type-checked; the store would fail deep inside on anything else)."""
    if not isinstance(goal_id, str):
        raise service.CommandError(
            f"goal id {goal_id!r}: expected a string, not {type(goal_id).__name__}"
        )
    return goal_id


def _prepared(plan: PlanSource | LoadedPlan, goal_input: Any) -> tuple[LoadedPlan, Any]:
    loaded = load_plan(plan)
    if goal_input is None:
        goal_input = {}
    elif isinstance(goal_input, BaseModel):
        goal_input = goal_input.model_dump(mode="json")
    elif isinstance(goal_input, Mapping):
        goal_input = dict(goal_input)
    return loaded, goal_input

