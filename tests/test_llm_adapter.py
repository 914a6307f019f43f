"""The LLM adapter's own logic on pydantic-ai's local models (TestModel, FunctionModel)."""

from __future__ import annotations

import pytest

pytest.importorskip("pydantic_ai")

from baton.domain.attempts import AttemptContext
from baton.domain.errors import PlanError
from baton.domain.replay import replay
from baton.history.recorded import reexecute
from baton.llm.agents import render_prompt
from baton.runtime.loading import prepare_plan
from tests import llm_agents
from tests.llm_models import QuoteIn
from tests.support import events_of, run


def quote_plan(agent: object, **task: object) -> dict:
    return {
        "version": 1, "name": "llm", "agents": {"quote": agent},
        "defaults": {"retry": {"max_attempts": 3, "backoff_s": 0, "jitter": 0}},
        "tasks": [{"id": "quote", "agent": "quote", "input": {"item": "$goal.item"}, **task}],
        "output": "$quote",
    }


def declared(model: str = "test") -> dict:
    return {"llm": {"model": model, "instructions": "Quote.",
                    "input": "tests.llm_models:QuoteIn", "output": "tests.llm_models:Quote"}}


def test_the_prompt_is_canonical_json_of_the_input_and_carries_previous_errors() -> None:
    one = render_prompt(QuoteIn(item="tée", quantity=2), None)
    assert one == 'Input (QuoteIn), as JSON:\n{"item":"tée","quantity":2}'
    again = render_prompt(QuoteIn(quantity=2, item="tée"), AttemptContext(number=1))
    assert again == one
    reask = render_prompt(QuoteIn(item="x"), AttemptContext(number=2, previous_errors=["bad"]))
    assert reask.endswith("attempt 2. The previous answer was rejected:\n- bad\n"
                          "Answer again, correcting these problems.")


def test_a_huge_previous_rejection_is_quoted_cut_short_in_the_reask() -> None:
    # A planner's fragment of 5000 tasks an allowlist refuses is rejected with a problem per
    # task: one error of ~400 KB. The re-ask quotes its start, not 100k tokens of it per retry.
    problems = "; ".join(f"tasks[plan/t{i}].agent: agent 'nobody' is not in the plan's agents "
                         "allowlist" for i in range(5000))
    error = f"expands.check: {problems}"
    reask = render_prompt(QuoteIn(item="x"), AttemptContext(number=2, previous_errors=[error]))
    assert len(reask) < 3000
    assert f"- {error[:200]}" in reask
    assert f"({len(error) - 2000} more characters not shown)" in reask
    assert reask.endswith("Answer again, correcting these problems.")


def test_an_agent_object_is_re_asked_with_the_low_confidence_reason_and_succeeds(store) -> None:
    llm_agents.PROMPTS.clear()
    data = quote_plan("tests.llm_agents:quoting", min_confidence=0.9)
    goal = run(store, data, {"item": "tea"})
    assert goal.state.status == "completed"
    assert goal.state.output == {"price": 3.5, "confidence": 0.95}
    first, second = llm_agents.PROMPTS
    assert "rejected" not in first
    assert "confidence: 0.2 is below min_confidence 0.9" in second
    returned = events_of(store, goal.id, "AgentReturned")
    assert [event.usage["model"] for event in returned] == ["learner", "learner"]
    assert all(event.usage["requests"] == 1 for event in returned)
    # Replay re-decides from the record, and re-execution hands the agent the recorded output:
    # neither calls the model again.
    events = list(store.events(goal.id))
    llm_agents.PROMPTS.clear()
    loaded = prepare_plan(data)
    assert replay(events, loaded.contracts).ok
    assert reexecute(events, loaded).ok
    assert llm_agents.PROMPTS == []


def test_an_agent_making_many_requests_stops_once_the_goal_budget_is_spent(store) -> None:
    llm_agents.CALLS.clear()
    data = quote_plan("tests.llm_agents:looping") | {"budget": {"max_tokens": 250}}
    data["defaults"]["retry"]["max_attempts"] = 1
    goal = run(store, data, {"item": "tea"})
    assert goal.state.status == "failed"
    # 130 tokens a response: after the second (260 > 250) no further request is made.
    assert llm_agents.CALLS == [1, 2]
    [raised] = events_of(store, goal.id, "AgentRaised")
    assert "token budget" in raised.message
    assert (raised.usage["tokens"], raised.usage["requests"]) == (260, 2)


def test_a_tool_loop_without_a_budget_stops_at_the_request_cap_and_says_whose(store) -> None:
    llm_agents.CALLS.clear()
    data = quote_plan("tests.llm_agents:looping")
    data["defaults"]["retry"]["max_attempts"] = 1
    goal = run(store, data, {"item": "tea"})
    assert goal.state.status == "failed"
    assert len(llm_agents.CALLS) == 50
    [raised] = events_of(store, goal.id, "AgentRaised")
    # Not "the goal's token budget": the goal has none; pydantic-ai's request cap stopped it.
    assert raised.message == ("pydantic-ai's usage limit stops this attempt: The next request "
                              "would exceed the request_limit of 50.")
    assert (raised.usage["requests"], raised.usage["tokens"]) == (50, 6500)


def test_a_declared_agent_on_the_test_model_runs_offline_and_reports_usage(store) -> None:
    goal = run(store, quote_plan(declared()), {"item": "tea"})
    assert goal.state.status == "completed"
    [returned] = events_of(store, goal.id, "AgentReturned")
    assert returned.usage["model"] == "test" and returned.usage["tokens"] > 0
    assert returned.usage["input_tokens"] + returned.usage["output_tokens"] == (
        returned.usage["tokens"]
    )


@pytest.mark.parametrize(
    ("agent", "where", "message"),
    [
        ("tests.llm_agents:no_input_contract", "agents.quote",
         "its deps_type (the input contract) must be a pydantic model"),
        (declared("anthropic:claude"), "agents.quote", "use 'test' or 'openai:<model>'"),
        ({"llm": {**declared()["llm"], "output": "tests.llm_models:nothing"}}, "agents.quote",
         "AttributeError"),
        ({"llm": {**declared()["llm"], "temperature": 2}}, "agents.quote.llm.temperature",
         "Extra inputs are not permitted"),
        (3, "agents.quote", "expected 'module:callable' or a mapping with an llm:"),
    ],
)
def test_a_bad_llm_agent_is_a_plan_error_naming_it(agent: object, where: str, message: str) -> None:
    with pytest.raises(PlanError) as caught:
        prepare_plan(quote_plan(agent))
    text = str(caught.value)
    assert where in text and message in text
    assert "\n" not in text
