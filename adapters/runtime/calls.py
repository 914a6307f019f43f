"""Calling agents: sync ones on daemon worker threads, async ones on an event loop (the
caller's, under `AsyncBaton`, else one loop thread of the pool's own).

Whatever an agent does (raise, hang, return junk) becomes a `CallOutcome`, which
`Observer.observe` turns into the observation to record, a `Completion` on a queue; the
orchestrator thread alone touches the aggregate. Re-execution replay turns its recorded outcomes
into observations through the same `Observer.observe`, so live runs and re-execution record
alike. Worker threads are daemons so that an agent hanging past its timeout cannot keep the
process alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from baton.domain.json_values import json_problem
from baton.domain.secrets import has_secret, redact_output
from baton.domain.usage import AttemptUsage, usage_payload
from baton.llm.pricing import priced
from baton.runtime import isolation
from baton.runtime.loading import LoadedPlan
from baton.runtime.spending import Spending, spending_of
from baton.settings import DEFAULT_MAX_OUTPUT_BYTES

__all__ = [
    "DEFAULT_MAX_OUTPUT_BYTES",
    "MAX_RETRY_AFTER_S",
    "Abandoned",
    "AgentCall",
    "CallOutcome",
    "CallPool",
    "Completion",
    "Observer",
    "failure_details",
    "to_recordable",
]


# A 429/503's Retry-After of a day (a quota spent until tomorrow) would hold the goal running,
# its retry scheduled a day away, with nothing to show. Waited at most this long (or the
# task's retry `max_backoff_s` when longer); the retry then finds out whether the server is back.
MAX_RETRY_AFTER_S = 300.0


@dataclass(frozen=True)
class AgentCall:
    task: str
    attempt: int
    agent: Callable[..., Any]
    agent_input: BaseModel
    idempotency_key: str | None
    is_async: bool
    timeout_s: float | None
    attempt_context: BaseModel | None = None  # passed when the agent declares `attempt`
    isolation: str = "thread"  # "process": a sync agent runs in a process its timeout ends
    # What the goal's max_cost_usd leaves this attempt (baton.runtime.spending); None: no cap.
    cost_left_usd: float | None = None


@dataclass(frozen=True)
class Completion:
    """What one call produced, ready to record as an observation."""

    task: str
    attempt: int
    kind: str  # "AgentReturned" | "AgentRaised" | "AgentTimedOut"
    fields: dict[str, Any]


@dataclass(frozen=True)
class CallOutcome:
    """What one agent call came to: it returned `returned`, raised `raised`, or timed out."""

    task: str
    attempt: int
    returned: Any = None
    raised: BaseException | None = None
    timed_out: bool = False
    duration_ms: float = 0.0  # a timeout records its limit instead
    spent: dict[str, Any] | None = None  # a timed-out attempt: what it had spent when abandoned


class Observer:
    """Turns the outcomes of one plan's agent calls into observations.

    `observe` is the one function that does it, for the live runner (in the call pool, and for
    timeouts) and for re-execution replay (with recorded outcomes): the output recorded as JSON
    with its usage, the size cap, secrets masked, an exception's type and message, a timeout's
    limit. Without a plan (unit tests of the pool) nothing is masked.
    """

    def __init__(
        self, loaded: LoadedPlan | None = None, *, max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
    ) -> None:
        self.loaded = loaded
        # The goal's plan as it now is, with the tasks planners and maps added (set by whoever
        # drives the goal); the plan file's own otherwise.
        self.plan = loaded.plan if loaded is not None else None
        self.max_output_bytes = max_output_bytes
        # Does any contract type a secret? If none does, masking is the identity: skip it.
        self._redacts = loaded is not None and any(
            has_secret(contract.input_model) or has_secret(contract.output_model)
            for contract in loaded.contracts.values()
        )

    def observe(self, outcome: CallOutcome) -> Completion:
        fields: dict[str, Any] = {"task": outcome.task, "attempt": outcome.attempt}
        if outcome.timed_out:
            fields["timeout_s"] = self._timeout_s(outcome.task)
            spent = _usage_or_none(outcome.spent)
            if spent is not None:  # the requests before the one that hung were paid for
                fields["usage"] = spent
            return Completion(outcome.task, outcome.attempt, "AgentTimedOut", fields)
        if outcome.raised is not None:
            fields["error_type"] = _storable_text(type(outcome.raised).__name__)
            fields["message"] = _message(outcome.raised)
            fields["duration_ms"] = outcome.duration_ms
            fields |= failure_details(outcome.raised)  # usage spent, a 429's Retry-After
            self._cap_retry_after(outcome.task, fields)
            return Completion(outcome.task, outcome.attempt, "AgentRaised", fields)
        try:
            return self._returned(outcome, fields)
        except BaseException as exc:
            # Whatever reading the result raises (a mapping whose items() raises, a model whose
            # dump fails, a RecursionError) is an output that could not be recorded: a
            # rejection with its reason, never a dead worker thread and a fake timeout.
            error = f"output could not be read: {type(exc).__name__}: {_message(exc)}"
            fields |= {"output": None, "duration_ms": outcome.duration_ms, "output_error": error}
            return Completion(outcome.task, outcome.attempt, "AgentReturned", fields)

    def _returned(self, outcome: CallOutcome, fields: dict[str, Any]) -> Completion:
        output, usage, error = to_recordable(outcome.returned, max_bytes=self.max_output_bytes)
        if self._redacts and self.loaded is not None:  # never a secret in clear
            plan, contracts = self.plan or self.loaded.plan, self.loaded.contracts
            output = redact_output(plan, contracts, outcome.task, output)
        fields["output"] = output
        fields["duration_ms"] = outcome.duration_ms
        if usage is not None:
            fields["usage"] = usage
        if error is not None:  # may quote the value (a repr): never a lone surrogate in a save
            fields["output_error"] = _storable_text(error)
        return Completion(outcome.task, outcome.attempt, "AgentReturned", fields)

    def _cap_retry_after(self, task_id: str, fields: dict[str, Any]) -> None:
        """A failure's Retry-After waits at most `retry_after_cap`: the figure recorded (and
        honoured) is the capped one, and the message says what was asked."""
        asked = fields.get("retry_after_s")
        cap = self.retry_after_cap(task_id)
        if asked is not None and asked > cap:
            fields["retry_after_s"] = cap
            fields["message"] = _storable_text(
                f"{fields['message']} (asked to retry after {asked:g}s; Baton waits at most "
                f"{cap:g}s)"
            )

    def retry_after_cap(self, task_id: str) -> float:
        """The longest wait a failure's Retry-After may impose on a task: MAX_RETRY_AFTER_S,
        or the task's retry `max_backoff_s` when that is longer (a plan that accepts waiting
        that long between attempts accepts it from the server too)."""
        if self.plan is None or task_id not in self.plan.task_map:
            return MAX_RETRY_AFTER_S
        policy = self.plan.retry_for(self.plan.task_map[task_id])
        return max(MAX_RETRY_AFTER_S, policy.max_backoff_s)

    def _timeout_s(self, task_id: str) -> float:
        if self.plan is None:
            return 0.0
        return self.plan.timeout_for(self.plan.task_map[task_id]) or 0.0


def _message(exc: BaseException) -> str:
    """An exception's message, one line, storable (a lone surrogate would fail the save)."""
    try:
        message = " ".join(str(exc).split())[:500]
    except Exception as broken:  # an exception whose __str__ raises is still a raised attempt
        message = f"<message unavailable: its __str__ raised {type(broken).__name__}>"
    return _storable_text(message)


def to_recordable(result: Any, *, max_bytes: int) -> tuple[Any, dict[str, Any] | None, str | None]:
    """(JSON output, usage, error) from what an agent returned.

    Usage is reported without importing Baton: a `usage` field (with `tokens` and/or
    `cost_usd`) on the output, or a returned pair `(output, {"tokens": .., "cost_usd": ..})`.
    """
    usage: dict[str, Any] | None = None
    usage_error: str | None = None
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict):
        result, (usage, usage_error) = result[0], _usage(result[1])
    try:
        raw = result.model_dump(mode="json") if isinstance(result, BaseModel) else result
        # Checked before anything recursive walks it: nesting is bounded, every number finite,
        # every string valid UTF-8 (a lone surrogate passes json.dumps but not the store).
        problem = json_problem(raw)
        if problem is not None:
            return None, usage, f"output of type {type(result).__name__} is not JSON: {problem}"
        # One dump gives the size and a plain copy: reloading a JSON text and dumping it again
        # yields the same text.
        text = json.dumps(raw, separators=(",", ":"), allow_nan=False)
        output, size = json.loads(text), len(text)
    except (TypeError, ValueError) as exc:
        return None, usage, f"output of type {type(result).__name__} is not JSON: {exc}"
    if size > max_bytes:
        return None, usage, f"output is {size} bytes, over the {max_bytes}-byte cap"
    if usage is None and usage_error is None and isinstance(output, dict) and isinstance(
        output.get("usage"), dict
    ):
        usage, usage_error = _usage(output["usage"])
    return output, usage, usage_error


def _usage_or_none(raw: Any) -> dict[str, Any] | None:
    """A usage report carried beside a failure or a timeout: the usage, or None when it is
    missing or malformed (it cannot fail an attempt that has already failed)."""
    return _usage(raw)[0] if isinstance(raw, dict) else None


def _usage(raw: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """(usage, None) from a usage report, or (None, why) when it is not one.

    A report that is not a count of tokens and a cost, both zero or more, fails the attempt
    (recorded and explained like any bad output): silently dropping it, or counting a negative
    figure, would let an agent spend past `max_tokens` / `max_cost_usd`.
    """
    try:
        tokens = raw.get("tokens")
        if tokens is None and ("input_tokens" in raw or "output_tokens" in raw):
            tokens = _figure(raw.get("input_tokens"), "tokens", whole=True) + _figure(
                raw.get("output_tokens"), "tokens", whole=True
            )
        usage: dict[str, Any] = {
            "tokens": int(_figure(tokens, "tokens", whole=True)),
            "cost_usd": float(_figure(raw.get("cost_usd"), "cost_usd", whole=False)),
        }
        # The v2 figures (input/output tokens, model, ...) when reported, checked by their model
        extra = {k: raw[k] for k in AttemptUsage.model_fields if k in raw and k not in usage}
        if extra:
            usage = usage_payload(AttemptUsage(**usage, **extra))
            if raw.get("cost_usd") is None:
                usage = priced(usage)
            elif "cost_source" not in raw:  # a source reported as none stays none (unpriced)
                usage["cost_source"] = "reported"
    except (TypeError, ValueError, OverflowError) as exc:
        try:
            shown = json.dumps(raw, default=repr)[:200]
        except (TypeError, ValueError, OverflowError, RecursionError):
            shown = "{...}"
        return None, f"usage report {shown} is invalid: {exc}"
    return usage, None


def _figure(value: Any, name: str, *, whole: bool) -> float:
    """A reported figure: absent is 0; a number (whole for tokens), never negative or NaN."""
    if value is None:
        return 0.0
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, not {value!r}")
    if not number or (whole and value != int(value)):
        kind = "a whole number" if whole else "a number"
        raise TypeError(f"{name} must be {kind}, not {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be 0 or more, not {value!r}")
    if value > _MAX_FIGURE:  # 10**400 has no float; any figure this size is a bug
        raise ValueError(f"{name} must be at most {_MAX_FIGURE:.0e}, not {_shown(value)}")
    return float(value)


_LOOP_STOP_S = 2.0  # for the loop's cancelled calls to end, and for its thread to stop


async def _cancel_pending() -> None:
    """Cancel every other task of the running loop and let them end (at most _LOOP_STOP_S)."""
    current = asyncio.current_task()
    pending = [task for task in asyncio.all_tasks() if task is not current]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=_LOOP_STOP_S)

_MAX_FIGURE = 10**15  # far beyond any real attempt, and exact as a float and in a bigint sum


def _shown(value: float) -> str:
    return f"a {len(str(value))}-digit number" if isinstance(value, int) else repr(value)


@dataclass(frozen=True)
class Abandoned:
    """A call given up on at its timeout."""

    spent: dict[str, Any] | None  # what it had spent so far, when its agent reports that


class CallPool:
    """Runs agent calls and puts each `Completion` on `self.completions`.

    Sync calls run on worker threads started lazily, up to `workers`: a new thread only when a
    call is submitted and every thread already started is busy, so a chain runs on one thread
    however wide the goal may run (starting a thread costs about a millisecond on a busy
    machine, more than a no-op task's whole orchestration).
    """

    def __init__(
        self,
        *,
        workers: int,
        observer: Observer | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        # None: no completion, a wake-up (`wake`): the runner asks whether to stop again.
        self.completions: queue.SimpleQueue[Completion | None] = queue.SimpleQueue()
        self.observer = observer or Observer()
        # Each call with the context it was submitted in (its driver's: the caller's contextvars,
        # a request id or a trace, reach the agent as they would a function it called).
        self._jobs: queue.SimpleQueue[tuple[AgentCall, contextvars.Context] | None] = (
            queue.SimpleQueue())
        self._max_workers = max(1, workers)
        # Under the lock: threads serving `_jobs` (one stuck in a timed-out call no longer
        # counts), how many of them no submitted call has claimed yet (`workers - calls not
        # finished`, negative when calls queue), the calls running now and the abandoned ones.
        self._workers = 0
        self._free = 0
        self._running: set[tuple[str, int]] = set()
        self._abandoned: set[tuple[str, int]] = set()
        self._lock = threading.Lock()
        # Async agents run on `loop` when given (the caller's: never stopped here), else on a
        # loop thread this pool starts on first use and stops on close.
        self._loop: asyncio.AbstractEventLoop | None = loop
        self._owns_loop = loop is None
        self._loop_thread: threading.Thread | None = None
        self._futures: dict[tuple[str, int], Any] = {}
        # Each running call's spend so far, read when it is abandoned (baton.runtime.spending).
        self._spending: dict[tuple[str, int], Spending] = {}
        self._processes = isolation.ProcessCalls()

    def submit(self, call: AgentCall) -> None:
        self._spending[(call.task, call.attempt)] = Spending(cost_left_usd=call.cost_left_usd)
        if call.is_async:
            loop = self._event_loop()
            future = asyncio.run_coroutine_threadsafe(self._run_async(call), loop)
            self._futures[(call.task, call.attempt)] = future
            return
        with self._lock:
            if self._free <= 0 and self._workers < self._max_workers:
                self._workers += 1
                self._free += 1
                threading.Thread(target=self._work, name="baton-agent", daemon=True).start()
            self._free -= 1  # this call claims a worker (or waits for one)
        self._jobs.put((call, contextvars.copy_context()))

    def wake(self) -> None:
        """Wake whoever waits on `completions` without a completion (safe in a signal handler:
        SimpleQueue.put is reentrant)."""
        self.completions.put(None)

    def abandon(self, task: str, attempt: int) -> Abandoned | None:
        """An attempt timed out: cancel it if async; a sync one's stuck thread is replaced.
        None when the call finished first (its completion is on the queue, or about to be):
        it is not abandoned, and its result, not a timeout, is what happened."""
        # The call's Spending is the token abandon and completion race for, under the lock:
        # whoever takes it first decides. Without it, an async call finishing as its time ran
        # out was recorded twice, as timed out (with its spend so far) and as returned (with
        # all of its spend), and its requests counted twice against the budgets.
        with self._lock:
            spending = self._spending.pop((task, attempt), None)
        if spending is None:
            return None
        abandoned = Abandoned(spending.so_far())  # read before it is cancelled
        future = self._futures.pop((task, attempt), None)
        if future is not None:
            future.cancel()
            return abandoned
        self._processes.terminate((task, attempt))  # a process-isolated call stops here
        with self._lock:
            if (task, attempt) in self._running:  # its thread stays in the call: not counted
                self._abandoned.add((task, attempt))
                self._workers -= 1
        return abandoned

    def close(self) -> None:
        with self._lock:
            for _ in range(self._workers):
                self._jobs.put(None)
        for future in list(self._futures.values()):
            future.cancel()  # a call nobody will record: do not leave it running on a loop
        if self._loop is not None and self._owns_loop:
            self._close_loop(self._loop)

    def _close_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Stop the loop this pool started, and close it once its thread has ended: a loop left
        running or unclosed is finalized with the interpreter, where asyncio's clean-up can write
        to stderr at exit (a closed stdout's `baton run` must end quietly). A coroutine that
        blocks the loop's thread, or one still pending, keeps it open: nothing waits for it."""
        if loop.is_closed():
            return
        thread = self._loop_thread
        if thread is threading.current_thread():  # closed from an agent: a running loop
            loop.call_soon(loop.stop)  # cannot be closed; it stops, and is left open
            return
        # The calls just cancelled need turns of the loop to end: stopped in the same turn as
        # their cancel, they stayed pending and the loop unclosed ("Task was destroyed ...").
        with contextlib.suppress(Exception):  # a loop its agent blocks: not waited for longer
            asyncio.run_coroutine_threadsafe(_cancel_pending(), loop).result(_LOOP_STOP_S)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(_LOOP_STOP_S)
            if thread.is_alive() or asyncio.all_tasks(loop):
                return
        loop.close()

    # --- internals ---

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            call, context = job
            key = (call.task, call.attempt)
            with self._lock:
                self._running.add(key)
            started = time.perf_counter()
            try:
                if call.isolation == "process":
                    result = self._processes.run(key, call.agent, call.agent_input, _kwargs(call))
                else:
                    result = context.run(self._call_sync, call)
            except BaseException as exc:  # an agent must never take the orchestrator down
                outcome = CallOutcome(call.task, call.attempt, raised=exc,
                                      duration_ms=_elapsed_ms(started))
            else:
                outcome = CallOutcome(call.task, call.attempt, returned=result,
                                      duration_ms=_elapsed_ms(started))
            completion = self.observer.observe(outcome)
            with self._lock:
                self._spending.pop(key, None)  # finished: a later abandon finds it so
                self._running.discard(key)
                stuck = key in self._abandoned
                if stuck:
                    self._abandoned.discard(key)  # replaced already: this thread ends
                else:
                    self._free += 1  # before the completion, so the next submit finds it
            self.completions.put(completion)
            if stuck:
                return

    def _call_sync(self, call: AgentCall) -> Any:
        with spending_of(self._spending_for(call)):
            return call.agent(call.agent_input, **_kwargs(call))

    async def _run_async(self, call: AgentCall) -> None:
        # In a copy of the submitter's context: `run_coroutine_threadsafe` schedules the task
        # with the context of the thread that submits it (the caller's contextvars reach it).
        started = time.perf_counter()
        try:
            with spending_of(self._spending_for(call)):  # this task's context only
                result = await call.agent(call.agent_input, **_kwargs(call))
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                return  # cancelled here (timed out, and recorded as such) or by the loop's end
            # The agent's own (an HTTP client's cancelled request, say): a failed attempt, not
            # a call left to run into its timeout.
            outcome = CallOutcome(call.task, call.attempt, raised=exc,
                                  duration_ms=_elapsed_ms(started))
        except BaseException as exc:
            outcome = CallOutcome(call.task, call.attempt, raised=exc,
                                  duration_ms=_elapsed_ms(started))
        else:
            outcome = CallOutcome(call.task, call.attempt, returned=result,
                                  duration_ms=_elapsed_ms(started))
        finally:
            self._futures.pop((call.task, call.attempt), None)
        with self._lock:
            abandoned = self._spending.pop((call.task, call.attempt), None) is None
        if abandoned:  # its time ran out first, and it is recorded as timed out
            return
        self.completions.put(self.observer.observe(outcome))

    def _spending_for(self, call: AgentCall) -> Spending:
        # Submitted calls have one; a call abandoned before it started gets a fresh one.
        found = self._spending.get((call.task, call.attempt))
        return found if found is not None else Spending(cost_left_usd=call.cost_left_usd)

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            self._loop_thread = threading.Thread(target=loop.run_forever, name="baton-async",
                                                 daemon=True)
            self._loop_thread.start()
            self._loop = loop
        return self._loop


def _kwargs(call: AgentCall) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if call.idempotency_key:
        kwargs["idempotency_key"] = call.idempotency_key
    if call.attempt_context is not None:
        kwargs["attempt"] = call.attempt_context
    return kwargs


def _storable_text(text: str) -> str:
    """Text a store accepts: a lone surrogate (valid in Python, not in UTF-8) is escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def failure_details(exc: BaseException) -> dict[str, Any]:
    """What a failure may carry (the LLM adapter's do): usage spent before it failed, and a
    "not before" for the retry (a 429's Retry-After). Anything malformed is left out."""
    details: dict[str, Any] = {}
    reported = getattr(exc, "usage", None)
    usage = _usage_or_none(reported)
    if usage is not None:
        details["usage"] = usage
    retry_after: Any = getattr(exc, "retry_after_s", None)
    number = isinstance(retry_after, int | float) and not isinstance(retry_after, bool)
    if number and 0 <= retry_after < float("inf"):
        details["retry_after_s"] = float(retry_after)
    return details


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
