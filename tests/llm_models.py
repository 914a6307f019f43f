"""Contracts and agents for the LLM tests (imported by the plans as `tests.llm_models:...`)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from pydantic import BaseModel


class QuoteIn(BaseModel):
    item: str
    quantity: int = 1


class Quote(BaseModel):
    price: float
    confidence: float = 1.0


class SideEffectIn(BaseModel):
    directory: str
    sleep_s: float


class Done(BaseModel):
    wrote: str


def sleeps_then_writes(inp: SideEffectIn) -> Done:
    """Announces its pid, sleeps past its timeout, then writes a file (a side effect)."""
    directory = Path(inp.directory)
    (directory / "pid").write_text(str(os.getpid()))
    time.sleep(inp.sleep_s)
    (directory / "side-effect").write_text("written")
    return Done(wrote="side-effect")


def writes_at_once(inp: SideEffectIn) -> Done:
    """A process-isolated agent that finishes: its result comes back from the worker process."""
    (Path(inp.directory) / "side-effect").write_text(str(os.getpid()))
    return Done(wrote=str(os.getpid()))


def reports_tokens_only(inp: QuoteIn) -> Quote:
    """A plain agent that reports its tokens and model, but no cost (a returned pair)."""
    return Quote(price=1.0), {  # type: ignore[return-value]
        "input_tokens": 1000, "output_tokens": 500, "model": "openai:gpt-4o-mini"}


def reports_its_cost(inp: QuoteIn) -> Quote:
    return Quote(price=1.0), {  # type: ignore[return-value]
        "input_tokens": 1000, "output_tokens": 500, "model": "openai:gpt-4o-mini",
        "cost_usd": 0.5}


class RateLimited(Exception):
    retry_after_s = 2.5
    usage = {"input_tokens": 10, "output_tokens": 0, "requests": 1, "model": "m"}


def rate_limited(inp: QuoteIn) -> Quote:
    raise RateLimited("slow down")
