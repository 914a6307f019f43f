"""The static plan check: every error names the task and field, and nothing is stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from baton.domain.errors import PlanError
from baton.runtime.loading import prepare_plan

M = "tests.check_agents"


def base(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "version": 1,
        "name": "check",
        "agents": {"search": f"{M}:search", "price": f"{M}:price", "label": f"{M}:label"},
        "input": f"{M}:Trip",
        "tasks": [
            {"id": "search", "agent": "search", "input": {"destination": "$goal.destination"}},
            {"id": "price", "agent": "price",
             "input": {"flights": "$search.flights", "passengers": "$goal.passengers"}},
        ],
        "output": "$price.total",
    }
    data.update(overrides)
    return data


def issues(data: dict[str, Any]) -> list[str]:
    with pytest.raises(PlanError) as info:
        prepare_plan(data)
    return [str(issue) for issue in info.value.issues]


def with_task(index: int, **fields: Any) -> dict[str, Any]:
    data = base()
    data["tasks"][index] = {**data["tasks"][index], **fields}
    return data


def test_a_valid_plan_passes() -> None:
    loaded = prepare_plan(base())
    assert loaded.plan.deps["price"] == ("search",)
    assert loaded.contracts["price"].output_model.__name__ == "PriceOut"


def test_agent_not_in_the_allowlist() -> None:
    found = issues(with_task(0, agent="google"))
    assert found == ["tasks[search].agent: agent 'google' is not in the plan's agents allowlist"]


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("tests.nope:search", "agents.search: tests.nope:search: ModuleNotFoundError"),
        (f"{M}:missing", "AttributeError"),
        (f"{M}:untyped", "must be annotated with a pydantic model"),
        (f"{M}:not_callable", "is not callable"),
        ("no_colon", "is not of the form 'module:callable'"),
    ],
)
def test_agent_import_failures(target: str, expected: str) -> None:
    data = base()
    data["agents"]["search"] = target
    found = issues(data)
    assert len(found) == 1 and found[0].startswith("agents.search: ") and expected in found[0]


def test_a_module_not_found_says_where_it_was_looked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The usual cause is a plan run from another directory than its agents' package."""
    monkeypatch.chdir(tmp_path)
    data = base()
    data["agents"]["search"] = "elsewhere.agents:search"
    [found] = issues(data)
    assert found == (
        "agents.search: elsewhere.agents:search: ModuleNotFoundError: No module named "
        f"'elsewhere': not in the working directory {tmp_path}, on PYTHONPATH or installed"
    )


def test_a_dependency_the_agents_module_lacks_is_named_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The module was found: the working directory is not the problem, and is not blamed."""
    (tmp_path / "needs_dependency.py").write_text("import baton_no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    data = base()
    data["agents"]["search"] = "needs_dependency:search"
    [found] = issues(data)
    assert found == (
        "agents.search: needs_dependency:search: ModuleNotFoundError: No module named "
        "'baton_no_such_dependency'"
    )


def test_an_agent_missing_from_code_changed_since_import_says_to_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker imports a module once; after a deploy adds an agent to it, the worker still
    runs the old code and no retry finds the new agent: the error says to restart it. A name
    missing from code that did not change is a plain typo, said as before."""
    import os
    import uuid

    module = f"deployed_{uuid.uuid4().hex[:8]}"
    source = tmp_path / f"{module}.py"
    source.write_text(f"from {M} import search\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("sys.dont_write_bytecode", True)
    data = base()
    data["agents"]["search"] = f"{module}:search"
    prepare_plan(data)  # imported, as a worker's first goal would
    data["agents"]["search"] = f"{module}:serch"
    [typo] = issues(data)
    assert typo == f"agents.search: {module}:serch: AttributeError: module '{module}' has no " \
        "attribute 'serch'"
    source.write_text(f"from {M} import search\nfrom {M} import search as scout\n")
    os.utime(source, ns=(0, source.stat().st_mtime_ns + 10**9))  # a deploy: a newer file
    data["agents"]["search"] = f"{module}:scout"
    [stale] = issues(data)
    assert stale == (
        f"agents.search: {module}:scout: AttributeError: module '{module}' has no attribute "
        f"'scout' ({source} changed after this process imported it: restart the process to "
        "load the new code)"
    )


def test_duplicate_and_unknown_task_ids() -> None:
    data = base()
    data["tasks"].append(dict(data["tasks"][0]))
    assert "tasks[search]: duplicate task id" in issues(data)
    found = issues(with_task(1, after=["ghost"]))
    assert found == ["tasks[price].after: no task 'ghost'"]
    found = issues(with_task(1, input={"flights": "$ghost.flights", "passengers": 1}))
    assert found == ["tasks[price].input.flights: $ghost.flights: no task 'ghost'"]


def test_cycles_are_named() -> None:
    found = issues(with_task(0, after=["price"]))
    assert found == ["tasks[search]: dependency cycle: search -> price -> search"]


def test_reference_to_a_field_the_upstream_output_lacks() -> None:
    found = issues(with_task(1, input={"flights": "$search.flihgts", "passengers": 1}))
    assert len(found) == 1
    assert found[0].startswith("tasks[price].input.flights: $search.flihgts: SearchOut")
    assert "'flihgts'" in found[0]


def test_reference_into_the_goal_input_model() -> None:
    found = issues(with_task(0, input={"destination": "$goal.destnation"}))
    assert found[0].startswith("tasks[search].input.destination: $goal.destnation: goal input")


def test_types_that_can_never_satisfy_the_field() -> None:
    # a single Flight where a list of flights is expected
    found = issues(with_task(1, input={"flights": "$search.cheapest", "passengers": 1}))
    assert found == [
        "tasks[price].input.flights: $search.cheapest is Flight, which can never satisfy "
        "list[Flight]"
    ]
    # a number into a string field, through a nested path in a list
    data = base()
    data["tasks"].append({"id": "lbl", "agent": "label", "input": {"label": "$search.count"}})
    assert issues(data) == [
        "tasks[lbl].input.label: $search.count is int, which can never satisfy str"
    ]
    data["tasks"][-1]["input"] = {"label": "$search.flights.0.id"}
    prepare_plan(data)  # a nested path into a list item with the right type is fine


def test_references_inside_literal_lists_and_mappings_are_type_checked_too() -> None:
    # flights: [<a Flight>, <a count>] — the list literal is checked item by item
    found = issues(with_task(1, input={"flights": ["$search.cheapest", "$search.count"],
                                       "passengers": 1}))
    assert found == [
        "tasks[price].input.flights.1: $search.count is int, which can never satisfy Flight"
    ]
    found = issues(with_task(1, input={"flights": [{"id": "$search.count", "price": 1.5}],
                                       "passengers": 1}))
    assert found == [
        "tasks[price].input.flights.0.id: $search.count is int, which can never satisfy str"
    ]
    prepare_plan(with_task(1, input={"flights": ["$search.cheapest",
                                                 {"id": "$search.cheapest.id", "price": 2}],
                                     "passengers": 1}))


def test_required_input_field_left_unbound() -> None:
    found = issues(with_task(1, input={"flights": "$search.flights"}))
    assert found == ["tasks[price].input.passengers: required by PriceIn but not bound"]


def test_binding_a_field_the_input_model_does_not_have() -> None:
    found = issues(with_task(0, input={"destination": "$goal.destination", "cabin": "eco"}))
    assert found[0].startswith("tasks[search].input.cabin: SearchIn has no field 'cabin'")


def test_unknown_keys_and_bad_values_are_located() -> None:
    found = issues(with_task(1, on_failur="abandon"))
    assert found == ["tasks[price].on_failur: Extra inputs are not permitted"]
    found = issues(with_task(1, side_effects="sometimes"))
    assert found[0].startswith("tasks[price].side_effects: Input should be")


def test_min_confidence_needs_a_confidence_field() -> None:
    found = issues(with_task(0, min_confidence=0.5))
    assert found == ["tasks[search].min_confidence: SearchOut has no 'confidence' field"]


def test_output_reference_is_checked() -> None:
    found = issues(base(output={"total": "$price.totl"}))
    assert found[0].startswith("output.total: $price.totl: PriceOut")


def test_every_problem_is_reported_at_once() -> None:
    data = with_task(1, input={"flights": "$search.nope"}, agent="price")
    data["agents"]["search"] = "tests.nope:search"
    found = issues(data)
    assert any(f.startswith("agents.search") for f in found)
    assert any(f.startswith("tasks[price].input.passengers") for f in found)


def _chain(length: int) -> dict[str, Any]:
    """A chain t0 <- t1 <- ... listed downstream-first: the deepest walk a plan can ask for."""
    tasks = [
        {"id": f"t{i}", "agent": "upper",
         "input": {"text": f"$t{i - 1}.text" if i else "$goal.text"}}
        for i in reversed(range(length))
    ]
    return {"version": 1, "name": "chain", "agents": {"upper": "tests.agents:upper"},
            "tasks": tasks}


def test_a_10000_task_chain_listed_downstream_first_validates() -> None:
    loaded = prepare_plan(_chain(10_000))
    order = loaded.plan.topological_order()
    assert order[0] == "t0" and order[-1] == "t9999"


def test_a_cycle_in_a_long_chain_is_named_task_by_task() -> None:
    data = _chain(2_000)
    data["tasks"][-1]["after"] = ["t3"]  # t0 waits for t3, which reads t2, t1, t0
    found = issues(data)
    assert found == ["tasks[t3]: dependency cycle: t3 -> t2 -> t1 -> t0 -> t3"]


def test_dependencies_are_in_plan_order_whatever_the_binding_order() -> None:
    data = {"version": 1, "name": "order", "agents": {"upper": "tests.agents:upper",
                                                      "join": "tests.agents:join"},
            "tasks": [{"id": "plan", "agent": "upper", "input": {"text": "$goal.text"}},
                      {"id": "web", "agent": "upper", "input": {"text": "$goal.text"}},
                      {"id": "merge", "agent": "join",
                       "input": {"right": "$web.text", "left": "$plan.text"}}]}
    assert prepare_plan(data).plan.deps["merge"] == ("plan", "web")


@pytest.mark.parametrize("literal", ["abc", 3.7, [1], {"n": 1}])
def test_a_literal_of_the_wrong_type_is_refused_before_anything_runs(literal: Any) -> None:
    found = issues(with_task(1, input={"flights": "$search.flights", "passengers": literal}))
    assert len(found) == 1
    assert found[0].startswith(f"tasks[price].input.passengers: literal {literal!r} can never "
                               "satisfy int")


def test_literals_that_validate_as_the_field_pass() -> None:
    for literal in (2, "2", 2.0, True):  # pydantic's lax mode, as the agent's input model
        prepare_plan(with_task(1, input={"flights": "$search.flights", "passengers": literal}))


def test_a_literal_inside_a_list_of_models_is_checked_too() -> None:
    bad_flight = {"id": "X1", "carrier": "XX", "price": "cheap"}
    found = issues(with_task(1, input={"flights": [bad_flight], "passengers": 1}))
    assert found == ["tasks[price].input.flights.0.price: literal 'cheap' can never satisfy "
                     "float: Input should be a valid number, unable to parse string as a number"]
    missing = issues(with_task(1, input={"flights": [{"id": "X1"}], "passengers": 1}))
    assert missing == ["tasks[price].input.flights.0: literal {'id': 'X1'} can never satisfy "
                       "Flight (at price): Field required"]


def test_a_misspelt_key_and_a_cycle_are_reported_together() -> None:
    data = with_task(0, after=["price"])
    data["tasks"][1]["on_failur"] = "escalate"
    found = issues(data)
    assert "tasks[price].on_failur: Extra inputs are not permitted" in found
    assert "tasks[search]: dependency cycle: search -> price -> search" in found
