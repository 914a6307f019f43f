"""The decision core: a pure function from a goal's state to the orchestrator's next decisions.

No I/O, no clock, no randomness: time is `state.now`, the time of the last observation, and
backoff jitter is derived from goal, task and attempt. `settle` asks again after recording each
batch until nothing is left to decide, so one observation yields all its consequences; replay
does exactly the same and compares.

Each phase returns the first non-empty batch; decisions within one batch are independent of each
other, so the batch can be recorded in one store transaction. Under decision rules 3 a batch of
readiness alone is joined with the dispatch that follows it (`_dispatch_as_ready`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from pydantic import ValidationError

from baton.domain.attempts import attempt_context
from baton.domain.contracts import (
    Contracts,
    Verdict,
    build_input,
    digest,
    idempotency_key,
    judge_output,
    validation_errors,
)
from baton.domain.decisions import (
    AttemptInterrupted,
    BudgetExhausted,
    ClarificationRequested,
    Decision,
    GoalCancelled,
    GoalCompleted,
    GoalFailed,
    GoalResumed,
    GoalSuspended,
    InputRejected,
    MapCollected,
    MapExpanded,
    OutputAccepted,
    OutputRejected,
    PlanExtended,
    RetryScheduled,
    TaskAbandoned,
    TaskCancelled,
    TaskDispatched,
    TaskEscalated,
    TaskFailed,
    TaskReady,
    TaskSkipped,
)
from baton.domain.errors import ResolveError, UnknownRules
from baton.domain.expansion import (
    CHECKS,
    check_fragment,
    fragment_of,
    judging_confidence,
    judging_contract,
    result_model,
    room_problems,
)
from baton.domain.gates import GATE_RESOLUTIONS, approvals, clarification_question, gate_resolution
from baton.domain.lifecycle import GOAL_FINAL, TASK_FINAL
from baton.domain.plan import TaskSpec
from baton.domain.policies import (
    BudgetBreach,
    backoff_delay,
    budget_breach,
    fits_reservations,
    jitter_fraction,
)
from baton.domain.references import resolve, resolve_binding
from baton.domain.state import (
    RULES,
    UNAVAILABLE,
    GoalState,
    Outcome,
    TaskState,
    Usage,
    parent_of,
    waiting_reason,
)

__all__ = ["Recorder", "decide", "settle"]


# A rejected fragment lists at most this many problems (rules 5): a planner's fragment of
# thousands of bad tasks would otherwise record a problem per task in the rejection, the retry's
# failure and reason, and the next attempt's context, on every attempt.
LISTED_PROBLEMS = 50


def decide(state: GoalState, contracts: Contracts) -> list[Decision]:
    """The next batch of decisions for this state, or [] when nothing is left to decide."""
    if state.status in GOAL_FINAL:
        return []
    if state.rules > RULES:
        raise UnknownRules(state.goal_id, state.rules, RULES)
    if state.cancel_requested is not None:
        return _cancel(state)
    for phase in (
        _judge, _orphans, _join, _propagate, approvals, _expand_maps, _dispatch, _settle_goal
    ):
        decisions = phase(state, contracts)
        if decisions:
            if phase is _propagate and state.rules >= 3:
                return _dispatch_as_ready(state, contracts, decisions)
            return decisions
    return []


class Recorder(Protocol):
    """What `settle` needs of the aggregate: its state and a way to record a decision."""

    @property
    def state(self) -> GoalState: ...

    def record(self, decision: Decision) -> None: ...


def settle(goal: Recorder, contracts: Contracts, *, limit: int = 100_000) -> list[Decision]:
    """Decide and record until nothing is left to decide; returns what was recorded."""
    recorded: list[Decision] = []
    while decisions := decide(goal.state, contracts):
        for decision in decisions:
            goal.record(decision)
        recorded.extend(decisions)
        if len(recorded) > limit:  # a rule that never settles is a bug, not a long goal
            raise RuntimeError(f"decide did not settle after {limit} decisions")
    return recorded


# --- phases -------------------------------------------------------------------------------------


def _judge(state: GoalState, contracts: Contracts) -> list[Decision]:
    """Give every observed outcome its verdict: accept, reject, retry, or give up."""
    if not state.judgeable:
        return []
    for task_id in state.in_plan_order(state.judgeable):
        task = state.tasks[task_id]
        outcome = task.outcome
        if outcome is None or task.status not in ("running", "escalated"):
            continue
        spec = state.plan.task_map[task_id]
        if outcome.kind in ("raised", "timed_out"):
            failure = outcome.error or outcome.kind
            return _after_failure(
                state, task, spec, failure, "retry", not_before_s=outcome.retry_after_s
            )
        question = clarification_question(outcome)
        if question is not None:
            return _clarify(state, task, spec, outcome.attempt, question)
        if outcome.error is not None:  # the runner could not even record the value
            errors = [outcome.error]
            rule = "validation.serialisable"
        else:
            contract = judging_contract(state, contracts, spec)
            verdict = judge_output(
                outcome.output, contract, min_confidence=judging_confidence(state, spec)
            )
            if verdict.accepted and spec.expands is not None and task_id not in state.children:
                return _extend(state, contracts, task, spec, outcome, verdict)
            if verdict.accepted:
                human = outcome.kind == "human"
                reason = (
                    f"{task.reason or 'a human'} supplied an output that satisfies "
                    f"{contract.output_model.__name__}"
                    if human
                    else f"output satisfies {contract.output_model.__name__}"
                    + _confidence_note(outcome.output, spec)
                )
                accepted = OutputAccepted(
                    task=task_id,
                    attempt=outcome.attempt,
                    output=verdict.normalised,
                    rule="human.output" if human else verdict.rule,
                    reason=reason,
                )
                return [accepted]
            errors, rule = list(verdict.errors), verdict.rule
        rejected = OutputRejected(
            task=task_id,
            attempt=outcome.attempt,
            errors=errors,
            rule=rule,
            reason="output rejected: " + errors[0],
            policy=_confidence_policy(rule, spec),
        )
        if outcome.kind == "human":
            return [rejected]  # the task stays escalated until a valid output or another choice
        failure = f"{rule}: " + "; ".join(errors)
        if rule == "validation.confidence" and spec.on_low_confidence == "escalate":
            reason = f"attempt {outcome.attempt}: {errors[0]}; on_low_confidence is escalate"
            escalate = TaskEscalated(
                task=task_id,
                rule="validation.confidence",
                reason=reason,
                policy=_confidence_policy(rule, spec),
            )
            return [rejected, escalate]
        return [rejected, *_after_failure(state, task, spec, failure, "retry")]
    return []


def _orphans(state: GoalState, contracts: Contracts) -> list[Decision]:
    """After a restart, an attempt with no outcome is re-dispatched, unless it is unsafe."""
    if not state.orphaned:
        return []
    decisions: list[Decision] = []
    for task_id in sorted(state.orphaned, key=state.plan.index.__getitem__):
        attempt = state.orphaned[task_id]
        task = state.tasks[task_id]
        if task.status != "running" or task.in_flight != attempt or task.outcome is not None:
            continue
        spec = state.plan.task_map[task_id]
        if spec.side_effects == "unsafe":
            reason = (
                f"outcome unknown: attempt {attempt} of an unsafe task was in flight when the "
                "runner stopped; it is never re-run automatically"
            )
            decisions.append(
                TaskEscalated(
                    task=task_id,
                    rule="side_effects.unsafe",
                    reason=reason,
                    policy={"side_effects": spec.side_effects},
                )
            )
        else:
            key_note = " with the same idempotency key" if spec.side_effects == "idempotent" else ""
            reason = (
                f"attempt {attempt} was in flight when the runner stopped; "
                f"side_effects is {spec.side_effects}, so it is dispatched again{key_note}"
            )
            decisions.append(
                AttemptInterrupted(
                    task=task_id,
                    attempt=attempt,
                    rule="side_effects.redispatch",
                    reason=reason,
                    policy={"side_effects": spec.side_effects},
                )
            )
    return decisions


def _propagate(state: GoalState, contracts: Contracts) -> list[Decision]:
    """Tasks whose inputs all arrived become ready; those behind an abandoned task are skipped."""
    retry_wait = state.by_status.get("retry_wait")
    escalated = state.by_status.get("escalated")
    if not (state.candidates or retry_wait or escalated):
        return []
    decisions: list[Decision] = []
    movable = state.candidates & state.pending_ids  # pending tasks whose upstream just moved
    movable.update(retry_wait or ())
    movable.update(escalated or ())
    for task_id in state.in_plan_order(movable):
        task = state.tasks[task_id]
        if task.status == "pending":
            deps = state.plan.deps[task_id]
            blocked = next((dep for dep in deps if state.tasks[dep].status in UNAVAILABLE), None)
            if blocked is not None:
                status = state.tasks[blocked].status
                reason = f"upstream task {blocked!r} was {status}, so its output will never arrive"
                decisions.append(
                    TaskSkipped(
                        task=task_id,
                        because=blocked,
                        rule="dag.upstream_unavailable",
                        reason=reason,
                    )
                )
            elif state.unmet[task_id] == 0:
                reason = (
                    "inputs arrived from " + ", ".join(deps)
                    if deps
                    else "reads only the goal input"
                )
                ready = TaskReady(
                    task=task_id, inputs=list(deps), rule="dag.inputs_ready", reason=reason
                )
                decisions.append(ready)
        elif task.status == "retry_wait" and task.due_at is not None and task.due_at <= state.now:
            reason = f"backoff elapsed at {task.due_at.isoformat()}"
            decisions.append(
                TaskReady(task=task_id, inputs=[], rule="retry.backoff_elapsed", reason=reason)
            )
        elif task.status == "escalated" and task.resolution == "retry":
            reason = f"retry requested by {task.reason}"
            decisions.append(TaskReady(task=task_id, inputs=[], rule="human.retry", reason=reason))
        elif task.status == "escalated" and task.resolution == "abandon":
            reason = f"abandoned by {task.reason}"
            decisions.append(TaskAbandoned(task=task_id, rule="human.abandon", reason=reason))
        elif task.status == "escalated" and task.resolution in GATE_RESOLUTIONS:
            decisions.append(gate_resolution(task))
    return decisions


def _dispatch_as_ready(
    state: GoalState, contracts: Contracts, batch: list[Decision]
) -> list[Decision]:
    """Rules 3: the tasks `_propagate` just made ready are dispatched in the same step, each
    recorded as one `TaskDispatched` that holds its readiness (`ready`), where rules 2 recorded
    a `TaskReady` and dispatched it in the next step with nothing decided in between.

    The same decisions, in the same order, as rules 2: only a batch of readiness alone is
    joined, and only when nothing would be decided between it and `_dispatch`. The phases in
    between (`approvals`, `_expand_maps`) act on ready tasks, so a batch that readies a task
    needing approval, or a map, is recorded as it is: rules 2 decided the approval request or
    the expansion (whose instances come before later tasks in plan order) before any dispatch.
    Within a joined batch, a task that would not be dispatched cleanly (no slot, a reservation
    that does not fit, a budget breach, an input that does not build) keeps its `TaskReady`,
    and the next step decides it as rules 2 would. While the runner is stopping
    (`StopRequested`) nothing is dispatched: the readiness is recorded as it is.
    """
    if (
        state.status != "running"
        or _holds_dispatches(state)
        or any(type(d) is not TaskReady for d in batch)
    ):
        return batch
    if approvals(state, contracts) or _expand_maps(state, contracts):
        return batch
    gated, maps = state.plan.approval_tasks, state.plan.maps
    readied: dict[str, TaskReady] = {}
    for decision in batch:
        assert isinstance(decision, TaskReady)
        if decision.task in maps or (
            decision.task in gated and not state.tasks[decision.task].approved
        ):
            return batch
        readied[decision.task] = decision
    return _dispatch(state, contracts, readied)


def _holds_dispatches(state: GoalState) -> bool:
    """No attempt is dispatched while the runner driving the goal is stopping, nor (rules 6)
    after a command recorded a human's decision, until a runner records an observation."""
    return state.stop_requested or (state.rules >= 6 and state.awaiting_runner)


def _dispatch(
    state: GoalState, contracts: Contracts, readied: dict[str, TaskReady] | None = None
) -> list[Decision]:
    """Send ready tasks to their agents, in plan order, within concurrency and budgets.

    `readied` (rules 3, `_dispatch_as_ready`): tasks made ready in this step, dispatched with
    the ready ones; each one dispatched carries its readiness, the rest are returned as they
    came (`TaskReady`, first), and the first task that would need a decision of its own ends
    the batch instead of being decided in it."""
    ready = state.with_status("ready")
    if readied:
        ready = state.in_plan_order({*ready, *readied})
    if state.status != "running" or not ready or _holds_dispatches(state):
        return []  # (no runner to run them: the tasks stay ready for the next one)
    decisions: list[Decision] = []
    slots = state.concurrency - state.in_flight
    extra = Usage()  # what this batch's own dispatches reserve, before they are recorded
    for task_id in ready:
        if slots <= 0:
            break
        task = state.tasks[task_id]
        spec = state.plan.task_map[task_id]
        breach = budget_breach(state, task, spec, extra_attempts=len(decisions))
        if breach is not None:
            if decisions or readied:  # record these first; the breach is decided on its own
                return _with_readiness(decisions, readied)
            return _budget_exhausted(state, task_id, breach)
        if not fits_reservations(state, spec, extra):
            continue  # running attempts hold estimates; wait for their real usage

        contract = contracts[spec.agent]
        agent_input, errors = build_input(state, spec, contract)
        if agent_input is None:
            if decisions or readied:
                return _with_readiness(decisions, readied)
            rejected = InputRejected(
                task=task_id,
                errors=errors,
                rule="validation.input",
                reason="input rejected: " + errors[0],
            )
            failure = "validation.input: " + "; ".join(errors)
            # The same bindings give the same input, so retrying cannot help.
            return [rejected, *_after_failure(state, task, spec, failure, "no_retry")]
        readiness = readied.pop(task_id, None) if readied else None
        attempt = task.attempts + 1
        policy = state.plan.retry_for(spec)
        context = None
        if contract.takes_attempt:  # before this dispatch's own estimate joins `extra`
            context = attempt_context(state, task_id, attempt, held=extra.tokens)
        reserved = None
        if spec.estimate is not None:
            reserved = spec.estimate.model_dump()
            extra.tokens += spec.estimate.tokens
            extra.cost_usd += spec.estimate.cost_usd
        dispatched = TaskDispatched(
            task=task_id,
            attempt=attempt,
            input_digest=digest(agent_input.model_dump(mode="json")),
            idempotency_key=idempotency_key(state.goal_id, task_id),
            rule="dag.dispatch",
            reason=_dispatch_reason(state, task, attempt, policy.max_attempts, readiness),
            reserved=reserved,
            policy={"max_attempts": policy.max_attempts, "concurrency": state.concurrency},
            attempt_context=None if context is None else context.model_dump(mode="json"),
            ready=None if readiness is None else {
                "rule": readiness.rule, "reason": readiness.reason, "inputs": readiness.inputs
            },
            prepared=agent_input,
        )
        decisions.append(dispatched)
        slots -= 1
    return _with_readiness(decisions, readied)


def _with_readiness(
    dispatched: list[Decision], readied: dict[str, TaskReady] | None
) -> list[Decision]:
    """The batch: the readiness of the tasks made ready and not dispatched, then the dispatches
    (independent of each other, like every batch)."""
    return [*readied.values(), *dispatched] if readied else dispatched


def _dispatch_reason(
    state: GoalState, task: TaskState, attempt: int, max_attempts: int,
    readiness: TaskReady | None = None,
) -> str:
    """Why this attempt starts. Under rules 1 always "attempt N (retry policy allows M)", which
    reads as a retry after a failure where the task runs again because a human answered its
    question (a question is not a failure: it counts against `max_clarifications`, not the retry
    policy), and as a breach of the policy where a human granted an attempt beyond it ("attempt
    3 (retry policy allows 2)"); rules 2 says what happened. Goals started under rules 1 keep
    the old wording, so their recorded histories replay as they were decided. `readiness`: the
    task's readiness decided in this step (rules 3), else the one recorded before."""
    readied_by = task.readied_by if readiness is None else readiness.rule
    ready_reason = task.reason if readiness is None else readiness.reason
    if state.rules >= 2 and readied_by == "human.retry":
        # the readiness's reason: "retry requested by WHO: WHY"
        attempts = "1 attempt counts" if max_attempts == 1 else f"{max_attempts} attempts count"
        return (f"attempt {attempt}: {ready_reason}; the retry policy's {attempts} again from "
                "this one")
    if state.rules >= 2 and readied_by == "clarification.answered":
        failed = task.failures
        return (
            f"attempt {attempt}: runs again because a human answered its question "
            f"({len(task.clarifications)} answered so far); a question is not a failure: "
            f"{failed} failed attempt{'' if failed == 1 else 's'} of the {max_attempts} the "
            "retry policy allows"
        )
    return f"attempt {attempt} (retry policy allows {max_attempts})"


def _settle_goal(state: GoalState, contracts: Contracts) -> list[Decision]:
    """End, suspend or resume the goal once its tasks say so."""
    failed_ids = state.with_status("failed")
    if failed_ids:
        failed = state.tasks[failed_ids[0]]
        return _fail_goal(
            state, "on_failure.fail", f"task {failed.id!r} failed: {failed.last_error}", failed.id
        )
    deadline = state.plan.budget.deadline_s
    if (
        deadline is not None
        and state.plan.budget.on_exhausted == "fail"
        and (state.now - state.started_at).total_seconds() >= deadline
    ):
        elapsed = round((state.now - state.started_at).total_seconds(), 3)
        return _budget_exhausted(state, None, BudgetBreach("deadline_s", deadline, elapsed))
    finished = state.count(*TASK_FINAL) == len(state.tasks)
    # (a planner or map that runs as its added tasks moves only when they do)
    movable = state.count("ready", "running", "retry_wait") - len(state.joining) > 0
    if state.status == "waiting":
        if state.resume_requested and (finished or movable):
            reason = "a runner took the goal up again and a human's decision lets it continue"
            return [GoalResumed(rule="goal.resume", reason=reason)]
        return []
    if finished:
        return _complete(state)
    escalated = state.with_status("escalated")
    if state.status == "running" and escalated and not movable:
        reason = waiting_reason((tid, state.tasks[tid].reason) for tid in escalated)
        return [GoalSuspended(waiting_on=escalated, rule="escalation.wait", reason=reason)]
    return []


# --- human gates (baton.domain.gates) -----------------------------------------------------------


def _clarify(
    state: GoalState, task: TaskState, spec: TaskSpec, attempt: int, question: str
) -> list[Decision]:
    """The agent asked a question: the task waits for an answer while `max_clarifications`
    allows; a question beyond it is a rejected output, not retried (the agent would ask again),
    and `on_failure` decides."""
    allowed = state.plan.clarifications_for(spec)
    asked = len(task.clarifications)
    policy = {"max_clarifications": allowed}
    if asked < allowed:
        reason = f"attempt {attempt} asked ({asked + 1} of {allowed} allowed): {question}"
        return [
            ClarificationRequested(
                task=task.id,
                attempt=attempt,
                question=question,
                rule="clarification.asked",
                reason=reason,
                policy=policy,
            )
        ]
    error = (
        f"clarification: asked {question!r} after {asked} answered "
        f"(max_clarifications {allowed})"
    )
    rejected = OutputRejected(
        task=task.id,
        attempt=attempt,
        errors=[error],
        rule="clarification.limit",
        reason="output rejected: " + error,
        policy=policy,
    )
    failure = "clarification.limit: " + error
    return [rejected, *_after_failure(state, task, spec, failure, "no_retry")]


# --- helpers ------------------------------------------------------------------------------------


def _after_failure(
    state: GoalState,
    task: TaskState,
    spec: TaskSpec,
    failure: str,
    mode: Literal["retry", "no_retry"],
    *,
    not_before_s: float | None = None,
) -> list[Decision]:
    """A failed attempt: schedule a retry while the policy allows, else apply `on_failure`.

    `not_before_s`: the failure said when to come back (a 429's Retry-After, recorded with it);
    the retry is then due no earlier than that, whatever the backoff says."""
    policy = state.plan.retry_for(spec)
    failures = task.failures + 1
    attempt = task.in_flight if task.in_flight is not None else task.attempts
    if mode == "retry" and failures < policy.max_attempts:
        delay = backoff_delay(
            policy, failures=failures, jitter=jitter_fraction(state.goal_id, task.id, attempt)
        )
        rule = "retry.backoff"
        if not_before_s is not None and not_before_s > delay:
            delay, rule = round(not_before_s, 6), "retry.not_before"
        due, delay = _due_after(state.now, delay)
        reason = (
            f"attempt {attempt} failed ({failure}); failure {failures} of "
            f"{policy.max_attempts} allowed, next attempt after {delay:g}s"
            + (" (the failure asked to wait that long)" if rule == "retry.not_before" else "")
        )
        retry = RetryScheduled(
            task=task.id,
            attempt=attempt,
            failure=failure,
            due_at=due,
            delay_s=delay,
            rule=rule,
            reason=reason,
            policy=policy.model_dump(),
        )
        return [retry]
    why = (
        f"retries exhausted after {failures} failed attempts"
        if mode == "retry"
        else "not retryable"
    )
    reason = f"{why}; last error: {failure}; on_failure is {spec.on_failure}"
    rule = f"on_failure.{spec.on_failure}"
    applied = {"on_failure": spec.on_failure, "max_attempts": policy.max_attempts}
    if spec.on_failure == "escalate":
        return [TaskEscalated(task=task.id, rule=rule, reason=reason, policy=applied)]
    if spec.on_failure == "abandon":
        return [TaskAbandoned(task=task.id, rule=rule, reason=reason, policy=applied)]
    return [TaskFailed(task=task.id, error=failure, rule=rule, reason=reason, policy=applied)]


def _due_after(now: datetime, delay: float) -> tuple[datetime, float]:
    """When a retry `delay` seconds from `now` falls due. A delay past the calendar (a plan's
    `max_backoff_s: 1e300`) is cut to the whole seconds left before its end (year 9999)
    instead of raising OverflowError out of decide; every delay that fits is unchanged."""
    try:
        return now + timedelta(seconds=delay), delay
    except OverflowError:
        left = (datetime.max.replace(tzinfo=now.tzinfo) - now) // timedelta(seconds=1)
        return now + timedelta(seconds=left), float(left)


def _budget_exhausted(
    state: GoalState, task_id: str | None, breach: BudgetBreach
) -> list[Decision]:
    rule = f"budget.{breach.budget}"
    exhausted = BudgetExhausted(
        budget=breach.budget,
        limit=breach.limit,
        used=breach.used,
        rule=rule,
        reason=breach.describe() + ("" if task_id is None else f"; {task_id!r} not started"),
        task=task_id,
        policy=state.plan.budget.model_dump(exclude_none=True),
    )
    if state.plan.budget.on_exhausted == "escalate" and task_id is not None:
        reason = breach.describe() + "; budget.on_exhausted is escalate"
        policy = {"on_exhausted": "escalate"}
        return [exhausted, TaskEscalated(task=task_id, rule=rule, reason=reason, policy=policy)]
    return [exhausted, *_fail_goal(state, rule, breach.describe(), task_id)]


def _fail_goal(state: GoalState, rule: str, reason: str, task_id: str | None) -> list[Decision]:
    """Stop every unfinished task, then record the goal failed."""
    decisions: list[Decision] = []
    for other_id in state.plan.order:
        other = state.tasks[other_id]
        if other.status in TASK_FINAL:
            continue
        if other.status == "running":
            decisions.append(
                TaskCancelled(
                    task=other_id,
                    rule="goal.failed",
                    reason="the goal failed while this ran; a late result is ignored",
                )
            )
        else:
            decisions.append(
                TaskSkipped(
                    task=other_id,
                    because=task_id or "goal",
                    rule="goal.failed",
                    reason=f"the goal failed: {reason}",
                )
            )
    return [*decisions, GoalFailed(task=task_id, rule=rule, reason=reason)]


def _complete(state: GoalState) -> list[Decision]:
    missing = sorted(
        tid for tid in state.plan.output_sources if state.tasks[tid].status != "succeeded"
    )
    if missing:
        reason = "the goal output reads " + ", ".join(
            f"{tid!r} ({state.tasks[tid].status})" for tid in missing
        )
        return _fail_goal(state, "output.unavailable", reason, missing[0])
    try:
        output = _goal_output(state)
    except ResolveError as exc:
        return _fail_goal(state, "output.unresolved", str(exc), None)
    return [GoalCompleted(output=output, rule="goal.completed", reason="every task finished")]


def _goal_output(state: GoalState) -> Any:
    outputs = state.outputs()
    if state.plan.output is None:  # no output declared: the outputs of the final tasks
        return {
            tid: outputs[tid]
            for tid in state.plan.order
            if not state.plan.dependants.get(tid) and tid in outputs and parent_of(tid) is None
        }
    return resolve_binding(state.plan.output_binding, state.input, outputs)


def _cancel(state: GoalState) -> list[Decision]:
    reason = f"cancelled by {state.cancel_requested}"
    decisions: list[Decision] = [
        TaskCancelled(task=tid, rule="goal.cancel", reason=reason)
        for tid in state.plan.order
        if state.tasks[tid].status not in TASK_FINAL
    ]
    return [*decisions, GoalCancelled(rule="goal.cancel", reason=reason)]


def _confidence_note(raw: Any, spec: TaskSpec) -> str:
    if spec.min_confidence is None or not isinstance(raw, dict):
        return ""
    return f"; confidence {raw.get('confidence')} >= {spec.min_confidence:g}"


def _confidence_policy(rule: str, spec: TaskSpec) -> dict[str, Any] | None:
    """The settings a confidence verdict applied; None (no policy recorded) for any other rule."""
    if rule != "validation.confidence":
        return None
    return {"min_confidence": spec.min_confidence, "on_low_confidence": spec.on_low_confidence}


# --- decomposition (baton.domain.expansion) -----------------------------------------------------


def _extend(
    state: GoalState,
    contracts: Contracts,
    task: TaskState,
    spec: TaskSpec,
    outcome: Outcome,
    verdict: Verdict,
) -> list[Decision]:
    """A planner's output passed its agent's contract: check it as a plan fragment. Accepted,
    its tasks join the goal; refused, it is a rejected output like any other (retried with the
    problems handed to the next attempt, then `on_failure`)."""
    raw = verdict.normalised if verdict.normalised is not None else outcome.output
    problems = check_fragment(state, contracts, task.id, raw)
    if problems:
        total = len(problems)
        if state.rules >= 5 and total > LISTED_PROBLEMS:  # a huge hostile fragment: its start
            problems = [*problems[:LISTED_PROBLEMS], f"… and {total - LISTED_PROBLEMS} more"]
        rejected = OutputRejected(
            task=task.id,
            attempt=outcome.attempt,
            errors=problems,
            rule="expands.check",
            reason=f"fragment rejected ({total} problems): " + problems[0],
        )
        if outcome.kind == "human":
            return [rejected]
        failure = "expands.check: " + "; ".join(problems)
        return [rejected, *_after_failure(state, task, spec, failure, "retry")]
    fragment = fragment_of(raw)
    added = [f"{task.id}/{item['id']}" for item in fragment["tasks"]]
    agents = sorted({item["agent"] for item in fragment["tasks"]})
    reason = (
        f"fragment of {len(added)} tasks ({', '.join(added)}) over {', '.join(agents)} passed "
        "every check a plan file gets, limits and budget"
    )
    extended = PlanExtended(
        task=task.id,
        attempt=outcome.attempt,
        fragment=fragment,
        added=added,
        checks=list(CHECKS),
        rule="expands.accepted",
        reason=reason,
        from_escalation=state.rules >= 4 and task.status == "escalated",
    )
    return [extended]


def _join(state: GoalState, contracts: Contracts) -> list[Decision]:
    """A planner or map whose added tasks have all ended gets its output from theirs."""
    done = [parent for parent in state.joining if state.open_children.get(parent) == 0]
    for parent in state.in_plan_order(set(done)):
        task = state.tasks[parent]
        spec = state.plan.task_map[parent]
        children = state.children[parent]
        if any(state.tasks[child].status == "failed" for child in children):
            continue  # the goal fails on it
        if spec.for_each is not None:
            lost = next((c for c in children if state.tasks[c].status != "succeeded"), None)
            if lost is None:
                reason = f"all {len(children)} instances succeeded"
                return [MapCollected(task=parent, width=len(children), rule="map.collected",
                                     reason=reason)]
            reason = (
                f"instance {lost!r} was {state.tasks[lost].status}, so the list of every "
                f"instance's output (${parent}) will never be complete"
            )
            return [TaskAbandoned(task=parent, rule="map.element_unavailable", reason=reason)]
        return _planner_output(state, contracts, task, spec)
    return []


def _planner_output(
    state: GoalState, contracts: Contracts, task: TaskState, spec: TaskSpec
) -> list[Decision]:
    """The planner's output: its fragment's `output`, validated as `expands.result`."""
    model = result_model(contracts, spec)
    try:
        value = resolve_binding(state.fragment_outputs[task.id], state.input, state.outputs())
    except ResolveError as exc:
        failure = f"expands.output: {exc}"
        return _after_failure(state, task, spec, failure, "no_retry")
    if model is not None:
        try:
            value = model.model_validate(value).model_dump(mode="json")
        except ValidationError as exc:
            failure = "expands.result: " + "; ".join(validation_errors(exc))
            return _after_failure(state, task, spec, failure, "no_retry")
    name = model.__name__ if model is not None else "its result"
    accepted = OutputAccepted(
        task=task.id,
        attempt=task.attempts,
        output=value,
        rule="expands.result",
        reason=f"every task of its fragment ended; the fragment's output satisfies {name}",
    )
    return [accepted]


def _expand_maps(state: GoalState, contracts: Contracts) -> list[Decision]:
    """A ready map becomes one instance per element of its list, within limits and budget."""
    for map_id in state.plan.maps:
        task = state.tasks[map_id]
        if task.status != "ready":
            continue
        spec = state.plan.task_map[map_id]
        ref = spec.for_each_ref
        assert ref is not None  # a plan with a malformed for_each never starts
        try:
            value = resolve(ref, state.input, state.outputs())
        except ResolveError as exc:
            return _after_failure(state, task, spec, f"map.unresolved: {exc}", "no_retry")
        if not isinstance(value, list):
            failure = f"map.not_a_list: {ref} is {type(value).__name__}, not a list"
            return _after_failure(state, task, spec, failure, "no_retry")
        problems = room_problems(state, [spec] * len(value), depth=map_id.count("/"))
        if problems:
            return _after_failure(state, task, spec, "; ".join(problems), "no_retry")
        width = len(value)
        shown = f"{map_id}[0] .. {map_id}[{width - 1}]" if width else "no instance"
        reason = f"{ref} holds {width} elements: {shown}"
        return [MapExpanded(task=map_id, width=width, rule="map.expanded", reason=reason)]
    return []
