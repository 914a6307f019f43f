"""The application service: the commands behind the CLI and the Python API, each
load → decide → save.

Kept thin on purpose: every rule lives in `baton.domain.decide`; this module only wires the store,
the loaded plan and the runner together and records observations from the outside world. The
CLI (`baton.cli.commands`) and the API (`baton.api`) both call these functions, and both call
`catch_up_read_models` after a command that wrote events.
"""

from __future__ import annotations

import asyncio
import functools
import getpass
import os
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec

from eventsourcing.persistence import IntegrityError
from pydantic import ValidationError

from baton.domain.contracts import (
    AgentContract,
    judge_output,
    validation_errors,
    validator_failed,
)
from baton.domain.decide import settle
from baton.domain.errors import BatonError, BatonWarning
from baton.domain.expansion import check_fragment, judging_confidence, judging_contract
from baton.domain.goal import Goal, GoalEvent
from baton.domain.history import fork_goal
from baton.domain.lifecycle import GOAL_FINAL
from baton.domain.state import TaskState
from baton.history.schemas import recorded_schemas
from baton.runtime.loading import LoadedPlan, prepare_plan
from baton.runtime.observers import RunObserver
from baton.runtime.runner import DEFAULT_CONCURRENCY, Driving, Runner, utc_now
from baton.settings import settings
from baton.store.eventstore import BatonStore
from baton.store.ownership import owning
from baton.telemetry.live import live_telemetry

if TYPE_CHECKING:  # the read side is imported only when something was written
    from baton.readmodels.reading import KeptReadModels

__all__ = [
    "RESOLVE_ACTIONS",
    "CommandError",
    "answer_task",
    "cancel_goal",
    "catch_up_read_models",
    "check_concurrency",
    "fork_from",
    "load_goal_plan",
    "resolve_task",
    "resume_goal",
    "start_goal",
    "submit_goal",
    "who",
]

RESOLVE_ACTIONS = ("retry", "abandon", "output", "approve", "reject")
# What a human may do with a task that waits at a gate (baton.domain.gates), and what the
# refusal says to do: an approval is decided, a question answered (or the task given up).
# Refusals name the actions, not one front end's spelling of them: the CLI (--approve), the
# Python API (action="approve") and the web view's buttons all read them.
_GATE_ACTIONS = {
    "approval": (("approve", "reject"), "resolve it with approve or reject"),
    "clarification": (("abandon", "output"), "answer it (`baton answer`, Baton.answer), or "
                      "resolve it with abandon or an output"),
}


class CommandError(BatonError):
    """A command that does not apply to the goal as it stands (e.g. resolving a running task)."""


_FRESH_READS = 5  # a human's command re-read after this many version conflicts, at most
_P = ParamSpec("_P")


def _on_the_goal_as_it_stands(
    command: Callable[Concatenate[BatonStore, str, _P], Goal],
) -> Callable[Concatenate[BatonStore, str, _P], Goal]:
    """A human's command (resolve, answer, cancel) saved while another process saved to the
    same goal after our read (a worker's result, another person's decision) conflicts on the
    version: run it again on the goal as it now stands, as the runner re-reads after a
    command's save; its checks then judge the new state (a task someone else resolved is no
    longer escalated). Each try saves all of its events or none."""

    @functools.wraps(command)
    def on_fresh_state(store: BatonStore, goal_id: str, /, *args: _P.args,
                       **kwargs: _P.kwargs) -> Goal:
        for _ in range(_FRESH_READS):
            try:
                return command(store, goal_id, *args, **kwargs)
            except IntegrityError:
                continue
        raise CommandError(f"goal {goal_id} kept changing while this was recorded (another "
                           "process writes to it); nothing recorded: try again")

    return on_fresh_state


def new_goal_id() -> str:
    return str(uuid.uuid4())


# Long enough for any id a system makes (Temporal's default cap on workflow ids is the same), short
# enough that a link to the goal fits the request line an HTTP server reads (uvicorn's h11: 16 KiB;
# a character percent-encodes to at most 12).
MAX_GOAL_ID_CHARS = 1000


def goal_id_problem(goal_id: str) -> str | None:
    """Why a goal id a user chose cannot be one, or None. Never replaced by a generated id: a
    blank one is refused, as is one that would break a one-line message or the store (a control
    character: PostgreSQL refuses NUL in text), or the web view's links: browsers resolve a path
    segment `.` or `..` (percent-encoded too) before sending it, so no URL could reach the goal."""
    if not goal_id.strip():
        return "cannot be empty (leave the goal id out for a UUID)"
    if goal_id in (".", ".."):
        return "cannot be '.' or '..' (the web view could not link to it)"
    if len(goal_id) > MAX_GOAL_ID_CHARS:
        return f"cannot be longer than {MAX_GOAL_ID_CHARS} characters (it has {len(goal_id)})"
    if any(ord(c) < 32 or ord(c) == 127 for c in goal_id):
        return "cannot hold control characters"
    return None


def chosen_goal_id(goal_id: str | None) -> str:
    """The id of a goal about to be created: the user's, checked, else a new UUID."""
    if goal_id is None:
        return new_goal_id()
    if not isinstance(goal_id, str):  # the API's callers are not type-checked
        raise CommandError(f"goal id {goal_id!r}: expected a string, not {type(goal_id).__name__}")
    problem = goal_id_problem(goal_id)
    if problem is not None:
        shown = goal_id if len(goal_id) <= 60 else goal_id[:59] + "…"  # a line, not a page
        raise CommandError(f"goal id {shown!r} {problem}")
    return goal_id


def check_concurrency(concurrency: int) -> None:
    """Tasks run at once: a whole number of at least 1 (the CLI's parser checks it too)."""
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise CommandError(
            f"concurrency must be a whole number of at least 1, not {concurrency!r}"
        )


def who(by: str | None = None) -> str:
    """Who a human decision is recorded as: `by`, else $BATON_USER, else the login name."""
    if by is not None and not isinstance(by, str):
        raise CommandError(f"by {by!r}: expected a name (a string), not {type(by).__name__}")
    if by:
        return by
    try:
        return settings().user or getpass.getuser()
    except Exception:  # no user database in some containers
        return "unknown"


def catch_up_read_models(
    store: BatonStore, *, warn: Callable[[Exception], None], kept: KeptReadModels | None = None
) -> None:
    """After a command that wrote events, so the read models show what it did. A failure to
    catch up goes to `warn`, never replaces the command's outcome: the events are stored, and
    any later catch-up applies them. `kept`: through read models the caller keeps open (a
    server, a `Baton` client), not a pool opened for this one call."""
    from baton.readmodels.reading import refresh  # the read side only when something was written

    try:
        if kept is not None:
            kept.catch_up()
        else:
            refresh(store)
    except Exception as exc:
        if os.environ.get("BATON_DEBUG"):  # read directly: settings themselves may be broken
            raise
        warn(exc)


def start_goal(
    store: BatonStore,
    loaded: LoadedPlan,
    goal_input: Any,
    *,
    goal_id: str | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    runner: Runner | None = None,
    agent_loop: asyncio.AbstractEventLoop | None = None,
    wait: bool = False,
    observer: RunObserver | None = None,
    driving: Driving | None = None,
) -> Goal:
    """Validate the input, store the new goal, and drive it; nothing is stored on bad input.

    `agent_loop`: the event loop async agents run on (the API's `AsyncBaton` passes its caller's).
    `driving`: as `resume_goal`'s.
    """
    check_concurrency(concurrency)
    loaded.check_calls()  # a model no call could reach (no API key): nothing is stored
    _warn_of_costs(loaded)
    validated = loaded.validate_input(goal_input)
    goal_id = chosen_goal_id(goal_id)
    _refuse_taken(store, goal_id)
    runner = runner or Runner.from_settings(
        store=store, loaded=loaded, agent_loop=agent_loop, observer=observer
    )
    goal = Goal.start(
        goal_id=goal_id,
        plan=loaded.plan,
        goal_input=validated,
        concurrency=concurrency,
        at=runner.clock(),
        schemas=recorded_schemas(loaded.contracts, loaded.input_model),
    )
    with owning(store, goal_id, wait=wait):  # one owner per goal, from its first event
        _refuse_taken(store, goal_id)  # started by another call since the look above
        with (driving or Driving()).holding(goal_id, runner):
            return runner.start(goal)


def _refuse_taken(store: BatonStore, goal_id: str) -> None:
    if store.exists(goal_id):
        raise CommandError(f"goal {goal_id!r} already exists in this store (use resume)")


def submit_goal(
    store: BatonStore,
    loaded: LoadedPlan,
    goal_input: Any,
    *,
    goal_id: str | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> Goal:
    """Validate the input and store the new goal without driving it (a worker or `resume` will).

    Only `Started` is recorded: no decision is taken here, so no dispatch can be stored for an
    agent call that nobody is about to make.
    """
    check_concurrency(concurrency)
    _warn_of_costs(loaded)  # said here: the worker that drives the goal only logs
    validated = loaded.validate_input(goal_input)
    goal_id = chosen_goal_id(goal_id)
    if store.exists(goal_id):
        raise CommandError(f"goal {goal_id!r} already exists in this store")
    goal = Goal.start(
        goal_id=goal_id,
        plan=loaded.plan,
        goal_input=validated,
        concurrency=concurrency,
        at=utc_now(),
        schemas=recorded_schemas(loaded.contracts, loaded.input_model),
    )
    store.save(goal)
    return goal


def _warn_of_costs(loaded: LoadedPlan) -> None:
    """A cost budget an unpriced model escapes: one BatonWarning per such agent (the CLI prints
    each as one line), to whoever starts or submits the goal."""
    for line in loaded.cost_warnings():
        warnings.warn(BatonWarning(line), stacklevel=3)


def load_goal_plan(
    goal: Goal, *, calls_models: bool = True, source: str | None = None
) -> LoadedPlan:
    """The goal's own recorded plan, with its agents imported again from today's code.
    `calls_models` False (a human's decision, a cancel: decided, nothing called): the LLM
    agents' model settings (key, base URL) are not required to work here. `source` names the
    plan in errors (default: the goal's)."""
    data = goal.state.started_plan.model_dump(mode="json", exclude_unset=True, by_alias=True)
    return prepare_plan(data, source=source or f"goal {goal.id} plan",
                        calls_models=calls_models, recorded=True)


def resume_goal(
    store: BatonStore,
    goal_id: str,
    *,
    concurrency: int | None = None,
    runner: Runner | None = None,
    agent_loop: asyncio.AbstractEventLoop | None = None,
    wait: bool = False,
    observer: RunObserver | None = None,
    should_stop: Callable[[], bool] | None = None,
    driving: Driving | None = None,
) -> Goal:
    """Drive a goal on from its events (after a crash, a human's resolution, or a submit);
    `should_stop`: once it says so, leave the goal at a safe point (Runner.should_stop);
    `driving`: holds the runner while it drives, so that another thread can wake it when
    `should_stop` changes, or when a command ended the goal (Runner.wake)."""
    if concurrency is not None:
        check_concurrency(concurrency)
    goal = store.get(goal_id)
    if goal.state.status in GOAL_FINAL:
        return goal
    with owning(store, goal_id, wait=wait):  # GoalOwned when a live process drives it
        goal = store.get(goal_id)  # as its last owner left it
        if goal.state.status in GOAL_FINAL:
            return goal
        if runner is None:
            loaded = load_goal_plan(goal)
            # As `run` does: with no API key every call would fail at once, and each attempt
            # would be failed and retried for want of a setting. Nothing is recorded.
            loaded.check_calls(f"goal {goal_id}")
            runner = Runner.from_settings(
                store=store, loaded=loaded, agent_loop=agent_loop, observer=observer
            )
        if should_stop is not None:
            runner.should_stop = should_stop
        with (driving or Driving()).holding(goal_id, runner):
            return runner.resume(goal, concurrency=concurrency or goal.state.concurrency)


def fork_from(
    store: BatonStore,
    events: Sequence[GoalEvent],
    *,
    at: int,
    goal_id: str | None = None,
    run: bool = False,
    agent_loop: asyncio.AbstractEventLoop | None = None,
    driving: Driving | None = None,
) -> Goal:
    """A new goal that starts from the first `at` events of a history; `run` drives it on
    (`driving`: as `resume_goal`'s)."""
    goal_id = chosen_goal_id(goal_id)
    if store.exists(goal_id):
        raise CommandError(f"goal {goal_id!r} already exists in this store")
    goal = fork_goal(events, goal_id=goal_id, at=at, now=utc_now())
    runner = None
    if run:  # as `run` does: a plan today's code cannot load stores nothing (nor a fork that
        # no one could drive, whose id a second try would find taken)
        source = f"fork of {events[0].originator_id}: its plan"
        loaded = load_goal_plan(goal, source=source)
        loaded.check_calls(source)
        runner = Runner.from_settings(store=store, loaded=loaded, agent_loop=agent_loop)
    store.save(goal)
    if runner is not None:
        goal = resume_goal(store, goal_id, runner=runner, driving=driving)
    return goal


@_on_the_goal_as_it_stands
def resolve_task(
    store: BatonStore,
    goal_id: str,
    task_id: str,
    *,
    action: str,
    reason: str,
    by: str,
    output: Any = None,
) -> Goal:
    """Record a human's decision on an escalated task, and what the orchestrator makes of it."""
    require_reason(reason)
    if action not in RESOLVE_ACTIONS:
        expected = ", ".join(RESOLVE_ACTIONS)
        raise CommandError(f"resolve action {action!r}: expected one of {expected}")
    goal = store.get(goal_id)
    task = _waiting_task(goal, task_id)
    gate = _GATE_ACTIONS.get(task.waiting_for or "")
    if gate is not None and action not in gate[0]:
        raise CommandError(
            f"goal {goal_id}: task {task_id!r} waits for {task.waiting_for}: {gate[1]}"
        )
    if task.waiting_for != "approval" and action in _GATE_ACTIONS["approval"][0]:
        raise CommandError(f"goal {goal_id}: task {task_id!r} is not waiting for approval")
    # (The CLI and the web view pass an output with "output" only; the Python API is not
    # type-checked.) Recorded with another action, the output would mean nothing to any reader.
    if action == "output" and output is None:
        raise CommandError(f"goal {goal_id}: task {task_id!r}: action 'output' needs an output "
                           "(the value the task should have produced)")
    if action != "output" and output is not None:
        raise CommandError(f"goal {goal_id}: task {task_id!r}: an output goes with action "
                           f"'output' only, not {action!r}")
    resolved = {"task": task_id, "action": action, "reason": reason, "by": by, "output": output}
    if action == "abandon":  # usually decided from the state alone: then no agent is imported
        goal.observe("HumanResolved", at=utc_now(), **resolved)
        if _settled_without_agents(goal):
            _save_decided(store, goal)
            return goal
        goal = store.get(goal_id)  # it makes a task runnable, say: decided below, with agents
        _waiting_task(goal, task_id)
    loaded = load_goal_plan(goal, calls_models=False)
    if action == "retry" and task_id in goal.state.children:
        raise CommandError(
            f"goal {goal_id}: planner {task_id!r} already added its fragment's tasks; supply its "
            "result as its output, or abandon it"
        )
    if action == "output":
        spec = goal.state.plan.task_map[task_id]
        if spec.for_each is not None and goal.state.rules < 4:
            raise CommandError(
                f"goal {goal_id}: map {task_id!r} cannot be given an output: the goal is decided "
                f"under decision rules {goal.state.rules}, which judge it as one element, not "
                "the list downstream tasks read; retry or abandon it"
            )
        contract = judging_contract(goal.state, loaded.contracts, spec)
        given = output
        try:
            output = contract.output_model.model_validate(output).model_dump(mode="json")
        except ValidationError as exc:
            errors = "; ".join(validation_errors(exc, limit=5))
            raise CommandError(
                f"the output given does not satisfy {contract.output_model.__name__}: {errors}"
            ) from None
        except Exception as exc:  # the contract's own validator failed (decide rejects it too)
            raise CommandError(
                f"the output given does not satisfy {contract.output_model.__name__}: "
                f"{validator_failed(exc)}"
            ) from None
        # Judged as `decide` will judge it, min_confidence included: an output that would be
        # recorded as rejected is refused here, before anything is recorded or reported.
        confidence = judging_confidence(goal.state, spec)
        verdict = judge_output(output, contract, min_confidence=confidence)
        if not verdict.accepted:
            raise CommandError(
                f"the output given for task {task_id!r} would be rejected "
                f"({'; '.join(verdict.errors)}); nothing recorded"
            )
        if spec.expands is not None and task_id not in goal.state.children:
            _check_fragment_output(goal, loaded, task_id, given, output)
        resolved["output"] = output  # as its contract reads it (coerced, defaults filled in)
    goal.observe("HumanResolved", at=utc_now(), **resolved)
    settle(goal, loaded.contracts)
    _save_decided(store, goal)
    return goal


def _save_decided(store: BatonStore, goal: Goal) -> None:
    """Save a human's decision and what it decided, handing the events to live span export
    (OTEL_*) as a run does: the spans a decision closes (an escalation resolved, the goal a
    cancel ended) are exported by the process that recorded them, or by none."""
    saved = store.save(goal)
    telemetry = live_telemetry(store)
    if telemetry is not None and saved:
        telemetry.saved(goal, saved)


class _AgentsNeeded(Exception):
    """A decision read an agent's contract (see `_NoAgents`)."""


def _settled_without_agents(goal: Goal) -> bool:
    """Settle a human's decision with no agent imported (a goal whose agent modules are gone can
    still be cancelled, or a task of it abandoned). False when a decision needed a contract:
    the goal is then half decided, to be read again and settled with its agents."""
    try:
        settle(goal, _NoAgents())
    except _AgentsNeeded:
        return False
    return True


class _NoAgents(Mapping[str, AgentContract]):
    """The contracts of a decision that usually needs none (a task abandoned): any use of them
    raises `_AgentsNeeded`, and the caller decides again with the plan's agents imported. So a
    goal whose agent modules are gone can still be decided on when no agent is involved, and
    nothing is ever decided without a contract it needs."""

    def __getitem__(self, key: str) -> AgentContract:
        raise _AgentsNeeded

    def __iter__(self) -> Iterator[str]:
        raise _AgentsNeeded

    def __len__(self) -> int:
        raise _AgentsNeeded

    def __contains__(self, key: object) -> bool:
        raise _AgentsNeeded

    def __getattr__(self, name: str) -> Any:  # PlanContracts' input_model, results
        raise _AgentsNeeded


def _check_fragment_output(
    goal: Goal, loaded: LoadedPlan, task_id: str, given: Any, output: Any
) -> None:
    """A planner whose fragment has not joined the goal: a human's output is a fragment too,
    refused here with every check `decide` makes of one (as `validate` checks a plan file),
    so that one that would be recorded as rejected is never recorded."""
    problems = check_fragment(goal.state, loaded.contracts, task_id, output)
    if not problems:
        return
    hint = (
        "; a planner's output is a fragment {\"tasks\": [...], \"output\": ...} until its "
        "tasks joined the goal"
        if not isinstance(given, dict) or "tasks" not in given else ""
    )
    raise CommandError(
        f"the output given for planner {task_id!r} is a fragment that would be rejected "
        f"({len(problems)} problems): {'; '.join(problems)}{hint}; nothing recorded"
    )


@_on_the_goal_as_it_stands
def answer_task(store: BatonStore, goal_id: str, task_id: str, *, answer: str, by: str) -> Goal:
    """Record a human's answer to the question a task asked; the task then runs again with
    every question and answer so far (baton.domain.gates)."""
    if not isinstance(answer, str):
        raise CommandError(f"answer {answer!r}: expected text, not {type(answer).__name__}")
    if not answer.strip():
        raise CommandError("the answer is empty: say what the task should know")
    goal = store.get(goal_id)
    task = _waiting_task(goal, task_id)
    if task.waiting_for != "clarification":
        raise CommandError(f"goal {goal_id}: task {task_id!r} has no question waiting for an "
                           "answer")
    loaded = load_goal_plan(goal, calls_models=False)
    goal.observe("HumanAnswered", at=utc_now(), task=task_id, answer=answer, by=by)
    settle(goal, loaded.contracts)
    _save_decided(store, goal)
    return goal


def require_reason(reason: Any) -> None:
    """A human's decision says why: the audit trail quotes it ("cancelled by ana: WHY"). The one
    check of it, for the CLI, the API and the web view's forms alike."""
    if not isinstance(reason, str) or not reason.strip():
        raise CommandError(f"a reason is required (why, for the audit trail), not {reason!r}")


def _waiting_task(goal: Goal, task_id: str) -> TaskState:
    """The task a human's decision is about; it must be waiting for one (escalated)."""
    task = goal.state.tasks.get(task_id)
    if task is None:
        raise CommandError(f"goal {goal.id}: no task {task_id!r}")
    if task.status != "escalated":
        raise CommandError(f"goal {goal.id}: task {task_id!r} is {task.status}, not escalated")
    return task


@_on_the_goal_as_it_stands
def cancel_goal(store: BatonStore, goal_id: str, *, reason: str, by: str) -> Goal:
    """Record the cancel and what it decides. No agent is imported: once a cancel is requested,
    `decide` cancels every open task and the goal from the state alone, never reading a
    contract, so a goal whose agent modules are gone can still be cancelled."""
    require_reason(reason)
    goal = store.get(goal_id)
    if goal.state.status in GOAL_FINAL:
        raise CommandError(f"goal {goal_id} has already ended ({goal.state.status})")
    goal.observe("CancelRequested", at=utc_now(), reason=reason, by=by)
    if not _settled_without_agents(goal):  # never so today; decided with the agents then
        goal = store.get(goal_id)
        goal.observe("CancelRequested", at=utc_now(), reason=reason, by=by)
        settle(goal, load_goal_plan(goal, calls_models=False).contracts)
    _save_decided(store, goal)
    return goal
