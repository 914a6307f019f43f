"""`baton audit`, `replay`, `fork`, `export` and `import`: debugging a run from its events."""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from typing import Any

from baton.cli.commands.common import exit_code, goal_id_argument, store_from
from baton.cli.debug_view import print_replay, print_timeline, print_what_if
from baton.cli.durations import task_durations
from baton.cli.render import goal_json, print_goal, print_json
from baton.domain.audit import timeline
from baton.domain.contracts import Contracts
from baton.domain.errors import PlanError
from baton.domain.goal import GoalEvent
from baton.domain.history import fork_goal, started_event
from baton.domain.replay import replay
from baton.domain.whatif import what_if
from baton.history.recorded import reexecute
from baton.history.runfile import import_run, read_run, write_run
from baton.history.schemas import SchemaError, contracts_from_schemas
from baton.runtime.loading import LoadedPlan, load_plan_file, prepare_plan
from baton.runtime.runner import utc_now
from baton.runtime.service import CommandError, resume_goal
from baton.store.eventstore import BatonStore

__all__ = ["register"]


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an event number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def register(sub: Any) -> None:
    audit = sub.add_parser(
        "audit",
        help="the decision timeline: what was decided, when, and why",
        description="Every decision in order with its rule, reason and policy values, beside "
        "the observation that caused it. GOAL is a goal id, or a run file from `baton export`.",
    )
    audit.add_argument("target", metavar="GOAL|FILE")
    audit.add_argument("--task", default=None, help="only what concerns this task")
    audit.add_argument("--json", action="store_true", help="the complete timeline as JSON")
    audit.set_defaults(func=_audit)

    rep = sub.add_parser(
        "replay",
        help="re-decide the recorded events with today's code",
        description="Fold the recorded events and re-run today's decide after every "
        "observation; exit 0 when every decision is identical, 1 at the first divergence. No "
        "agent is called. --reexecute re-runs the whole pipeline with recorded agent outputs; "
        "--plan re-decides under a changed plan (exit 1 where decisions would differ).",
    )
    rep.add_argument("target", metavar="GOAL|FILE")
    rep.add_argument(
        "--at",
        type=_positive,
        default=None,
        help="stop after event N; `state` is the goal's state then",
    )
    mode = rep.add_mutually_exclusive_group()
    mode.add_argument(
        "--reexecute",
        action="store_true",
        help="bindings, inputs, validation and decisions again, agents replaced by "
        "their recorded outputs",
    )
    mode.add_argument(
        "--plan",
        default=None,
        metavar="CHANGED_PLAN",
        help="what-if: re-decide the recorded observations under this plan",
    )
    rep.add_argument(
        "--no-code",
        action="store_true",
        help="check against the contract schemas recorded in the run, importing no module it "
        "names (for a run file from elsewhere)",
    )
    rep.add_argument("--json", action="store_true")
    rep.set_defaults(func=_replay)

    fork = sub.add_parser(
        "fork",
        help="a new goal that starts from the first N events of GOAL",
        description="Copy the first N events of GOAL (or of a run file) into a new goal whose "
        "Started event records the origin; --run drives it on with today's code and agents.",
    )
    fork.add_argument("target", metavar="GOAL|FILE")
    fork.add_argument("--at", type=_positive, required=True, help="events to keep")
    fork.add_argument("--goal-id", default=None, type=goal_id_argument,
                      help="id for the new goal (default: a UUID)")
    fork.add_argument("--run", action="store_true", help="then drive the new goal")
    fork.add_argument("--json", action="store_true")
    fork.set_defaults(func=_fork)

    export = sub.add_parser(
        "export", help="write a goal's self-contained run file (JSON Lines)",
        description="Write every event of GOAL, digest-chained, with the contracts' schemas: "
        "`audit` and `replay` read the file without a store, `import` loads it into another.",
    )
    export.add_argument("goal", help="goal id")
    export.add_argument("-o", "--output", default=None,
                        help="file to write, its directory created if missing "
                        "(default, or -: stdout)")
    export.set_defaults(func=_export)

    imp = sub.add_parser(
        "import", help="load a run file into this store (same id and order)",
        description="Check a run file from `baton export` (digest chain, event shapes, plan) "
        "and store its events under the same goal id; an edited file stores nothing.",
    )
    imp.add_argument("file", help="run file (JSON Lines)")
    imp.add_argument("--json", action="store_true", help='print {"goal_id", "events"}')
    imp.set_defaults(func=_import)


def _history(
    args: argparse.Namespace, store: BatonStore | None = None
) -> tuple[str, list[GoalEvent]]:
    """GOAL|FILE: a run file's events when the target is a file, else the stored goal's."""
    if os.path.isfile(args.target):
        run = read_run(args.target)
        return run.goal_id, run.events
    store = store or store_from(args)
    return args.target, list(store.events(args.target))


def _recorded_plan(events: list[GoalEvent], goal_id: str) -> LoadedPlan:
    """The goal's own plan with today's agents: their contracts re-judge recorded outputs."""
    return prepare_plan(started_event(events).plan, source=f"goal {goal_id} plan")


def _audit(args: argparse.Namespace) -> int:
    goal_id, events = _history(args)
    started = started_event(events)
    task_ids = [task.get("id") for task in started.plan.get("tasks", [])]
    if args.task is not None and args.task not in task_ids:
        known = ", ".join(str(tid) for tid in task_ids)
        raise CommandError(f"--task {args.task}: goal {goal_id} has no such task ({known})")
    audit = timeline(events, task=args.task)
    if args.json:
        print_json(audit)
        return 0
    name = started.plan.get("name", "?")
    scope = f" · task {args.task}" if args.task else ""
    print_timeline(audit, title=f"goal {goal_id} · {name}{scope}")
    return 0


def _replay_contracts(
    events: list[GoalEvent], goal_id: str, *, no_code: bool
) -> tuple[Contracts, str | None]:
    """The contracts replay judges with, and why the recorded schemas were used (None when they
    come from today's agent modules)."""
    schemas = started_event(events).schemas
    if no_code:
        if schemas is None:
            raise CommandError(
                f"--no-code: goal {goal_id} records no contract schemas (it was run by a Baton "
                "before 0.2); replay it where its agent modules import, without --no-code"
            )
        return _from_schemas(schemas, goal_id), "--no-code: no module was imported"
    try:
        return _recorded_plan(events, goal_id).contracts, None
    except PlanError as exc:
        unloadable = [
            str(i) for i in exc.issues if i.where.startswith("agents.") or i.where == "input"
        ]
        if schemas is None or not unloadable:
            raise
        return _from_schemas(schemas, goal_id), f"agent modules not importable: {unloadable[0]}"


def _from_schemas(schemas: dict[str, Any], goal_id: str) -> Contracts:
    try:
        return contracts_from_schemas(schemas)
    except SchemaError as exc:
        raise CommandError(f"goal {goal_id}: {exc}") from None


def _reexecution_plan(events: list[GoalEvent], goal_id: str) -> LoadedPlan:
    try:
        return _recorded_plan(events, goal_id)
    except PlanError as exc:
        first = str(exc.issues[0]) if exc.issues else str(exc)
        raise CommandError(
            f"--reexecute calls the agents' own contracts and needs their modules ({first}); "
            "plain `replay` checks against the schemas recorded in the run"
        ) from None


def _replay(args: argparse.Namespace) -> int:
    goal_id, events = _history(args)
    if args.at is not None and (args.reexecute or args.plan):
        raise CommandError("--at applies to plain replay, not to --reexecute or --plan")
    if args.no_code and (args.reexecute or args.plan):
        raise CommandError(
            "--no-code applies to plain replay: --reexecute and --plan import agent modules"
        )
    if args.plan:
        changed = load_plan_file(args.plan)
        outcome = what_if(events, changed.plan, changed.contracts)
        data = outcome.to_json()
        if args.json:
            print_json(data)
        else:
            print_what_if(data, source=args.target, plan=args.plan)
        return 0 if outcome.ok else 1
    recorded_because: str | None = None
    if args.reexecute:
        result = reexecute(events, _reexecution_plan(events, goal_id))
    else:
        contracts, recorded_because = _replay_contracts(events, goal_id, no_code=args.no_code)
        result = replay(events, contracts, at=args.at)
    data = result.to_json()
    data["contracts"] = "modules" if recorded_because is None else "recorded schemas"
    if args.json:
        print_json(data)
    else:
        if recorded_because is not None:
            print(f"checked against the contract schemas recorded in the run ({recorded_because})")
        print_replay(data, source=args.target, mode="re-execution" if args.reexecute else "replay")
    return 0 if result.ok else 1


def _fork(args: argparse.Namespace) -> int:
    store = store_from(args)
    origin, events = _history(args, store)
    new_id = args.goal_id or str(uuid.uuid4())
    if store.exists(new_id):
        raise CommandError(f"goal {new_id!r} already exists in this store")
    goal = fork_goal(events, goal_id=new_id, at=args.at, now=utc_now())
    store.save(goal)
    code = 0
    if args.run:
        goal = resume_goal(store, new_id)
        code = exit_code(goal)
    if args.json:
        print_json(
            {"goal_id": new_id, "forked_from": origin, "at": args.at}
            | ({k: v for k, v in goal_json(goal).items() if k != "goal_id"} if args.run else {})
        )
    elif args.run:
        print(new_id)
        print_goal(goal, task_durations(store, new_id))
    else:
        print(new_id)
    return code


def _export(args: argparse.Namespace) -> int:
    store = store_from(args)
    events = list(store.events(args.goal))
    if args.output in (None, "-"):
        write_run(events, sys.stdout)
        return 0
    try:
        os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
        with open(args.output, "w", encoding="utf-8") as out:
            write_run(events, out)
    except OSError as exc:
        raise CommandError(f"-o {args.output}: {exc.strerror or exc}") from None
    print(f"exported {len(events)} events of goal {args.goal} to {args.output}", file=sys.stderr)
    return 0


def _import(args: argparse.Namespace) -> int:
    run = read_run(args.file)
    store = store_from(args)
    goal_id = import_run(store, run)
    if args.json:
        print_json({"goal_id": goal_id, "events": len(run.events)})
    else:
        print(goal_id)
    return 0
