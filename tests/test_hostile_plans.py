"""Hostile plan files: malformed references, deep nesting, YAML aliases, NaN, newlines in names.

Each must be a plan error naming where, on ONE line, exit 2 — never a traceback or exit 70.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.inprocess import cli


def plan_text(binding: str, extra: str = "", *, agent: str = "tests.agents:upper",
              task_id: str = "a") -> str:
    return (
        f"version: 1\nname: hostile\nagents: {{upper: {json.dumps(agent)}}}\n"
        f"tasks:\n  - id: {json.dumps(task_id)}\n    agent: upper\n    input: {binding}\n{extra}"
    )


def validate(tmp_path: Path, text: str, suffix: str = ".yaml") -> tuple[int, list[str]]:
    path = tmp_path / f"plan{suffix}"
    path.write_text(text)
    result = cli("validate", str(path))
    assert "Traceback" not in result.err
    lines = result.err.splitlines()
    return result.code, lines


@pytest.mark.parametrize("ref", ["$", "$a.", "$a..value", "$.x", "$goal."])
def test_a_malformed_reference_is_a_plan_error_naming_task_and_field(
    tmp_path: Path, ref: str
) -> None:
    code, lines = validate(tmp_path, plan_text(f"{{text: {json.dumps(ref)}}}"))
    assert code == 2
    assert len(lines) == 1
    assert "tasks[a].input.text: malformed reference" in lines[0]
    assert repr(ref) in lines[0]


def test_a_malformed_reference_in_the_output_names_the_output_field(tmp_path: Path) -> None:
    code, lines = validate(tmp_path, plan_text("{text: $goal.x}", "output: {total: $a..b}"))
    assert code == 2 and len(lines) == 1 and "output.total: malformed reference" in lines[0]


def test_a_malformed_reference_nested_in_a_literal_is_located(tmp_path: Path) -> None:
    code, lines = validate(tmp_path, plan_text('{text: {parts: [x, "$a."]}}'))
    assert code == 2 and lines[0].endswith(
        "tasks[a].input.text.parts.1: malformed reference '$a.': empty name in the dot path "
        "(expected $goal.<path> or $<task id>.<path>)"
    )


@pytest.mark.parametrize("depth", [150, 900, 5000])
def test_bindings_nested_deep_are_an_error_not_a_recursion_error(
    tmp_path: Path, depth: int
) -> None:
    nested = "[" * depth + "]" * depth
    for text, suffix in [
        (plan_text(f"{{text: {nested}}}"), ".yaml"),
        (json.dumps(_plan_dict({"text": json.loads(nested)})), ".json") if depth < 900 else (
            json.dumps(_plan_dict({"text": "X"})).replace('"X"', nested), ".json"),
    ]:
        code, lines = validate(tmp_path, text, suffix)
        assert code == 2, lines
        assert len(lines) == 1 and "nested more than 100 levels deep" in lines[0]


def test_an_output_mapping_nested_deep_is_an_error(tmp_path: Path) -> None:
    data = _plan_dict({"text": "$goal.x"})
    data["output"] = json.loads("{\"a\": " * 300 + "1" + "}" * 300)
    code, lines = validate(tmp_path, json.dumps(data), ".json")
    assert code == 2 and len(lines) == 1 and "output.a.a.a" in lines[0]


def test_self_referencing_yaml_is_rejected_at_its_line(tmp_path: Path) -> None:
    code, lines = validate(tmp_path, plan_text("{text: $goal.x}", "parts: &r [x, *r]"))
    assert code == 2 and len(lines) == 1
    assert "aliases (*r) are not allowed" in lines[0] and "line 8" in lines[0]


def test_a_yaml_alias_bomb_fails_fast_without_expanding(tmp_path: Path) -> None:
    # Nine levels of nine aliases: 9**9 (387 million) strings once expanded by any walk.
    levels = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for n in range(1, 10):
        levels.append(f"l{n}: &l{n} [" + ", ".join([f"*l{n - 1}"] * 9) + "]")
    text = "\n".join(levels) + "\n" + plan_text("{text: $goal.x}")
    code, lines = validate(tmp_path, text)
    assert code == 2 and len(lines) == 1 and "aliases (*l0) are not allowed" in lines[0]


def test_a_key_written_twice_is_an_error_not_the_last_one_winning(tmp_path: Path) -> None:
    yaml_text = plan_text("{text: $goal.x}") + "\nname: second\n"
    code, lines = validate(tmp_path, yaml_text)
    assert code == 2 and lines[0].endswith("not valid YAML/JSON: line 9, column 1: "
                                          "duplicate key 'name'"), lines
    nested = plan_text("{text: $goal.x, text: $goal.y}")
    code, lines = validate(tmp_path, nested)
    assert code == 2 and len(lines) == 1 and "duplicate key 'text'" in lines[0]
    as_json = json.dumps(_plan_dict({"text": "$goal.x"}))[:-1] + ', "name": "second"}'
    code, lines = validate(tmp_path, as_json, ".json")
    assert code == 2 and len(lines) == 1 and "duplicate key 'name'" in lines[0]


def test_keys_the_duplicate_check_does_not_judge_keep_pyyaml_s_handling(tmp_path: Path) -> None:
    code, lines = validate(tmp_path, "? [1, 2]\n: 3\n" + plan_text("{text: $goal.x}"))
    assert code == 2 and len(lines) == 1 and "found unhashable key" in lines[0]  # not exit 70
    merged = plan_text("{<<: {text: $goal.x}}")  # an inline merge still merges
    code, lines = validate(tmp_path, merged)
    assert code == 0, lines


def test_a_goal_input_with_a_key_written_twice_is_refused(tmp_path: Path) -> None:
    result = cli("--store", f"sqlite:///{tmp_path}/b.db", "run", "examples/travel/plan.yaml",
                 "--input",
                 '{"origin": "LHR", "origin": "CDG", "destination": "Lisbon", "passengers": 1}')
    assert result.code == 2
    assert result.err.strip() == "baton: error: --input: not valid JSON: duplicate key 'origin'"
    assert not (tmp_path / "b.db").exists()


@pytest.mark.parametrize("literal", [".nan", ".inf", "-.inf"])
def test_non_finite_literals_are_rejected(tmp_path: Path, literal: str) -> None:
    code, lines = validate(tmp_path, plan_text(f"{{text: {literal}}}"))
    assert code == 2 and len(lines) == 1 and "tasks[a].input.text:" in lines[0]
    assert "not a finite number" in lines[0]


def test_nan_in_a_json_plan_and_infinite_budgets_are_rejected(tmp_path: Path) -> None:
    code, lines = validate(tmp_path, json.dumps(_plan_dict({"text": "X"})).replace('"X"', "NaN"),
                           ".json")
    assert code == 2 and "NaN is not a JSON number" in lines[0]
    code, lines = validate(tmp_path, plan_text("{text: $goal.x}", "budget: {max_cost_usd: .inf}"))
    assert code == 2 and lines == [f"{tmp_path / 'plan.yaml'}: budget.max_cost_usd: "
                                   "Input should be a finite number"]


@pytest.mark.parametrize(
    ("binding", "kwargs", "shown"),
    [
        ('{"te\\nxt": $goal.x}', {}, "tasks[a].input.te\\nxt"),
        ('{text: "$go\\nal.x"}', {}, "$go\\nal.x: no task 'go\\nal'"),
        ("{text: $goal.x}", {"agent": "tests.ag\nents:upper"}, "tests.ag\\nents:upper"),
        ("{text: $goal.x}", {"task_id": "a\nb"}, "tasks[a\\nb].id"),
    ],
)
def test_user_strings_with_newlines_are_quoted_so_each_error_is_one_line(
    tmp_path: Path, binding: str, kwargs: dict[str, Any], shown: str
) -> None:
    code, lines = validate(tmp_path, plan_text(binding, **kwargs))
    assert code == 2
    assert all(line.startswith(str(tmp_path)) for line in lines)  # no continuation lines
    assert any(shown in line for line in lines), lines


def _plan_dict(binding: dict[str, Any]) -> dict[str, Any]:
    return {"version": 1, "name": "hostile", "agents": {"upper": "tests.agents:upper"},
            "tasks": [{"id": "a", "agent": "upper", "input": binding}]}
