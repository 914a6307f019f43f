"""Replay: fold the recorded events and re-decide with today's `decide`, the way `settle` did.

After every recorded observation the loop asks `decide` for a batch, checks each decision against
the next recorded event (kind, every payload field, and the timestamp, which is `state.now`),
applies the recorded event and asks again until `decide` returns nothing; the next recorded event
must then be an observation. The first disagreement is the divergence. No agent is called.

A forked goal's first `forked_at` events are its parent's history (decided under the parent's
id, which keys and jitter derive from): they are folded without comparison, and comparison
starts with the first observation after them. Replay the parent to check those.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from baton.domain.contracts import Contracts
from baton.domain.decide import decide
from baton.domain.decisions import Decision
from baton.domain.goal import DECISION_KINDS, Goal, GoalEvent
from baton.domain.history import (
    HistoryError,
    check_at,
    decided_at_start,
    inherited_events,
    is_observation,
    jsonable,
    kind_of,
    payload,
    started_event,
    state_summary,
    to_json,
)
from baton.domain.state import GoalState

__all__ = ["Divergence", "ReplayResult", "compare_events", "replay"]


@dataclass(frozen=True)
class Divergence:
    """Where the recorded history and today's code part: event `seq` and both sides."""

    seq: int
    recorded: dict[str, Any] | None  # the recorded event, None past the end of the log
    replayed: dict[str, Any] | None  # today's decision, None when today decides nothing
    fields: tuple[str, ...] = ()  # the payload fields that differ, when the kinds agree

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "recorded": self.recorded,
            "replayed": self.replayed,
            "fields": list(self.fields),
        }


@dataclass(frozen=True)
class ReplayResult:
    goal_id: str
    events: int  # recorded events folded
    decisions: int  # recorded decisions re-decided and found equal
    inherited: int  # events taken from a fork's parent without comparison
    divergence: Divergence | None
    state: GoalState
    # Why recorded contract schemas judged the outputs instead of today's modules (None: modules).
    contracts_source: str | None = None

    @property
    def ok(self) -> bool:
        return self.divergence is None

    def to_json(self) -> dict[str, Any]:
        return {
            "goal_id": self.goal_id,
            "ok": self.ok,
            "events": self.events,
            "decisions": self.decisions,
            "inherited": self.inherited,
            "divergence": None if self.divergence is None else self.divergence.to_json(),
            "state": state_summary(self.state),
        }


class _Diverged(Exception):
    def __init__(self, divergence: Divergence) -> None:
        self.divergence = divergence


class _Replay:
    def __init__(self, events: Sequence[GoalEvent], contracts: Contracts, limit: int) -> None:
        self.events = events
        self.contracts = contracts
        self.limit = limit
        self.next = 0  # index of the next recorded event to fold
        self.decisions = 0
        self.goal: Goal | None = None

    def fold(self) -> None:
        """Apply the next recorded event; one that cannot be applied is a divergence too."""
        event = self.events[self.next]
        try:
            self.goal = cast(Goal | None, event.mutate(self.goal))
        except Exception as exc:  # an illegal transition or a broken sequence
            raise _Diverged(
                Divergence(event.originator_version, to_json(event), _error(exc))
            ) from None
        self.next += 1

    def settle(self) -> None:
        """What `settle` did after the last observation: decide until nothing is left."""
        assert self.goal is not None
        stops_early = self.limit < len(self.events)  # `--at N`: nothing after N is checked
        while not (stops_early and self.next >= self.limit):
            try:
                batch = decide(self.goal.state, self.contracts)
            except Exception as exc:  # today's code fails where it once decided
                seq = self.goal.version + 1
                raise _Diverged(Divergence(seq, self._peek(), _error(exc))) from None
            if not batch:
                return
            for decision in batch:
                if self.next >= self.limit:
                    if stops_early:
                        return
                    self._differ(decision, None)  # today decides more than was recorded
                recorded = self.events[self.next]
                if is_observation(recorded):
                    self._differ(decision, recorded)
                self._compare(decision, recorded)
                self.fold()
                self.decisions += 1

    def _peek(self) -> dict[str, Any] | None:
        if self.next < len(self.events):
            return to_json(self.events[self.next])
        return None

    def _compare(self, decision: Decision, recorded: GoalEvent) -> None:
        # (Kinds that differ are compared field by field too, as re-execution compares them:
        # the same divergence reads the same in both, its fields the ones that differ.)
        try:
            replayed = self._as_event(decision)
        except Exception as exc:  # a field the event class does not have, for instance
            raise _Diverged(
                Divergence(recorded.originator_version, to_json(recorded), _error(exc, decision))
            ) from None
        divergence = compare_events(recorded, replayed)
        if divergence is not None:
            raise _Diverged(divergence)

    def _as_event(self, decision: Decision) -> GoalEvent:
        """The event `Goal.record` would make of this decision (not applied to anything)."""
        assert self.goal is not None
        event_class = DECISION_KINDS[decision.kind]
        return event_class(
            originator_id=self.goal.id,
            originator_version=self.goal.version + 1,
            timestamp=self.goal.state.now,
            **decision.fields,
        )

    def _differ(self, decision: Decision, recorded: GoalEvent | None) -> None:
        assert self.goal is not None
        seq = self.goal.version + 1
        try:
            replayed = to_json(self._as_event(decision))
        except Exception as exc:
            replayed = _error(exc, decision)
        raise _Diverged(Divergence(seq, None if recorded is None else to_json(recorded), replayed))


_MISSING = object()


def _added_default(event: GoalEvent, name: str) -> Any:
    """A field absent from a payload recorded before the field existed reads as its default
    (e.g. AgentRaised.retry_after_s, added in v2): absent and default are the same fact."""
    for declared in dataclasses.fields(event):
        if declared.name == name and declared.default is not dataclasses.MISSING:
            return declared.default
    return _MISSING


def compare_events(recorded: GoalEvent, replayed: GoalEvent) -> Divergence | None:
    """None when both are the same kind with equal payloads (timestamp included)."""
    ours, theirs = payload(replayed), payload(recorded)
    if type(recorded) is type(replayed) and ours == theirs:
        return None  # the usual case, decided by one dict comparison
    differing = tuple(
        sorted(
            k
            for k in ours.keys() | theirs.keys()
            if ours.get(k, _added_default(replayed, k))
            != theirs.get(k, _added_default(recorded, k))
            # Where the aggregate class lives is not a decision: a history stored before the
            # move to `baton.domain` names the same class by its old path.
            and k != "originator_topic"
        )
    )
    if kind_of(recorded) == kind_of(replayed) and not differing:
        return None
    return Divergence(recorded.originator_version, to_json(recorded), to_json(replayed), differing)


def _error(exc: Exception, decision: Decision | None = None) -> dict[str, Any]:
    detail = " ".join(str(exc).split())
    found: dict[str, Any] = {"error": f"{type(exc).__name__}: {detail}"}
    if decision is not None:
        found |= {"kind": decision.kind, **jsonable(decision.fields)}
    return found


def replay(
    events: Sequence[GoalEvent], contracts: Contracts, *, at: int | None = None
) -> ReplayResult:
    """Re-decide the recorded history with today's code; the state after event `at` (or last)."""
    started = started_event(events)
    limit = len(events) if at is None else at
    check_at(limit, events)
    run = _Replay(events, contracts, limit)
    inherited = inherited_events(started, limit)
    divergence = None
    try:
        run.fold()
    except _Diverged as diverged:
        error = (diverged.divergence.replayed or {}).get("error")
        raise HistoryError(f"the Started event cannot be applied: {error}") from None
    try:
        if inherited:
            while run.next < inherited:
                run.fold()  # the parent's history, re-decided when the parent is replayed
        elif decided_at_start(events):
            run.settle()
        while run.next < limit:
            recorded = events[run.next]
            if not is_observation(recorded):
                raise _Diverged(Divergence(recorded.originator_version, to_json(recorded), None))
            run.fold()
            run.settle()
    except _Diverged as diverged:
        divergence = diverged.divergence
    assert run.goal is not None
    return ReplayResult(
        goal_id=run.goal.id,
        events=run.next,
        decisions=run.decisions,
        inherited=inherited,
        divergence=divergence,
        state=run.goal.state,
    )
