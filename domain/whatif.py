"""What-if replay: re-decide a recorded history under a changed plan (retry, budget, thresholds).

The recorded observations are fed, in order, to a goal started with the changed plan; after each
one, `settle` decides under the new policies and the decisions are set beside the recorded ones
(compared without `reason` and `policy`, which quote the changed settings themselves).
This holds only while the recorded observations still apply: an agent's outcome applies when the
changed run has that same attempt in flight (or, like the recording, ignores it as late); a
human's resolution when the task is escalated there too. At the first observation that does not
apply, or when the changed run dispatches an attempt the recording never saw, the comparison
stops and says why: the recording cannot tell what would have happened next.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from baton.domain.contracts import Contracts
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
    state_summary,
    to_json,
)
from baton.domain.lifecycle import GOAL_FINAL
from baton.domain.plan import Plan
from baton.domain.state import GoalState

__all__ = ["Difference", "WhatIfResult", "what_if"]


@dataclass(frozen=True)
class Difference:
    """After observation `seq`, the recorded decisions and those the changed plan makes."""

    seq: int
    observation: dict[str, Any]
    recorded: list[dict[str, Any]]
    whatif: list[dict[str, Any]]


@dataclass(frozen=True)
class WhatIfResult:
    goal_id: str
    events: int  # recorded events whose observations were applied, with their decisions
    differences: list[Difference]
    stopped: dict[str, Any] | None  # {"seq", "reason"}: where the recording stops applying
    state: GoalState  # the changed run's state at that point
    recorded_state: GoalState  # the recorded run's state at the same point
    inherited: int = 0  # a fork's events taken from its parent, copied without comparison

    @property
    def ok(self) -> bool:
        """The changed plan decides the same as the recording, all the way: no difference, and
        no point where the recording stopped applying (past it, nobody can say it does)."""
        return not self.differences and self.stopped is None

    def to_json(self) -> dict[str, Any]:
        return {
            "goal_id": self.goal_id,
            "ok": self.ok,
            "events": self.events,
            "differences": [vars(d) for d in self.differences],
            "stopped": self.stopped,
            "state": state_summary(self.state),
            "recorded_state": state_summary(self.recorded_state),
            "inherited": self.inherited,
        }


def _substance(event: GoalEvent) -> tuple[str, dict[str, Any]]:
    """A decision without its provenance: `reason` and `policy` quote the settings, which the
    changed plan changes on purpose; a difference worth showing is in what was decided."""
    fields = payload(event)
    fields.pop("reason", None)
    fields.pop("policy", None)
    return kind_of(event), fields


def _segments(events: Sequence[GoalEvent]) -> list[tuple[GoalEvent, list[GoalEvent]]]:
    """Each observation with the recorded decisions that followed it."""
    segments: list[tuple[GoalEvent, list[GoalEvent]]] = []
    for event in events:
        if is_observation(event) or not segments:
            segments.append((event, []))
        else:
            segments[-1][1].append(event)
    return segments


def _inapplicable(changed: GoalState, recorded: GoalState, event: GoalEvent) -> str | None:
    """Why this recorded observation cannot be fed to the changed run, or None if it can."""
    kind = kind_of(event)
    if changed.status in GOAL_FINAL and recorded.status not in GOAL_FINAL:
        # (Both ended: a late outcome, e.g. an attempt's process reaped after the goal failed,
        # which the recording ignored as the changed run will.)
        return f"under the changed plan the goal had already ended ({changed.status})"
    task_id = getattr(event, "task", None)
    if task_id is None:
        return None
    if task_id not in changed.tasks:
        return f"{kind} of {task_id!r} does not apply: the changed plan has no task {task_id!r}"
    ours, theirs = changed.tasks[task_id], recorded.tasks[task_id]
    if kind in OUTCOME_KINDS:
        attempt = getattr(event, "attempt")  # noqa: B009
        was_awaited = theirs.status == "running" and theirs.in_flight == attempt
        is_awaited = ours.status == "running" and ours.in_flight == attempt
        if was_awaited and not is_awaited:
            return (
                f"{kind} of {task_id!r} attempt {attempt} does not apply: under the changed "
                f"plan that task is {ours.status} (attempt {ours.attempts})"
            )
        if was_awaited:
            return _timeout_misfit(kind, event, changed.plan, recorded.plan, task_id)
    if kind in ("HumanResolved", "HumanAnswered") and ours.status != "escalated":
        return (
            f"a human resolved {task_id!r}, which under the changed plan is {ours.status}, "
            "not escalated"
        )
    return _gate_misfit(kind, event, task_id, ours.waiting_for)


def _timeout_misfit(
    kind: str, event: GoalEvent, changed: Plan, recorded: Plan, task_id: str
) -> str | None:
    """An agent's outcome that the changed plan's `timeout_s` would have made another one: a
    recorded timeout under a longer (or no) limit, or an answer slower than a shorter limit."""
    ours, theirs = changed.task_map.get(task_id), recorded.task_map.get(task_id)
    if ours is None or theirs is None:
        return None
    limit, was = changed.timeout_for(ours), recorded.timeout_for(theirs)
    attempt = getattr(event, "attempt")  # noqa: B009
    if kind == "AgentTimedOut":
        ran_past = getattr(event, "timeout_s")  # noqa: B009
        if limit is None or limit > ran_past:
            allows = "no timeout" if limit is None else f"timeout_s {limit:g}"
            return (
                f"AgentTimedOut of {task_id!r} attempt {attempt} does not apply: it ran past "
                f"{ran_past:g}s, and under the changed plan ({allows}) it might have finished; "
                "the recording cannot tell what it would have returned"
            )
        return None
    took = getattr(event, "duration_ms", None)
    shorter = limit is not None and (was is None or limit < was)
    if shorter and took is not None and took > limit * 1000:  # type: ignore[operator]
        return (
            f"{kind} of {task_id!r} attempt {attempt} does not apply: it took {took:g} ms, "
            f"past the changed plan's timeout_s {limit:g}: it would have timed out"
        )
    return None


def _gate_misfit(kind: str, event: GoalEvent, task_id: str, waiting_for: str | None) -> str | None:
    """An answer or an approval for a task that, under the changed plan, waits for another
    thing (baton.domain.gates)."""
    action = getattr(event, "action", None)
    needs = (
        "clarification" if kind == "HumanAnswered"
        else "approval" if action in ("approve", "reject") else None
    )
    if needs is not None and waiting_for != needs:
        return (
            f"a human's {action or 'answer'} for {task_id!r} does not apply: under the changed "
            f"plan it waits for {waiting_for}, not {needs}"
        )
    return None


def _unobserved(
    changed: GoalState, recorded: GoalState, outcomes: set[tuple[str, int]]
) -> str | None:
    """An attempt in flight under the changed plan that the recording has no outcome for."""
    for task in changed.tasks.values():
        if task.status == "running" and task.in_flight is not None:
            mirror = recorded.tasks.get(task.id)  # None for a task only the changed plan has
            also_recorded = mirror is not None and mirror.in_flight == task.in_flight
            if (task.id, task.in_flight) not in outcomes and not also_recorded:
                if mirror is not None and mirror.attempts >= task.in_flight:
                    return (  # dispatched there too, then cancelled (a deadline, a cancel)
                        f"under the changed plan {task.id!r} attempt {task.in_flight} runs on; "
                        f"the recording has no outcome for it (there the task is "
                        f"{mirror.status})"
                    )
                return (
                    f"the changed plan dispatches {task.id!r} attempt {task.in_flight}, "
                    "which the recording never ran"
                )
    return None


def what_if(events: Sequence[GoalEvent], plan: Plan, contracts: Contracts) -> WhatIfResult:
    """Feed the recorded observations to a goal under `plan`; where its decisions differ."""
    started = started_event(events)
    outcomes = {
        (getattr(e, "task"), getattr(e, "attempt"))  # noqa: B009
        for e in events
        if kind_of(e) in OUTCOME_KINDS
    }
    changed = Goal.start(
        goal_id=started.originator_id,
        plan=plan,
        goal_input=started.input,
        concurrency=started.concurrency,
        at=started.timestamp,
        forked_from=started.forked_from,
        forked_at=started.forked_at,
        rules=started.rules,  # only the plan changes: the rules stay those it was decided with
    )
    collect(changed)  # the changed run's own Started: not compared, its plan differs on purpose
    recorded: Goal | None = None
    differences: list[Difference] = []
    stopped: dict[str, Any] | None = None
    applied = 0
    # A fork's first events are its parent's, decided under the parent's id (which keys and
    # jitter derive from): copied as `fork` copied them, not re-decided; what-if the parent
    # for those. Comparison starts with the fork's own first observation.
    inherited = inherited_events(started, len(events))
    for event in events[1:inherited]:
        try:
            copy_events(changed, [event])
        except Exception as exc:
            detail = " ".join(str(exc).split())
            stopped = {"seq": event.originator_version, "reason": (
                f"the changed plan cannot take event {event.originator_version} "
                f"({kind_of(event)}), inherited from {started.forked_from}: {detail}")}
            break
    collect(changed)
    if inherited:
        applied = inherited if stopped is None else stopped["seq"] - 1
        recorded = fold(events[: max(applied, 1)])
    for observation, decisions in [] if stopped else _segments(events[inherited:]):
        if recorded is not None:
            why = _inapplicable(changed.state, recorded.state, observation)
            if why is not None:
                stopped = {"seq": observation.originator_version, "reason": why}
                break
            fields = payload(observation, timestamp=False)
            changed.observe(kind_of(observation), at=observation.timestamp, **fields)
        if recorded is not None or decided_at_start(events):  # `submit` decided nothing
            settle(changed, contracts)
        ours = [e for e in collect(changed) if not is_observation(e)]
        for event in (observation, *decisions):
            recorded = cast(Goal, event.mutate(recorded))
        if [_substance(a) for a in ours] != [_substance(b) for b in decisions]:
            differences.append(
                Difference(
                    seq=observation.originator_version,
                    observation=to_json(observation),
                    recorded=[to_json(e) for e in decisions],
                    whatif=[to_json(e) for e in ours],
                )
            )
        applied = observation.originator_version + len(decisions)
        assert recorded is not None
        why = _unobserved(changed.state, recorded.state, outcomes)
        if why is not None:
            stopped = {"seq": applied, "reason": why}
            break
    assert recorded is not None
    return WhatIfResult(
        goal_id=started.originator_id,
        events=applied,
        differences=differences,
        stopped=stopped,
        state=changed.state,
        recorded_state=recorded.state,
        inherited=inherited,
    )
