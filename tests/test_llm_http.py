"""LLM agents against a real OpenAI-compatible HTTP server on loopback, through the real client
stack (pydantic-ai -> openai -> httpx), pointed at it by the plan's `base_url`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

pytest.importorskip("pydantic_ai")

from baton.domain.replay import replay
from baton.history.recorded import reexecute
from baton.llm.pricing import price_tokens
from baton.readmodels.reading import ReadModels, refresh
from baton.runtime.loading import prepare_plan
from baton.store.eventstore import open_store
from tests.cli_support import baton
from tests.openai_server import Answer, chat_server, tool
from tests.support import events_of, kinds, projected, run

KEY = "sk-test-4f9c2b7e-DO-NOT-LEAK"
VALID = {"price": 12.5, "confidence": 0.9}


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_LLM_API_KEY", KEY)
    monkeypatch.delenv("BATON_LLM_BASE_URL", raising=False)
    monkeypatch.delenv("BATON_LLM_MODEL", raising=False)


def llm_plan(url: str, *, max_attempts: int = 3, timeout_s: float = 20, **extra: Any) -> dict:
    task = {"id": "quote", "agent": "quote", "input": {"item": "$goal.item"},
            **extra.pop("task", {})}
    return {
        "version": 1, "name": "llm-http",
        "agents": {"quote": {"llm": {
            "model": "openai:gpt-4o-mini", "instructions": "Quote a price for the item.",
            "input": "tests.llm_models:QuoteIn", "output": "tests.llm_models:Quote",
            "base_url": url,
        }}},
        "defaults": {"retry": {"max_attempts": max_attempts, "backoff_s": 0.01, "jitter": 0},
                     "timeout_s": timeout_s},
        "tasks": [task], "output": "$quote", **extra,
    }


def test_a_valid_structured_answer_is_the_output_with_its_usage_and_cost(store) -> None:
    with chat_server([tool(VALID, prompt_tokens=1000, completion_tokens=500)]) as server:
        goal = run(store, llm_plan(server.url), {"item": "tea"})
    assert goal.state.status == "completed"
    assert goal.state.output == VALID
    [seen] = server.requests
    assert seen.headers["authorization"] == f"Bearer {KEY}"
    assert seen.body["model"] == "gpt-4o-mini"
    assert 'Input (QuoteIn), as JSON:\n{"item":"tea","quantity":1}' in seen.prompt()
    [returned] = events_of(store, goal.id, "AgentReturned")
    usage = returned.usage
    assert (usage["input_tokens"], usage["output_tokens"], usage["tokens"]) == (1000, 500, 1500)
    assert usage["requests"] == 1
    assert usage["model"] == "gpt-4o-mini"
    expected = price_tokens("openai:gpt-4o-mini", input_tokens=1000, output_tokens=500)
    assert expected is not None and expected[0] > 0
    assert usage["cost_usd"] == pytest.approx(expected[0])
    assert "genai-prices" in usage["cost_source"]
    assert goal.state.used.tokens == 1500
    refresh(store)
    [row] = projected(store, ReadModels.models)  # model_stats: the read model per model
    assert (row["agent"], row["model"], row["requests"]) == ("quote", "gpt-4o-mini", 1)
    assert (row["input_tokens"], row["output_tokens"], row["tokens"]) == (1000, 500, 1500)
    assert row["cost_usd"] == pytest.approx(expected[0])


def test_a_model_no_price_table_knows_costs_nothing_with_no_source(store) -> None:
    data = llm_plan("")
    data["agents"]["quote"]["llm"]["model"] = "openai:in-house-model-7"
    with chat_server([tool(VALID, prompt_tokens=1000, completion_tokens=500)]) as server:
        data["agents"]["quote"]["llm"]["base_url"] = server.url
        goal = run(store, data, {"item": "tea"})
    assert goal.state.status == "completed"
    [returned] = events_of(store, goal.id, "AgentReturned")
    assert returned.usage["tokens"] == 1500
    # Not "reported": nobody reported a cost, and nothing could price these tokens.
    assert (returned.usage["cost_usd"], returned.usage["cost_source"]) == (0.0, None)


def test_usage_a_server_omits_is_recorded_unknown_not_as_zero_tokens_priced(store) -> None:
    with chat_server([Answer("tool", VALID, usage=False)]) as server:
        goal = run(store, llm_plan(server.url), {"item": "tea"})
    assert goal.state.status == "completed"
    [returned] = events_of(store, goal.id, "AgentReturned")
    usage = returned.usage
    # Nobody counted these tokens: unknown, and no price table "priced" them at 0.
    assert (usage["input_tokens"], usage["output_tokens"]) == (None, None)
    assert (usage["cost_usd"], usage["cost_source"]) == (0.0, None)
    assert (usage["tokens"], usage["requests"], usage["model"]) == (0, 1, "gpt-4o-mini")


def test_a_failed_request_and_the_answer_count_on_one_model_row(store) -> None:
    with chat_server([Answer("status", status=500), tool(VALID)]) as server:
        goal = run(store, llm_plan(server.url), {"item": "tea"})
    assert goal.state.status == "completed"
    [raised] = events_of(store, goal.id, "AgentRaised")
    assert raised.usage["model"] == "gpt-4o-mini"  # as the answer names it
    refresh(store)
    [row] = projected(store, ReadModels.models)
    assert (row["model"], row["results"], row["requests"], row["tokens"]) == (
        "gpt-4o-mini", 2, 2, 120)


@pytest.mark.parametrize("bad", ["malformed", "truncated"])
def test_a_malformed_or_truncated_answer_fails_the_attempt_and_the_retry_succeeds(
    store, bad: str
) -> None:
    with chat_server([Answer(bad), tool(VALID)]) as server:
        goal = run(store, llm_plan(server.url), {"item": "tea"})
    assert goal.state.status == "completed"
    assert len(server.requests) == 2  # one per attempt: neither library retried on its own
    [raised] = events_of(store, goal.id, "AgentRaised")
    assert raised.attempt == 1 and raised.error_type == "LlmCallFailed"
    [scheduled] = events_of(store, goal.id, "RetryScheduled")
    assert scheduled.rule == "retry.backoff"


def test_a_completion_without_choices_is_a_failed_model_call_not_a_bare_index_error(
    store,
) -> None:
    empty = {"id": "c", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
             "choices": []}
    with chat_server([Answer("raw", empty), tool(VALID)]) as server:
        goal = run(store, llm_plan(server.url), {"item": "tea"})
    assert goal.state.status == "completed"
    [raised] = events_of(store, goal.id, "AgentRaised")
    assert raised.error_type == "LlmCallFailed"
    # says what was wrong (as Azure's content filter answers), not "IndexError: list index ..."
    assert raised.message == ("the model's answer is unusable: the response holds no choices "
                              "(as a content filter answers)")
    assert raised.usage["requests"] == 1  # the request was sent


def test_an_answer_failing_the_output_model_is_rejected_and_the_reask_carries_the_errors(
    store,
) -> None:
    script = [tool({"price": "a lot", "confidence": 0.9}), tool(VALID)]
    with chat_server(script) as server:
        goal = run(store, llm_plan(server.url), {"item": "tea"})
    assert goal.state.status == "completed"
    [rejected] = events_of(store, goal.id, "OutputRejected")
    assert rejected.attempt == 1 and rejected.errors[0].startswith("price:")
    first, second = server.requests
    assert "rejected" not in first.prompt()
    assert "This is attempt 2. The previous answer was rejected:" in second.prompt()
    assert "price: Input should be a valid number" in second.prompt()
    # The rejected answer's tokens count too: both attempts are in the goal's usage.
    assert goal.state.used.tokens == 240


def test_a_429_with_retry_after_is_a_recorded_failure_retried_no_earlier(store) -> None:
    script = [Answer("status", status=429, headers={"Retry-After": "1"}), tool(VALID)]
    with chat_server(script) as server:
        goal = run(store, llm_plan(server.url), {"item": "tea"})
    assert goal.state.status == "completed"
    assert len(server.requests) == 2
    [raised] = events_of(store, goal.id, "AgentRaised")
    assert raised.retry_after_s == 1.0 and "HTTP 429" in raised.message
    assert raised.usage["requests"] == 1 and raised.usage["tokens"] == 0
    [scheduled] = events_of(store, goal.id, "RetryScheduled")
    assert scheduled.rule == "retry.not_before"  # the backoff (0.01 s) alone would be sooner
    assert scheduled.delay_s == 1.0
    assert scheduled.due_at - raised.timestamp == timedelta(seconds=1)
    # Replay and re-execution reproduce it from the record: the usage and the not-before too.
    events = list(store.events(goal.id))
    loaded = prepare_plan(llm_plan(server.url))
    assert replay(events, loaded.contracts).ok
    assert reexecute(events, loaded).ok


def test_a_500_is_one_request_then_the_orchestrators_retry(store) -> None:
    with chat_server([Answer("status", status=500), tool(VALID)]) as server:
        goal = run(store, llm_plan(server.url), {"item": "tea"})
    assert goal.state.status == "completed"
    # The OpenAI client would retry a 500 twice by itself; here it is off: two requests only.
    assert len(server.requests) == 2
    [raised] = events_of(store, goal.id, "AgentRaised")
    assert "HTTP 500" in raised.message and raised.retry_after_s is None


def test_a_hanging_answer_is_cancelled_at_the_timeout_and_the_connection_closed(store) -> None:
    # 2 s: the retry's whole request must fit in it on a loaded machine (0.5 s failed once
    # with twelve test processes on two cores)
    with chat_server([Answer("hang"), tool(VALID)]) as server:
        goal = run(store, llm_plan(server.url, timeout_s=2), {"item": "tea"})
        assert server.closed.wait(10)
    assert goal.state.status == "completed"
    [timed_out] = events_of(store, goal.id, "AgentTimedOut")
    assert timed_out.attempt == 1
    # The client closed the held connection before the retry's request: the call was cancelled,
    # not left running beside its retry.
    assert server.log == ["request", "closed", "request"]


def test_the_budget_stops_the_attempt_that_would_break_it_before_its_request(store) -> None:
    invalid = {"price": "a lot", "confidence": 0.9}
    script = [tool(invalid), tool(invalid), tool(invalid)]
    with chat_server(script) as server:
        data = llm_plan(server.url, max_attempts=5, task={"estimate": {"tokens": 120}},
                        budget={"max_tokens": 250})
        goal = run(store, data, {"item": "tea"})
    assert goal.state.status == "failed"
    assert len(server.requests) == 2  # 120 + 120 used; a third 120 would pass 250
    [exhausted] = events_of(store, goal.id, "BudgetExhausted")
    assert (exhausted.budget, exhausted.used) == ("tokens", 240)


def test_a_valid_answer_that_passes_the_token_budget_is_kept_not_thrown_away(store) -> None:
    # The budget leaves 100 tokens; the one request spends 120. The answer is paid for either
    # way: it is judged and accepted like any agent's overspending answer, not discarded (and
    # then retried into a BudgetExhausted) by the model library's after-the-fact token check.
    with chat_server([tool(VALID), tool(VALID)]) as server:
        goal = run(store, llm_plan(server.url, budget={"max_tokens": 100}), {"item": "tea"})
    assert goal.state.status == "completed"
    assert goal.state.output == VALID
    assert len(server.requests) == 1
    assert events_of(store, goal.id, "AgentRaised") == []
    assert goal.state.used.tokens == 120


def test_an_attempt_the_budget_leaves_no_tokens_sends_no_request() -> None:
    import asyncio

    from baton.domain.attempts import AttemptContext
    from baton.llm.agents import LlmCallFailed
    from tests.llm_models import QuoteIn

    with chat_server([tool(VALID)]) as server:
        agent = prepare_plan(llm_plan(server.url)).agents["quote"]
        # Other running attempts hold what the goal's max_tokens leaves: 0 for this one.
        with pytest.raises(LlmCallFailed) as raised:
            asyncio.run(agent(QuoteIn(item="tea"),
                              attempt=AttemptContext(number=1, tokens_left=0)))
    assert server.requests == []
    assert str(raised.value) == ("the goal's token budget stops this attempt: the goal's "
                                 "max_tokens leaves this attempt 0 tokens; no request is sent.")
    assert (raised.value.usage["requests"], raised.value.usage["tokens"]) == (0, 0)


def test_the_api_key_appears_nowhere_in_the_store_or_any_output(tmp_path) -> None:
    import json

    db = tmp_path / "baton.db"
    url = f"sqlite:///{db}"
    env = {"BATON_LLM_API_KEY": KEY}
    script = [Answer("status", status=401, echo_auth=True), tool(VALID)]
    with chat_server(script) as server:
        plan = tmp_path / "plan.json"
        plan.write_text(json.dumps(llm_plan(server.url, max_attempts=2)))
        ran = baton("run", str(plan), "--input", '{"item": "tea"}', "--json",
                    store=url, env=env)
    assert ran.code == 0, ran.err
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"  # it was sent
    goal_id = ran.json()["goal_id"]
    outputs = [ran.out, ran.err]
    for command in (("audit", goal_id, "--json"), ("status", goal_id, "--json"),
                    ("stats", "--json"), ("export", goal_id, "-o", str(tmp_path / "run.jsonl"))):
        result = baton(*command, store=url, env=env)
        assert result.code == 0, result.err
        outputs += [result.out, result.err]
    outputs.append((tmp_path / "run.jsonl").read_text())
    raised = [line for line in outputs[-1].splitlines() if "AgentRaised" in line]
    assert raised and "Incorrect API key provided: Bearer ***" in raised[0]
    stored = b"".join(path.read_bytes() for path in tmp_path.rglob("baton.db*") if path.is_file())
    assert KEY.encode() not in stored
    for text in outputs:
        assert KEY not in text


def test_a_long_error_quoting_the_key_near_the_cut_records_no_part_of_it(store) -> None:
    # Error messages are recorded cut to 400 characters; the key must go before the cut, or a
    # key straddling it would be stored but for its last characters.
    pads = range(280, 340, 6)
    script = [Answer("status", status=401, echo_auth=True, message="x" * pad) for pad in pads]
    with chat_server(script) as server:
        goal = run(store, llm_plan(server.url, max_attempts=len(script)), {"item": "tea"})
    assert goal.state.status == "failed"
    raised = events_of(store, goal.id, "AgentRaised")
    assert len(raised) == len(script)
    pieces = {KEY[i:i + 8] for i in range(len(KEY) - 7)}
    for event in raised:
        assert len(event.message) <= 400
        assert not [piece for piece in pieces if piece in event.message], event.message


def _openai_agent(monkeypatch: pytest.MonkeyPatch, model: Any) -> dict:
    """A plan naming `tests.llm_agents:openai_agent`, an Agent object holding `model`: what
    `Agent("openai:gpt-4o-mini", ...)` holds, built here so its endpoint is the test server."""
    from pydantic_ai import Agent

    from tests import llm_agents
    from tests.llm_models import Quote, QuoteIn

    agent = Agent(model, deps_type=QuoteIn, output_type=Quote, instructions="Quote a price.")
    monkeypatch.setattr(llm_agents, "openai_agent", agent, raising=False)
    data = llm_plan("", max_attempts=3)
    data["agents"]["quote"] = "tests.llm_agents:openai_agent"
    return data


def test_an_agent_objects_own_openai_model_gets_no_retries_of_its_own_and_its_key_scrubbed(
    store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydantic_ai.models.openai import OpenAIResponsesModel
    from pydantic_ai.providers.openai import OpenAIProvider

    own_key = "sk-own-9d1e77c3-DO-NOT-LEAK"
    script = [Answer("status", status=401, echo_auth=True), Answer("status", status=500),
              tool(VALID)]
    with chat_server(script) as server:
        model = OpenAIResponsesModel(
            "gpt-4o-mini", provider=OpenAIProvider(base_url=server.url, api_key=own_key))
        goal = run(store, _openai_agent(monkeypatch, model), {"item": "tea"})
    assert goal.state.status == "completed", goal.state.reason
    # One request per attempt: the object's client would have retried the 500 by itself.
    assert len(server.requests) == 3
    assert server.requests[0].headers["authorization"] == f"Bearer {own_key}"
    raised = events_of(store, goal.id, "AgentRaised")
    assert [event.attempt for event in raised] == [1, 2]
    assert "Bearer ***" in raised[0].message
    assert all(own_key not in event.message for event in raised)


def test_an_agent_objects_openai_model_talks_to_the_configured_base_url(
    store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydantic_ai.models.openai import OpenAIResponsesModel
    from pydantic_ai.providers.openai import OpenAIProvider

    model = OpenAIResponsesModel(  # an endpoint nothing listens on: BATON_LLM_BASE_URL wins
        "gpt-4o-mini", provider=OpenAIProvider(base_url="http://127.0.0.1:9/v1", api_key="x"),
        settings={"temperature": 0.25})
    with chat_server([tool(VALID)]) as server:
        monkeypatch.setenv("BATON_LLM_BASE_URL", server.url)
        goal = run(store, _openai_agent(monkeypatch, model), {"item": "tea"})
    assert goal.state.status == "completed", goal.state.reason
    [seen] = server.requests
    assert seen.body["model"] == "gpt-4o-mini"
    assert seen.body["temperature"] == 0.25  # the model object's own settings come along
    assert seen.headers["authorization"] == f"Bearer {KEY}"


def test_a_tool_that_raises_fails_the_attempt_with_what_its_requests_spent(
    store, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = [Answer("tool", {"item": "boom"}, tool_name="stock"),  # the tool raises
              Answer("tool", {"item": "tea"}, tool_name="stock"),
              Answer("tool", VALID, tool_name="final_result")]
    with chat_server(script) as server:
        monkeypatch.setenv("BATON_LLM_BASE_URL", server.url)
        data = llm_plan(server.url)
        data["agents"]["quote"] = "tests.llm_agents:with_a_tool"
        goal = run(store, data, {"item": "tea"})
    assert goal.state.status == "completed", goal.state.reason
    [raised] = events_of(store, goal.id, "AgentRaised")
    assert (raised.error_type, raised.message) == ("RuntimeError", "the stock service is down")
    # The request before the tool raised was paid for: it counts, in the budget and the stats.
    assert raised.usage is not None
    assert (raised.usage["tokens"], raised.usage["requests"]) == (120, 1)
    [returned] = events_of(store, goal.id, "AgentReturned")
    assert (returned.usage["tokens"], returned.usage["requests"]) == (240, 2)
    assert goal.state.used.tokens == 360


# An environment with no key and no endpoint: an `openai:` agent cannot be called from it.
KEYLESS = {"BATON_LLM_API_KEY": "", "OPENAI_API_KEY": "", "BATON_LLM_BASE_URL": ""}


def keyed_plan_file(tmp_path) -> tuple[Any, str]:
    """A plan whose agent needs a key (api.openai.com), and a SQLite store URL beside it."""
    import json

    data = llm_plan("")
    del data["agents"]["quote"]["llm"]["base_url"]
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(data))
    return plan, f"sqlite:///{tmp_path / 'baton.db'}"


def test_no_api_key_is_a_plan_error_before_anything_is_stored(tmp_path) -> None:
    plan, url = keyed_plan_file(tmp_path)
    env = KEYLESS
    ran = baton("run", str(plan), "--input", '{"item": "tea"}', store=url, env=env)
    assert ran.code == 2
    assert ran.err.strip().splitlines() == [
        f"baton: error: {plan}: agents.quote: llm: no API key: set "
        "BATON_LLM_API_KEY or OPENAI_API_KEY"]
    assert not (tmp_path / "baton.db").exists()  # no goal stored, no attempt made
    # Validating or submitting needs no key: a worker elsewhere may hold it.
    checked = baton("validate", str(plan), store=url, env=env)
    assert checked.code == 0, checked.err
    submitted = baton("submit", str(plan), "--input", '{"item": "tea"}', store=url, env=env)
    assert submitted.code == 0, submitted.err


def test_a_worker_without_the_api_key_leaves_the_goal_to_one_that_has_it(tmp_path) -> None:
    """Driven by a worker started without the key, every attempt failed at once and was retried
    until the goal failed, for want of a setting in one process's environment."""
    plan, url = keyed_plan_file(tmp_path)
    keyless = KEYLESS
    assert baton("submit", str(plan), "--input", '{"item": "tea"}', "--goal-id", "q",
                 store=url, env=keyless).code == 0
    worker = baton("worker", "--burst", store=url, env=keyless, timeout=60)
    assert worker.code == 0, worker.err
    [said] = [line for line in worker.err.splitlines() if "goal q" in line]
    assert "ERROR" in said and said.endswith(
        "its agents cannot be called from this worker: agents.quote: llm: no API key: set "
        "BATON_LLM_API_KEY or OPENAI_API_KEY"), said
    resumed = baton("resume", "q", store=url, env=keyless)  # nor does a keyless `resume`
    assert resumed.code == 2 and resumed.err.strip() == (
        "baton: error: goal q: agents.quote: llm: no API key: set BATON_LLM_API_KEY or "
        "OPENAI_API_KEY"), resumed.err
    forked = baton("fork", "q", "--at", "1", "--run", "--goal-id", "qf", store=url, env=keyless)
    assert forked.code == 2 and "agents.quote: llm: no API key" in forked.err, forked.err
    store = open_store(url)
    try:
        assert not store.exists("qf")  # a fork no one here could drive is not stored
        assert kinds(store, "q") == ["Started"]  # nothing recorded: no attempt, no failure
    finally:
        store.close()
    with chat_server([tool(VALID)]) as server:  # a worker that has the key and the endpoint
        keyed = baton("worker", "--burst", store=url, timeout=60,
                      env={"BATON_LLM_API_KEY": KEY, "BATON_LLM_BASE_URL": server.url})
    assert keyed.code == 0 and "goal q: completed" in keyed.err, keyed.err
    assert len(server.requests) == 1


def test_a_human_resolves_an_llm_task_where_no_api_key_is_set(
    store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from baton.runtime.service import cancel_goal, resolve_task

    data = llm_plan("", max_attempts=1, task={"on_failure": "escalate"})
    del data["agents"]["quote"]["llm"]["base_url"]  # api.openai.com: calling needs a key
    with chat_server([Answer("status", status=500)]) as server:
        monkeypatch.setenv("BATON_LLM_BASE_URL", server.url)
        goal = run(store, data, {"item": "tea"})
    assert goal.state.status == "waiting"
    # An operator's shell: no key, no endpoint. Deciding calls no model, so it needs neither.
    monkeypatch.setenv("BATON_LLM_API_KEY", "")
    monkeypatch.setenv("OPENAI_API_KEY", "")
    monkeypatch.delenv("BATON_LLM_BASE_URL")
    resolved = resolve_task(store, goal.id, "quote", action="output", output=VALID,
                            reason="quoted by hand", by="ana")
    assert resolved.state.tasks["quote"].status == "succeeded"
    assert resolved.state.status in ("waiting", "completed")
    other = run(store, llm_plan("http://127.0.0.1:9/v1", max_attempts=1,
                                task={"on_failure": "escalate"}), {"item": "tea"})
    assert cancel_goal(store, other.id, reason="not needed", by="ana").state.status == "cancelled"


def test_re_execution_calls_a_model_only_when_asked_and_shows_a_changed_answer(store) -> None:
    from baton.history.live import LiveAgents

    with chat_server([tool(VALID)]) as server:
        data = llm_plan(server.url)
        goal = run(store, data, {"item": "tea"})
        events = list(store.events(goal.id))
        loaded = prepare_plan(data)
        assert reexecute(events, loaded).ok
        assert len(server.requests) == 1  # the recording answered: no request
        server.script += [tool(VALID), tool({"price": 99.0, "confidence": 0.9})]
        assert reexecute(events, loaded, agents=LiveAgents(loaded, events)).ok
        changed = reexecute(events, loaded, agents=LiveAgents(loaded, events))
    assert len(server.requests) == 3
    assert not changed.ok and changed.divergence is not None
    assert changed.divergence.recorded["kind"] == "AgentReturned"


def test_a_timed_out_attempt_records_what_its_answered_requests_spent_and_the_budget_binds(
    store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The model asks for a tool (120 tokens, paid for), then its second request hangs past the
    # timeout (2 s: the first round trip and the tool call must fit in it on a loaded machine).
    # The timeout records those 120 tokens: the budget counts them, and the retry
    # (120 spent + its 50 estimate > 150) is never sent.
    script = [Answer("tool", {"item": "tea"}, tool_name="stock"), Answer("hang"), tool(VALID)]
    with chat_server(script) as server:
        monkeypatch.setenv("BATON_LLM_BASE_URL", server.url)
        data = llm_plan(server.url, timeout_s=2, task={"estimate": {"tokens": 50}},
                        budget={"max_tokens": 150})
        data["agents"]["quote"] = "tests.llm_agents:with_a_tool"
        goal = run(store, data, {"item": "tea"})
        assert server.closed.wait(10)
    assert len(server.requests) == 2  # no retry
    [timed_out] = events_of(store, goal.id, "AgentTimedOut")
    assert timed_out.usage is not None
    assert (timed_out.usage["tokens"], timed_out.usage["requests"]) == (120, 2)
    assert timed_out.usage["model"] == "gpt-4o-mini" and timed_out.usage["cost_usd"] > 0
    assert goal.state.used.tokens == 120
    assert goal.state.status == "failed"
    [exhausted] = events_of(store, goal.id, "BudgetExhausted")
    assert (exhausted.budget, exhausted.used) == ("tokens", 120)
    refresh(store)  # `baton stats` sees it too
    [row] = projected(store, ReadModels.models)
    assert (row["results"], row["requests"], row["tokens"]) == (1, 2, 120)
    # Replay folds it, re-execution records it again from the recording.
    events = list(store.events(goal.id))
    loaded = prepare_plan(data)
    assert replay(events, loaded.contracts).ok
    assert reexecute(events, loaded).ok


def test_the_cost_budget_stops_sending_requests_within_an_attempt(
    store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The tool call's request costs $0.015 (100k input tokens of gpt-4o-mini), past the $0.01
    # the goal allows: the answer arrived and is paid for, but the next request is not sent.
    script = [Answer("tool", {"item": "tea"}, tool_name="stock", prompt_tokens=100_000,
                     completion_tokens=0), tool(VALID)]
    with chat_server(script) as server:
        monkeypatch.setenv("BATON_LLM_BASE_URL", server.url)
        data = llm_plan(server.url, budget={"max_cost_usd": 0.01})
        data["agents"]["quote"] = "tests.llm_agents:with_a_tool"
        goal = run(store, data, {"item": "tea"})
    assert len(server.requests) == 1
    cost = price_tokens("openai:gpt-4o-mini", input_tokens=100_000, output_tokens=0)
    assert cost is not None and cost[0] == pytest.approx(0.015)
    [raised] = events_of(store, goal.id, "AgentRaised")
    assert raised.message == (
        "the goal's cost budget stops this attempt: $0.015 spent of the $0.01 the goal's "
        "max_cost_usd left this attempt; no further request is sent.")
    assert raised.usage["cost_usd"] == pytest.approx(0.015)
    assert goal.state.status == "failed"
    [exhausted] = events_of(store, goal.id, "BudgetExhausted")
    assert exhausted.budget == "cost_usd" and exhausted.used == pytest.approx(0.015)


def test_an_attempt_called_again_for_real_keeps_the_cost_budget(store, monkeypatch) -> None:
    """`replay --reexecute --call-agents` pays for its requests as the live run did: the cost
    budget stops the attempt at the same request, so re-execution matches the recording."""
    from baton.history.live import LiveAgents

    costly = Answer("tool", {"item": "tea"}, tool_name="stock", prompt_tokens=100_000,
                    completion_tokens=0)
    with chat_server([costly, tool(VALID)]) as server:
        monkeypatch.setenv("BATON_LLM_BASE_URL", server.url)
        data = llm_plan(server.url, budget={"max_cost_usd": 0.01})
        data["agents"]["quote"] = "tests.llm_agents:with_a_tool"
        goal = run(store, data, {"item": "tea"})
        assert len(server.requests) == 1
        server.script[:] = [costly, tool(VALID)]
        loaded = prepare_plan(data)
        events = list(store.events(goal.id))
        again = reexecute(events, loaded, agents=LiveAgents(loaded, events))
    assert len(server.requests) == 2  # one more request: the one the live run sent
    assert again.ok, again.divergence


@pytest.mark.parametrize("budget", [{"max_cost_usd": 0.01}, {"max_tokens": 50_000}])
def test_an_attempt_a_human_grants_beyond_the_budget_calls_the_model(
    store, monkeypatch: pytest.MonkeyPatch, budget: dict[str, Any]
) -> None:
    """`on_exhausted: escalate`, then `resolve --retry`: the human allowed one more attempt past
    the spent budget, so the budget does not stop it from sending its requests (the tokens'
    limit is in the attempt's recorded context: rules 6)."""
    from baton.runtime.service import resolve_task, resume_goal

    script = [Answer("tool", {"item": "tea"}, tool_name="stock", prompt_tokens=100_000,
                     completion_tokens=0),  # attempt 1: past the budget, then stopped
              Answer("tool", {"item": "tea"}, tool_name="stock"),  # attempt 2
              Answer("tool", VALID, tool_name="final_result")]
    with chat_server(script) as server:
        monkeypatch.setenv("BATON_LLM_BASE_URL", server.url)
        data = llm_plan(server.url, budget={**budget, "on_exhausted": "escalate"})
        data["agents"]["quote"] = "tests.llm_agents:with_a_tool"
        goal = run(store, data, {"item": "tea"})
        assert goal.state.status == "waiting" and len(server.requests) == 1
        resolve_task(store, goal.id, "quote", action="retry", reason="worth it", by="ana")
        goal = resume_goal(store, goal.id)
    assert len(server.requests) == 3  # the granted attempt sent both its requests
    assert goal.state.status == "completed"


def test_an_attempt_the_cost_budget_leaves_nothing_sends_no_request() -> None:
    import asyncio

    from baton.domain.attempts import AttemptContext
    from baton.llm.agents import LlmCallFailed
    from baton.runtime.spending import Spending, spending_of
    from tests.llm_models import QuoteIn

    async def call(agent: Any) -> Any:
        with spending_of(Spending(cost_left_usd=0.0)):  # as the call pool hands it
            return await agent(QuoteIn(item="tea"), attempt=AttemptContext(number=1))

    with chat_server([tool(VALID)]) as server:
        agent = prepare_plan(llm_plan(server.url)).agents["quote"]
        with pytest.raises(LlmCallFailed) as raised:
            asyncio.run(call(agent))
    assert server.requests == []
    assert str(raised.value) == ("the goal's cost budget stops this attempt: the goal's "
                                 "max_cost_usd leaves this attempt $0; no request is sent.")


def test_a_cost_budget_on_a_model_with_no_price_is_a_warning_naming_agent_and_model(
    store
) -> None:
    from baton.domain.errors import BatonWarning
    from baton.runtime.service import submit_goal

    with chat_server([tool(VALID)]) as server:
        data = llm_plan(server.url, budget={"max_cost_usd": 1.0})
        data["agents"]["quote"]["llm"]["model"] = "openai:in-house-model-7"
        with pytest.warns(BatonWarning) as warned:
            goal = run(store, data, {"item": "tea"})
        assert goal.state.status == "completed"  # it runs: a local model really costs nothing
        with pytest.warns(BatonWarning) as warned_at_submit:  # a worker will drive it: said now
            submit_goal(store, prepare_plan(data), {"item": "tea"}, goal_id="submitted")
        assert [str(w.message) for w in warned_at_submit] == [str(warned[0].message)]
        priced = llm_plan(server.url, budget={"max_cost_usd": 1.0})
        assert prepare_plan(priced).cost_warnings() == []
        assert prepare_plan(llm_plan(server.url)).cost_warnings() == []  # no cost budget
    assert [str(w.message) for w in warned if w.category is BatonWarning] == [
        "agents.quote: llm: model 'openai:in-house-model-7' has no price in genai-prices: its "
        "calls count as $0, so budget.max_cost_usd cannot limit them (budget.max_tokens can)"]


def test_a_huge_retry_after_is_waited_at_most_the_cap(store) -> None:
    from baton.runtime.calls import MAX_RETRY_AFTER_S
    from baton.runtime.runner import Runner

    script = [Answer("status", status=429, headers={"Retry-After": "86400"}), tool(VALID)]
    with chat_server(script) as server:
        data = llm_plan(server.url)
        loaded = prepare_plan(data)
        # A runner that leaves a goal whose next step is a timer far away: the retry is scheduled,
        # not waited for.
        runner = Runner(store=store, loaded=loaded, park_on_timers=True)
        goal = run(store, data, {"item": "tea"}, runner=runner)
    assert goal.state.status == "running" and len(server.requests) == 1
    [raised] = events_of(store, goal.id, "AgentRaised")
    assert MAX_RETRY_AFTER_S == 300
    assert raised.retry_after_s == 300
    assert raised.message.endswith("(asked to retry after 86400s; Baton waits at most 300s)")
    [scheduled] = events_of(store, goal.id, "RetryScheduled")
    assert (scheduled.rule, scheduled.delay_s) == ("retry.not_before", 300)
    # A plan that accepts longer waits between attempts accepts them from the server too.
    longer = llm_plan(server.url, task={"retry": {"max_backoff_s": 3600}})
    assert runner.observer.retry_after_cap("quote") == 300
    assert Runner(store=store, loaded=prepare_plan(longer)).observer.retry_after_cap(
        "quote") == 3600
    events = list(store.events(goal.id))
    assert replay(events, loaded.contracts).ok
    assert reexecute(events, loaded).ok


def test_spans_name_the_model_asked_for_and_the_model_that_answered(store) -> None:
    from baton.telemetry.spans import goal_spans

    answered = Answer("tool", VALID, model="gpt-4o-mini-2024-07-18")
    with chat_server([answered]) as server:
        goal = run(store, llm_plan(server.url), {"item": "tea"})
    assert server.requests[0].body["model"] == "gpt-4o-mini"
    [returned] = events_of(store, goal.id, "AgentReturned")
    assert returned.usage["request_model"] == "gpt-4o-mini"
    assert returned.usage["model"] == "gpt-4o-mini-2024-07-18"
    events = list(store.events(goal.id))
    [attempt] = [span for span in goal_spans(events) if span.name == "invoke_agent quote"]
    assert attempt.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert attempt.attributes["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert reexecute(events, prepare_plan(llm_plan(server.url))).ok


def test_a_base_url_with_credentials_is_refused_at_plan_load_and_never_stored(tmp_path) -> None:
    import json

    from baton.domain.errors import PlanError

    secret = "s3cr3t-7d2c"
    data = llm_plan(f"https://ana:{secret}@llm.example.com/v1")
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(data))
    url = f"sqlite:///{tmp_path / 'baton.db'}"
    refused = (
        f"{plan}: agents.quote.llm.base_url: holds credentials (user:password@), which would be "
        "stored with the goal; put the key in BATON_LLM_API_KEY (or OPENAI_API_KEY) and drop it "
        "from the URL")
    checked = baton("validate", str(plan), store=url)
    assert (checked.code, checked.err.strip().splitlines()) == (2, [refused])
    for command in ("run", "submit"):
        ran = baton(command, str(plan), "--input", '{"item": "tea"}', store=url)
        assert ran.code == 2, (command, ran.err)
        assert ran.err.strip().splitlines() == [f"baton: error: {refused}"], command
        assert secret not in ran.err + ran.out
    assert secret not in checked.err + checked.out
    assert not (tmp_path / "baton.db").exists()  # nothing stored
    with pytest.raises(PlanError, match=r"agents\.quote\.llm\.base_url: holds credentials"):
        prepare_plan(llm_plan(f"http://{secret}@127.0.0.1:9/v1"))  # a user name alone, too
    # A goal stored before the check still loads (replay, resume): it is not judged again.
    assert prepare_plan(data, recorded=True).plan.agents["quote"].llm.base_url.endswith("/v1")


def test_an_endpoint_that_does_not_answer_is_named_in_the_error_without_credentials(
    store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Following the README with BATON_LLM_BASE_URL and no server there, the task failed with
    # "LlmCallFailed: ModelConnectionError: Connection error." alone: not which endpoint.
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("BATON_LLM_BASE_URL", f"http://ana:s3cr3t@127.0.0.1:{port}/v1?k=v")
    goal = run(store, llm_plan("", max_attempts=1), {"item": "tea"})
    assert goal.state.status == "failed"
    [raised] = events_of(store, goal.id, "AgentRaised")
    assert raised.message.endswith(f"Connection error. (at http://127.0.0.1:{port}/v1)")
    assert "s3cr3t" not in raised.message and "ana" not in raised.message
