"""Findings of a QA pass over debugging a failed run: trace, re-execution and what-if of the
histories an on-call engineer meets (a failed goal, a contract changed since, a fork)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel

from baton.cli.debug_view import print_replay
from baton.domain.errors import PlanError
from baton.domain.history import collect, fold, fork_goal, state_summary, to_json
from baton.domain.replay import replay
from baton.domain.whatif import what_if
from baton.history.live import LiveAgents
from baton.history.recorded import reexecute
from baton.history.runfile import read_run
from baton.history.service import History, replay_history
from baton.runtime.loading import prepare_plan
from baton.runtime.service import CommandError, fork_from, resolve_task
from baton.store.eventstore import BatonStore
from tests import agents
from tests.cli_support import baton
from tests.replay_support import replayed
from tests.support import load, plan, plan_file, run, task

GOLDEN = Path(__file__).parent / "golden"


def test_a_diverged_reexecution_reports_the_state_after_the_events_it_counts() -> None:
    # `state after event N` is printed under a re-execution that diverged: it showed the new
    # run's state, which had already applied today's divergent decisions (a task `retry_wait`
    # "after event 3", when after event 3 it was still running). Plain replay shows the state
    # after event N; re-execution now does too.
    run = read_run(GOLDEN / "completed.jsonl")
    loaded = prepare_plan(run.plan)

    class Stricter(BaseModel):
        text: str
        checked: bool  # required today; the recorded output lacks it

    contract = loaded.contracts["upper"]
    loaded.contracts["upper"] = type(contract)(contract.input_model, Stricter)
    result = reexecute(run.events, loaded)
    assert result.divergence is not None
    assert result.divergence.recorded is not None
    assert result.divergence.recorded["kind"] == "OutputAccepted"
    assert result.events == result.divergence.seq - 1
    expected = state_summary(fold(run.events[: result.events]).state)
    assert state_summary(result.state) == expected
    assert expected["tasks"]["a"]["status"] == "running"
    plain = replay(run.events, loaded.contracts)
    assert plain.divergence is not None and plain.divergence.seq == result.divergence.seq
    assert state_summary(plain.state) == expected


class _Renamed(BaseModel):
    shout: str  # was `text`: a field renamed since the run


def _upper_renamed(inp: agents.Text) -> _Renamed:
    return _Renamed(shout=inp.text.upper())


def test_reexecute_of_a_plan_today_s_contracts_break_does_not_point_at_plain_replay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A field renamed in an output model: the recorded plan's binding `$a.text` no longer
    # type-checks. Plain replay refuses it (exit 2, the plan's error); --reexecute said it
    # "needs their modules ... plain `replay` checks against the schemas recorded in the run",
    # which sent the user to a command that fails the same way.
    monkeypatch.setattr(agents, "upper", _upper_renamed)
    run = read_run(GOLDEN / "completed-rules3.jsonl")  # records schemas
    history = History(run.goal_id, run.events, source="completed.jsonl")
    with pytest.raises(PlanError) as plain:
        replay_history(history)
    with pytest.raises(PlanError) as again:
        replay_history(history, reexecute_agents=True)
    assert "has no field 'text'" in str(again.value)
    assert "plain `replay`" not in str(again.value)
    assert str(again.value) == str(plain.value)


def test_reexecute_of_a_goal_whose_agent_is_gone_still_points_at_plain_replay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(agents, "upper")  # the agent renamed or deleted since the run
    run = read_run(GOLDEN / "completed-rules3.jsonl")  # records schemas
    history = History(run.goal_id, run.events, source="completed.jsonl")
    with pytest.raises(CommandError, match="plain `replay` checks against the schemas"):
        replay_history(history, reexecute_agents=True)
    result = replay_history(history)
    assert result.ok and getattr(result, "contracts_source", "").startswith(
        "agent modules not importable")


def test_what_if_on_a_fork_compares_what_the_fork_decided_not_its_parent_s_history(
    store: BatonStore,
) -> None:
    # A fork's first events were decided under its parent's id, from which idempotency keys
    # and backoff jitter derive. What-if re-decided them under the fork's id, so the fork's own
    # unchanged plan "decided differently" at its first dispatch and at every backoff (exit 1).
    data = plan(task("a", "always_fails", input={"text": "$goal.text"},
                     retry={"max_attempts": 3, "backoff_s": 0.01}),
                task("b", "upper", input={"text": "$a.text"}))
    parent = list(store.events(run(store, data, {"text": "x"}, goal_id="parent").id))
    at = next(e.originator_version for e in parent if type(e).__name__ == "RetryScheduled")
    fork = fork_from(store, parent, at=at, goal_id="fork", run=True)
    assert fork.state.status == "failed"
    events = list(store.events("fork"))
    same = what_if(events, load(data).plan, load(data).contracts)
    assert same.ok, same.differences
    assert same.inherited == at and same.stopped is None and same.events == len(events)
    assert same.to_json()["inherited"] == at

    fewer = plan(task("a", "always_fails", input={"text": "$goal.text"},
                      retry={"max_attempts": 2, "backoff_s": 0.01}),
                 task("b", "upper", input={"text": "$a.text"}))
    changed = what_if(events, load(fewer).plan, load(fewer).contracts)
    assert not changed.ok
    first = changed.differences[0]
    assert first.seq > at and first.observation["kind"] == "AgentRaised"
    assert [d["kind"] for d in first.recorded][:1] == ["RetryScheduled"]
    assert [d["kind"] for d in first.whatif][:1] == ["TaskFailed"]


def test_a_fork_made_at_its_first_event_is_compared_from_the_start() -> None:
    """A fork at event 1 copies only Started; a worker decides it with no observation first
    (Runner.start). What-if took that first decision for the fork's first observation and
    raised (exit 70); replay and re-execution reported a divergence there."""
    from datetime import UTC, datetime, timedelta

    from baton.domain.decide import settle
    from baton.domain.goal import Goal

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    loaded = load(plan(task("b", "exclaim", input={"text": "$goal.text"})))
    parent = Goal.start(goal_id="parent", plan=loaded.plan, goal_input={"text": "hi"},
                        concurrency=4, at=t0)
    settle(parent, loaded.contracts)
    fork = fork_goal(collect(parent), goal_id="fork", at=1, now=t0)
    settle(fork, loaded.contracts)  # as a worker's Runner.start decides a submitted goal
    fork.observe("AgentReturned", at=t0 + timedelta(seconds=1), task="b", attempt=1,
                 output={"text": "hi!"}, duration_ms=5.0, usage=None)
    settle(fork, loaded.contracts)
    events = collect(fork)
    result = what_if(events, loaded.plan, loaded.contracts)
    assert result.ok and result.stopped is None and result.differences == []
    assert result.state.status == "completed"
    # plain replay and re-execution took its first decision for the end of what it inherited
    # and reported a divergence there
    assert replay(events, loaded.contracts).divergence is None
    assert reexecute(events, loaded).divergence is None


def test_what_if_on_a_fork_whose_history_the_changed_plan_cannot_hold_says_so() -> None:
    run_file = read_run(GOLDEN / "failed-rules3.jsonl")
    fork = fork_goal(run_file.events, goal_id="fork", at=4)
    events = collect(fork)
    renamed = plan(task("first", "always_fails", input={"text": "$goal.text"}),
                   task("b", "upper", input={"text": "$first.text"}))
    result = what_if(events, load(renamed).plan, load(renamed).contracts)
    assert result.stopped is not None and result.stopped["seq"] <= 4
    assert "inherited from failed" in result.stopped["reason"]
    assert result.differences == []


def _checked_plan(**fields: object) -> dict[str, object]:
    return {
        "version": 1, "name": "checked",
        "agents": {"out": "tests.replay_agents:returns_checked",
                   "in": "tests.replay_agents:reads_checked",
                   "upper": "tests.agents:upper"},
        "tasks": [task("a", "out", input={"text": "$goal.text"},
                       retry={"max_attempts": 2, "backoff_s": 0}, **fields),
                  task("b", "in", input={"text": "$goal.other"})],
    }


def test_a_contract_validator_that_raises_rejects_the_output_instead_of_crashing_the_run(
    store: BatonStore,
) -> None:
    # An output model's validator with a bug (a KeyError, which pydantic does not turn into a
    # validation error) made `decide` raise: `baton run` exited 70 (internal error), the
    # agent's output was not recorded, and every resume re-ran the agent into the same crash.
    goal = run(store, _checked_plan(), {"text": "bad value", "other": "fine"}, goal_id="g")
    assert goal.state.status == "failed"
    rejected = [e for e in store.events("g") if type(e).__name__ == "OutputRejected"]
    assert len(rejected) == 2
    assert list(rejected[0].errors) == ["(root): a validator raised KeyError: 'missing'"]  # type: ignore[attr-defined]
    assert goal.state.tasks["a"].last_error is not None
    assert "KeyError" in goal.state.tasks["a"].last_error
    assert replayed(store, "g").ok


def test_an_input_contract_validator_that_raises_rejects_the_input(store: BatonStore) -> None:
    goal = run(store, _checked_plan(), {"text": "fine", "other": "bad input"}, goal_id="g")
    assert goal.state.status == "failed"
    rejected = [e for e in store.events("g") if type(e).__name__ == "InputRejected"]
    assert [list(e.errors) for e in rejected] == [  # type: ignore[attr-defined]
        ["(root): a validator raised KeyError: 'missing'"]]
    assert replayed(store, "g").ok


def test_resolve_output_through_a_raising_validator_is_a_one_line_refusal(
    store: BatonStore,
) -> None:
    goal = run(store, _checked_plan(on_failure="escalate"),
               {"text": "bad value", "other": "fine"}, goal_id="g")
    assert goal.state.tasks["a"].status == "escalated"
    before = len(list(store.events("g")))
    with pytest.raises(CommandError, match="a validator raised KeyError"):
        resolve_task(store, "g", "a", action="output", output={"text": "bad again"},
                     reason="by hand", by="qa")
    assert len(list(store.events("g"))) == before


def _one_task(agent: str, **fields: object) -> dict[str, object]:
    return {"version": 1, "name": "timed", "agents": {agent: f"tests.replay_agents:{agent}"},
            "tasks": [task("a", agent, input={"text": "$goal.text"},
                           retry={"max_attempts": 1}, **fields)]}


def test_what_if_a_shorter_timeout_stops_where_the_recorded_answer_came_too_late(
    store: BatonStore,
) -> None:
    # A timeout_s change re-decided the recorded answers as if they had come in time: "the
    # same decisions", exit 0, for a plan under which the attempt would have timed out.
    run(store, _one_task("naps"), {"text": "x"}, goal_id="g")
    events = list(store.events("g"))
    shorter = load(_one_task("naps", timeout_s=0.01))
    result = what_if(events, shorter.plan, shorter.contracts)
    assert not result.ok and result.differences == []
    assert result.stopped is not None
    assert result.stopped["seq"] == next(e.originator_version for e in events
                                         if type(e).__name__ == "AgentReturned")
    assert "past the changed plan's timeout_s 0.01: it would have timed out" in (
        result.stopped["reason"])
    longer = load(_one_task("naps", timeout_s=120))
    assert what_if(events, longer.plan, longer.contracts).ok  # it came in time under both


def test_what_if_a_longer_timeout_does_not_pretend_to_know_what_a_timed_out_agent_returns(
    store: BatonStore,
) -> None:
    timed = _one_task("oversleeps", timeout_s=0.3, isolation="process")
    goal = run(store, timed, {"text": "x"}, goal_id="g")
    assert goal.state.status == "failed"
    events = list(store.events("g"))
    kinds = [type(e).__name__ for e in events]
    assert "AgentTimedOut" in kinds
    # The same plan: the same decisions to the end, past the terminated process's late report
    # (recorded after the goal failed) which the recording ignored as the what-if does.
    same = what_if(events, load(timed).plan, load(timed).contracts)
    assert same.ok and same.stopped is None and same.events == len(events), same.stopped
    longer = load(_one_task("oversleeps", timeout_s=60, isolation="process"))
    result = what_if(events, longer.plan, longer.contracts)
    assert not result.ok and result.stopped is not None
    assert result.stopped["seq"] == kinds.index("AgentTimedOut") + 1
    assert "it might have finished" in result.stopped["reason"]


def test_call_agents_never_repeats_an_unsafe_task_s_side_effect(tmp_path: Path) -> None:
    # `replay --reexecute --call-agents` called every agent for real, `unsafe` ones included: a
    # replay charged the card again (with the same idempotency key, which an unsafe supplier
    # does not deduplicate on), with nothing said. Unsafe tasks now answer from the recording.
    data = {"version": 1, "name": "charge",
            "agents": {"step": "tests.agents:logged_step", "charge": "tests.agents:logged_book"},
            "tasks": [task("a", "step", input={"text": "$goal.text"}),
                      task("pay", "charge", input={"text": "$a.text"}, side_effects="unsafe")]}
    url, env = f"sqlite:///{tmp_path}/b.db", {"BATON_TEST_DIR": str(tmp_path)}
    assert baton("run", plan_file(tmp_path, data), "--input", '{"text": "x"}', "--goal-id", "g",
                 store=url, env=env).code == 0
    calls = tmp_path / "calls.jsonl"
    assert [json.loads(line)["agent"] for line in calls.read_text().splitlines()] == [
        "logged_step", "logged_book"]
    again = baton("replay", "g", "--reexecute", "--call-agents", store=url, env=env)
    assert again.code == 0, again.out + again.err
    assert "unsafe tasks pay answer with their recorded outcomes" in again.err
    assert [json.loads(line)["agent"] for line in calls.read_text().splitlines()] == [
        "logged_step", "logged_book", "logged_step"]  # the safe one was called again


def test_live_agents_answer_an_unsafe_task_from_the_recording(store: BatonStore) -> None:
    data = plan(task("a", "upper", input={"text": "$goal.text"}),
                task("pay", "book", input={"text": "$a.text"}, side_effects="unsafe"))
    goal = run(store, data, {"text": "x"}, goal_id="g")
    assert goal.state.status == "completed"
    events, loaded = list(store.events("g")), load(data)
    before = dict(agents.CALLS)
    result = reexecute(events, loaded, agents=LiveAgents(loaded, events))
    assert result.ok, result.divergence
    assert agents.CALLS["book"] == before["book"]
    assert agents.CALLS["upper"] == before["upper"] + 1


def test_a_divergence_where_today_s_code_fails_shows_the_error_not_the_whole_event(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A goal input model given a required field: re-execution fails on `Started`. The table
    # listed every field of the recorded Started (the plan, every contract schema: a screenful)
    # around the one line that says why.
    monkeypatch.setenv("COLUMNS", "200")
    run_file = read_run(GOLDEN / "completed-rules3.jsonl")
    started = to_json(run_file.events[0])
    result = {
        "ok": False, "events": 0, "decisions": 0, "inherited": 0,
        "divergence": {"seq": 1, "recorded": started, "fields": [],
                       "replayed": {"error": "InputError: goal input does not satisfy In: "
                                             "loyalty_id: Field required"}},
        "state": state_summary(fold(run_file.events[:1]).state),
    }
    print_replay(result, source="g", mode="re-execution")
    out = capsys.readouterr().out
    assert "loyalty_id: Field required" in out and "Started" in out
    rows = [line.split("│")[1].strip() for line in out.splitlines() if line.startswith("│")]
    assert rows == ["kind", "error"]


def test_plain_replay_and_reexecution_show_one_divergence_the_same_way(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An output contract given a required field. Plain replay listed every field of both
    # events (equal ones too) with `fields` empty; re-execution listed the differing ones: two
    # pictures of one divergence. And neither header said which task it was about.
    monkeypatch.setenv("COLUMNS", "200")
    run_file = read_run(GOLDEN / "completed-rules3.jsonl")
    loaded = prepare_plan(run_file.plan)

    class Stricter(BaseModel):
        text: str
        checked: bool

    contract = loaded.contracts["upper"]
    loaded.contracts["upper"] = type(contract)(contract.input_model, Stricter)
    plain, again = replay(run_file.events, loaded.contracts), reexecute(run_file.events, loaded)
    assert plain.divergence is not None and again.divergence is not None
    assert plain.divergence.to_json() == again.divergence.to_json()
    assert {"errors", "reason"} <= set(plain.divergence.fields)
    assert not {"task", "attempt", "rule"} & set(plain.divergence.fields)  # equal: not shown
    print_replay(plain.to_json(), source="g", mode="replay")
    out = capsys.readouterr().out
    assert f"diverged at event {plain.divergence.seq} (OutputAccepted a #1)" in out


def test_live_export_closes_a_failed_goal_s_span_and_keeps_nothing_of_it(
    store: BatonStore,
) -> None:
    # Live export never closed a failed goal's root span (GoalFailed went to the task's span),
    # and a worker's LiveTelemetry kept every goal's span projector for as long as it ran.
    pytest.importorskip("opentelemetry.sdk", reason="the otel extra is not installed")
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from baton.runtime.runner import Runner
    from baton.runtime.service import start_goal
    from baton.telemetry.live import LiveTelemetry

    exporter = InMemorySpanExporter()
    telemetry = LiveTelemetry(store=store, processor=SimpleSpanProcessor(exporter))
    loaded = load(plan(task("a", "always_fails", input={"text": "$goal.text"},
                            retry={"max_attempts": 1})))
    runner = Runner(store=store, loaded=loaded, run_observer=telemetry)
    goal = start_goal(store, loaded, {"text": "x"}, goal_id="g", runner=runner)
    assert goal.state.status == "failed"
    roots = [s for s in exporter.get_finished_spans() if s.parent is None]
    assert [(s.name, s.attributes["baton.status"], s.status.status_code.name)
            for s in roots] == [("goal test-plan", "failed", "ERROR")]
    assert telemetry._projectors == {}


def test_what_if_a_later_deadline_says_the_cancelled_attempt_runs_on(store: BatonStore) -> None:
    # The deadline failed the goal while an attempt ran (TaskCancelled). Under a later deadline
    # that attempt runs on; what-if said the changed plan "dispatches 'a' attempt 1, which the
    # recording never ran", though the recording dispatched it.
    data = plan(task("a", "async_hangs", input={"text": "x"}, timeout_s=None),
                budget={"deadline_s": 0.2})
    goal = run(store, data, {}, goal_id="g")
    assert goal.state.status == "failed" and goal.state.tasks["a"].status == "cancelled"
    later = load({**data, "budget": {"deadline_s": 600}})
    result = what_if(list(store.events("g")), later.plan, later.contracts)
    assert result.stopped is not None
    assert "'a' attempt 1 runs on; the recording has no outcome for it (there the task is " \
           "cancelled)" in result.stopped["reason"]


def test_a_waiting_goal_names_the_command_that_decides_each_escalated_task(
    tmp_path: Path,
) -> None:
    # `run` and `status` of a waiting goal printed `baton resolve G TASK --retry|--abandon|
    # --output … (--approve|--reject for an approval; `baton answer G TASK TEXT` for a
    # question; `baton escalations` says which)`: the on-call engineer had to look the task
    # and its kind up. Each escalated task now gets its own command, as `escalations` gives it.
    data = {"version": 1, "name": "two-humans",
            "agents": {"ask": "tests.gate_agents:ask_once", "scored": "tests.agents:scored"},
            "tasks": [task("plan", "ask", input={"question": "$goal.q"}),
                      task("s", "scored", input={"text": "x@0.2"}, min_confidence=0.7,
                           on_low_confidence="escalate")]}
    url = f"sqlite:///{tmp_path}/b.db"
    ran = baton("run", plan_file(tmp_path, data), "--input", '{"q": "spring"}', "--goal-id",
                "g 1", store=url)
    assert ran.code == 3, ran.err
    expected = ["answer with: baton answer 'g 1' plan TEXT",
                "resolve with: baton resolve 'g 1' s --retry|--abandon|--output JSON --reason TEXT"]
    for shown in (ran.out, baton("status", "g 1", store=url).out):
        assert [line for line in shown.splitlines() if " with: " in line] == expected, shown


def test_call_agents_holds_each_call_to_its_timeout(store: BatonStore) -> None:
    # The goal failed because its agent hung past timeout_s. `replay --reexecute --call-agents`
    # called it with no timeout: the replay hung with it (here 30 s, then "diverged": the
    # agent returned where the recording timed out). It now times out as the live run did.
    data = plan(task("a", "hangs", input={"text": "x"}, timeout_s=0.2,
                     retry={"max_attempts": 1}))
    goal = run(store, data, {}, goal_id="g")
    assert goal.state.status == "failed"
    events, loaded = list(store.events("g")), load(data)
    assert "AgentTimedOut" in [type(e).__name__ for e in events]
    result = reexecute(events, loaded, agents=LiveAgents(loaded, events))
    assert result.ok, result.divergence


def test_fork_run_of_a_plan_today_s_code_cannot_load_stores_no_fork(
    store: BatonStore, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `fork --run` stored the fork, then failed to load its agents (exit 2): a fork no one
    # could drive was left behind, and the same command again said its id was taken.
    events = read_run(GOLDEN / "failed-rules3.jsonl").events
    monkeypatch.delattr(agents, "always_fails")  # the agent module changed since the run
    with pytest.raises(PlanError, match=r"fork of failed-rules3: its plan: agents\.always_fails"):
        fork_from(store, events, at=4, goal_id="f", run=True)
    assert not store.exists("f")
    monkeypatch.undo()
    assert fork_from(store, events, at=4, goal_id="f", run=True).state.status == "failed"
