"""The goal's state as folded from its events: plain data that `decide` reads.

Nothing here decides anything; event mutators in `baton.domain.goal` assign these fields and nothing
else does, so the state is a pure function of the event log.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from baton.domain.lifecycle import TASK_FINAL, GoalStatus, TaskStatus
from baton.domain.plan import Plan

__all__ = [
    "RESOLVED_WAIT",
    "RULES",
    "UNAVAILABLE",
    "GoalState",
    "Outcome",
    "OutcomeKind",
    "TaskState",
    "Usage",
    "parent_of",
    "waiting_reason",
]

# Statuses after which a task's output will never arrive: its dependants are skipped.
UNAVAILABLE: frozenset[TaskStatus] = frozenset({"abandoned", "skipped", "failed", "cancelled"})

# How an attempt ended, as observed: an agent returned, raised or timed out, or a human answered.
OutcomeKind = Literal["returned", "raised", "timed_out", "human"]


# The version of the decision rules a new goal is decided under, recorded in its `Started` event
# (v3) so that a history keeps replaying under the rules it was decided with: `decide` reads
# `GoalState.rules` wherever a later version decides (or words a decision) differently.
#   1: every goal started before `Started` v3 (its upcaster says 1).
#   2: the dispatch after a human answered the task's question says so, and that a question is
#      not a failure; the dispatch after a human's retry says who asked for it and that the
#      retry policy counts again from it; both instead of "attempt N (retry policy allows M)".
#   3: a task that becomes ready and is dispatched in the same step is recorded as one
#      `TaskDispatched` (v3) whose `ready` holds what the `TaskReady` held (its rule, reason and
#      inputs), not as two events; a ready task that waits (for a slot, a reservation, or a
#      budget decision) is still recorded as `TaskReady`, as are the tasks made ready beside a
#      map or a task awaiting approval (decided first, as under rules 2).
#   4: a fragment a human supplies to a planner escalated for want of one (`resolve --output`)
#      is recorded as a `PlanExtended` (v2) with `from_escalation`, which moves the planner to
#      `running`: its fragment's tasks are dispatched and it joins them, where under rules 1-3
#      it stayed escalated and the goal waited for ever. A human's output for an escalated map is
#      judged as the list of its agent's output model (what `$<map>` holds downstream), where
#      rules 1-3 judged it as one element. A fragment task named `goal` is refused, as `validate`
#      refuses it in a plan file (rules 1-3 let it hide `$goal` inside the fragment).
#   5: a budget breach that the next attempt's `estimate` causes (the spend alone is within the
#      cap) says so in its reason: "..., and the next attempt's estimate (E) would pass it",
#      where rules 1-4 said only "U used of L", which read as a budget not yet exhausted.
#      A rejected fragment lists its first 50 problems and "… and N more" (the reason still
#      counts them all); rules 1-4 listed every one, a problem per task of a huge fragment.
#   6: a human's decision recorded by a command (`resolve`, `answer`) on a goal still running
#      dispatches nothing: the next observation of a runner (its `RunResumed`, or an outcome of
#      the runner driving it) does. Under rules 1-5 the command's own save recorded the
#      dispatch, which no process ran: the next owner's `RunResumed` found it orphaned, and an
#      unsafe one was escalated as "outcome unknown" though it never ran. And an attempt a
#      human granted past an exhausted budget (`resolve --retry`) records no `tokens_left`:
#      under rules 1-5 it recorded what the spent budget left, 0, and sent no request.
#   A new observation needs no new version where `decide` reads only it differently: histories
#   recorded before hold none, so they decide as before (`StopRequested`: no dispatch until
#   the next `RunResumed`).
RULES = 6

# The reason of a waiting goal once a human has decided every task it waited on: nothing waits
# for a human any more, only for a runner (`baton resume`, or a worker) to take the goal up.
RESOLVED_WAIT = "a human resolved every escalation; the goal has not been resumed yet"


def waiting_reason(escalated: Iterable[tuple[str, str | None]]) -> str:
    """Why a goal waits, from its escalated tasks (id, reason) in order: what `GoalSuspended`
    records, and what a waiting goal's reason becomes when a human's decision settles one of
    them (the read models fold the same text: baton.projections.fold)."""
    waiting = [f"{task_id} ({reason})" for task_id, reason in escalated]
    return "waiting for a human on " + ", ".join(waiting) if waiting else RESOLVED_WAIT


def parent_of(task_id: str) -> str | None:
    """The planner or map that added a task at run time, read off its id (`plan/search` was
    added by `plan`, `search[3]` by `search`); None for a task of the plan file, whose ids
    can hold neither `/` nor `[`."""
    if task_id.endswith("]"):
        return task_id[: task_id.rindex("[")]
    cut = task_id.rfind("/")
    return task_id[:cut] if cut > 0 else None


@dataclass
class Usage:
    tokens: int = 0
    cost_usd: float = 0.0


@dataclass
class Outcome:
    """What one attempt produced, as observed, awaiting the orchestrator's verdict."""

    attempt: int
    kind: OutcomeKind
    output: Any = None
    error: str | None = None  # "Type: message" for raised, a note for the rest
    retry_after_s: float | None = None  # the failure asked not to be retried sooner


@dataclass
class TaskState:
    id: str
    status: TaskStatus = "pending"
    attempts: int = 0  # dispatches, the figure users see
    failures: int = 0  # failed attempts, counted against the task's retry policy
    in_flight: int | None = None  # the attempt now running, if any
    outcome: Outcome | None = None  # observed and not yet judged
    output: Any = None  # the accepted output (JSON), what downstream tasks read
    last_error: str | None = None
    reason: str | None = None
    due_at: datetime | None = None  # when a scheduled retry may start
    reserved: Usage | None = None  # the estimate held for the running attempt
    used: Usage = field(default_factory=Usage)
    granted_attempts: int = 0  # attempts a human allowed beyond an exhausted budget
    granted_attempt: int | None = None  # the last such attempt dispatched
    resolution: str | None = None  # a human's pending `retry` or `abandon`
    idempotency_key: str | None = None
    # Human gates (baton.domain.gates): what an escalated task waits for (an EscalationKind),
    # the question it asked, the questions answered so far, whether it was approved.
    waiting_for: str | None = None
    question: str | None = None
    clarifications: list[dict[str, str]] = field(default_factory=list)
    approved: bool = False
    attempt_context: dict[str, Any] | None = None  # as recorded with the last dispatch
    readied_by: str | None = None  # the rule that last made it ready, until its next dispatch


@dataclass
class GoalState:
    goal_id: str
    plan: Plan
    input: Any
    started_at: datetime
    now: datetime
    concurrency: int
    status: GoalStatus = "running"
    tasks: dict[str, TaskState] = field(default_factory=dict)
    output: Any = None
    reason: str | None = None
    attempts_used: int = 0
    used: Usage = field(default_factory=Usage)
    # Attempts that were in flight when a runner took the goal up again: their outcome is
    # unknown, so decide must re-dispatch or escalate them (task id -> attempt).
    orphaned: dict[str, int] = field(default_factory=dict)
    cancel_requested: str | None = None
    # The runner driving the goal was asked to stop (`StopRequested`) and waits for an unsafe
    # attempt before it leaves: no new attempt is dispatched until a runner takes the goal up
    # again (`RunResumed`), so a stopping process starts no side effect and leaves none unknown.
    stop_requested: bool = False
    # A waiting goal moves on only when a runner takes it up again (`baton resume`): recording
    # a human's decision must not dispatch work that no process is there to run.
    resume_requested: bool = False
    # A command recorded a human's decision (`resolve`, `answer`) and no runner has recorded an
    # observation since: nothing is there to run a dispatch, so under rules 6 none is decided
    # until one does (`RunResumed`, or an outcome of the runner driving the goal).
    awaiting_runner: bool = False
    forked_from: str | None = None
    rules: int = 1  # the decision rules it is decided under (RULES when it started; 1 before)

    # Decomposition (baton.domain.expansion): planners and maps that run as the tasks they
    # added, each `running` until the last of its children ends; they hold no worker slot.
    joining: set[str] = field(default_factory=set)
    children: dict[str, tuple[str, ...]] = field(default_factory=dict)  # parent -> tasks added
    open_children: dict[str, int] = field(default_factory=dict)  # children not yet finished
    fragment_outputs: dict[str, Any] = field(default_factory=dict)  # planner -> output binding
    fragments: dict[str, Any] = field(default_factory=dict)  # planner -> its accepted fragment
    plan_file: Plan | None = None  # the plan as started, once `plan` holds added tasks too

    @property
    def started_plan(self) -> Plan:
        """The plan the goal started with (what `load_goal_plan` loads), without added tasks."""
        return self.plan_file if self.plan_file is not None else self.plan

    # Indexes folded along with the statuses, so that `decide` looks only at the tasks that can
    # change instead of scanning the plan after every observation (replay calls it per event).
    by_status: dict[TaskStatus, set[str]] = field(default_factory=dict)
    unmet: dict[str, int] = field(default_factory=dict)  # upstream tasks not yet succeeded
    candidates: set[str] = field(default_factory=set)  # pending tasks to decide ready/skip for
    accepted: dict[str, Any] = field(default_factory=dict)  # accepted outputs by task id
    judgeable: set[str] = field(default_factory=set)  # tasks holding an outcome to judge
    # The ready tasks kept in plan order as they move, since dispatch reads them in that order
    # every step: sorting them each time made a wide map (10,000 instances) quadratic. A plan
    # extended at run time inserts tasks but never reorders the ones it had, so the order holds.
    ready_order: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for task_id, task in self.tasks.items():
            self.by_status.setdefault(task.status, set()).add(task_id)
            self.unmet[task_id] = len(self.plan.deps[task_id])
            if self.unmet[task_id] == 0:
                self.candidates.add(task_id)
        self.ready_order = self.in_plan_order(self.by_status.get("ready", ()))

    def with_status(self, *statuses: TaskStatus) -> list[str]:
        """Task ids in any of `statuses`, in plan order (the tie-break of every decision)."""
        if statuses == ("ready",):
            return list(self.ready_order)
        if len(statuses) == 1:
            return self.in_plan_order(self.by_status.get(statuses[0], ()))
        found: set[str] = set()
        for status in statuses:
            found.update(self.by_status.get(status, ()))
        return self.in_plan_order(found)

    def in_plan_order(self, task_ids: set[str] | tuple[()]) -> list[str]:
        if len(task_ids) > 1:
            return sorted(task_ids, key=self.plan.index.__getitem__)
        return list(task_ids)

    def unsafe_attempt_in_flight(self) -> bool:
        """Is an unsafe agent called and not yet answered? A runner that leaves now hands it
        to the crash rules (escalated as outcome unknown), so one stopping politely waits."""
        return bool(self.unsafe_attempts_in_flight())

    def unsafe_attempts_in_flight(self) -> list[str]:
        """The unsafe attempts called and not yet answered, as `pay #1`."""
        return [
            f"{task.id} #{task.in_flight}" for task in self.tasks.values()
            if task.status == "running" and task.in_flight is not None and task.outcome is None
            and self.plan.task_map[task.id].side_effects == "unsafe"
        ]

    def count(self, *statuses: TaskStatus) -> int:
        return sum(len(self.by_status.get(status, ())) for status in statuses)

    def move(self, task: TaskState, status: TaskStatus) -> None:
        """Assign a task's new status and keep the indexes in step (mutators only)."""
        self.by_status[task.status].discard(task.id)
        self.by_status.setdefault(status, set()).add(task.id)
        if task.status == "ready" or status == "ready":
            self._reorder_ready(task.id, leaving=task.status == "ready", entering=status == "ready")
        settled = task.status == "escalated" and status != "escalated"
        entered = status == "escalated" and task.status != "escalated"
        if settled:
            task.waiting_for = None  # whatever it waited for is settled once it leaves
        task.status = status
        if (settled or entered) and self.status == "waiting":
            # A human's decision moved it on (or led to it escalated again): the reason
            # recorded when the goal was suspended no longer says what it waits for.
            self.refresh_waiting_reason()
        self.candidates.discard(task.id)
        if status == "succeeded":
            self.accepted[task.id] = task.output
            for dependant in self.plan.dependants.get(task.id, ()):
                self.unmet[dependant] -= 1
                if self.unmet[dependant] == 0:
                    self.candidates.add(dependant)
        elif status in UNAVAILABLE:
            self.candidates.update(
                dep for dep in self.plan.dependants.get(task.id, ()) if dep in self.pending_ids
            )
        if status != "running":
            self.joining.discard(task.id)
        if status in TASK_FINAL and self.open_children:
            parent = parent_of(task.id)
            if parent in self.open_children:
                self.open_children[parent] -= 1

    def refresh_waiting_reason(self) -> None:
        """A waiting goal's reason once a task left escalated (a human's decision moved it on)
        or entered it (what a human's decision led to escalated again, e.g. a retried map whose
        list is still not a list): what the goal waits for now, as `waiting_reason` words it.
        Folded, never recorded (`move` calls it; an escalating event's reason is the task's
        before it moves)."""
        self.reason = RESOLVED_WAIT if not self.by_status.get("escalated") else (
            waiting_reason(  # in the order the read models list tasks in: the plan's,
                (other.id, other.reason)  # then the added ones as they came
                for other in self.tasks.values()
                if other.status == "escalated"
            )
        )

    def _reorder_ready(self, task_id: str, *, leaving: bool, entering: bool) -> None:
        order, position = self.ready_order, self.plan.index.__getitem__
        at = bisect_left(order, position(task_id), key=position)
        present = at < len(order) and order[at] == task_id
        if leaving and present and not entering:
            del order[at]
        elif entering and not present:
            order.insert(at, task_id)

    def set_outcome(self, task: TaskState, outcome: Outcome | None) -> None:
        """Assign what an attempt produced (or clear it) and keep `judgeable` in step."""
        task.outcome = outcome
        if outcome is None:
            self.judgeable.discard(task.id)
        else:
            self.judgeable.add(task.id)

    @property
    def pending_ids(self) -> set[str]:
        return self.by_status.get("pending", set())

    @property
    def in_flight(self) -> int:
        return len(self.by_status.get("running", ())) - len(self.joining)

    @property
    def reserved(self) -> Usage:
        """What running attempts hold (only a running task holds a reservation)."""
        tokens, cost = 0, 0.0
        for task_id in self.with_status("running"):  # plan order: float sums must not vary
            task = self.tasks[task_id]
            if task.reserved is not None:
                tokens += task.reserved.tokens
                cost += task.reserved.cost_usd
        return Usage(tokens, cost)

    def outputs(self) -> dict[str, Any]:
        """Accepted outputs by task id: the only data bindings may read."""
        return self.accepted
