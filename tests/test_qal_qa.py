"""QA of LLM agents against a loopback OpenAI-compatible server: answers a user's model really
sends (a refusal, a call of a tool the agent does not have, a body that is not a completion)."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytest.importorskip("pydantic_ai")

from tests.openai_server import Answer, chat_server, tool
from tests.support import events_of, run
from tests.test_llm_http import VALID, llm_plan

KEY = "sk-test-4f9c2b7e-DO-NOT-LEAK"


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_LLM_API_KEY", KEY)
    monkeypatch.delenv("BATON_LLM_BASE_URL", raising=False)
    monkeypatch.delenv("BATON_LLM_MODEL", raising=False)


def completion(message: dict[str, Any], **extra: Any) -> Answer:
    """A 200 chat completion with this assistant message (and usage)."""
    return Answer("raw", {
        "id": "c1", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
        **extra,
    })


def test_a_call_of_a_tool_the_agent_lacks_is_not_taken_for_its_answer(store) -> None:
    # The model calls `search_web` (the agent has no such tool) with arguments that happen to
    # fit the output contract: that is not the agent's answer, and says which tool it called.
    script = [Answer("tool", VALID, tool_name="search_web"), tool(VALID)]
    with chat_server(script) as server:
        goal = run(store, llm_plan(server.url), {"item": "tea"})
    assert goal.state.status == "completed"
    assert len(server.requests) == 2
    [raised] = events_of(store, goal.id, "AgentRaised")
    assert raised.error_type == "LlmCallFailed"
    assert "search_web" in raised.message and "Unknown tool name" in raised.message
    assert "pydantic.dev" not in raised.message  # not pydantic-ai's advice on its own retries
    assert raised.usage["tokens"] == 120 and raised.usage["requests"] == 1
    # the re-ask says why
    assert "search_web" in server.requests[1].prompt()


def test_a_refusal_is_one_clear_line_without_the_message_dump(store) -> None:
    refusal = completion({"role": "assistant", "content": None,
                          "refusal": "I can't help with that."})
    with chat_server([refusal, tool(VALID)]) as server:
        goal = run(store, llm_plan(server.url), {"item": "tea"})
    assert goal.state.status == "completed"
    [raised] = events_of(store, goal.id, "AgentRaised")
    assert "I can't help with that." in raised.message
    assert "parts" not in raised.message and "cache_write" not in raised.message
    assert raised.usage["tokens"] == 120


def test_a_body_that_is_not_a_completion_counts_its_request(store) -> None:
    with chat_server([Answer("raw", {"foo": 1}), tool(VALID)]) as server:
        goal = run(store, llm_plan(server.url), {"item": "tea"})
    assert goal.state.status == "completed"
    [raised] = events_of(store, goal.id, "AgentRaised")
    assert "Invalid response" in raised.message
    assert raised.usage["requests"] == 1  # it was sent, and answered: a request made


def test_a_malformed_answer_counts_one_request(store) -> None:
    with chat_server([Answer("malformed"), tool(VALID)]) as server:
        goal = run(store, llm_plan(server.url), {"item": "tea"})
    assert goal.state.status == "completed"
    [raised] = events_of(store, goal.id, "AgentRaised")
    assert (raised.usage["requests"], raised.usage["tokens"]) == (1, 120)


@pytest.mark.parametrize(("then", "now", "kind"), [
    ([Answer("status", status=500), tool(VALID)], [tool(VALID)], "AgentReturned"),
    ([tool(VALID)], [Answer("status", status=500)], "AgentRaised"),
])
def test_reexecution_shows_an_agent_that_now_returns_where_it_raised_or_the_reverse(
    store, then: list[Answer], now: list[Answer], kind: str
) -> None:
    # `replay --reexecute --call-agents` where today's model answers differently in kind: the
    # divergence shows today's observation, not an internal TypeError building the event.
    from baton.history.live import LiveAgents
    from baton.history.recorded import reexecute
    from baton.runtime.loading import prepare_plan

    with chat_server(then) as server:
        data = llm_plan(server.url)
        goal = run(store, data, {"item": "tea"})
        assert goal.state.status == "completed"
        server.script[:] = now
        loaded = prepare_plan(data)
        events = list(store.events(goal.id))
        again = reexecute(events, loaded, agents=LiveAgents(loaded, events))
    assert again.divergence is not None
    assert again.divergence.replayed is not None
    assert "error" not in again.divergence.replayed, again.divergence.replayed
    assert again.divergence.replayed["kind"] == kind


def test_the_llm_guides_declaration_example_is_a_valid_plan(monkeypatch) -> None:
    # docs/llm.md, "Two ways in": its `agents:` block, put in the example plan, loads as written
    # (it once paired `model: test`, a local model, with a `base_url`: refused at load).
    import re
    from pathlib import Path

    import yaml

    from baton.runtime.loading import prepare_plan

    monkeypatch.delenv("BATON_LLM_API_KEY", raising=False)
    root = Path(__file__).resolve().parent.parent
    guide = (root / "docs" / "llm.md").read_text()
    block = re.search(r"## Two ways in\n\n```yaml\n(.*?)```", guide, re.S)
    assert block is not None
    data = yaml.safe_load((root / "examples" / "llm" / "plan.yaml").read_text())
    data["agents"] = yaml.safe_load(block[1])["agents"] | {
        name: agent for name, agent in data["agents"].items() if name in ("search", "book")}
    loaded = prepare_plan(data)
    assert loaded.plan.name == "trip-booking-llm"


def test_a_base_url_with_a_query_key_is_refused_at_plan_load_not_stored() -> None:
    # `?api-key=...` in the plan's base_url: the client appended /chat/completions after the
    # query (`/v1?api-key=KEYchat/completions`), and the key was stored with the goal.
    from baton.domain.errors import PlanError
    from baton.runtime.loading import prepare_plan

    secret = "sk-query-5e1a"
    with pytest.raises(PlanError) as refused:
        prepare_plan(llm_plan(f"http://127.0.0.1:9/v1?api-key={secret}"))
    assert "agents.quote.llm.base_url: has a query or fragment" in str(refused.value)
    assert secret not in str(refused.value)
    data = llm_plan(f"http://127.0.0.1:9/v1?api-key={secret}")
    # A goal stored before the check still loads (replay, resume): it is not judged again.
    assert prepare_plan(data, recorded=True).plan.agents["quote"].llm.base_url.endswith(secret)


def test_a_call_of_the_agents_own_tool_beside_a_bad_answer_is_not_recorded_as_the_answer(
    store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One response calls the Agent's `stock` tool and answers (badly) at once: the answer that is
    # recorded and judged is the output tool's, not the stock call's arguments.
    def call(i: int, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return {"id": f"call_{i}", "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)}}

    both = completion({"role": "assistant", "content": None, "tool_calls": [
        call(1, "stock", {"item": "tea"}), call(2, "final_result", {"price": "cheap"})]})
    with chat_server([both, Answer("tool", VALID, tool_name="final_result")]) as server:
        monkeypatch.setenv("BATON_LLM_BASE_URL", server.url)
        data = llm_plan(server.url)
        data["agents"]["quote"] = "tests.llm_agents:with_a_tool"
        goal = run(store, data, {"item": "tea"})
    assert goal.state.status == "completed", goal.state.reason
    first = events_of(store, goal.id, "AgentReturned")[0]
    assert first.output == {"price": "cheap"}
    [rejected] = events_of(store, goal.id, "OutputRejected")
    assert any("price" in error for error in rejected.errors), rejected.errors


@pytest.mark.parametrize(("url", "says"), [
    ("localhost:11434/v1", "base URL 'localhost:11434/v1' needs http:// or https://"),
    ("ftp://ana:s3cr3t@127.0.0.1:9/v1", "base URL 'ftp://127.0.0.1:9/v1' needs http://"),
    ("http://127.0.0.1:99999/v1", "base URL is not a URL (Port out of range"),
    ("http://127.0.0.1:9/v 1", "base URL holds a space or a control character"),
])
def test_a_base_url_the_client_cannot_reach_is_refused_before_anything_runs(
    monkeypatch: pytest.MonkeyPatch, url: str, says: str
) -> None:
    # BATON_LLM_BASE_URL=localhost:11434/v1 (no scheme, as Ollama's address is often written)
    # failed every attempt with "Connection error." and a port out of range with "the model's
    # answer is unusable: ExceptionGroup: ...": refused when the plan is loaded to run.
    from baton.domain.errors import PlanError
    from baton.runtime.loading import prepare_plan

    monkeypatch.setenv("BATON_LLM_BASE_URL", url)
    with pytest.raises(PlanError) as refused:
        prepare_plan(llm_plan(""))
    assert says in str(refused.value)
    assert "s3cr3t" not in str(refused.value)
    # replay and a human's decision call no model: loading for them is not refused
    assert prepare_plan(llm_plan(""), calls_models=False).plan.name == "llm-http"


def test_a_key_ending_in_a_newline_is_sent_without_it(
    store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A key from a secret file (`KEY=$(cat key)` keeps none, a mounted secret often keeps one):
    # sent with its newline the header is illegal, and every attempt failed "Connection error."
    monkeypatch.setenv("BATON_LLM_API_KEY", f"{KEY}\n")
    with chat_server([tool(VALID)]) as server:
        goal = run(store, llm_plan(server.url), {"item": "tea"})
    assert goal.state.status == "completed", goal.state.reason
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_a_base_url_ending_in_a_newline_is_used_without_it(
    store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # BATON_LLM_BASE_URL from an env file with its newline: every attempt failed with
    # "InvalidURL: Invalid non-printable ASCII character in URL".
    with chat_server([tool(VALID)]) as server:
        monkeypatch.setenv("BATON_LLM_BASE_URL", f"{server.url}\n")
        goal = run(store, llm_plan(""), {"item": "tea"})
    assert goal.state.status == "completed", goal.state.reason


def test_a_model_name_ending_in_a_newline_is_asked_for_without_it(
    store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # BATON_LLM_MODEL from an env file: "gpt-4o-mini\n" was sent (a real server: no such
    # model) and recorded as the usage's model, a row of its own in `baton stats`.
    monkeypatch.setenv("BATON_LLM_MODEL", "gpt-4o-mini\n")
    with chat_server([tool(VALID)]) as server:
        goal = run(store, llm_plan(server.url), {"item": "tea"})
    assert goal.state.status == "completed", goal.state.reason
    assert server.requests[0].body["model"] == "gpt-4o-mini"
    [returned] = events_of(store, goal.id, "AgentReturned")
    assert returned.usage["request_model"] == "gpt-4o-mini"


def test_a_run_leaves_a_goal_cancelled_elsewhere_while_its_llm_call_hangs(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `baton run` in one terminal, `baton cancel` in another while the model takes its time:
    # the run waited until the call's timeout_s, then recorded the late answer after
    # GoalCancelled. It now leaves within the watch interval, as a worker does.
    import threading
    import time

    from baton.runtime import runner as runner_module
    from baton.runtime.loading import prepare_plan
    from baton.runtime.service import cancel_goal, start_goal
    from baton.store.eventstore import open_store
    from tests.support import kinds

    monkeypatch.setattr(runner_module, "WATCH_S", 0.05)
    store = open_store(store_url)
    try:
        with chat_server([Answer("hang")]) as server:
            loaded = prepare_plan(llm_plan(server.url, timeout_s=60))
            ended: list[Any] = []
            running = threading.Thread(
                target=lambda: ended.append(start_goal(store, loaded, {"item": "tea"},
                                                       goal_id="slow")), daemon=True)
            running.start()
            deadline = time.monotonic() + 20
            while not server.requests:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            cancel_goal(store, "slow", reason="too slow", by="ops")
            running.join(20)
            assert not running.is_alive(), "the run still waits for the hung call"
            assert server.closed.wait(10)  # the request was abandoned, not left open
        assert ended[0].state.status == "cancelled"
        assert kinds(store, "slow")[-1] == "GoalCancelled"
    finally:
        store.close()
