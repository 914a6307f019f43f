"""`baton audit`, `replay`, `fork`, `export` and `import`: debugging a run from its events."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from baton.cli import exits
from baton.cli.commands.common import exit_code, goal_id_argument, store_from
from baton.cli.debug_view import print_replay, print_timeline, print_what_if
from baton.cli.durations import task_durations
from baton.cli.render import goal_json, print_goal, print_json
from baton.domain.errors import PlanError
from baton.domain.history import started_event
from baton.domain.whatif import WhatIfResult
from baton.history.live import LiveAgents, llm_agent_names, unsafe_task_ids
from baton.history.service import (
    History,
    audit_history,
    export_goal,
    import_file,
    load_history,
    replay_history,
)
from baton.runtime.loading import LoadedPlan
from baton.runtime.service import CommandError, fork_from

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


def _history(args: argparse.Namespace) -> History:
    return load_history(args.target, lambda: store_from(args))


def _audit(args: argparse.Namespace) -> int:
    history = _history(args)
    audit = audit_history(history, task=args.task)
    if args.json:
        print_json(audit)
        return exits.OK
    name = started_event(history.events).plan.get("name", "?")
    scope = f" · task {args.task}" if args.task else ""
    print_timeline(audit, title=f"goal {history.goal_id} · {name}{scope}")
    return exits.OK


def _replay(args: argparse.Namespace) -> int:
    history = _history(args)
    if args.call_agents and not args.reexecute:
        raise CommandError("--call-agents applies to --reexecute")
    live = None
    if args.reexecute:
        try:
            loaded = history.recorded_plan(calls_models=args.call_agents)
        except PlanError:
            if args.call_agents:  # today's agents are called: their model settings must work
                raise
            # else replay_history says in one line that re-execution needs the modules
        else:
            _say_llm_agents(loaded, calling=args.call_agents)
            if args.call_agents:
                unsafe = unsafe_task_ids(loaded)
                if unsafe:
                    print(f"baton: re-execution: unsafe tasks {', '.join(unsafe)} answer with "
                          "their recorded outcomes; --call-agents never repeats their side "
                          "effects", file=sys.stderr)
                live = LiveAgents(loaded, history.events)
    result = replay_history(
        history,
        at=args.at,
        reexecute_agents=args.reexecute,
        plan=args.plan,
        no_code=args.no_code,
        agents=live,
    )
    data = result.to_json()
    recorded_because = getattr(result, "contracts_source", None)
    if not args.plan:
        data["contracts"] = "modules" if recorded_because is None else "recorded schemas"
    if args.json:
        print_json(data)
    elif isinstance(result, WhatIfResult):
        print_what_if(data, source=args.target, plan=args.plan)
    else:
        if recorded_because is not None:
            print(f"checked against the contract schemas recorded in the run ({recorded_because})")
        print_replay(data, source=args.target, mode="re-execution" if args.reexecute else "replay")
    return exits.for_outcome(result.ok)


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
    # from a run file, into a store not made yet; a goal's fork needs the goal's store
    store = store_from(args, creates=os.path.isfile(args.target))
    history = _history(args)
    goal = fork_from(store, history.events, at=args.at, goal_id=args.goal_id, run=args.run)
    if args.json:
        print_json(
            {"goal_id": goal.id, "forked_from": history.goal_id, "at": args.at}
            | ({k: v for k, v in goal_json(goal).items() if k != "goal_id"} if args.run else {})
        )
    elif args.run:
        print(goal.id)
        print_goal(goal, task_durations(store, goal.id))
    else:
        print(goal.id)
    return exit_code(goal) if args.run else exits.OK


def _export(args: argparse.Namespace) -> int:
    store = store_from(args)
    if args.output in (None, "-"):
        export_goal(store, args.goal, sys.stdout)
        return exits.OK
    try:
        os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
        count = export_goal(store, args.goal, args.output)
    except OSError as exc:
        raise CommandError(f"-o {args.output}: {exc.strerror or exc}") from None
    print(f"exported {count} events of goal {args.goal} to {args.output}", file=sys.stderr)
    return exits.OK


def _import(args: argparse.Namespace) -> int:
    run = import_file(args.file, lambda: store_from(args, creates=True))
    if args.json:
        print_json({"goal_id": run.goal_id, "events": len(run.events)})
    else:
        print(run.goal_id)
    return exits.OK
