"""Record the golden run files again: `python -m tests.golden.regenerate` from the repo root.

Do this only when a change *must* alter decisions (and say so in the commit): the golden tests
failing is the reminder that recorded histories no longer replay under the new rules.

`python -m tests.golden.regenerate --rules2` writes only the histories recorded under decision
rules 2 (`*-rules2.jsonl`: the shapes whose wording rules 2 changed), `--rules3` only those
recorded under rules 3 (`*-rules3.jsonl`: every shape, since rules 3 records a dispatch and the
readiness before it as one event), `--rules4` the one rules 4 changed (`joined-rules4.jsonl`: a
human's fragment for an escalated planner), `--rules5` the two rules 5 changed
(`budgeted-rules5.jsonl`, `crowded-rules5.jsonl`: a breach the next estimate causes, a rejected
fragment's problems listed to 50), `--rules6` the one rules 6 changed (`undriven-rules6.jsonl`: a
human's retry recorded while no runner drove the goal). The others were recorded by earlier releases
(release 0.1's topics, `Started` v2, rules 1) and are kept as they are: they are what proves old
histories still load and replay.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from baton.domain.goal import Goal
from baton.history.runfile import write_run
from baton.runtime.loading import load_plan_file
from baton.runtime.service import resolve_task, resume_goal, start_goal
from baton.store.eventstore import BatonStore, open_store
from tests import agents
from tests.replay_agents import SECRET
from tests.replay_support import SHAPES, decided_under
from tests.support import run

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

CRASH_PLAN = """\
version: 1
name: crashy
agents: {step: 'tests.agents:logged_step', book: 'tests.agents:logged_book'}
tasks:
  - {id: a, agent: step, input: {text: $goal.text}}
  - {id: b, agent: book, side_effects: idempotent, input: {text: $a.text}}
  - {id: c, agent: step, input: {text: $b.text}}
"""


def _export(store: BatonStore, goal_id: str, name: str) -> None:
    with (HERE / f"{name}.jsonl").open("w", encoding="utf-8") as out:
        write_run(list(store.events(goal_id)), out)


def _crashed(url: str, workdir: Path) -> None:
    plan = workdir / "crashy.yaml"
    plan.write_text(CRASH_PLAN)
    env = {**os.environ, "BATON_STORE": url, "BATON_TEST_DIR": str(workdir)}
    cli = [sys.executable, "-m", "baton.cli"]
    subprocess.run([*cli, "run", str(plan), "--input", '{"text": "go"}', "--goal-id", "crashed"],
                   cwd=ROOT, env={**env, "BATON_CRASH_AT_EVENT": "5"}, check=False)  # b in flight
    subprocess.run([*cli, "resume", "crashed"], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)


# Decomposition: a rejected fragment retried, an accepted one, a map with an abandoned element.
DECOMPOSED_PLAN = {
    "version": 1, "name": "decomposed",
    "agents": {"planner": "tests.decompose_agents:planner", "upper": "tests.agents:upper",
               "fails_on_x": "tests.decompose_agents:fails_on_x",
               "collect": "tests.decompose_agents:collect"},
    "tasks": [
        {"id": "plan", "agent": "planner", "input": {"fragments": "$goal.fragments"},
         "expands": {"result": "tests.decompose_agents:Outline", "may_use": ["upper"]},
         "retry": {"max_attempts": 2, "backoff_s": 0}},
        {"id": "each", "agent": "fails_on_x", "for_each": "$plan.items", "as": "item",
         "input": {"text": "$item"}, "on_failure": "abandon", "retry": {"max_attempts": 1}},
        {"id": "all", "agent": "collect", "input": {"texts": "$each"}},
    ],
    "output": {"summary": "$plan.summary"},
}
DECOMPOSED_INPUT = {"fragments": [
    {"tasks": [{"id": "a", "agent": "collect", "input": {"texts": []}}],
     "output": {"items": [], "summary": "$a.text"}},
    {"tasks": [{"id": "a", "agent": "upper", "input": {"text": "$goal.text"}}],
     "output": {"items": ["p", "x", "q"], "summary": "$a.text"}},
], "text": "go"}


def decomposed(store: BatonStore, goal_id: str = "decomposed") -> Goal:
    return run(store, DECOMPOSED_PLAN, DECOMPOSED_INPUT, goal_id=goal_id, concurrency=1)


def _decomposed(store: BatonStore) -> None:
    _export(store, decomposed(store).id, "decomposed")
    research = load_plan_file(str(ROOT / "examples/research/plan.yaml"))
    question = json.loads((ROOT / "examples/research/question.json").read_text())
    start_goal(store, research, question, goal_id="research")  # waits for approval to publish
    resolve_task(store, "research", "publish", action="approve", reason="read it", by="ana")
    _export(store, resume_goal(store, "research").id, "research")


# A planner escalated for want of a fragment, given one by a human (decision rules 4).
JOINED_PLAN = {
    "version": 1, "name": "joined",
    "agents": {"planner": "tests.decompose_agents:planner", "upper": "tests.agents:upper"},
    "tasks": [
        {"id": "plan", "agent": "planner", "input": {"fragments": "$goal.fragments"},
         "expands": {"result": "tests.decompose_agents:Outline"}, "on_failure": "escalate",
         "retry": {"max_attempts": 1}},
        {"id": "after", "agent": "upper", "input": {"text": "$plan.summary"}},
    ],
    "output": {"text": "$after.text"},
}
JOINED_INPUT = {"fragments": [
    {"tasks": [{"id": "a", "agent": "nobody", "input": {"text": "x"}}],
     "output": {"items": [], "summary": "$a.text"}},
]}
BY_HAND = {"tasks": [{"id": "a", "agent": "upper", "input": {"text": "by hand"}}],
           "output": {"items": ["$a.text"], "summary": "$a.text"}}


def joined(store: BatonStore, goal_id: str = "joined") -> Goal:
    run(store, JOINED_PLAN, JOINED_INPUT, goal_id=goal_id)  # the fragment is rejected: escalated
    resolve_task(store, goal_id, "plan", action="output", output=BY_HAND,
                 reason="wrote the fragment", by="ana")
    return resume_goal(store, goal_id)


# A budget the next task's estimate would pass, and a fragment of 60 bad tasks (rules 5).
BUDGETED_PLAN = {
    "version": 1, "name": "budgeted", "agents": {"costly": "tests.agents:costly"},
    "budget": {"max_tokens": 250},
    "tasks": [{"id": "t0", "agent": "costly", "input": {"text": "$goal.text"},
               "estimate": {"tokens": 100}},
              *({"id": f"t{i}", "agent": "costly", "input": {"text": f"$t{i - 1}.text"},
                 "estimate": {"tokens": 100}} for i in (1, 2))],
}
CROWDED_INPUT = {"fragments": [
    {"tasks": [{"id": f"t{i}", "agent": "nobody", "input": {"text": "x"}} for i in range(60)],
     "output": {"items": [], "summary": "$t0.text"}},
]}


def budgeted(store: BatonStore, goal_id: str = "budgeted") -> Goal:
    return run(store, BUDGETED_PLAN, {"text": "go"}, goal_id=goal_id)


def crowded(store: BatonStore, goal_id: str = "crowded") -> Goal:
    plan = {**JOINED_PLAN, "name": "crowded", "tasks": [
        {**JOINED_PLAN["tasks"][0], "on_failure": "fail"}, JOINED_PLAN["tasks"][1]]}
    return run(store, plan, CROWDED_INPUT, goal_id=goal_id)


# A human's retry recorded while no runner drove the goal (rules 6): the runner died with `side`
# in flight just after unsafe `a` escalated; `resolve --retry` records no dispatch, the next
# runner's `RunResumed` re-runs `side` and dispatches `a`. Made through the CLI: the kill is real.
UNDRIVEN_PLAN = {
    "version": 1, "name": "undriven",
    "agents": {name: f"tests.agents:{name}" for name in ("logged_flaky", "logged_hangs_once")},
    "tasks": [
        {"id": "a", "agent": "logged_flaky", "input": {"text": "$goal.text"},
         "on_failure": "escalate", "retry": {"max_attempts": 1}, "side_effects": "unsafe"},
        {"id": "side", "agent": "logged_hangs_once", "input": {"text": "$goal.text"}},
    ],
    "output": {"a": "$a.text", "side": "$side.text"},
}


def undriven(url: str, workdir: Path, goal_id: str) -> None:
    plan = workdir / "undriven.yaml"
    plan.write_text(json.dumps(UNDRIVEN_PLAN))  # JSON is YAML
    env = {**os.environ, "BATON_STORE": url, "BATON_TEST_DIR": str(workdir)}
    cli = [sys.executable, "-m", "baton.cli"]
    subprocess.run([*cli, "run", str(plan), "--input", '{"text": "x"}', "--goal-id", goal_id],
                   cwd=ROOT, env={**env, "BATON_CRASH_AT_EVENT": "5"}, check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # a escalated, side runs
    subprocess.run([*cli, "resolve", goal_id, "a", "--retry", "--reason", "upstream back",
                    "--by", "ana"], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    subprocess.run([*cli, "resume", goal_id], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)


MADE = {**SHAPES, "decomposed": decomposed, "joined": joined, "budgeted": budgeted,
        "crowded": crowded}
BY_CLI = {"undriven": undriven}  # made by processes of today's Baton: today's rules
RULES_SHAPES = {
    2: ("escalated", "gated"),  # a human's retry; an answered question
    # a dispatch holds its readiness
    3: tuple(name for name in MADE if name not in ("joined", "budgeted", "crowded")),
    4: ("joined",),  # a human's fragment for an escalated planner: it runs as its tasks
    5: ("budgeted", "crowded"),  # a breach the estimate causes; a fragment's 50 problems
    6: ("undriven",),  # a human's retry while no runner drives: the next runner dispatches it
}


def record_under(rules: int) -> None:
    """The shapes a change of decision rules `rules` concerns, recorded under those rules."""
    with tempfile.TemporaryDirectory() as tmp, decided_under(rules):
        url = f"sqlite:///{tmp}/golden.db"
        store = open_store(url)
        for name in RULES_SHAPES[rules]:
            agents.CALLS.clear()
            named = f"{name}-rules{rules}"
            if name in BY_CLI:
                BY_CLI[name](url, Path(tmp), named)
                _export(store, named, named)
            else:
                _export(store, MADE[name](store, named).id, named)
        store.close()


def main() -> None:
    for rules in RULES_SHAPES:
        if f"--rules{rules}" in sys.argv[1:]:
            record_under(rules)
            print(f"rules-{rules} golden run files written to", HERE)
            return
    for rules in RULES_SHAPES:
        record_under(rules)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/golden.db"
        store = open_store(url)
        for name, make in SHAPES.items():
            agents.CALLS.clear()
            _export(store, make(store).id, name)
        travel = load_plan_file(str(ROOT / "examples/travel/plan.yaml"))
        trip = json.loads((ROOT / "examples/travel/trip.json").read_text())
        _export(store, start_goal(store, travel, trip, goal_id="travel").id, "travel")
        secret_plan = {
            "version": 1, "name": "secrets",
            "agents": {"login": "tests.replay_agents:login_dict",
                       "use": "tests.replay_agents:use_session"},
            "input": "tests.replay_agents:Login",
            "tasks": [
                {"id": "login", "agent": "login",
                 "input": {"user": "$goal.user", "api_key": "$goal.api_key"}},
                {"id": "use", "agent": "use",
                 "input": {"user": "$login.user", "token": "$login.token"}},
            ],
        }
        _export(store, run(store, secret_plan, {"user": "ada", "api_key": SECRET},
                           goal_id="secrets").id, "secrets")
        _decomposed(store)
        store.close()
        _crashed(url, Path(tmp))
        store = open_store(url)
        _export(store, "crashed", "crashed")
        store.close()
    print("golden run files written to", HERE)


if __name__ == "__main__":
    main()
