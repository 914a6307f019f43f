"""Deterministic agents for the human-gate tests (clarification, approval, attempt context).

Each remembers what it was handed in module lists that tests reset, so a test can check what an
agent was given, not only what it returned.
"""

from __future__ import annotations

from pydantic import BaseModel

from baton.domain.attempts import AttemptContext

SEEN: list[dict[str, object]] = []  # inputs handed to `ask_once` / `always_asks`
CONTEXTS: list[dict[str, object]] = []  # what `picky` got as `attempt`
PUBLISHED: list[str] = []


class Clarification(BaseModel):
    question: str
    answer: str


class Question(BaseModel):
    question: str
    clarifications: list[Clarification] = []


class Reply(BaseModel):
    text: str
    clarification: str | None = None


class Draft(BaseModel):
    text: str


class Receipt(BaseModel):
    url: str


def reset() -> None:
    SEEN.clear()
    CONTEXTS.clear()
    PUBLISHED.clear()


def ask_once(q: Question) -> Reply:
    """Asks which period is meant until it has an answer, then answers with it."""
    SEEN.append(q.model_dump())
    if not q.clarifications:
        return Reply(text="", clarification=f"which period does {q.question!r} mean?")
    return Reply(text=f"{q.question} during {q.clarifications[-1].answer}")


def always_asks(q: Question) -> Reply:
    """Never satisfied: asks again after every answer (the loop `max_clarifications` bounds)."""
    SEEN.append(q.model_dump())
    return Reply(text="", clarification=f"question {len(q.clarifications) + 1}?")


def asks_as_dict(q: Question) -> Draft:
    """Asks with a plain dict that would fail its output contract (Draft has no such field and
    needs `text`): a question is not an output, so it is never validated as one."""
    SEEN.append(q.model_dump())
    if not q.clarifications:
        return {"clarification": "in which language?"}  # type: ignore[return-value]
    return Draft(text=q.clarifications[0].answer)


def write(q: Question) -> Draft:
    return Draft(text=f"draft on {q.question}")


def publish(draft: Draft) -> Receipt:
    """The unsafe step an approval gate guards."""
    PUBLISHED.append(draft.text)
    return Receipt(url=f"https://example.test/{len(PUBLISHED)}")


class MyAttempt(BaseModel):
    """Not Baton's AttemptContext: any model with its fields will do."""

    number: int
    previous_errors: list[str] = []


def picky(draft: Draft, *, attempt: MyAttempt) -> Draft:
    """Fails its contract on the first attempt (a number where the text should be)."""
    CONTEXTS.append(attempt.model_dump())
    if attempt.number == 1:
        return {"text": 123}  # type: ignore[return-value]
    return Draft(text=f"{draft.text} (attempt {attempt.number})")


def uses_baton_context(draft: Draft, *, attempt: AttemptContext) -> Draft:
    CONTEXTS.append(attempt.model_dump())
    if attempt.number == 1:
        raise RuntimeError("first attempt always fails")
    return draft
