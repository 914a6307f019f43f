"""The travel example with its pricing and summary steps as LLM agents (docs/reference.md).

`price_agent` is a pydantic-ai `Agent` named in the plan's allowlist: its `deps_type` is its
input contract, its `output_type` its output contract. Its model here is a deterministic local
function (no network): it reads the offers from the prompt Baton renders and picks the cheapest,
as a real model would be asked to. `summarise` is declared in the plan itself (`llm:`), on
pydantic-ai's `test` model. With `BATON_LLM_BASE_URL` (and `BATON_LLM_MODEL`) set, both talk to
that OpenAI-compatible server instead.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, Field
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, ToolCallPart, UserPromptPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from examples.travel.agents import Flight, Offer, PriceIn

__all__ = ["PricedTrip", "SummariseIn", "Summary", "price_agent"]


class PricedTrip(BaseModel):
    total: float
    best_offer: Offer
    confidence: float = Field(ge=0, le=1)


class SummariseIn(BaseModel):
    destination: str
    confirmation: str
    total: float


class Summary(BaseModel):
    text: str


def _local_pricing(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """A stand-in model: the cheapest flight from the JSON input in the prompt, taxes included."""
    prompt = next(
        part.content for message in messages for part in getattr(message, "parts", [])
        if isinstance(part, UserPromptPart) and isinstance(part.content, str)
    )
    data = json.loads(prompt.split("\n", 1)[1].split("\n\n", 1)[0])
    flights = [Flight.model_validate(flight) for flight in data["flights"]]
    best = min(flights, key=lambda flight: (flight.fare, flight.id))
    per_passenger = round(best.fare * 1.12 + 9.5, 2)
    answer = {
        "total": round(per_passenger * data["passengers"], 2),
        "best_offer": {"id": f"offer-{best.id}", "flight": best.model_dump(),
                       "price_per_passenger": per_passenger},
        "confidence": 0.9,
    }
    return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, answer)])


price_agent: Agent[PriceIn, PricedTrip] = Agent(
    FunctionModel(_local_pricing, model_name="local-pricing"),
    deps_type=PriceIn,
    output_type=PricedTrip,
    instructions="Pick the cheapest flight and price the trip for every passenger, taxes "
    "(12%) and a 9.50 booking fee per passenger included. Give your confidence.",
)
