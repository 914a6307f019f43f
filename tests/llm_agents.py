"""pydantic-ai Agent objects for the adapter tests, on FunctionModel (local, deterministic)."""

from __future__ import annotations

from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, ToolCallPart, UserPromptPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import RequestUsage

from tests.llm_models import Quote, QuoteIn

PROMPTS: list[str] = []  # every user prompt the function model received, in order


def _prompt(messages: list[ModelMessage]) -> str:
    return next(
        part.content for message in messages for part in getattr(message, "parts", [])
        if isinstance(part, UserPromptPart) and isinstance(part.content, str)
    )


def _learns_from_rejection(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Answers with too little confidence, unless told that was the problem."""
    prompt = _prompt(messages)
    PROMPTS.append(prompt)
    confidence = 0.95 if "below min_confidence" in prompt else 0.2
    answer = {"price": 3.5, "confidence": confidence}
    return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, answer)])


quoting = Agent(
    FunctionModel(_learns_from_rejection, model_name="learner"),
    deps_type=QuoteIn, output_type=Quote, instructions="Quote a price.",
)

no_input_contract = Agent(FunctionModel(_learns_from_rejection), output_type=Quote)


CALLS: list[int] = []


def _keeps_calling_a_tool(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Never answers: asks for the tool again and again, 130 tokens a response."""
    CALLS.append(len(CALLS) + 1)
    return ModelResponse(parts=[ToolCallPart("lookup", {"key": "x"})],
                         usage=RequestUsage(input_tokens=100, output_tokens=30))


looping = Agent(FunctionModel(_keeps_calling_a_tool, model_name="looper"),
                deps_type=QuoteIn, output_type=Quote)


@looping.tool_plain
def lookup(key: str) -> str:
    return "nothing yet"


# An Agent as users write it: by model name (deferred, so importing needs no key), with a tool.
with_a_tool = Agent("openai:gpt-4o-mini", deps_type=QuoteIn, output_type=Quote,
                    instructions="Quote a price; look the item up first.", defer_model_check=True)


@with_a_tool.tool_plain
def stock(item: str) -> str:
    if item == "boom":
        raise RuntimeError("the stock service is down")
    return "in stock"
