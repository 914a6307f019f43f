"""The runner: the imperative shell around `decide`.

Loop: wait for the next completion or timer, take every other completion already queued, record
each observation followed by what `settle` decides from it, save them all in one transaction
(group commit), then execute the dispatches just saved (so a side-effecting call is always on
disk before the agent runs). The log keeps the shape replay expects: observation, its decisions,
next observation, its decisions. The orchestrator thread alone touches the aggregate; agents run
in `CallPool`.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from eventsourcing.persistence import IntegrityError

from baton.domain.attempts import context_for, cost_left
from baton.domain.contracts import build_input
from baton.domain.decide import settle
from baton.domain.decisions import GOAL_ENDINGS, Decision
from baton.domain.errors import still_running, unrecorded_outcomes
from baton.domain.goal import Goal
from baton.domain.lifecycle import GOAL_FINAL
from baton.runtime.calls import AgentCall, CallOutcome, CallPool, Completion, Observer
from baton.runtime.isolation import start_fork_server
from baton.runtime.loading import LoadedPlan
from baton.runtime.observers import RunObserver, with_live_telemetry
from baton.settings import DEFAULT_MAX_OUTPUT_BYTES, settings
from baton.store.eventstore import BatonStore, StoreError
from baton.store.ownership import FencedOut

__all__ = [
    "DEFAULT_CONCURRENCY", "RUNNER_OBSERVATIONS", "Clock", "Driving", "Runner", "ends_goal",
    "utc_now",
]

DEFAULT_CONCURRENCY = 8
PARK_AFTER_S = 1.0  # shorter waits are slept through rather than handed back to the workers

Clock = Callable[[], datetime]


def ends_goal(topic: str) -> bool:
    """Whether an event of this topic is a goal's last."""
    return topic.rsplit(".", 1)[-1] in GOAL_ENDINGS

# What only a runner records. A save conflict with one of these means another runner drives the
# goal: this one stops (the fence). Anything else (cancel, resolve) came from a command.
RUNNER_OBSERVATIONS = frozenset(
    {"RunResumed", "AgentReturned", "AgentRaised", "AgentTimedOut", "ClockTicked",
     "StopRequested"}
)

# What a runner asked to stop records before it waits for an unsafe attempt (`should_stop`).
STOPPING: tuple[str, dict[str, Any]] = ("StopRequested", {})


class Driving:
    """The runners a process drives now, by goal, so that a stop (a worker's SIGTERM, a server's
    shutdown) can wake each one waiting for an agent's outcome (Runner.wake). Reentrant: a
    second signal may arrive on the thread that is waking them."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._runners: dict[str, Runner] = {}

    def add(self, goal_id: str, runner: Runner) -> None:
        with self._lock:
            self._runners[goal_id] = runner

    def remove(self, goal_id: str) -> None:
        with self._lock:
            self._runners.pop(goal_id, None)

    @contextmanager
    def holding(self, goal_id: str, runner: Runner) -> Iterator[Runner]:
        """`runner`, held here while the block drives `goal_id`."""
        self.add(goal_id, runner)
        try:
            yield runner
        finally:
            self.remove(goal_id)

    def wake_all(self) -> None:
        with self._lock:
            runners = list(self._runners.values())
        for runner in runners:
            runner.wake()


def utc_now() -> datetime:
    return datetime.now(UTC)


# While a runner waits for agents with nothing else due, how often it looks whether a command in
# another process ended the goal (`baton cancel`). A worker sets its own (Worker.watch_s).
WATCH_S = 5.0


@dataclass
class _InFlight:
    task: str
    attempt: int
    deadline: float | None  # monotonic seconds, None for no timeout


_SHOWN_OUTPUT = 2000  # characters of an unrecorded output a message quotes


def _unsafe_outcomes(
    goal: Goal, observations: Sequence[tuple[str, dict[str, Any]]]
) -> list[str]:
    """`book #1 returned {...}` for each unsafe call among `observations` (outputs as they
    would have been recorded: secrets already masked)."""
    tasks = goal.state.plan.task_map
    said = []
    for kind, fields in observations:
        spec = tasks.get(fields.get("task", ""))
        if spec is None or spec.side_effects != "unsafe":
            continue
        if kind == "AgentReturned" and fields.get("output_error"):
            said.append(f"{spec.id} #{fields['attempt']} returned what could not be recorded "
                        f"({fields['output_error']})")
        elif kind == "AgentReturned":
            text = json.dumps(fields.get("output"), sort_keys=True, default=str)
            if len(text) > _SHOWN_OUTPUT:
                text = f"{text[:_SHOWN_OUTPUT]}… ({len(text)} characters)"
            said.append(f"{spec.id} #{fields['attempt']} returned {text}")
        elif kind == "AgentRaised":
            said.append(f"{spec.id} #{fields['attempt']} raised {fields['error_type']}: "
                        f"{fields['message']}")
    return said


@dataclass
class Runner:
    """Drives one goal at a time until it ends, waits for a human, or has nothing to wait for."""

    store: BatonStore
    loaded: LoadedPlan
    clock: Clock = utc_now
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
    # Fault injection for crash tests: SIGKILL this process once a save brings the goal's
    # event count to this number or beyond (BATON_CRASH_AT_EVENT).
    crash_at_event: int | None = None
    # The event loop async agents run on (`AsyncBaton`: the caller's); None: one of the pool's.
    agent_loop: asyncio.AbstractEventLoop | None = None
    # Call outcomes into observations: the same function re-execution replay uses.
    observer: Observer = field(init=False, repr=False)
    # A worker's runner leaves a goal that only waits for a timer (a backoff) further away than
    # PARK_AFTER_S and frees its slot; the goal is claimed again when the timer falls due.
    park_on_timers: bool = False
    # Asked to stop (a worker or a server shutting down): leave at a safe point. At once when no
    # unsafe attempt is in flight (a `none` or `idempotent` one still running is re-run by the
    # next owner, by the crash rules). Else it records `StopRequested` first, after which
    # `decide` dispatches no new attempt until a runner takes the goal up again, waits for the
    # unsafe attempts, records their outcomes and leaves: a stop never starts a side effect,
    # and never leaves a dispatch of its own without an outcome. Asked before and after every
    # save, and on `wake()` while the runner waits for an agent.
    should_stop: Callable[[], bool] | None = None
    # Asked to stop at once (a second SIGTERM): leave after the current save; attempts in
    # flight then follow the crash rules with the next owner.
    must_stop: Callable[[], bool] | None = None
    # Told of every save, may wrap agent calls: live progress and live traces (observers.py).
    run_observer: RunObserver | None = None
    # Told of a goal whose stop was recorded while unsafe attempts are still in flight: the
    # runner waits for their outcomes (a worker says so: a stop can take an agent's timeout).
    on_stopping: Callable[[Goal], None] | None = None
    # Waiting this long for agents with nothing else due, look whether a command in another
    # process ended the goal (`baton cancel`), and leave it if so; None: never (a worker's
    # runner looks: a cancelled goal whose agent hangs held its slot and lock until it returned).
    watch_s: float | None = None

    def __post_init__(self) -> None:
        self.observer = Observer(self.loaded, max_output_bytes=self.max_output_bytes)
        self._pool: CallPool | None = None  # while driving: what `wake` interrupts

    def wake(self) -> None:
        """Ask `should_stop` and `must_stop` again now, not only after the next save (from any
        thread)."""
        pool = self._pool
        if pool is not None:
            pool.wake()

    @classmethod
    def from_settings(
        cls,
        *,
        store: BatonStore,
        loaded: LoadedPlan,
        agent_loop: asyncio.AbstractEventLoop | None = None,
        observer: RunObserver | None = None,
    ) -> Runner:
        current = settings()
        return cls(
            store=store,
            loaded=loaded,
            max_output_bytes=current.max_output_bytes,
            crash_at_event=current.crash_at_event,
            agent_loop=agent_loop,
            run_observer=with_live_telemetry(observer, store),
            # `baton run` / `resume` too: a goal cancelled from another terminal while its LLM
            # call hung kept the run waiting until the call's timeout, then recorded its late
            # result after GoalCancelled. Left within this long instead, as a worker leaves it.
            watch_s=WATCH_S,
        )

    def start(self, goal: Goal) -> Goal:
        """Settle and save a new goal's first decisions, then drive it."""
        return self._drive(goal)

    def resume(self, goal: Goal, *, concurrency: int) -> Goal:
        """Take a goal up again: attempts left in flight by a dead runner get decided first."""
        if goal.state.status in GOAL_FINAL:
            return goal
        if self._stop_asked():  # asked as it took the goal up: left as it was, nothing recorded
            return goal
        # Recorded as the first save's observation, not added beforehand: a command saving in
        # between (a resolve) makes that save re-read the goal and record it again on top, where
        # a pending event was dropped with the stale goal.
        return self._drive(goal, [("RunResumed", {"concurrency": concurrency})], concurrency)

    # --- the loop ---

    def _drive(
        self,
        goal: Goal,
        taking_up: list[tuple[str, dict[str, Any]]] | None = None,
        concurrency: int | None = None,
    ) -> Goal:
        if any(task.isolation == "process" for task in self.loaded.plan.tasks):
            start_fork_server()  # before any deadline runs: its start is not an agent's time
        pool = CallPool(
            workers=concurrency or goal.state.concurrency, observer=self.observer,
            loop=self.agent_loop,
        )
        in_flight: dict[tuple[str, int], _InFlight] = {}
        self._pool = pool
        try:
            goal, decided = self._settle_and_save(goal, taking_up or [])
            self._launch(goal, pool, in_flight, decided)
            while True:
                if goal.state.status in GOAL_FINAL:
                    break
                if not in_flight:
                    timer = self._goal_timer(goal)
                    if timer is None or (self.park_on_timers and timer > PARK_AFTER_S):
                        break  # waiting for a human, nothing that time can move, or parked
                if self._stop_asked():
                    if self._leaving_now() or not goal.state.unsafe_attempt_in_flight():
                        break
                    if not goal.state.stop_requested:  # said before the wait: nothing new
                        goal, decided = self._settle_and_save(goal, [STOPPING])
                        self._launch(goal, pool, in_flight, decided)
                        self._said_stopping(goal)
                        continue
                first = self._next_observation(goal, pool, in_flight)
                if first is None:  # woken, or time to look: nothing to record
                    if self.watch_s is not None and self._ended_elsewhere(goal):
                        goal = self.store.get(goal.id)
                        break
                    continue  # ask `should_stop` again
                observations = [first, *self._queued_observations(pool, in_flight)]
                if not goal.state.stop_requested and self._stop_asked():
                    # Asked while it waited, unwoken: recorded before the outcomes, so that
                    # their save dispatches nothing this runner would then run or leave unknown.
                    observations.insert(0, STOPPING)
                goal, decided = self._settle_and_save(goal, observations)
                self._launch(goal, pool, in_flight, decided)
                if observations[0] is STOPPING:
                    self._said_stopping(goal)
        except (FencedOut, StoreError) as exc:
            running = [  # their outcomes, when they come, are recorded by no one
                f"{call.task} #{call.attempt}" for call in in_flight.values()
                if (spec := goal.state.plan.task_map.get(call.task)) is not None
                and spec.side_effects == "unsafe"
            ]
            if not running:
                raise
            if isinstance(exc, FencedOut):
                raise FencedOut(exc.goal_id, exc.unrecorded, running) from None
            raise type(exc)(f"{exc}{still_running(running)}") from None
        finally:
            self._pool = None
            pool.close()
        return goal

    def _said_stopping(self, goal: Goal) -> None:
        if self.on_stopping is not None and goal.state.unsafe_attempt_in_flight():
            self.on_stopping(goal)

    def _stop_asked(self) -> bool:
        return (self.should_stop is not None and self.should_stop()) or self._leaving_now()

    def _leaving_now(self) -> bool:
        return self.must_stop is not None and self.must_stop()

    def _next_observation(
        self, goal: Goal, pool: CallPool, in_flight: dict[tuple[str, int], _InFlight]
    ) -> tuple[str, dict[str, Any]] | None:
        """Block until an agent finishes or a timer is due; return what to record (None: woken
        by `wake`, nothing to record)."""
        wake = self._next_wake(goal, in_flight)
        # A plan may set `timeout_s: 1e300` ("never"): a wait that long is OverflowError in the
        # queue's timed wait. Waiting the longest it takes is the same to us: when it ends with
        # nothing due, a ClockTicked is recorded and the wait begins again.
        timeout = None if wake is None else min(max(0.0, wake - time.monotonic()),
                                                threading.TIMEOUT_MAX)
        looking = self.watch_s is not None and (timeout is None or timeout > self.watch_s)
        if looking:
            timeout = self.watch_s
        try:
            completion: Completion | None = pool.completions.get(timeout=timeout)
        except queue.Empty:
            if looking:
                return None  # nothing is due yet: the caller looks at the store
            now = time.monotonic()
            for key, call in sorted(in_flight.items()):
                if call.deadline is not None and call.deadline <= now:
                    abandoned = pool.abandon(call.task, call.attempt)
                    if abandoned is None:  # it finished as its time ran out: its result,
                        call.deadline = None  # on the queue now or about to be, is what counts
                        return None
                    del in_flight[key]
                    # What it spent before it hung (its earlier model requests) is recorded too.
                    timed_out = CallOutcome(call.task, call.attempt, timed_out=True,
                                            spent=abandoned.spent)
                    observed = self.observer.observe(timed_out)
                    return observed.kind, observed.fields
            return "ClockTicked", {}
        if completion is None:
            return None
        return self._completed(completion, in_flight)

    def _queued_observations(
        self, pool: CallPool, in_flight: dict[tuple[str, int], _InFlight]
    ) -> list[tuple[str, dict[str, Any]]]:
        """Every completion already waiting: recorded with the first, in one save."""
        observations: list[tuple[str, dict[str, Any]]] = []
        while True:
            try:
                completion = pool.completions.get_nowait()
            except queue.Empty:
                return observations
            if completion is not None:  # a wake-up: `should_stop` is asked with this save
                observations.append(self._completed(completion, in_flight))

    def _completed(
        self, completion: Completion, in_flight: dict[tuple[str, int], _InFlight]
    ) -> tuple[str, dict[str, Any]]:
        in_flight.pop((completion.task, completion.attempt), None)
        return completion.kind, completion.fields

    def _settle_and_save(
        self, goal: Goal, observations: list[tuple[str, dict[str, Any]]]
    ) -> tuple[Goal, list[Decision]]:
        """Record each observation and its consequences, then save them in one transaction.

        Each observation is followed by what `settle` decides from it, exactly as if it had been
        saved on its own, so replay re-decides the same batches. Every observation taken off the
        queue is recorded, even one that arrives after the goal ended (a late result: decide
        ignores it). A command may have written in between (`baton cancel`): then the save
        conflicts, and we re-read the goal and record the same observations on top of its events.
        If another runner wrote (it took the goal over), this one stops: `FencedOut`.
        """
        for _ in range(10):
            known = goal.version - len(goal.pending_events)
            decided = [] if observations else settle(goal, self.loaded.contracts)
            for kind, fields in observations:
                goal.observe(kind, at=self.clock(), **fields)
                decided += settle(goal, self.loaded.contracts)
            try:
                saved = self.store.save(goal)
            except StoreError as exc:  # down after its retries, or refusing: the goal's
                outcomes = _unsafe_outcomes(goal, observations)  # next owner escalates an
                if not outcomes:  # unsafe attempt in flight as outcome unknown; this is the
                    raise  # only word of what it came to
                raise type(exc)(f"{exc}{unrecorded_outcomes(outcomes)}") from None
            except IntegrityError:
                goal = self.store.get(goal.id)
                self._fence(goal, known, observations)
                if not observations:
                    return goal, []
                continue
            self._maybe_crash(goal)
            if self.run_observer is not None:
                self.run_observer.saved(goal, saved)
            return goal, decided
        raise RuntimeError(f"goal {goal.id}: could not save after repeated conflicts")

    def _ended_elsewhere(self, goal: Goal) -> bool:
        """Whether the goal's latest stored event ends it (one indexed read, no fold). A store
        that cannot answer for now says no: the goal is not given up, with an unsafe attempt
        perhaps in flight, for a blip while its agents run (the next save says if it lasts)."""
        try:
            topics = self.store.latest_topics([goal.id])
        except Exception:
            return False
        return ends_goal(topics.get(goal.id, ""))

    def _fence(
        self, goal: Goal, known: int, observations: Sequence[tuple[str, dict[str, Any]]] = ()
    ) -> None:
        """Stop if a runner wrote after version `known` (never run a dispatch it recorded),
        saying what the unsafe calls among `observations` came to: they go unrecorded."""
        written = self.store.events(goal.id)[known:]
        if any(type(event).__name__ in RUNNER_OBSERVATIONS for event in written):
            raise FencedOut(goal.id, _unsafe_outcomes(goal, observations))

    def _launch(
        self,
        goal: Goal,
        pool: CallPool,
        in_flight: dict[tuple[str, int], _InFlight],
        decided: Sequence[Decision] = (),
    ) -> None:
        """Call the agent of every saved dispatch this process is not running yet.

        Derived from the state rather than from this process's own decisions, so a dispatch
        recorded by another process is executed too (a human's retry during the run, under
        rules 1-5: from rules 6 a command's save dispatches nothing and this runner's next save
        does); the input `decide` built for one of our own dispatches is used as it is, any
        other is built again.
        """
        plan = goal.state.plan  # with the tasks planners and maps added
        self.observer.plan = plan
        prepared = {
            (decision.fields["task"], decision.fields["attempt"]): decision.prepared
            for decision in decided
            if decision.kind == "TaskDispatched" and decision.prepared is not None
        }
        for task_id in goal.state.with_status("running"):
            task = goal.state.tasks[task_id]
            attempt = task.in_flight
            if attempt is None or task.outcome is not None:
                continue
            if (task_id, attempt) in in_flight:
                continue
            spec = plan.task_map[task_id]
            contract = self.loaded.contracts[spec.agent]
            agent = self.loaded.agents[spec.agent]
            if self.run_observer is not None:
                agent = self.run_observer.calling(goal.id, task_id, attempt, agent)
            agent_input = prepared.get((task_id, attempt))
            if agent_input is None:
                agent_input, errors = build_input(goal.state, spec, contract)
                if agent_input is None:  # decide built the same input when it dispatched
                    raise RuntimeError(f"task {task_id}: input no longer builds: {errors}")
            timeout = plan.timeout_for(spec)
            key = task.idempotency_key if contract.takes_idempotency_key else None
            in_flight[(task_id, attempt)] = _InFlight(
                task_id, attempt, None if timeout is None else time.monotonic() + timeout
            )
            pool.submit(
                AgentCall(
                    task=task_id,
                    attempt=attempt,
                    agent=agent,
                    agent_input=agent_input,
                    idempotency_key=key,
                    is_async=contract.is_async,
                    timeout_s=timeout,
                    attempt_context=context_for(contract, goal.state, task_id, attempt),
                    isolation=spec.isolation,
                    cost_left_usd=cost_left(goal.state, task_id),
                )
            )

    # --- timers ---

    def _goal_timer(self, goal: Goal) -> float | None:
        """Seconds from now until a backoff or the deadline comes due, if any."""
        state = goal.state
        now = self.clock()
        waiting = (state.tasks[task_id] for task_id in state.by_status.get("retry_wait", ()))
        dues = [(task.due_at - now).total_seconds() for task in waiting if task.due_at is not None]
        deadline = state.plan.budget.deadline_s
        if deadline is not None and (dues or state.in_flight):
            remaining = deadline - (now - state.started_at).total_seconds()
            if remaining > 0:  # once past, the next observation carries the news
                dues.append(remaining)
        return min(dues) if dues else None

    def _next_wake(
        self, goal: Goal, in_flight: dict[tuple[str, int], _InFlight]
    ) -> float | None:
        wakes = [call.deadline for call in in_flight.values() if call.deadline is not None]
        timer = self._goal_timer(goal)
        if timer is not None:
            wakes.append(time.monotonic() + max(0.0, timer))
        return min(wakes) if wakes else None

    def _maybe_crash(self, goal: Goal) -> None:
        if self.crash_at_event is not None and goal.version >= self.crash_at_event:
            os.kill(os.getpid(), signal.SIGKILL)

