"""Decision rules 3 against rules 2 on random plans and random observations (seeded): the same
decisions, in the same order, to the same state, with each rules-3 dispatch that holds its
readiness read as the `TaskReady` and `TaskDispatched` it stands for.

Plans mix chains, joins, a map with a task beside it, approvals, clarifications, confidence
thresholds, estimates and budgets (attempts, tokens, cost, deadline), retries with and without
backoff, side effects; observations are agents returning, raising, timing out or asking, humans
retrying, abandoning, answering, approving or supplying outputs, the clock, runners resuming
with another concurrency, cancels. (Written by a reviewer to find the map and approval ordering
bug fixed in `_dispatch_as_ready`; 1,500 seeds were clean after the fix.)
"""

from __future__ import annotations

import dataclasses
import random
import traceback
from typing import Any

import pytest

from baton.domain.goal import Goal
from baton.domain.history import kind_of, payload
from baton.domain.lifecycle import GOAL_FINAL
from tests.sim import Sim

A = "tests.agents"
D = "tests.decompose_agents"
SEEDS_PER_BATCH = 50


def gen_plan(rng: random.Random) -> dict[str, Any]:
    tasks: list[dict[str, Any]] = []
    agents = {"upper": f"{A}:upper", "scored": f"{A}:scored", "join": f"{A}:join",
              "split": f"{D}:split", "collect": f"{D}:collect"}
    n = rng.randint(2, 7)
    ids: list[str] = []
    text_ids: list[str] = []  # tasks producing {"text"}
    if rng.random() < 0.35:  # a map shape at the start
        tasks.append({"id": "split", "agent": "split", "input": {"text": "$goal.text"}})
        m: dict[str, Any] = {"id": "each", "agent": "upper", "for_each": "$split.items",
                             "as": "item", "input": {"text": "$item"}}
        if rng.random() < 0.3:
            m["on_failure"] = rng.choice(["abandon", "escalate"])
        if rng.random() < 0.3:
            m["estimate"] = {"tokens": rng.choice([50, 100]), "cost_usd": 0.0}
        tasks.append(m)
        ids += ["split", "each"]
        if rng.random() < 0.7:
            tasks.append({"id": "sy", "agent": "upper", "input": {"text": "$split.summary"}})
            ids.append("sy")
            text_ids.append("sy")
        if rng.random() < 0.5:
            tasks.append({"id": "coll", "agent": "collect", "input": {"texts": "$each"}})
            ids.append("coll")
            text_ids.append("coll")
    for i in range(n):
        tid = f"t{i}"
        spec: dict[str, Any] = {"id": tid}
        r = rng.random()
        if len(text_ids) >= 2 and r < 0.2:
            left, right = rng.sample(text_ids, 2)
            spec["agent"] = "join"
            spec["input"] = {"left": f"${left}.text", "right": f"${right}.text"}
        else:
            src = rng.choice(["$goal.text"] + [f"${t}.text" for t in text_ids])
            spec["agent"] = "scored" if rng.random() < 0.15 else "upper"
            spec["input"] = {"text": src}
            if spec["agent"] == "scored":
                spec["min_confidence"] = 0.5
                spec["on_low_confidence"] = rng.choice(["retry", "escalate"])
        if ids and rng.random() < 0.2:
            spec["after"] = [rng.choice(ids)]
        if rng.random() < 0.6:
            spec["retry"] = {"max_attempts": rng.randint(1, 3),
                             "backoff_s": rng.choice([0, 0, 1, 5]), "jitter": rng.choice([0, 0.1])}
        spec["on_failure"] = rng.choice(["fail", "escalate", "escalate", "abandon"])
        if rng.random() < 0.2:
            spec["approval"] = "required"
        if rng.random() < 0.3:
            spec["estimate"] = {"tokens": rng.choice([50, 100, 200]),
                                "cost_usd": rng.choice([0.0, 0.01])}
        if rng.random() < 0.3:
            spec["side_effects"] = rng.choice(["idempotent", "unsafe"])
        if rng.random() < 0.2:
            spec["max_clarifications"] = rng.randint(0, 2)
        tasks.append(spec)
        ids.append(tid)
        text_ids.append(tid)
    data: dict[str, Any] = {"version": 1, "name": "fz",
                            "agents": {a: agents[a] for a in sorted({t["agent"] for t in tasks})},
                            "tasks": tasks}
    budget: dict[str, Any] = {}
    if rng.random() < 0.3:
        budget["max_attempts"] = rng.randint(2, 14)
    if rng.random() < 0.3:
        budget["max_tokens"] = rng.choice([150, 300, 500, 1000])
    if rng.random() < 0.15:
        budget["max_cost_usd"] = rng.choice([0.02, 0.05])
    if rng.random() < 0.15:
        budget["deadline_s"] = rng.choice([5, 20, 60])
    if budget and rng.random() < 0.5:
        budget["on_exhausted"] = "escalate"
    if budget:
        data["budget"] = budget
    return data


def unfold(events: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for e in events:
        if e.observation:
            continue
        f = payload(e)
        f.pop("originator_topic", None)
        k = kind_of(e)
        if k == "TaskDispatched":
            ready = f.pop("ready", None)
            if ready is not None:
                out.append(("TaskReady", {"timestamp": f["timestamp"], "task": f["task"],
                                          **ready}))
        out.append((k, f))
    return out


def per_task(dec: list[tuple[str, dict[str, Any]]]) -> dict[Any, list[Any]]:
    d: dict[Any, list[Any]] = {}
    for k, f in dec:
        d.setdefault(f.get("task"), []).append((k, sorted(f.items(), key=lambda kv: kv[0])))
    return d


def global_no_ready(dec):
    return [(k, f.get("task"), f.get("attempt")) for k, f in dec if k != "TaskReady"]


def state_of(goal: Goal) -> dict[str, Any]:
    s = goal.state
    tasks = {tid: dataclasses.asdict(t) for tid, t in s.tasks.items()}
    skip = {"tasks", "plan", "plan_file", "rules"}
    g = {f.name: getattr(s, f.name) for f in dataclasses.fields(s) if f.name not in skip}
    g["by_status"] = {k: sorted(v) for k, v in g["by_status"].items() if v}
    g["candidates"] = sorted(g["candidates"])
    g["judgeable"] = sorted(g["judgeable"])
    g["joining"] = sorted(g["joining"])
    g["plan_order"] = [t.id for t in s.plan.tasks]
    return {"goal": g, "tasks": tasks}


class Pair:
    """The same goal under rules 2 and rules 3, observed alike; every event each recorded."""

    def __init__(self, data: dict[str, Any], concurrency: int, goal_id: str,
                 goal_input: Any) -> None:
        self.sims = {rules: Sim(data, goal_input, concurrency=concurrency, goal_id=goal_id,
                                rules=rules) for rules in (2, 3)}
        self.goals = {rules: sim.goal for rules, sim in self.sims.items()}
        self.events = {rules: list(goal.collect_events()) for rules, goal in self.goals.items()}

    def observe(self, kind: str, seconds: float, **fields: Any) -> None:
        for rules, sim in self.sims.items():
            sim.observe(kind, seconds, **fields)
            self.events[rules] += sim.goal.collect_events()

    def compare(self) -> str | None:
        """The first difference between the two goals, or None."""
        d2, d3 = unfold(self.events[2]), unfold(self.events[3])
        p2, p3 = per_task(d2), per_task(d3)
        for t in sorted(set(p2) | set(p3), key=str):
            a, b = p2.get(t, []), p3.get(t, [])
            if a != b:
                at = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                          min(len(a), len(b)))
                return f"task {t!r}, decision {at}: rules 2 {a[at:at + 1]}, rules 3 {b[at:at + 1]}"
        g2, g3 = global_no_ready(d2), global_no_ready(d3)
        if g2 != g3:
            at = next((i for i, (x, y) in enumerate(zip(g2, g3, strict=False)) if x != y),
                      min(len(g2), len(g3)))
            return f"order, decision {at}: rules 2 {g2[at:at + 4]}, rules 3 {g3[at:at + 4]}"
        s2, s3 = state_of(self.goals[2]), state_of(self.goals[3])
        for k in s2["goal"]:
            if s2["goal"][k] != s3["goal"][k]:
                return f"goal.{k}: {s2['goal'][k]} vs {s3['goal'][k]}"
        for t in s2["tasks"]:
            for k in s2["tasks"][t]:
                if s2["tasks"][t][k] != s3["tasks"][t].get(k):
                    return f"task {t}.{k}: {s2['tasks'][t][k]!r} vs {s3['tasks'][t][k]!r}"
        return None


def choose(rng: random.Random, pair: Pair) -> tuple[str, float, dict[str, Any]] | None:
    g = pair.goals[2]
    s = g.state
    if s.status in GOAL_FINAL:
        return None
    opts: list[tuple[str, float, dict[str, Any]]] = []
    running = [t for t in s.with_status("running") if t not in s.joining
               and s.tasks[t].in_flight is not None and s.tasks[t].outcome is None]
    for tid in running:
        t = s.tasks[tid]
        spec = s.plan.task_map[tid]
        att = t.in_flight
        agent = spec.agent
        if agent == "split":
            k = rng.randint(0, 3)
            items = [f"i{j}" for j in range(k)]
            good = {"items": items, "summary": f"{k} items"}
        elif agent == "scored":
            good = {"text": "x", "confidence": rng.choice([0.9, 0.3])}
        else:
            good = {"text": f"{tid}-{att}"}
        usage = None
        if rng.random() < 0.5:
            usage = {"tokens": rng.choice([10, 60, 150]),
                     "cost_usd": rng.choice([0.0, 0.005, 0.02])}
        w = 4
        opts += [("AgentReturned", rng.choice([0, 1, 3]),
                  dict(task=tid, attempt=att, output=good, duration_ms=1.0, usage=usage))] * w
        opts.append(("AgentReturned", 1, dict(task=tid, attempt=att, output={"bad": 1},
                                              duration_ms=1.0, usage=usage)))
        opts += [("AgentRaised", rng.choice([0, 1]), dict(task=tid, attempt=att,
                  error_type="RuntimeError", message="boom", duration_ms=1.0, usage=usage,
                  retry_after_s=rng.choice([None, None, 3.0])))] * 2
        opts.append(("AgentTimedOut", 1, dict(task=tid, attempt=att, timeout_s=5.0)))
        if rng.random() < 0.3:
            opts.append(("AgentReturned", 0, dict(task=tid, attempt=att,
                                                  output={"clarification": "which?"},
                                                  duration_ms=1.0)))
    def human(action: str, **more: Any) -> tuple[str, float, dict[str, Any]]:
        return ("HumanResolved", 1, dict(task=tid, action=action, reason="r", by="ana", **more))

    for tid in s.with_status("escalated"):
        t = s.tasks[tid]
        if t.resolution is not None:
            continue
        wf = t.waiting_for
        if wf == "approval":
            opts += [human("approve")] * 3 + [human("reject")]
        elif wf == "clarification":
            opts += [("HumanAnswered", 1, dict(task=tid, answer="this", by="bo"))] * 3
            opts.append(human("abandon"))
        else:
            if tid not in s.children:
                opts += [human("retry")] * 3
            opts.append(human("abandon"))
            spec = s.plan.task_map[tid]
            if spec.agent == "upper" and spec.for_each is None:
                opts.append(human("output", output={"text": "human"}))
    opts.append(("ClockTicked", rng.choice([0.5, 2, 6, 30]), {}))
    if rng.random() < 0.15 or s.status == "waiting":
        opts.append(("RunResumed", 1, dict(concurrency=rng.choice([s.concurrency, 1, 3]))))
    if rng.random() < 0.02:
        opts.append(("CancelRequested", 1, dict(reason="stop", by="ops")))
    return rng.choice(opts)


def run_one(seed: int, steps: int = 60, verbose: bool = False) -> str | None:
    rng = random.Random(seed)
    data = gen_plan(rng)
    conc = rng.choice([1, 1, 2, 3, 8])
    try:
        pair = Pair(data, conc, f"g{seed}", {"text": "a,b"})
    except Exception as exc:
        return None if "Plan" in type(exc).__name__ or "plan" in str(exc) else f"START {exc!r}"
    why = pair.compare()
    if why:
        return why
    for step in range(steps):
        c = choose(rng, pair)
        if c is None:
            break
        kind, secs, fields = c
        if verbose:
            print(step, kind, fields)
        try:
            pair.observe(kind, secs, **fields)
        except Exception as exc:
            return f"EXC at step {step} {kind} {fields}: {exc!r}\n{traceback.format_exc()}"
        why = pair.compare()
        if why:
            return f"step {step} after {kind} {fields}: {why}"
    return None


@pytest.mark.parametrize("batch", range(4))
def test_rules_3_decides_as_rules_2_on_random_goals(batch: int) -> None:
    seeds = range(batch * SEEDS_PER_BATCH, (batch + 1) * SEEDS_PER_BATCH)
    differences = {seed: why for seed in seeds if (why := run_one(seed)) is not None}
    assert not differences, differences
