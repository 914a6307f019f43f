"""`baton audit`, `replay`, `fork`, `export` and `import`: debugging a run from its events."""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from typing import Any

from baton.cli.commands.common import exit_code, store_from
from baton.cli.debug_view import print_replay, print_timeline, print_what_if
from baton.cli.durations import task_durations
from baton.cli.render import goal_json, print_goal, print_json
from baton.domain.audit import timeline
from baton.domain.goal import GoalEvent
from baton.domain.history import fork_goal, started_event
from baton.domain.replay import replay
from baton.domain.whatif import what_if
from baton.history.live import LiveAgents, llm_agent_names
from baton.history.recorded import reexecute
from baton.history.runfile import import_run, read_run, write_run
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
        "--call-agents",
        action="store_true",
        help="with --reexecute: call today's agents for real (LLM agents call their models; "
        "they are named first) instead of answering from the recording",
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
    fork.add_argument("--goal-id", default=None, help="id for the new goal (default: a UUID)")
    fork.add_argument("--run", action="store_true", help="then drive the new goal")
    fork.add_argument("--json", action="store_true")
    fork.set_defaults(func=_fork)

    export = sub.add_parser("export", help="write a goal's self-contained run file (JSON Lines)")
    export.add_argument("goal")
    export.add_argument("-o", "--output", default=None,
                        help="file to write (default, or -: stdout)")
    export.set_defaults(func=_export)

    imp = sub.add_parser("import", help="load a run file into this store (same id and order)")
    imp.add_argument("file")
    imp.add_argument("--json", action="store_true")
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


def _replay(args: argparse.Namespace) -> int:
    goal_id, events = _history(args)
    if args.at is not None and (args.reexecute or args.plan):
        raise CommandError("--at applies to plain replay, not to --reexecute or --plan")
    if args.plan:
        changed = load_plan_file(args.plan)
        outcome = what_if(events, changed.plan, changed.contracts)
        data = outcome.to_json()
        if args.json:
            print_json(data)
        else:
            print_what_if(data, source=args.target, plan=args.plan)
        return 0 if outcome.ok else 1
    loaded = _recorded_plan(events, goal_id)
    if args.call_agents and not args.reexecute:
        raise CommandError("--call-agents applies to --reexecute")
    if args.reexecute:
        _say_llm_agents(loaded, calling=args.call_agents)
        live = LiveAgents(loaded) if args.call_agents else None
        result = reexecute(events, loaded, agents=live)
    else:
        result = replay(events, loaded.contracts, at=args.at)
    data = result.to_json()
    if args.json:
        print_json(data)
    else:
        print_replay(data, source=args.target, mode="re-execution" if args.reexecute else "replay")
    return 0 if result.ok else 1


def _say_llm_agents(loaded: LoadedPlan, *, calling: bool) -> None:
    """Before re-executing: which agents are LLM agents, and whether their models are called."""
    names = llm_agent_names(loaded)
    if names and calling:
        print(f"baton: re-execution calls today's agents; LLM agents {', '.join(names)} call "
              "their models", file=sys.stderr)
    elif names:
        print(f"baton: re-execution: LLM agents {', '.join(names)} answer with their recorded "
              "outputs; no model is called (--call-agents calls them)", file=sys.stderr)


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
