"""examples/llm: offline by default; against any OpenAI-compatible endpoint when configured."""

from __future__ import annotations

import pytest

pytest.importorskip("pydantic_ai")

from tests.cli_support import baton
from tests.openai_server import chat_server, tool

PLAN = "examples/llm/plan.yaml"
TRIP = "@examples/travel/trip.json"


def test_the_example_runs_offline_and_re_execution_names_its_llm_agents(sqlite_url) -> None:
    ran = baton("run", PLAN, "--input", TRIP, "--json", store=sqlite_url,
                env={"BATON_LLM_BASE_URL": "", "BATON_LLM_MODEL": ""})
    assert ran.code == 0, ran.err
    result = ran.json()
    assert result["status"] == "completed" and result["output"]["summary"]
    again = baton("replay", result["goal_id"], "--reexecute", store=sqlite_url)
    assert again.code == 0, again.err
    assert "LLM agents price, summarise answer with their recorded outputs" in again.err
    stats = baton("stats", "--json", store=sqlite_url).json()
    assert {(row["agent"], row["model"]) for row in stats["models"]} == {
        ("price", "local-pricing"), ("summarise", "test")
    }


def test_the_example_talks_to_an_openai_compatible_endpoint_when_one_is_set(sqlite_url) -> None:
    offer = {"id": "offer-X1", "price_per_passenger": 60.0, "flight": {
        "id": "X1", "carrier": "TP", "origin": "LHR", "destination": "Lisbon", "departs": "09:00",
        "fare": 45.0, "seats_left": 9}}
    script = [tool({"total": 120.0, "best_offer": offer, "confidence": 0.9}),
              tool({"text": "Two seats to Lisbon are booked."})]
    with chat_server(script) as server:
        env = {"BATON_LLM_BASE_URL": server.url, "BATON_LLM_MODEL": "llama3.2",
               "BATON_LLM_API_KEY": "local"}
        ran = baton("run", PLAN, "--input", TRIP, "--json", store=sqlite_url, env=env)
    assert ran.code == 0, ran.err
    assert ran.json()["output"]["summary"] == "Two seats to Lisbon are booked."
    # The plan's max_cost_usd cannot limit a model with no price: said, one line an agent.
    assert ran.err.splitlines() == [
        f"baton: warning: agents.{name}: llm: model 'openai:llama3.2' has no price in "
        "genai-prices: its calls count as $0, so budget.max_cost_usd cannot limit them "
        "(budget.max_tokens can)" for name in ("price", "summarise")]
    assert [seen.body["model"] for seen in server.requests] == ["llama3.2", "llama3.2"]


def test_replay_needs_no_working_model_setting_but_calling_the_agents_does(sqlite_url) -> None:
    ran = baton("run", PLAN, "--input", TRIP, "--json", store=sqlite_url,
                env={"BATON_LLM_BASE_URL": "", "BATON_LLM_MODEL": ""})
    assert ran.code == 0, ran.err
    goal = ran.json()["goal_id"]
    # A shell set up for a local endpoint, without a model: the `test` agent could not be
    # called there, but replay reads the recorded answers and calls nothing.
    with chat_server([]) as server:
        env = {"BATON_LLM_BASE_URL": server.url, "BATON_LLM_MODEL": ""}
        plain = baton("replay", goal, "--json", store=sqlite_url, env=env)
        again = baton("replay", goal, "--reexecute", store=sqlite_url, env=env)
        calling = baton("replay", goal, "--reexecute", "--call-agents", store=sqlite_url,
                        env=env)
    assert plain.code == 0, plain.err
    assert plain.json()["contracts"] == "modules"  # today's contracts, not a fallback
    assert again.code == 0, again.err
    assert calling.code == 2
    [line] = [line for line in calling.err.splitlines() if line.startswith("baton: error:")]
    assert "plan: agents.price: " in line and "with a base URL, set BATON_LLM_MODEL" in line
    assert server.requests == []


def test_without_the_llm_extra_the_plan_error_names_the_extra_to_install(tmp_path) -> None:
    # A user who installed '.[test]' as the quick start says, then runs the LLM example: the
    # error named the missing module only, not what to install (`serve` and `timeline` do).
    import subprocess
    import sys

    from tests.cli_support import ROOT

    missing = "import sys; sys.modules.update(pydantic_ai=None, openai=None); "
    run_cli = "import runpy; runpy.run_module('baton.cli', run_name='__main__')"
    result = subprocess.run(
        [sys.executable, "-c", missing + run_cli, "validate", PLAN], cwd=ROOT,
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert [line.split(": ")[1] for line in lines] == ["agents.price", "agents.summarise"]
    assert all(line.endswith("LLM agents need the llm extra: pip install 'baton[llm]'")
               for line in lines), lines


def test_a_base_url_without_a_model_says_to_set_one_for_the_agent_object_too(sqlite_url) -> None:
    # The README's endpoint command with BATON_LLM_MODEL left out: the Agent object's line was
    # "model FunctionModel(model_name='local-pricing', function=<function …>, …): use 'test' or
    # 'openai:<model>'", a repr instead of the setting to give.
    checked = baton("validate", PLAN, store=sqlite_url,
                    env={"BATON_LLM_BASE_URL": "http://127.0.0.1:9/v1", "BATON_LLM_MODEL": ""})
    assert checked.code == 2
    price, summarise = checked.err.strip().splitlines()
    assert price.startswith(f"{PLAN}: agents.price: ")
    assert price.endswith("with a base URL, set BATON_LLM_MODEL to a model the endpoint serves "
                          "(the Agent's own model, 'local-pricing', is not an OpenAI model)")
    assert "FunctionModel(" not in price
    assert summarise.endswith("with a base URL, set BATON_LLM_MODEL (or the plan's model) to a "
                              "model the endpoint serves")
