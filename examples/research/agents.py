"""The research example's agents: a planner, a searcher, a summariser, a writer, a publisher.

Deterministic and offline, like the travel example's: a SHA-256 of the query stands in for a
search engine, and the planner splits the question on "and" and commas instead of asking a
model. A question that says "recent" (or "latest", "current") without a period is ambiguous: the
planner asks which period is meant instead of guessing (a `clarification`), and plans again with
the answer (`clarifications` in its input). Swap any of them for an LLM agent (docs/llm.md) and
the plan stays the same.
"""

import hashlib
import re
from typing import Any

from pydantic import BaseModel, Field

__all__ = [
    "Clarification",
    "Finding",
    "Outline",
    "PlanRequest",
    "PublishIn",
    "Published",
    "Question",
    "Report",
    "ReportIn",
    "ResearchPlan",
    "SearchIn",
    "SummariseIn",
    "Summary",
    "plan_research",
    "publish",
    "search",
    "summarise",
    "write_report",
]


# --- contracts ---------------------------------------------------------------------------------


class Question(BaseModel):
    """The goal input."""

    question: str = Field(min_length=3)


class Clarification(BaseModel):
    question: str
    answer: str


class PlanRequest(BaseModel):
    """The planner's input: the question, and every question the planner asked about it with
    the human's answer (Baton fills `clarifications` after `baton answer`)."""

    question: str = Field(min_length=3)
    clarifications: list[Clarification] = []


class ResearchPlan(BaseModel):
    """What the planner returns: a plan fragment (`tasks`, `output`) in the plan file's syntax,
    or, when the question is ambiguous, a `clarification`: a question instead of a fragment."""

    tasks: list[dict[str, Any]] = []
    output: dict[str, Any] = {}
    clarification: str | None = None


class Outline(BaseModel):
    """`expands.result`: what the planner's fragment produces, read downstream as `$plan`."""

    queries: list[str] = Field(min_length=1)
    summary: str


class SearchIn(BaseModel):
    query: str


class Finding(BaseModel):
    query: str
    source: str
    snippet: str


class SummariseIn(BaseModel):
    topic: str
    notes: list[str] = []


class Summary(BaseModel):
    text: str


class ReportIn(BaseModel):
    question: str
    summary: str
    findings: list[Finding]


class Report(BaseModel):
    title: str
    body: str


class PublishIn(BaseModel):
    title: str
    body: str


class Published(BaseModel):
    url: str


# --- agents ------------------------------------------------------------------------------------


def sub_questions(question: str) -> list[str]:
    """"Compare X and Y, and Z" -> ["Compare X", "Y", "Z"]: one query per part."""
    parts = re.split(r",|\band\b", question.rstrip("?. "))
    return [part.strip() for part in parts if part.strip()]


VAGUE = ("recent", "latest", "current", "lately")


def plan_research(request: PlanRequest) -> ResearchPlan:
    """Split the question; a `scope` task summarises what is asked, over the sub-questions.
    A question that names no period where it needs one is asked about first."""
    vague = next((w for w in VAGUE if re.search(rf"\b{w}\b", request.question, re.I)), None)
    if vague is not None and not request.clarifications:
        return ResearchPlan(
            clarification=f"The question says {vague!r}: which period should it cover?"
        )
    queries = sub_questions(request.question)
    if request.clarifications:
        period = request.clarifications[-1].answer
        queries = [f"{query} ({period})" for query in queries]
    return ResearchPlan(
        tasks=[
            {
                "id": "scope",
                "agent": "summarise",
                "input": {"topic": "$goal.question", "notes": queries},
            }
        ],
        output={"queries": queries, "summary": "$scope.text"},
    )


def search(request: SearchIn) -> Finding:
    digest = hashlib.sha256(request.query.encode()).hexdigest()
    return Finding(
        query=request.query,
        source=f"https://example.org/{digest[:8]}",
        snippet=f"{request.query}: finding {digest[8:14]}",
    )


def summarise(request: SummariseIn) -> Summary:
    if not request.notes:
        return Summary(text=request.topic)
    return Summary(text=f"{request.topic} ({len(request.notes)} parts: {'; '.join(request.notes)})")


def write_report(request: ReportIn) -> Report:
    lines = [f"- {finding.snippet} [{finding.source}]" for finding in request.findings]
    return Report(title=request.question, body="\n".join([request.summary, *lines]))


def publish(request: PublishIn) -> Published:
    """The unsafe step: stands in for posting the report somewhere."""
    digest = hashlib.sha256(request.body.encode()).hexdigest()
    return Published(url=f"https://reports.example.org/{digest[:12]}")
