"""Hypothesis strategies for hostile input: plan files from the plan grammar (and mutations of
valid ones), agent results from JSON-like and non-JSON values, command lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st
from pydantic import BaseModel

from tests.hostile_agents import _ItemsRaise, _nested

# Names that exist, so that some generated plans get past the first check and deeper.
TASK_IDS = ["a", "b", "c", "goal", "x-1", "_y"]
AGENTS = {
    "upper": "tests.agents:upper", "join": "tests.agents:join", "count": "tests.agents:count",
    "nest": "tests.agents:nest", "gather": "tests.agents:gather", "scored": "tests.agents:scored",
}
FIELDS = ["text", "left", "right", "items", "value", "inner", "tags", "confidence", "x"]

hostile_text = st.text(
    alphabet=st.one_of(st.characters(codec="utf-8"), st.sampled_from("\n\r\t$.\x00\ud800 ")),
    max_size=12,
)
names = st.one_of(st.sampled_from(TASK_IDS), hostile_text)
fields = st.one_of(st.sampled_from(FIELDS), hostile_text)
paths = st.lists(st.one_of(st.sampled_from([*FIELDS, "0", "1", ""]), hostile_text), max_size=3)
references = st.one_of(
    st.builds(lambda src, path: "$" + ".".join([src, *path]), names, paths),
    st.sampled_from(["$", "$a.", "$a..value", "$.x", "$goal.", "$$x", "$goal", "$a.text"]),
)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), hostile_text, references,
    st.dates(),
)
bindings = st.one_of(
    st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(fields, inner, max_size=2)), max_leaves=3),
    st.sampled_from([99, 100, 101, 150, 900]).map(_nested),  # deep nesting, around the limit
)
numbers = st.one_of(st.integers(-5, 10**20), st.floats(), st.sampled_from(["1", None, [], "x"]))


@st.composite
def task_specs(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "id": draw(names),
        "agent": draw(st.one_of(st.sampled_from(sorted(AGENTS)), hostile_text)),
        "input": draw(st.dictionaries(fields, bindings, max_size=2)),
    }
    optional = {
        "after": st.lists(names, max_size=2),
        "retry": st.dictionaries(st.sampled_from(["max_attempts", "backoff_s", "jitter", "zz"]),
                                 numbers, max_size=2),
        "timeout_s": numbers,
        "min_confidence": numbers,
        "on_failure": st.sampled_from(["fail", "escalate", "abandon", "explode", ""]),
        "side_effects": st.sampled_from(["none", "idempotent", "unsafe", 3]),
        "estimate": st.dictionaries(st.sampled_from(["tokens", "cost_usd"]), numbers, max_size=2),
        "bogus": scalars,
    }
    for key in draw(st.sets(st.sampled_from(sorted(optional)), max_size=2)):
        spec[key] = draw(optional[key])
    return spec


@st.composite
def plan_data(draw: st.DrawFn) -> Any:
    data: dict[str, Any] = {
        "version": draw(st.sampled_from([1, 1, 1, 2, "1"])),
        "name": draw(st.one_of(st.just("fuzz"), hostile_text)),
        "agents": draw(st.one_of(
            st.just(AGENTS),
            st.dictionaries(st.one_of(st.sampled_from(sorted(AGENTS)), hostile_text),
                            st.one_of(st.sampled_from(sorted(AGENTS.values())), hostile_text),
                            max_size=3))),
        "tasks": draw(st.lists(task_specs(), min_size=0, max_size=3)),
    }
    if draw(st.booleans()):
        data["output"] = draw(st.one_of(references, st.dictionaries(fields, bindings, max_size=2)))
    if draw(st.integers(0, 4)) == 0:
        data["budget"] = draw(st.dictionaries(
            st.sampled_from(["max_attempts", "max_tokens", "max_cost_usd", "deadline_s", "q"]),
            numbers, max_size=3))
    if draw(st.integers(0, 4)) == 0:
        data["defaults"] = draw(st.dictionaries(st.sampled_from(["retry", "timeout_s", "q"]),
                                                numbers, max_size=2))
    if draw(st.integers(0, 9)) == 0:
        data["input"] = draw(st.one_of(hostile_text, st.just("tests.agents:Text")))
    return data


def plan_file_text(data: Any, as_json: bool) -> str:
    if as_json:
        return json.dumps(data, default=str)  # NaN and Infinity appear as such: refused
    return yaml.safe_dump(data, allow_unicode=True)


VALID_PLANS = [
    Path("examples/travel/plan.yaml").read_text(encoding="utf-8"),
    plan_file_text({"version": 1, "name": "p", "agents": AGENTS, "tasks": [
        {"id": "a", "agent": "upper", "input": {"text": "$goal.text"}},
        {"id": "b", "agent": "join", "input": {"left": "$a.text", "right": "lit"}},
        {"id": "c", "agent": "gather", "input": {"items": ["$a.text", "$b.text", "$$x"]}},
    ], "output": {"x": "$c.text", "y": "$b"}}, as_json=False),
]


@st.composite
def mutated_plan_texts(draw: st.DrawFn) -> str:
    """A valid plan file with a few edits: text cut, inserted, lines swapped or repeated."""
    text = draw(st.sampled_from(VALID_PLANS[1:] * 3 + VALID_PLANS[:1]))
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(text)))
        edit = draw(st.integers(0, 4))
        if edit == 0:
            text = text[:position] + text[position + draw(st.integers(1, 20)):]
        elif edit == 1:
            insert = draw(st.one_of(hostile_text, st.sampled_from(
                ["$", "&r [x, *r]", "*a", ": ", "\n  - ", "{", "]", ".nan", "- id: a\n",
                 "$a..b", "!!python/object:os.system", "\t"])))
            text = text[:position] + insert + text[position:]
        else:
            lines = text.splitlines(keepends=True)
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            if edit == 2:
                lines[i], lines[j] = lines[j], lines[i]
            else:
                lines.insert(i, lines[j])
            text = "".join(lines)
    return text


class _Model(BaseModel):
    text: str
    confidence: float


json_like = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), hostile_text),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(hostile_text, inner, max_size=4)),
    max_leaves=12,
)
non_json = st.one_of(
    st.builds(object), st.sets(st.integers(), max_size=3), st.binary(max_size=5),
    st.integers(0, 6000).map(_nested),
    st.dictionaries(st.integers(), st.integers(), min_size=1, max_size=2),
    st.builds(lambda: _ItemsRaise(text="x")),
    st.tuples(json_like, json_like),
    st.sampled_from([float("nan"), float("inf"), "a\ud800b", 10**400, complex(1, 2)]),
)
usage = st.dictionaries(
    st.sampled_from(["tokens", "cost_usd", "input_tokens", "output_tokens"]),
    st.one_of(numbers, st.sampled_from([10**400, float("inf"), float("nan"), -1, True])),
    max_size=3)
outputs = st.one_of(
    json_like,
    non_json,
    st.builds(lambda text, conf: {"text": text, "confidence": conf}, hostile_text,
              st.one_of(st.floats(), st.sampled_from(["NaN", "1.0", None]))),
    st.builds(lambda text, conf: _Model.model_construct(text=text, confidence=conf),
              hostile_text, st.floats()),
    st.tuples(json_like, usage),
)
