"""A pydantic-ai `Agent` as a Baton agent: one attempt = one run with no retries of its own.

The orchestrator owns every retry (docs/llm.md):
- pydantic-ai's output retries are 0 for the run, and the OpenAI client's HTTP retries are 0 (see
  `baton.llm.models`): a failed request or a refused answer ends the attempt, and Baton's retry
  policy, budget and backoff decide what happens next, in the event log.
- An answer that does not satisfy the output model is handed back to Baton as it was (the raw
  arguments), so Baton's own contract check rejects it with the validation errors, records them,
  and the next attempt re-asks with them (`AttemptContext.previous_errors` rendered into the
  prompt). A malformed answer (not JSON at all) is a raised attempt.
- A 429 or 503 with `Retry-After` raises with `retry_after_s`, recorded; the retry is due no
  earlier.
- Usage (requests, input/output/cache tokens, model, cost) is read from the run's messages, for a
  failed attempt too, and returned the way any Baton agent reports it.

The input: the task's built input model, rendered as canonical JSON (sorted keys, no spaces) into
the user prompt after a line naming the model, and also passed as the run's `deps`, so an Agent's
own instructions or tools can read it typed. The same input always gives the same prompt.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import linecache
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import pydantic_ai
from pydantic import BaseModel
from pydantic_ai import Agent, AgentRetries, capture_run_messages
from pydantic_ai.exceptions import (
    AgentRunError,
    ModelAPIError,
    ModelConnectionError,
    ModelHTTPError,
    UnexpectedModelBehavior,
    UsageLimitExceeded,
)
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
)
from pydantic_ai.models import Model
from pydantic_ai.toolsets import FunctionToolset
from pydantic_ai.usage import RunUsage, UsageLimits

from baton.domain.attempts import AttemptContext
from baton.domain.contracts import AgentContract
from baton.llm.pricing import price_tokens, priced
from baton.runtime.spending import current_spending

__all__ = ["LlmAgent", "LlmCallFailed", "render_prompt"]

_PRICED_BY = (
    f"pydantic-ai {pydantic_ai.__version__}, "
    f"genai-prices {importlib.metadata.version('genai-prices')}"
)


class LlmCallFailed(RuntimeError):
    """An attempt's model call failed; carries what it spent and when a retry may come."""

    def __init__(
        self, message: str, *, usage: dict[str, Any], retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.usage = usage
        self.retry_after_s = retry_after_s


def render_prompt(agent_input: BaseModel, attempt: AttemptContext | None) -> str:
    """The user prompt for an input: deterministic, so equal inputs send equal prompts."""
    data = json.dumps(
        agent_input.model_dump(mode="json"), sort_keys=True, separators=(",", ":"),
        ensure_ascii=False,
    )
    prompt = f"Input ({type(agent_input).__name__}), as JSON:\n{data}"
    if attempt is not None and attempt.previous_errors:
        problems = "\n".join(f"- {_cut(error)}" for error in attempt.previous_errors)
        prompt += (
            f"\n\nThis is attempt {attempt.number}. The previous answer was rejected:\n"
            f"{problems}\nAnswer again, correcting these problems."
        )
    return prompt


def _endpoint(model: Model) -> str:
    """` (at URL)`: where a request that never got an answer was sent, so a wrong or unstarted
    endpoint says which. Without user, password or query: the message is recorded."""
    base = getattr(getattr(model, "client", None), "base_url", None)
    if base is None:
        return ""
    parts = urlsplit(str(base))
    url = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
    return f" (at {url.rstrip('/')})"


# pydantic-ai's words for a tool call that failed (an unknown tool, a tool's ModelRetry), as
# opposed to an output that did not validate ("Exceeded maximum output retries").
_TOOL_FAILED = re.compile(r"Tool '(.+?)' exceeded max retries count")

# A re-ask quotes at most this much of each previous error: a planner's fragment of thousands of
# bad tasks is rejected with a problem per task, and re-sending all of it would spend more
# tokens on every retry than the answer it asks for.
REASK_ERROR_CHARS = 2000


def _cut(error: str) -> str:
    if len(error) <= REASK_ERROR_CHARS:
        return error
    return (f"{error[:REASK_ERROR_CHARS]} … ({len(error) - REASK_ERROR_CHARS} more characters "
            "not shown)")


class LlmAgent:
    """An async Baton agent around a pydantic-ai Agent, with explicit contracts.

    `make_model` builds the model for one call (a fresh HTTP client bound to the running event
    loop); `secret` is the API key, scrubbed from every message this agent raises.
    """

    def __init__(
        self,
        *,
        agent: Agent[Any, Any],
        input_model: type[BaseModel],
        output_model: type[BaseModel],
        make_model: Callable[[], tuple[Model, Callable[[], Any] | None]],
        model_name: str,
        secret: str | None = None,
        call_problem: str | None = None,
    ) -> None:
        self.agent = agent
        self.input_model = input_model
        self.output_model = output_model
        self.model_name = model_name
        self._make_model = make_model
        self._secret = secret
        # Why every call would fail at once (no API key): `baton run` says so before storing.
        self.call_problem = call_problem
        # Marks an agent that calls a model: `baton replay --reexecute` names these first.
        self.is_llm = True

    def cost_problem(self) -> str | None:
        """Why the goal's max_cost_usd could never bind on this agent's calls: an `openai:`
        model genai-prices has no price for costs 0 a request (None when it has one)."""
        if not self.model_name.startswith("openai:"):
            return None  # a local model (`test`, a function model), or one Baton cannot name
        if price_tokens(self.model_name, input_tokens=1000, output_tokens=1000) is not None:
            return None
        return (f"model {self.model_name!r} has no price in genai-prices: its calls count as "
                "$0, so budget.max_cost_usd cannot limit them (budget.max_tokens can)")

    @property
    def contract(self) -> AgentContract:
        return AgentContract(
            input_model=self.input_model, output_model=self.output_model, takes_attempt=True,
            is_async=True,
        )

    async def __call__(
        self, agent_input: BaseModel, *, attempt: AttemptContext | None = None
    ) -> tuple[Any, dict[str, Any]]:
        prompt = render_prompt(agent_input, attempt)
        model, close = self._make_model()
        spending = current_spending()  # set by the call pool: None when called directly
        cost_left = None if spending is None else spending.cost_left_usd
        with capture_run_messages() as messages:
            if spending is not None:
                # Read by the runner if the attempt times out: what its answered requests spent,
                # and the one still waiting (a copy of the list: the run appends to it).
                spending.report(lambda: self._usage(list(messages), in_flight=True))
            try:
                result = await self.agent.run(
                    prompt, model=model, deps=agent_input, retries=AgentRetries(output=0),
                    usage_limits=_limits(
                        attempt, cost_left, lambda: self._usage(messages)["cost_usd"]
                    ),
                )
            except ModelHTTPError as exc:
                self._raise(messages, f"HTTP {exc.status_code} from the model: {exc.body}",
                            failed_request=True, retry_after_s=exc.retry_after)
            except ModelAPIError as exc:
                where = _endpoint(model) if isinstance(exc, ModelConnectionError) else ""
                self._raise(messages, f"{type(exc).__name__}: {exc}{where}", failed_request=True)
            except UsageLimitExceeded as exc:  # checked between requests: no request failed
                why = str(exc).split(" Consider raising the limit")[0]  # not pydantic-ai's hint
                stops = (exc.budget if isinstance(exc, _BudgetSpent)
                         else "pydantic-ai's usage limit")  # its request_limit of 50, say
                self._raise(messages, f"{stops} stops this attempt: {why}")
            except UnexpectedModelBehavior as exc:
                # A request sent and never answered usably (a body that is no completion) counts.
                unanswered = bool(messages) and isinstance(messages[-1], ModelRequest) and bool(
                    messages[-1].parts)
                tool = _TOOL_FAILED.match(exc.message)
                if tool is not None:
                    # A call of a tool the agent lacks, or one of its tools asking for a retry
                    # (pydantic-ai's retries are 0): not an answer, however its arguments look.
                    self._raise(messages, f"the model's call of tool {tool[1]!r} failed: "
                                f"{exc.__cause__ or exc.message}")
                raw = _last_answer(messages, skip=_function_tools(self.agent))
                if isinstance(raw, dict):  # Baton judges it, records why, and re-asks
                    return raw, self._usage(messages)
                # `message`, not str(exc): that appends the response's whole message dump.
                self._raise(messages, f"the model's answer is unusable: {exc.message}; {raw}",
                            failed_request=unanswered)
            except AgentRunError as exc:
                self._raise(messages, f"{type(exc).__name__}: {exc}")
            except Exception as exc:
                if messages and isinstance(messages[-1], ModelRequest) and messages[-1].parts:
                    # A request sent and never answered usably: the client choked on what the
                    # server sent (a completion without choices is an IndexError in it). While
                    # tools run, the next request is still empty.
                    why = ("the response holds no choices (as a content filter answers)"
                           if _no_choices(exc) else f"{type(exc).__name__}: {exc}")
                    self._raise(messages, f"the model's answer is unusable: {why}",
                                failed_request=True)
                # The Agent's own code (a tool) raised: raised as it is, with what the
                # requests before it spent, so the budget and stats count them.
                if not isinstance(getattr(exc, "usage", None), dict):
                    with contextlib.suppress(AttributeError, TypeError):
                        setattr(exc, "usage", self._usage(messages))  # noqa: B010
                raise
            finally:
                if close is not None:
                    await close()
        return result.output, self._usage(messages)

    # --- internals ---

    def _raise(
        self, messages: list[ModelMessage], message: str, *, failed_request: bool = False,
        retry_after_s: float | None = None,
    ) -> NoReturn:
        usage = self._usage(messages, failed_request=failed_request)
        raise LlmCallFailed(self._scrub(message), usage=usage, retry_after_s=retry_after_s)

    def _scrub(self, text: str) -> str:
        # The key goes before the message is cut short: cut first, a key straddling the cut
        # would be recorded all but its tail.
        if self._secret:
            text = text.replace(self._secret, "***")
        return " ".join(text.split())[:400]

    def _usage(
        self, messages: list[ModelMessage], *, failed_request: bool = False,
        in_flight: bool = False,
    ) -> dict[str, Any]:
        """The attempt's usage in Baton's v2 shape (baton.domain.usage), priced when needed.

        A response that omitted its usage (some OpenAI-compatible servers do) makes the token
        figures unknown (None), not 0: `tokens` (what the budget counts) holds what the other
        responses reported, and nothing is priced from tokens nobody reported. `in_flight`: read
        while the run goes on (a timed-out attempt): a request sent and not answered counts."""
        responses = [m for m in messages if isinstance(m, ModelResponse)]
        if in_flight and messages and isinstance(messages[-1], ModelRequest):
            failed_request = True  # sent, never answered
        figures = {"input_tokens": 0, "output_tokens": 0, "cache_read_tokens": 0,
                   "cache_write_tokens": 0}
        reported_cost: float | None = None
        unmeasured = False
        for response in responses:
            unmeasured = unmeasured or bool(getattr(response.usage, "unmeasured_requests", 0))
            for name in figures:
                figures[name] += getattr(response.usage, name, 0) or 0
            cost = getattr(response.usage, "cost", None)
            if cost is not None:
                reported_cost = (reported_cost or 0.0) + float(cost)
        # The model that answered, as the last response names it; with no response, the one
        # asked for, named the same way ("gpt-4o-mini", not "openai:gpt-4o-mini"), so a failed
        # request's usage lands on the same `baton stats` model row as the answers.
        model = next((r.model_name for r in reversed(responses) if r.model_name), None)
        usage: dict[str, Any] = {
            **figures,
            "tokens": figures["input_tokens"] + figures["output_tokens"],
            "requests": len(responses) + (1 if failed_request else 0),
            "model": model or self.model_name.removeprefix("openai:"),
            # What the request asked for (`model` is who answered: a dated snapshot, a gateway's
            # pick): OpenTelemetry's gen_ai.request.model beside gen_ai.response.model.
            "request_model": self.model_name.removeprefix("openai:"),
            "cost_usd": reported_cost or 0.0,
            # pydantic-ai prices each response itself (a gateway's reported cost, else its
            # genai-prices table): recorded with both versions, so the figure is traceable.
            "cost_source": _PRICED_BY if reported_cost is not None else None,
        }
        if unmeasured:
            usage.update(dict.fromkeys(figures))
        return usage if reported_cost is not None else priced(usage)


def _limits(
    attempt: AttemptContext | None, cost_left: float | None, spent_usd: Callable[[], float]
) -> UsageLimits:
    """The goal's remaining tokens and cost, checked before every request of the run
    (pydantic-ai's default request cap stays: a tool loop cannot run on unbounded)."""
    tokens_left = None if attempt is None else attempt.tokens_left
    if tokens_left is None and cost_left is None:
        return UsageLimits()
    return _BudgetLeft(total_tokens_limit=tokens_left, cost_left_usd=cost_left,
                       spent_usd=spent_usd)


class _BudgetSpent(UsageLimitExceeded):
    """The goal's budget stops the run (not one of pydantic-ai's own limits)."""

    def __init__(self, message: str, *, budget: str = "the goal's token budget") -> None:
        super().__init__(message)
        self.budget = budget


@dataclass(repr=False, kw_only=True)
class _BudgetLeft(UsageLimits):
    """What the goal's max_tokens / max_cost_usd leave this attempt, as a limit on *sending* a
    request, not on an answer.

    pydantic-ai also checks token limits after each response, so an answer that passed the limit
    would be thrown away although it is paid for; Baton keeps it and judges it like any agent's
    answer that overspent (the budget then stops the next dispatch). A request is not sent once
    the run's tokens, or its cost (as recorded: `spent_usd`), reach what the goal left this
    attempt."""

    cost_left_usd: float | None = None
    spent_usd: Callable[[], float] = lambda: 0.0

    def check_tokens(self, usage: RunUsage) -> None:
        """After a response: its tokens are spent either way; nothing to stop."""

    def check_cost(self, usage: RunUsage, *, warn_if_cost_unavailable: bool = True) -> None:
        """After a response: its cost is spent either way; nothing to stop."""

    def check_before_request(self, usage: RunUsage) -> None:
        limit = self.total_tokens_limit
        if limit is not None and usage.total_tokens >= limit:
            if not usage.requests:  # other running attempts hold what is left
                raise _BudgetSpent(
                    f"the goal's max_tokens leaves this attempt {limit} tokens; no request is sent"
                )
            raise _BudgetSpent(
                f"{usage.total_tokens} tokens spent of the {limit} the goal's max_tokens left "
                "this attempt; no further request is sent"
            )
        left = self.cost_left_usd
        if left is not None:
            spent = self.spent_usd() if usage.requests else 0.0
            if spent >= left:
                budget = "the goal's cost budget"
                if not usage.requests:
                    raise _BudgetSpent(f"the goal's max_cost_usd leaves this attempt ${left:g}; "
                                       "no request is sent", budget=budget)
                raise _BudgetSpent(
                    f"${spent:g} spent of the ${left:g} the goal's max_cost_usd left this "
                    "attempt; no further request is sent", budget=budget)
        super().check_before_request(usage)  # its request cap


def _no_choices(exc: Exception) -> bool:
    """Whether the client choked on a completion with an empty `choices` list (an IndexError
    where it reads `response.choices[0]`), which says nothing to a user as it is."""
    tb = exc.__traceback__
    if not isinstance(exc, IndexError) or tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return "choices" in linecache.getline(tb.tb_frame.f_code.co_filename, tb.tb_lineno)


def _function_tools(agent: Agent[Any, Any]) -> frozenset[str]:
    """The names of the Agent's own function tools: a call of one is not its answer."""
    return frozenset(
        name for toolset in agent.toolsets if isinstance(toolset, FunctionToolset)
        for name in toolset.tools
    )


def _last_answer(messages: list[ModelMessage], skip: frozenset[str] = frozenset()) -> Any:
    """The last response's structured answer as the model sent it: a dict, or why it is not.
    A call of one of the agent's own tools (`skip`), beside the answer, is not the answer."""
    for message in reversed(messages):
        if not isinstance(message, ModelResponse):
            continue
        for part in message.parts:
            if isinstance(part, ToolCallPart) and part.tool_name in skip:
                continue
            if isinstance(part, ToolCallPart):
                try:
                    return part.args_as_dict(raise_if_invalid=True)
                except (ValueError, AssertionError) as exc:
                    return f"its arguments are not JSON ({exc})"
            if isinstance(part, TextPart):
                try:
                    value = json.loads(part.content)
                except ValueError:
                    return "it answered text, not the structured output"
                return value if isinstance(value, dict) else "its JSON is not an object"
        return "it holds no answer"
    return "no answer arrived"
