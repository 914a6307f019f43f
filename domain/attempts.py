"""What an agent may learn about the attempt it is running (docs/llm.md, "Re-ask").

An agent that declares a keyword parameter `attempt` receives an `AttemptContext`: which attempt
this is and why the previous one was refused (validation errors, low confidence, the error it
raised). Everything in it is read from recorded events, so re-execution hands an agent exactly
what the live run handed it. The LLM adapter turns `previous_errors` into a re-ask.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["AttemptContext", "attempt_context"]


class AttemptContext(BaseModel):
    model_config = ConfigDict(frozen=True)

    number: int
    previous_errors: list[str] = []
    # What the goal's `max_tokens` leaves for this attempt when it starts (None: no cap). An
    # agent making several model requests stops before the one that would pass it.
    tokens_left: int | None = None


def attempt_context(
    number: int, last_error: str | None, *, tokens_left: int | None = None
) -> AttemptContext:
    """The context of attempt `number`; the first attempt has no previous errors."""
    errors = [last_error] if number > 1 and last_error else []
    return AttemptContext(number=number, previous_errors=errors, tokens_left=tokens_left)
