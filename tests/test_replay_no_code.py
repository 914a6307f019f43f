"""A run file carries what replay needs: the contracts' JSON schemas, recorded when the goal
started. Replay checks from them when the agent modules cannot be imported (and says so), and
`--no-code` never imports a module the file names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_support import baton

AGENTS = '''
import pathlib
from pydantic import BaseModel, Field

pathlib.Path(__file__).with_name("imported").write_text("the module ran")

class Question(BaseModel):
    text: str
    depth: int = Field(2, ge=1)

class Answer(BaseModel):
    answer: str
    confidence: float

CALLS = {"n": 0}

def ask(inp: Question) -> Answer:
    CALLS["n"] += 1
    low = inp.text == "low" and CALLS["n"] == 1   # the first attempt is not sure enough
    return Answer(answer=inp.text.upper(), confidence=0.1 if low else 0.9)
'''

PLAN = """
version: 1
name: uv
agents: {ask: uvagents:ask}
input: uvagents:Question
defaults: {retry: {max_attempts: 2, backoff_s: 0}}
tasks:
  - {id: one, agent: ask, input: {text: $goal.text}, min_confidence: 0.5}
  - {id: two, agent: ask, input: {text: $one.answer, depth: 3}}
"""


@pytest.fixture
def run_file(store_url: str, tmp_path: Path) -> Path:
    code = tmp_path / "code"
    code.mkdir()
    (code / "uvagents.py").write_text(AGENTS)
    (tmp_path / "plan.yaml").write_text(PLAN)
    env = {"PYTHONPATH": str(code)}
    ran = baton("run", str(tmp_path / "plan.yaml"), "--input", '{"text": "low"}',
                "--goal-id", "uv", store=store_url, env=env)
    assert ran.code == 0, ran.err
    path = tmp_path / "uv.jsonl"
    assert baton("export", "uv", "-o", str(path), store=store_url, env=env).code == 0
    (code / "imported").unlink()
    return path


def test_the_run_records_the_contract_schemas(run_file: Path) -> None:
    started = json.loads(run_file.read_text().splitlines()[1])["payload"]
    schemas = started["schemas"]
    assert schemas["agents"]["ask"]["output"]["title"] == "Answer"
    assert schemas["agents"]["ask"]["input"]["properties"]["depth"]["minimum"] == 1
    assert schemas["input"]["title"] == "Question"
    assert ".OutputRejected" in run_file.read_text()  # replay re-judges a rejection too


def test_replay_without_the_modules_checks_against_the_recorded_schemas(
    run_file: Path,
) -> None:
    replayed = baton("replay", str(run_file))  # uvagents is not importable here
    assert replayed.code == 0, replayed.out + replayed.err
    first = replayed.out.splitlines()[0]
    assert "contract schemas recorded in the run" in first and "uvagents" in first
    assert "ok" in replayed.out
    data = baton("replay", str(run_file), "--json").json()
    assert data["ok"] and data["contracts"] == "recorded schemas"
    # a rejected output and its retry were re-decided too: `one` dispatched, rejected, retry
    # scheduled, dispatched again, accepted; `two` dispatched, accepted; the goal completed
    assert data["decisions"] == 8


def test_reexecute_needs_the_code_and_says_so_in_one_line(run_file: Path) -> None:
    result = baton("replay", str(run_file), "--reexecute")
    assert result.code == 2
    assert len(result.err.strip().splitlines()) == 1
    assert "--reexecute" in result.err and "uvagents" in result.err


def test_no_code_imports_nothing_the_file_names(run_file: Path) -> None:
    code = run_file.parent / "code"
    result = baton("replay", str(run_file), "--no-code", "--json",
                   env={"PYTHONPATH": str(code)})  # importable, and still not imported
    assert result.code == 0, result.err
    assert result.json()["ok"] and result.json()["contracts"] == "recorded schemas"
    assert not (code / "imported").exists()
    with_code = baton("replay", str(run_file), "--json", env={"PYTHONPATH": str(code)})
    assert with_code.json()["contracts"] == "modules" and (code / "imported").exists()


def test_a_changed_recorded_schema_is_a_divergence_not_an_ok(run_file: Path) -> None:
    content = [json.loads(line) for line in run_file.read_text().splitlines()]
    schemas = content[1]["payload"]["schemas"]
    schemas["agents"]["ask"]["output"]["properties"]["answer"]["maxLength"] = 1
    from baton.history.runfile import chain_digest

    previous = ""
    for line in content:
        line["digest"] = previous = chain_digest(previous, line)
    forged = run_file.with_name("forged.jsonl")
    forged.write_text("".join(json.dumps(line) + "\n" for line in content))
    result = baton("replay", str(forged), "--no-code", "--json")
    assert result.code == 1 and result.json()["divergence"] is not None
