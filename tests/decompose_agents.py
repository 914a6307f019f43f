"""Agents for the decomposition tests: a scripted planner, and agents over lists.

The planner returns the fragment its input names for the attempt it is on, so one goal input
scripts a rejected fragment followed by an accepted one; it records the `AttemptContext` each
attempt received, so a test sees the problems handed back to it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from baton.domain.attempts import AttemptContext
from tests.agents import Text

CONTEXTS: list[AttemptContext] = []


class Script(BaseModel):
    fragments: list[Any]  # the fragment returned by attempt 1, 2, ... (the last repeats)


class Fragment(BaseModel):
    tasks: Any = None
    output: Any = None
    clarification: str | None = None


class Outline(BaseModel):
    """A planner's `expands.result`."""

    items: list[str]
    summary: str


class Texts(BaseModel):
    texts: list[Text]


class MaybeItems(BaseModel):
    items: list[str] | None = None


def planner(inp: Script, attempt: AttemptContext | None = None) -> Fragment:
    number = attempt.number if attempt is not None else 1
    if attempt is not None:
        CONTEXTS.append(attempt)
    chosen = inp.fragments[min(number, len(inp.fragments)) - 1]
    return Fragment(tasks=chosen.get("tasks"), output=chosen.get("output"))


def nested_planner(inp: Script, attempt: AttemptContext | None = None) -> Fragment:
    """The same, under another name: a planner inside a fragment."""
    return planner(inp, attempt)


def collect(inp: Texts) -> Text:
    return Text(text="+".join(item.text for item in inp.texts))


def split(inp: Text) -> Outline:
    """A plain (non-planner) task producing a list to map over."""
    items = [part for part in inp.text.split(",") if part]
    return Outline(items=items, summary=f"{len(items)} items")


def fails_on_x(inp: Text) -> Text:
    if inp.text == "x":
        raise RuntimeError("x is not welcome")
    return Text(text=inp.text.upper())


def logged_upper(inp: Text) -> Text:
    """Upper-cases, and logs each call to $BATON_TEST_DIR/calls.jsonl (crash tests)."""
    directory = os.environ.get("BATON_TEST_DIR")
    if directory:
        with (Path(directory) / "calls.jsonl").open("a") as log:
            log.write(json.dumps({"agent": "logged_upper", "text": inp.text}) + "\n")
    return Text(text=inp.text.upper())
