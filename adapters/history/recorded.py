"""Re-execution replay: the whole pipeline again, with every agent replaced by its recording.

`RecordedAgents` is the test double: it answers each (task, attempt) with what that attempt
returned or raised when it ran (or that it timed out). `reexecute` starts the goal afresh from its
recorded `Started` (re-validating the goal input), settles with today's `decide`, builds each
dispatched attempt's input from its bindings, calls the double, turns its outcome into an
observation with the live runner's own function (`Observer.observe`: JSON, usage, size cap,
secrets masked, a timeout's limit from today's plan), re-validates a human's output against
today's contract, and checks that every event of the new stream equals the recorded one.
Timings (clock readings, durations) are taken from the recording: they are observations, not
computations.

It catches what plain replay cannot: changes in goal-input validation, output recording and
usage extraction, plan serialisation and lifecycle checks (`Goal.record`), not only in `decide`.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from baton.domain.attempts import context_for, cost_left
from baton.domain.contracts import build_input
from baton.domain.decide import settle
from baton.domain.goal import Goal, GoalEvent
from baton.domain.history import (
    OUTCOME_KINDS,
    collect,
    copy_events,
    decided_at_start,
    fold,
    inherited_events,
    is_observation,
    kind_of,
    payload,
    started_event,
    to_json,
)
from baton.domain.plan import Plan
from baton.domain.replay import Divergence, ReplayResult, compare_events
from baton.runtime.calls import DEFAULT_MAX_OUTPUT_BYTES, CallOutcome, Completion, Observer
from baton.runtime.loading import LoadedPlan
from baton.runtime.spending import Spending, spending_of

__all__ = ["NotRecorded", "RecordedAgents", "RecordedTimeout", "reexecute"]


class NotRecorded(LookupError):
    """The double was asked for an attempt the recording has no outcome for."""


class RecordedTimeout(TimeoutError):
    """The recorded attempt ran past its timeout: the double does the same, by raising this,
    with what the attempt had spent when it was abandoned (`spent`)."""

    spent: dict[str, Any] | None = None


class RecordedAgents:
    """A recorded-output agent double: each attempt gets back exactly what it produced."""

    def __init__(self, events: Sequence[GoalEvent]) -> None:
        self._outcomes: dict[tuple[str, int], deque[GoalEvent]] = defaultdict(deque)
        for event in events:
            if kind_of(event) in OUTCOME_KINDS:
                key = (getattr(event, "task"), getattr(event, "attempt"))  # noqa: B009
                self._outcomes[key].append(event)

    def call(
        self, task: str, attempt: int, agent_input: BaseModel,
        idempotency_key: str | None = None, context: Any = None,
    ) -> Any:
        """What the agent returned for this attempt, or raise what it raised (or
        `RecordedTimeout` for an attempt that timed out)."""
        queue = self._outcomes.get((task, attempt))
        if not queue:
            raise NotRecorded(f"no recorded outcome for task {task!r} attempt {attempt}")
        event = queue.popleft()
        fields = payload(event, timestamp=False)
        if kind_of(event) == "AgentTimedOut":
            timeout = RecordedTimeout(f"task {task!r} attempt {attempt} timed out")
            timeout.spent = fields.get("usage")  # what it had spent when abandoned (v2)
            raise timeout
        if kind_of(event) == "AgentRaised":
            raise _recorded_exception(fields["error_type"], fields["message"], fields)
        output, usage = fields["output"], fields.get("usage")
        reported_inline = isinstance(output, dict) and isinstance(output.get("usage"), dict)
        if usage is not None and not reported_inline:
            return output, usage  # the agent reported usage as a returned pair
        return output

    def agent(self, task: str, attempt: int) -> Any:
        """A plain agent callable for one attempt, for tests that call agents directly."""

        def recorded(agent_input: BaseModel, *, idempotency_key: str | None = None) -> Any:
            return self.call(task, attempt, agent_input, idempotency_key)

        return recorded


def _recorded_exception(
    error_type: str, message: str, recorded: dict[str, Any] | None = None
) -> Exception:
    # The recording keeps the class name only; a class of that name reproduces `error_type`,
    # with what the failure carried (its usage, its retry-after) as the live one did.
    cls: type[Exception] = type(error_type, (Exception,), {})
    exc = cls(message)
    for name in ("usage", "retry_after_s"):
        if recorded and recorded.get(name) is not None:
            setattr(exc, name, recorded[name])
    return exc


class _Reexecution:
    def __init__(
        self, events: Sequence[GoalEvent], loaded: LoadedPlan, max_bytes: int, agents: Any = None
    ) -> None:
        self.events = events
        self.loaded = loaded
        self.observer = Observer(loaded, max_output_bytes=max_bytes)
        self.agents = agents if agents is not None else RecordedAgents(events)
        self.position = 0
        self.decisions = 0

    def check(self, goal: Goal) -> Divergence | None:
        """Compare the events the new run just produced with the recording, in order."""
        for new in collect(goal):
            if self.position >= len(self.events):
                return Divergence(new.originator_version, None, to_json(new))
            divergence = compare_events(self.events[self.position], new)
            if divergence is not None:
                return divergence
            self.decisions += 0 if is_observation(new) else 1
            self.position += 1
        return None

    def observation(self, goal: Goal, recorded: GoalEvent) -> tuple[str, dict[str, Any]]:
        """The observation the pipeline makes today where `recorded` was made then: its kind
        (today's agent may return where the recorded one raised) and its fields."""
        fields = payload(recorded, timestamp=False)
        kind = kind_of(recorded)
        if kind in OUTCOME_KINDS and fields.get("output_error") is None:
            # (An output that could not be recorded is kept as it was: its value is not in the
            # recording, so there is nothing to call the double with.)
            completion = self._call(goal, fields)
            return completion.kind, completion.fields
        elif kind == "HumanResolved" and fields["action"] == "output":
            spec = goal.state.plan.task_map[fields["task"]]
            model = self.loaded.contracts[spec.agent].output_model
            fields["output"] = model.model_validate(fields["output"]).model_dump(mode="json")
        return kind, fields

    def _call(self, goal: Goal, recorded: dict[str, Any]) -> Completion:
        task_id, attempt = recorded["task"], recorded["attempt"]
        spec = goal.state.plan.task_map[task_id]
        contract = self.loaded.contracts[spec.agent]
        agent_input, errors = build_input(goal.state, spec, contract)
        if agent_input is None:
            raise ValueError(f"task {task_id}: input no longer builds: {errors}")
        key = goal.state.tasks[task_id].idempotency_key if contract.takes_idempotency_key else None
        duration = recorded.get("duration_ms", 0.0)
        self.observer.plan = goal.state.plan  # with the tasks planners and maps added
        if isinstance(getattr(self.agents, "plan", None), Plan):
            setattr(self.agents, "plan", goal.state.plan)  # noqa: B010 (LiveAgents has one)
        try:
            context = context_for(contract, goal.state, task_id, attempt)
            # What the goal's max_cost_usd leaves the attempt, as in the live run: an LLM agent
            # called again for real stops sending requests there (a recorded answer ignores it)
            spending = Spending(cost_left_usd=cost_left(goal.state, task_id))
            with spending_of(spending):
                result = self.agents.call(task_id, attempt, agent_input, key, context)
        except NotRecorded:
            raise
        except RecordedTimeout as timeout:
            outcome = CallOutcome(task_id, attempt, timed_out=True, spent=timeout.spent)
        except Exception as exc:  # the recorded raise
            outcome = CallOutcome(task_id, attempt, raised=exc, duration_ms=duration)
        else:
            outcome = CallOutcome(task_id, attempt, returned=result, duration_ms=duration)
        return self.observer.observe(outcome)


def reexecute(
    events: Sequence[GoalEvent],
    loaded: LoadedPlan,
    *,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    agents: Any = None,
) -> ReplayResult:
    """Run the recorded goal again with recorded agents (or `agents`, e.g. `LiveAgents`: today's
    agents called for real); the first event that differs, if any."""
    started = started_event(events)
    run = _Reexecution(events, loaded, max_output_bytes, agents)
    inherited = inherited_events(started, len(events))
    goal: Goal | None = None
    divergence: Divergence | None = None
    try:
        goal = Goal.start(
            goal_id=started.originator_id,
            plan=loaded.plan,
            goal_input=loaded.validate_input(started.input),
            concurrency=started.concurrency,
            at=started.timestamp,
            forked_from=started.forked_from,
            forked_at=started.forked_at,
            schemas=started.schemas,  # an observation, taken as recorded
            rules=started.rules,  # decided again under the rules it was decided with
        )
        if inherited:
            copy_events(goal, events[1:inherited])  # the parent's history, as `fork` copied it
            divergence = run.check(goal)
            run.decisions = 0  # copied, not re-decided: like replay, count only what follows
        else:
            if decided_at_start(events):
                settle(goal, loaded.contracts)
            divergence = run.check(goal)
        while divergence is None and run.position < len(events):
            recorded = events[run.position]
            if not is_observation(recorded):
                divergence = Divergence(recorded.originator_version, to_json(recorded), None)
                break
            kind, fields = run.observation(goal, recorded)
            goal.observe(kind, at=recorded.timestamp, **fields)
            settle(goal, loaded.contracts)
            divergence = run.check(goal)
    except Exception as exc:  # today's pipeline fails where it once worked: that is the finding
        seq = run.position + 1
        recorded_json = to_json(events[run.position]) if run.position < len(events) else None
        detail = " ".join(str(exc).split())
        divergence = Divergence(seq, recorded_json, {"error": f"{type(exc).__name__}: {detail}"})
    if goal is None or divergence is not None:
        # The state after the last event found equal, as plain replay reports it: the new run
        # has already applied today's (divergent) decisions, which `events` does not count.
        goal = fold(events[: max(run.position, 1)])
    return ReplayResult(
        goal_id=started.originator_id,
        events=run.position,
        decisions=run.decisions,
        inherited=inherited,
        divergence=divergence,
        state=goal.state,
    )


