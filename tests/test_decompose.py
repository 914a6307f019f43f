"""Decomposition by agents (docs/reference.md, "Planner tasks and maps"), on SQLite and PostgreSQL:
a planner's fragment is held to every check `baton validate` makes before any of it runs, and
joins the goal when it passes; a map runs one instance per element of a list known at run time.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from baton.domain.decide import settle
from baton.domain.errors import PlanError
from baton.domain.goal import Goal
from baton.store.eventstore import BatonStore
from tests import decompose_agents
from tests.replay_support import decided_under
from tests.support import events_of, load, run

A = "tests.agents"
D = "tests.decompose_agents"
AGENTS = {
    "planner": f"{D}:planner",
    "nested": f"{D}:nested_planner",
    "upper": f"{A}:upper",
    "exclaim": f"{A}:exclaim",
    "count": f"{A}:count",
    "join": f"{A}:join",
    "collect": f"{D}:collect",
    "split": f"{D}:split",
    "fails_on_x": f"{D}:fails_on_x",
}


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    decompose_agents.CONTEXTS.clear()
    yield


def planner_plan(*after: dict[str, Any], retries: int = 1, **extra: Any) -> dict[str, Any]:
    """A planner `plan` (result Outline) reading its script from the goal input, then `after`."""
    expands = {"result": f"{D}:Outline", **extra.pop("expands", {})}
    plan_task = {
        "id": "plan",
        "agent": "planner",
        "input": {"fragments": "$goal.fragments"},
        "expands": expands,
        "retry": {"max_attempts": retries, "backoff_s": 0},
        **extra.pop("plan_task", {}),
    }
    return {
        "version": 1,
        "name": "decompose",
        "agents": extra.pop("agents", AGENTS),
        "tasks": [
            {"id": "first", "agent": "upper", "input": {"text": "$goal.text"}},
            plan_task,
            *after,
        ],
        **extra,
    }


def fragment(*tasks: dict[str, Any], output: Any = None) -> dict[str, Any]:
    return {"tasks": list(tasks), "output": output or {"items": ["a"], "summary": "$a.text"}}


GOOD = fragment(
    {"id": "a", "agent": "upper", "input": {"text": "$goal.text"}},
    {"id": "b", "agent": "join", "input": {"left": "$a.text", "right": "$first.text"}},
    output={"items": ["$a.text", "$b.text"], "summary": "$b.text"},
)
READS_SUMMARY = {"id": "after", "agent": "exclaim", "input": {"text": "$plan.summary"}}


def go(store: BatonStore, data: dict[str, Any], *fragments: Any, **goal: Any) -> Any:
    return run(store, data, {"text": "hi", "fragments": list(fragments), **goal})


# --- planners ---------------------------------------------------------------------------------


def test_an_accepted_fragment_joins_the_goal_and_its_output_is_the_planners(
    store: BatonStore,
) -> None:
    goal = go(store, planner_plan(READS_SUMMARY, output="$after.text"), GOOD)
    state = goal.state
    assert state.status == "completed", state.reason
    assert [state.tasks[t].status for t in ("plan/a", "plan/b")] == ["succeeded", "succeeded"]
    # they read the goal, an existing task and each other
    assert state.tasks["plan/b"].output == {"text": "HI+HI"}
    assert state.tasks["plan"].output == {"items": ["HI", "HI+HI"], "summary": "HI+HI"}
    assert state.output == "HI+HI!"
    extended = events_of(store, goal.id, "PlanExtended")[0]
    assert extended.added == ["plan/a", "plan/b"]
    assert extended.fragment == GOOD and extended.rule == "expands.accepted"
    assert "contract types" in extended.checks and "limits" in extended.checks
    accepted = [e for e in events_of(store, goal.id, "OutputAccepted") if e.task == "plan"]
    assert accepted[0].rule == "expands.result"
    # nothing of the fragment ran before it was accepted
    kinds = [(type(e).__name__, getattr(e, "task", None)) for e in store.events(goal.id)]
    first_added = min(i for i, (_, t) in enumerate(kinds) if t and t.startswith("plan/"))
    assert kinds.index(("PlanExtended", "plan")) < first_added
    # the planner held no worker slot while its fragment ran: with concurrency 1 it completes
    narrow = run(store, planner_plan(), {"text": "hi", "fragments": [GOOD]}, concurrency=1)
    assert narrow.state.status == "completed"


HIDES_GOAL = fragment(
    {"id": "goal", "agent": "upper", "input": {"text": "from a task"}},
    {"id": "b", "agent": "upper", "input": {"text": "$goal.text"}},
    output={"items": ["$b.text"], "summary": "$b.text"},
)


REJECTED = [
    pytest.param(
        HIDES_GOAL, "tasks[plan/goal]: 'goal' is reserved for $goal", id="hides-goal"
    ),
    pytest.param(
        fragment({"id": "a", "agent": "nobody", "input": {"text": "$goal.text"}}),
        "tasks[plan/a].agent: agent 'nobody' is not in the plan's agents allowlist",
        id="unknown-agent",
    ),
    pytest.param(
        fragment({"id": "a", "agent": "upper", "input": {"text": "$first.value"}}),
        "tasks[plan/a].input.text: $first.value: Text (output of 'first') has no field 'value'",
        id="unknown-field",
    ),
    pytest.param(
        fragment(
            {"id": "n", "agent": "count", "input": {"text": "$goal.text"}},
            {"id": "a", "agent": "upper", "input": {"text": "$n.value"}},
        ),
        "tasks[plan/a].input.text: $plan/n.value is int, which can never satisfy str",
        id="contract-type",
    ),
    pytest.param(
        fragment(
            {"id": "a", "agent": "upper", "input": {"text": "$c.text"}},
            {"id": "c", "agent": "upper", "input": {"text": "$a.text"}},
        ),
        "dependency cycle: plan/a -> plan/c -> plan/a",
        id="cycle",
    ),
    pytest.param(
        fragment({"id": "a", "agent": "upper", "input": {"text": "$plan.summary"}}),
        "dependency cycle",
        id="reads-its-planner",
    ),
    pytest.param(
        fragment({"id": "a", "agent": "upper", "input": {}}),
        "tasks[plan/a].input.text: required by Text but not bound",
        id="unbound-required",
    ),
    pytest.param(
        fragment({"id": "a", "agent": "upper", "input": {"text": 5}}),
        "tasks[plan/a].input.text: literal 5 can never satisfy str",
        id="literal-type",
    ),
    pytest.param(
        fragment({"id": "a", "agent": "upper", "input": {"text": "$nowhere.text"}}),
        "tasks[plan/a].input.text: $nowhere.text: no task 'nowhere'",
        id="unknown-task",
    ),
    pytest.param(
        fragment({"id": "a", "agent": "upper", "input": {"text": "$goal.text"}},
                 output={"items": ["$a.text"]}),
        "output.summary: required by Outline but not bound",
        id="output-misses-result",
    ),
    pytest.param(
        fragment({"id": "a", "agent": "upper", "input": {"text": "$goal.text"}},
                 output={"items": "$a.text", "summary": "$a.text"}),
        "output.items: $plan/a.text is str, which can never satisfy list[str]",
        id="output-type",
    ),
    pytest.param(
        {"tasks": [{"id": "a", "input": {"text": "$goal.text"}}], "output": {}},
        "tasks[a].agent: Field required",
        id="syntax",
    ),
    pytest.param(
        fragment({"id": "a b", "agent": "upper", "input": {"text": "$goal.text"}}),
        "tasks[a b].id: String should match pattern",
        id="bad-id",
    ),
]


@pytest.mark.parametrize(("bad", "problem"), REJECTED)
def test_a_fragment_failing_a_static_check_is_rejected_before_anything_runs(
    store: BatonStore, bad: dict[str, Any], problem: str
) -> None:
    goal = go(store, planner_plan(), bad)
    assert goal.state.status == "failed"
    rejected = events_of(store, goal.id, "OutputRejected")[0]
    assert rejected.rule == "expands.check"
    assert any(problem in error for error in rejected.errors), rejected.errors
    assert not any(t.startswith("plan/") for t in goal.state.tasks)
    assert not events_of(store, goal.id, "PlanExtended")
    assert goal.state.tasks["plan"].status == "failed"


def test_a_fragment_task_named_goal_ran_under_rules_3(store: BatonStore) -> None:
    """Rules 1-3 did not refuse a fragment task named `goal` (inside the fragment `$goal` read
    it): a goal decided under them keeps its history; rules 4 refuse it (REJECTED)."""
    with decided_under(3):
        goal = go(store, planner_plan(), HIDES_GOAL)
    assert goal.state.status == "completed", goal.state.reason
    assert goal.state.tasks["plan/b"].output == {"text": "FROM A TASK"}


def test_every_problem_is_listed_and_handed_to_the_next_attempt(store: BatonStore) -> None:
    bad = fragment(
        {"id": "a", "agent": "nobody", "input": {"text": "$goal.text"}},
        {"id": "b", "agent": "upper", "input": {"text": 5}},
    )
    goal = go(store, planner_plan(retries=2), bad, GOOD)
    assert goal.state.status == "completed", goal.state.reason
    rejected = events_of(store, goal.id, "OutputRejected")[0]
    assert len(rejected.errors) == 2
    assert [c.number for c in decompose_agents.CONTEXTS] == [1, 2]
    handed = " ".join(decompose_agents.CONTEXTS[1].previous_errors)
    assert "'nobody'" in handed and "literal 5" in handed
    retried = events_of(store, goal.id, "RetryScheduled")[0]
    assert retried.failure.startswith("expands.check: ")


def test_a_fragment_rejected_to_the_last_attempt_follows_on_failure(store: BatonStore) -> None:
    bad = fragment({"id": "a", "agent": "nobody", "input": {"text": "$goal.text"}})
    goal = go(store, planner_plan(retries=2, plan_task={"on_failure": "escalate"}), bad)
    assert goal.state.status == "waiting"
    assert goal.state.tasks["plan"].status == "escalated"
    assert len(events_of(store, goal.id, "OutputRejected")) == 2


def test_may_use_narrows_the_allowlist(store: BatonStore) -> None:
    data = planner_plan(expands={"may_use": ["upper"]})
    goal = go(store, data, GOOD)  # GOOD uses join too
    errors = events_of(store, goal.id, "OutputRejected")[0].errors
    assert errors == ["tasks[plan/b].agent: agent 'join' is not in tasks[plan].expands.may_use "
                      "(upper)"]


def test_downstream_reads_of_the_planner_are_typed_by_result_at_validate_time() -> None:
    bad = {"id": "after", "agent": "exclaim", "input": {"text": "$plan.items"}}
    with pytest.raises(PlanError) as caught:
        load(planner_plan(bad))
    assert "tasks[after].input.text: $plan.items is list[str], which can never satisfy str" in (
        str(issue) for issue in caught.value.issues
    )
    missing = {"id": "after", "agent": "exclaim", "input": {"text": "$plan.nothing"}}
    with pytest.raises(PlanError, match=r"Outline \(expands.result of 'plan'\) has no field"):
        load(planner_plan(missing))
    with pytest.raises(PlanError, match=r"tasks\[plan\]\.expands\.result: tests.nowhere:X"):
        load(planner_plan(expands={"result": "tests.nowhere:X"}))
    with pytest.raises(PlanError, match=r"expands.may_use: agent 'ghost' is not in the plan"):
        load(planner_plan(expands={"may_use": ["ghost"]}))


# --- limits and budgets -----------------------------------------------------------------------


def test_max_tasks_counts_every_task_added_goal_wide(store: BatonStore) -> None:
    data = planner_plan(limits={"max_tasks": 1})
    goal = go(store, data, GOOD)
    errors = events_of(store, goal.id, "OutputRejected")[0].errors
    assert errors == ["limits.max_tasks: 2 more tasks would make 2 added at run time, over "
                      "max_tasks 1"]
    # map instances count too: 2 fragment tasks + a map of 2 is 4
    mapped = planner_plan(
        {"id": "each", "agent": "upper", "for_each": "$plan.items", "as": "item",
         "input": {"text": "$item"}},
        limits={"max_tasks": 3},
    )
    goal = go(store, mapped, GOOD)
    assert goal.state.status == "failed"
    assert goal.state.tasks["each"].last_error.startswith("limits.max_tasks: 2 more tasks")


NESTED = fragment(
    {"id": "sub", "agent": "nested", "input": {"fragments": "$goal.inner"},
     "expands": {"result": f"{D}:Outline"}},
    output={"items": "$sub.items", "summary": "$sub.summary"},
)
INNER = fragment({"id": "x", "agent": "upper", "input": {"text": "$goal.text"}},
                 output={"items": ["$x.text"], "summary": "inner"})


def test_nested_planners_are_bounded_by_max_depth(store: BatonStore) -> None:
    deep = go(store, planner_plan(READS_SUMMARY, limits={"max_depth": 2}), NESTED,
              inner=[INNER])
    assert deep.state.status == "completed", deep.state.reason
    assert deep.state.tasks["plan/sub/x"].output == {"text": "HI"}
    assert deep.state.tasks["plan"].output == {"items": ["HI"], "summary": "inner"}
    shallow = go(store, planner_plan(READS_SUMMARY), NESTED, inner=[INNER])  # max_depth 1
    errors = events_of(store, shallow.id, "OutputRejected")[0].errors
    assert errors == ["tasks[plan/sub].expands: limits.max_depth: its fragment would be at "
                      "depth 2, over max_depth 1"]


def test_the_budget_counts_the_new_tasks_attempts_before_they_start(store: BatonStore) -> None:
    # first, plan and after take 3 attempts of 4: the fragment's 2 tasks cannot all start
    goal = go(store, planner_plan(READS_SUMMARY, budget={"max_attempts": 4}), GOOD)
    errors = events_of(store, goal.id, "OutputRejected")[0].errors
    assert errors == ["budget.max_attempts: 2 new tasks need at least 2 attempts; 1 are left "
                      "of 4 after the 1 tasks still to start"]
    enough = go(store, planner_plan(READS_SUMMARY, budget={"max_attempts": 5}), GOOD)
    assert enough.state.status == "completed"


# --- maps -------------------------------------------------------------------------------------


def map_plan(
    items: str, *more: dict[str, Any], output: Any = None, **fields: Any
) -> dict[str, Any]:
    return {
        "version": 1,
        "name": "map",
        "agents": AGENTS,
        **({"output": output} if output is not None else {}),
        "tasks": [
            {"id": "split", "agent": "split", "input": {"text": items}},
            {"id": "each", "agent": fields.pop("agent", "upper"), "for_each": "$split.items",
             "as": "item", "input": {"text": "$item"}, **fields},
            *more,
        ],
    }


GATHER = {"id": "all", "agent": "collect", "input": {"texts": "$each"}}


def test_a_map_runs_one_instance_per_element_and_collects_them_in_order(
    store: BatonStore,
) -> None:
    goal = run(store, map_plan("c,a,b", GATHER, output="$all.text"), {})
    state = goal.state
    assert state.status == "completed", state.reason
    assert [state.tasks[f"each[{i}]"].output["text"] for i in range(3)] == ["C", "A", "B"]
    assert state.tasks["each"].output == [{"text": "C"}, {"text": "A"}, {"text": "B"}]
    assert state.output == "C+A+B"
    expanded = events_of(store, goal.id, "MapExpanded")[0]
    assert (expanded.task, expanded.width, expanded.rule) == ("each", 3, "map.expanded")
    assert events_of(store, goal.id, "MapCollected")[0].width == 3


def test_an_empty_list_makes_an_empty_map(store: BatonStore) -> None:
    goal = run(store, map_plan("", GATHER, output="$all.text"), {})
    assert goal.state.status == "completed", goal.state.reason
    assert goal.state.tasks["each"].output == []
    assert goal.state.output == ""
    assert not [t for t in goal.state.tasks if t.startswith("each[")]


def test_a_failing_element_under_abandon_skips_only_what_needs_it(store: BatonStore) -> None:
    """Element 1 is abandoned: the other elements still run and the goal completes, but the
    list of every element's output never exists, so the map is abandoned and a task reading
    the whole `$each` is skipped."""
    data = map_plan("a,x,b", GATHER, {"id": "other", "agent": "upper",
                                       "input": {"text": "$split.summary"}},
                    agent="fails_on_x", on_failure="abandon", retry={"max_attempts": 1})
    goal = run(store, data, {})
    state = goal.state
    assert state.status == "completed", state.reason
    statuses = {t: state.tasks[t].status for t in ("each[0]", "each[1]", "each[2]", "each",
                                                   "all", "other")}
    assert statuses == {"each[0]": "succeeded", "each[1]": "abandoned", "each[2]": "succeeded",
                        "each": "abandoned", "all": "skipped", "other": "succeeded"}
    assert "instance 'each[1]' was abandoned" in state.tasks["each"].reason
    failing = run(store, map_plan("a,x", agent="fails_on_x", retry={"max_attempts": 1}), {})
    assert failing.state.status == "failed"  # on_failure: fail, as for any task


def test_a_map_element_is_typed_and_the_list_must_be_a_list() -> None:
    with pytest.raises(PlanError, match=r"tasks\[each\]\.input\.text: \$item.x: \$item \(an "
                                        r"element\) has no field 'x'"):
        load(map_plan("a") | {"tasks": [
            {"id": "split", "agent": "split", "input": {"text": "a"}},
            {"id": "each", "agent": "upper", "for_each": "$split.items", "as": "item",
             "input": {"text": "$item.x"}}]})
    with pytest.raises(PlanError, match=r"\$n.value is int, not a list"):
        load({**map_plan("a"), "tasks": [
            {"id": "n", "agent": "count", "input": {"text": "x"}},
            {"id": "each", "agent": "upper", "for_each": "$n.value", "as": "item",
             "input": {"text": "x"}}]})
    with pytest.raises(PlanError, match=r"tasks\[all\]\.input\.text: \$each is list\[Text\]"):
        load(map_plan("a", {"id": "all", "agent": "upper", "input": {"text": "$each"}}))
    with pytest.raises(PlanError, match=r"tasks\[each\]\.as: for_each needs 'as'"):
        load({**map_plan("a"), "tasks": [
            {"id": "each", "agent": "upper", "for_each": "$goal.items",
             "input": {"text": "x"}}]})


def test_a_map_of_ten_thousand_elements_decides_each_step_without_rescanning_the_map() -> None:
    """10,000 instances, decided in memory (the store adds only I/O per event): one MapExpanded,
    every instance ready and dispatched, then each result decided on its own. Each step reads
    only the tasks it touches, so the whole run stays linear in the width."""
    width = 10_000
    loaded = load(map_plan("x", GATHER, output="$all.text") | {"limits": {"max_tasks": width}})
    at = datetime(2026, 1, 1, tzinfo=UTC)
    goal = Goal.start(goal_id="wide", plan=loaded.plan, goal_input={}, concurrency=width, at=at)
    settle(goal, loaded.contracts)
    items = [f"i{index}" for index in range(width)]
    goal.observe("AgentReturned", at=at, task="split", attempt=1,
                 output={"items": items, "summary": "many"}, duration_ms=1.0)
    decided = settle(goal, loaded.contracts)
    assert [d.kind for d in decided].count("TaskDispatched") == width
    assert next(d for d in decided if d.kind == "MapExpanded").width == width  # type: ignore[attr-defined]
    for index in reversed(range(width)):  # results arrive in any order
        task_id = f"each[{index}]"
        goal.observe("AgentReturned", at=at, task=task_id, attempt=1,
                     output={"text": items[index].upper()}, duration_ms=1.0)
        decided = settle(goal, loaded.contracts)
        assert [d.kind for d in decided] == ["OutputAccepted"] or index == 0
    state = goal.state
    assert state.status == "running"  # `all` was just dispatched
    assert state.tasks["each"].output[:2] == [{"text": "I0"}, {"text": "I1"}]
    assert len(state.tasks["each"].output) == width


def test_an_escalated_fragment_task_suspends_the_goal_and_a_human_moves_it_on(
    store: BatonStore,
) -> None:
    """The planner runs as its fragment and holds nothing a human must wait on: the goal waits
    for the escalated fragment task, and resolving it lets the planner finish."""
    from baton.runtime.service import resolve_task, resume_goal

    escalating = fragment(
        {"id": "a", "agent": "upper", "input": {"text": "$goal.text"}},
        {"id": "x", "agent": "fails_on_x", "input": {"text": "x"}, "on_failure": "escalate",
         "retry": {"max_attempts": 1}},
        output={"items": ["$a.text"], "summary": "$a.text"},
    )
    data = planner_plan(READS_SUMMARY, agents=AGENTS)
    goal = go(store, data, escalating)
    assert goal.state.status == "waiting", goal.state.reason
    assert goal.state.tasks["plan"].status == "running"
    suspended = events_of(store, goal.id, "GoalSuspended")[0]
    assert suspended.waiting_on == ["plan/x"]
    resolve_task(store, goal.id, "plan/x", action="abandon", reason="not needed", by="ops")
    done = resume_goal(store, goal.id)
    assert done.state.status == "completed", done.state.reason
    assert done.state.tasks["plan"].output == {"items": ["HI"], "summary": "HI"}


def test_a_fragment_may_hold_a_map_over_its_own_tasks_output(store: BatonStore) -> None:
    mapped = fragment(
        {"id": "s", "agent": "split", "input": {"text": "a,b"}},
        {"id": "m", "agent": "upper", "for_each": "$s.items", "as": "it",
         "input": {"text": "$it"}},
        {"id": "c", "agent": "collect", "input": {"texts": "$m"}},
        output={"items": "$s.items", "summary": "$c.text"},
    )
    goal = go(store, planner_plan(READS_SUMMARY, limits={"max_tasks": 5}), mapped)
    assert goal.state.status == "completed", goal.state.reason
    assert goal.state.tasks["plan/m[1]"].output == {"text": "B"}
    assert goal.state.tasks["after"].output == {"text": "A+B!"}
    # 3 fragment tasks and 2 instances are 5: one fewer allowed fails the map
    small = go(store, planner_plan(READS_SUMMARY, limits={"max_tasks": 4}), mapped)
    assert small.state.tasks["plan/m"].status == "failed"


@pytest.mark.parametrize(("output", "problem"), [
    ({"items": ["$a.text"], "summary": "$nowhere.text"},
     "output: $nowhere.text: no task 'nowhere'"),
    ({"items": ["$a.text"], "summary": "$plan.summary"},
     "output: $plan.summary: the fragment's output cannot read its own planner"),
    ({"items": ["$a.text"], "summary": "$a.nothing"},
     "output.summary: $plan/a.nothing: Text (output of 'plan/a') has no field 'nothing'"),
])
def test_the_fragment_output_reads_only_what_will_exist(
    store: BatonStore, output: dict[str, Any], problem: str
) -> None:
    bad = fragment({"id": "a", "agent": "upper", "input": {"text": "$goal.text"}}, output=output)
    goal = go(store, planner_plan(), bad)
    errors = events_of(store, goal.id, "OutputRejected")[0].errors
    assert problem in errors, errors


def test_a_planner_whose_fragment_output_cannot_be_built_takes_a_humans_result(
    store: BatonStore,
) -> None:
    from baton.runtime.service import CommandError, resolve_task, resume_goal

    lost = fragment(
        {"id": "x", "agent": "fails_on_x", "input": {"text": "x"}, "on_failure": "abandon",
         "retry": {"max_attempts": 1}},
        output={"items": [], "summary": "$x.text"},
    )
    data = planner_plan(READS_SUMMARY, plan_task={"on_failure": "escalate"})
    goal = go(store, data, lost)
    assert goal.state.status == "waiting"
    plan_task = goal.state.tasks["plan"]
    assert plan_task.status == "escalated"
    assert "last error: expands.output: $plan/x.text: task 'plan/x' has no" in plan_task.reason
    with pytest.raises(CommandError, match="already added its fragment's tasks"):
        resolve_task(store, goal.id, "plan", action="retry", reason="again", by="ops")
    with pytest.raises(CommandError, match="the output given does not satisfy Outline"):
        resolve_task(store, goal.id, "plan", action="output", output={"tasks": []},
                     reason="x", by="ops")
    resolve_task(store, goal.id, "plan", action="output", reason="by hand", by="ops",
                 output={"items": ["a"], "summary": "done by hand"})
    done = resume_goal(store, goal.id)
    assert done.state.status == "completed", done.state.reason
    assert done.state.tasks["after"].output == {"text": "done by hand!"}


def _unknown_agents(count: int) -> dict[str, Any]:
    return fragment(*({"id": f"t{i}", "agent": "nobody", "input": {"text": "$goal.text"}}
                      for i in range(count)), output={"items": ["x"], "summary": "$t0.text"})


def test_a_huge_rejected_fragment_lists_its_first_problems_and_counts_the_rest(
    store: BatonStore,
) -> None:
    goal = go(store, planner_plan(retries=2), _unknown_agents(3000))
    assert goal.state.status == "failed"
    first, second = events_of(store, goal.id, "OutputRejected")
    # 3000 tasks outside the allowlist, and more than max_tasks: 3001 problems, 50 listed.
    assert len(first.errors) == 51 and first.errors[-1] == "… and 2951 more"
    assert first.reason.startswith("fragment rejected (3001 problems): ")
    [retried] = events_of(store, goal.id, "RetryScheduled")
    assert len(retried.failure) < 6000 and retried.failure.endswith("; … and 2951 more")
    second_try = events_of(store, goal.id, "TaskDispatched")[-1]
    assert len(str(second_try.attempt_context)) < 6000
    assert second.errors == first.errors


def test_a_goal_decided_under_rules_4_lists_every_problem(store: BatonStore) -> None:
    from baton.domain.replay import replay
    from tests.replay_support import contracts_of

    with decided_under(4):
        goal = go(store, planner_plan(), _unknown_agents(60))
    [rejected] = events_of(store, goal.id, "OutputRejected")
    assert len(rejected.errors) == 60
    events = list(store.events(goal.id))
    assert replay(events, contracts_of(events)).ok  # re-decided the same today
