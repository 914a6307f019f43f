"""Property-based hostile input (hypothesis): generated and mutated plans through `validate`,
agent results of every kind through the call pool and whole goals, random command lines.

The properties are the promises of docs/reference.md: an exit code in {0, 1, 2, 3}, never a
traceback or an internal error, every error one line that says where, every rejected output
recorded with its reason, `replay` reproducing every finished goal, `--json` valid JSON.
CASES sums to the number of generated cases per run (BATON_FUZZ_SCALE multiplies it).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import JSONTranscoder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import baton
from baton.cli.render import goal_json, print_json
from baton.domain.json_values import json_problem
from baton.domain.replay import replay
from baton.runtime.calls import AgentCall, CallPool
from baton.runtime.loading import prepare_plan
from baton.runtime.service import start_goal
from baton.store.eventstore import open_store
from tests import agents, hostile_agents
from tests.hostile_strategies import (
    hostile_text,
    mutated_plan_texts,
    outputs,
    plan_data,
    plan_file_text,
)
from tests.inprocess import cli
from tests.replay_support import contracts_of

_SCALE = float(os.environ.get("BATON_FUZZ_SCALE", "1"))
CASES = {"plans": 1000, "mutated_plans": 3000, "results": 4000, "goals": 300, "cli": 1700}
_DIR = Path(tempfile.mkdtemp(prefix="baton-fuzz-"))


def fuzz(name: str) -> Any:
    return settings(
        max_examples=max(1, int(CASES[name] * _SCALE)),
        deadline=None,
        database=None,  # each run draws afresh; a failure prints its reproducing example
        suppress_health_check=list(HealthCheck),
    )


def _strict_json(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} in --json output")

    return json.loads(text, parse_constant=refuse)


def check_validate(text: str, suffix: str) -> None:
    path = _DIR / f"plan{suffix}"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    result = cli("validate", str(path))
    assert result.code in (0, 2), result
    assert "Traceback" not in result.err and "internal error" not in result.err, result.err
    if result.code == 0:
        assert result.err == "" and result.out.startswith(f"{path}: ok")
        return
    lines = result.err.splitlines()
    assert lines and len(lines) == result.err.count("\n"), result.err
    for line in lines:  # one line each, "PLAN: where: what" (or "PLAN: what" for the file)
        assert line.startswith(f"{path}: ") and line[len(str(path)) + 2 :].strip(), line


@fuzz("plans")
@given(data=plan_data(), as_json=st.booleans())
def test_validate_on_plans_from_the_grammar(data: Any, as_json: bool) -> None:
    try:
        text = plan_file_text(data, as_json)
    except (yaml_error(), UnicodeError, ValueError, RecursionError):  # the dumper, not Baton
        text, as_json = json.dumps(data, default=str), True
    check_validate(text, ".json" if as_json else ".yaml")


@fuzz("mutated_plans")
@given(text=mutated_plan_texts())
def test_validate_on_mutated_valid_plans(text: str) -> None:
    check_validate(text, ".yaml")


def yaml_error() -> type[Exception]:
    import yaml

    return yaml.YAMLError


_POOL = CallPool(workers=1)


@fuzz("results")
@given(value=outputs)
def test_every_agent_result_comes_back_storable(value: Any) -> None:
    hostile_agents.VALUE[0] = value
    call = AgentCall(task="t", attempt=1, agent=hostile_agents.returns_value,
                     agent_input=agents.Text(text="x"), idempotency_key=None, is_async=False,
                     timeout_s=None)
    _POOL.submit(call)
    completion = _POOL.completions.get(timeout=60)  # a dead worker would never answer
    assert completion.kind == "AgentReturned"
    fields = completion.fields
    JSONTranscoder().encode(fields)  # what the store does with it: must not raise
    if fields.get("output_error") is None:
        assert json_problem(fields["output"]) is None
        json.dumps(fields["output"], allow_nan=False)
    else:
        # the reason is recorded; an output kept beside a bad usage report is storable too
        assert fields["output"] is None or json_problem(fields["output"]) is None
    for figure in (fields.get("usage") or {}).values():
        if isinstance(figure, int | float):  # usage v2 also holds the model name and Nones
            assert figure == figure and abs(figure) < float("inf")


_STORE = open_store(f"sqlite:///{_DIR / 'goals.db'}")
_LOOSE = prepare_plan({
    "version": 1, "name": "loose",
    "agents": {"loose": "tests.hostile_agents:returns_loose",
               "value": "tests.hostile_agents:returns_value"},
    "defaults": {"timeout_s": None, "retry": {"max_attempts": 2, "backoff_s": 0}},
    "tasks": [{"id": "a", "agent": "loose", "input": {"text": "$goal.t"}},
              {"id": "b", "agent": "value", "input": {"text": "$goal.t"},
               "on_failure": "abandon"}],
    "output": {"a": "$a.data"},
})


@fuzz("goals")
@given(value=outputs)
def test_goals_record_every_rejection_and_replay(value: Any) -> None:
    hostile_agents.VALUE[0] = value
    goal = start_goal(_STORE, _LOOSE, {"t": "x"}, concurrency=2)
    assert goal.state.status in ("completed", "failed")
    events = list(_STORE.events(goal.id))
    ended = next(i for i, e in enumerate(events) if type(e).__name__ in ("GoalCompleted",
                                                                         "GoalFailed"))
    returned = [e for e in events[:ended] if type(e).__name__ == "AgentReturned"]
    judged = [e for e in events if type(e).__name__ in ("OutputAccepted", "OutputRejected")]
    assert len(judged) == len(returned)  # each result before the end judged, and recorded
    for event in judged:
        if type(event).__name__ == "OutputRejected":
            assert event.errors and event.reason.startswith("output rejected: ")
    assert replay(events, contracts_of(events)).divergence is None
    _strict_json(_printed(goal_json(goal)))


def _printed(data: Any) -> str:
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        print_json(data)
    return out.getvalue()


_CLI_STORE = f"sqlite:///{_DIR / 'cli.db'}"
_GOAL = start_goal(open_store(_CLI_STORE), _LOOSE, {"t": "x"}, concurrency=1).id
COMMANDS = ["validate", "run", "resume", "status", "audit", "replay", "fork", "export",
            "import", "escalations", "resolve", "cancel", "stats", "projections", "graph"]
TOKENS = ["--json", "--at", "0", "-1", "3", "999", "--input", "{}", '{"t": NaN}', "@/nope",
          "--goal-id", "--concurrency", "--reason", "r", "--retry", "--abandon", "--output",
          '{"data": 1}', "rebuild", "status", "--format", "dot", "csv", "table", "a", "b",
          str(Path(__file__).parents[1] / "examples/travel/plan.yaml"), "[[[[", "--by", "--run",
          _GOAL, "--store"]


@fuzz("cli")
@given(command=st.sampled_from(COMMANDS),
       args=st.lists(st.one_of(st.sampled_from(TOKENS), hostile_text), max_size=5))
def test_command_lines(command: str, args: list[str]) -> None:
    # In a directory of its own: a command line may name a file to write (`export G --output
    # T`), which must not land in the checkout.
    with contextlib.chdir(_DIR):
        result = cli("--store", _CLI_STORE, command, *args)
    assert result.code in (0, 1, 2, 3), result
    assert "Traceback" not in result.err and "internal error" not in result.err, result.err
    errors = [line for line in result.err.splitlines() if "error" in line]
    assert len(errors) <= 1, result.err
    if "--json" in args and result.code != 2 and result.out.strip():
        _strict_json(result.out)


def teardown_module() -> None:
    _POOL.close()
    _STORE.close()


# Found by test_command_lines (`validate '\x00'` was an internal error): a NUL byte cannot be in
# any path, URL or id, so every command refuses it in one line, as does the Python API.
@pytest.mark.parametrize("args", [
    ("validate", "\x00"), ("run", "plan\x00.yaml"), ("import", "\x00"),
    ("export", "g", "-o", "out\x00.jsonl"), ("--store", "sqlite:///\x00.db", "status"),
])
def test_a_nul_byte_in_an_argument_is_a_one_line_usage_error(args: tuple[str, ...]) -> None:
    result = cli(*args)
    assert result.code == 2, result
    assert result.err.count("\n") == 1 and "NUL byte" in result.err, result.err


def test_the_python_api_refuses_a_nul_byte_in_a_plan_path_or_store_url() -> None:
    with pytest.raises(baton.PlanError, match="cannot contain a NUL byte"):
        baton.load_plan("plan\x00.yaml")
    with pytest.raises(baton.StoreError, match="contains a NUL byte"), \
            baton.Baton("sqlite:///\x00.db") as client:
        client.status("g")
