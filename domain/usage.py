"""What an attempt reports it spent: the `usage` payload of AgentReturned /
AgentRaised / AgentTimedOut (v2: what a timed-out attempt had spent when abandoned).

Version 1 (release 0.1) held `tokens` and `cost_usd` only. Version 2 keeps both (they are what the
budget counts) and adds the figures cost per model needs: input and output tokens, cache tokens
when the provider reports them, how many model requests the attempt made, the model that
answered, and where `cost_usd` came from (`reported` by the agent or provider, or the price table
and version that computed it, so a replay reads the recorded figure and never re-prices).
A v1 payload upcasts to v2 with the new figures explicitly unknown (None).

`model` is the model that answered (as the response names it: `gpt-4o-mini-2024-07-18`), or the
one asked for when no response named one. `request_model`, the model asked for
(`gpt-4o-mini`), came later: it is in a payload only when the agent said it (the LLM adapter
does), absent otherwise, so every payload recorded before it reads, and is recorded again by
re-execution, exactly as it was.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["USAGE_FIELDS", "AttemptUsage", "upcast_usage", "usage_payload"]


class AttemptUsage(BaseModel):
    """The v2 usage payload; every figure zero or more, the new ones None when not reported."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tokens: int = Field(0, ge=0)  # input + output: what `max_tokens` counts
    cost_usd: float = Field(0.0, ge=0)
    input_tokens: int | None = Field(None, ge=0)
    output_tokens: int | None = Field(None, ge=0)
    cache_read_tokens: int | None = Field(None, ge=0)
    cache_write_tokens: int | None = Field(None, ge=0)
    requests: int | None = Field(None, ge=0)
    model: str | None = None
    cost_source: str | None = None  # "reported" | "genai-prices <version>" | None (no price)
    request_model: str | None = None  # the model asked for; in a payload only when known


# What every v2 payload holds (`request_model` only when known).
USAGE_FIELDS = tuple(name for name in AttemptUsage.model_fields if name != "request_model")


def usage_payload(usage: AttemptUsage) -> dict[str, Any]:
    """The payload recorded for `usage`: every v2 figure, `request_model` when known."""
    return usage.model_dump(exclude=None if usage.request_model else {"request_model"})


def upcast_usage(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    """A v1 usage payload in the v2 shape: the same totals, every new figure None."""
    if usage is None:
        return None
    return {name: usage.get(name) for name in USAGE_FIELDS} | {
        "tokens": usage.get("tokens", 0),
        "cost_usd": usage.get("cost_usd", 0.0),
    }
