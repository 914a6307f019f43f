"""The command line end to end, in real processes, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_support import baton
from tests.support import plan, plan_file, task

PLAN = "examples/travel/plan.yaml"
LISBON = '{"origin": "LHR", "destination": "Lisbon", "passengers": 2}'
BERLIN = '{"origin": "LHR", "destination": "Berlin", "passengers": 2}'
DUBLIN = '{"origin": "LHR", "destination": "Dublin", "passengers": 2}'


def test_validate_accepts_the_example() -> None:
    result = baton("validate", PLAN)
    assert result.code == 0
    assert "ok" in result.out and "4 tasks" in result.out


def test_validate_counts_one_task_and_one_agent_in_the_singular(tmp_path: Path) -> None:
    one = tmp_path / "one.yaml"
    one.write_text(
        "version: 1\n"
        "name: one\n"
        "agents: {search: 'examples.travel.agents:search_flights'}\n"
        "input: examples.travel.agents:TripRequest\n"
        "tasks:\n"
        "  - id: search\n"
        "    agent: search\n"
        "    input: {origin: $goal.origin, destination: $goal.destination,"
        " passengers: $goal.passengers, max_price: $goal.max_price}\n"
    )
    result = baton("validate", str(one))
    assert result.code == 0, result.err
    assert result.out.endswith("ok — plan 'one', 1 task, 1 agent checked\n"), result.out


def test_validate_reports_each_problem_on_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    text = Path(PLAN).read_text().replace("$search.flights", "$search.flihgts")
    bad.write_text(text.replace("agent: book", "agent: boook"))
    result = baton("validate", str(bad))
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 2
    assert any("tasks[price].input.flights: $search.flihgts" in line for line in lines)
    assert any("tasks[book].agent: agent 'boook' is not in" in line for line in lines)
    assert "Traceback" not in result.err


def test_run_prints_the_contract_json_and_exits_0(store_url: str) -> None:
    result = baton("run", PLAN, "--input", LISBON, "--goal-id", "trip-1", "--json",
                   store=store_url)
    assert result.code == 0, result.err
    data = result.json()
    assert data["goal_id"] == "trip-1" and data["status"] == "completed"
    assert data["output"]["total"] == 113.08
    assert data["tasks"]["book"] == {"status": "succeeded", "attempts": 1}
    status = baton("status", "trip-1", "--json", store=store_url).json()
    assert status["tasks"] == data["tasks"] and status["output"] == data["output"]
    listed = baton("status", "--json", store=store_url).json()
    assert [(g["goal_id"], g["plan"], g["status"]) for g in listed["goals"]] == [
        ("trip-1", "trip-booking", "completed")
    ]


def test_human_readable_summary(store_url: str) -> None:
    result = baton("run", PLAN, "--input", LISBON, store=store_url)
    assert result.code == 0
    assert "search" in result.out and "succeeded" in result.out
    assert "status: completed" in result.out


def test_status_of_all_goals_keeps_each_goal_id_on_one_line_at_80_columns(
        sqlite_url: str) -> None:
    # The id is what the reader copies into the next command; a wrapped UUID does not copy.
    ids = [baton("run", PLAN, "--input", LISBON, "--json", store=sqlite_url).json()["goal_id"]
           for _ in range(2)]
    listed = baton("status", store=sqlite_url, env={"COLUMNS": "80"})
    assert listed.code == 0, listed.err
    assert all(len(line) <= 80 for line in listed.out.splitlines())
    for goal_id in ids:
        assert any(goal_id in line and "completed" in line for line in listed.out.splitlines())
    narrow = baton("status", store=sqlite_url, env={"COLUMNS": "50"})
    assert "…" not in narrow.out  # narrower, the id folds across lines rather than being cut
    assert all(goal_id.replace("-", "")[-8:] in narrow.out.replace("-", "").replace(" ", "")
               .replace("\n", "") for goal_id in ids)


def test_failed_goal_exits_1(store_url: str) -> None:
    result = baton("run", PLAN, "--input", DUBLIN, "--json", store=store_url)
    assert result.code == 1
    assert result.json()["tasks"]["price"] == {"status": "failed", "attempts": 3}


def test_escalate_resolve_resume(store_url: str, tmp_path: Path) -> None:
    run = baton("run", PLAN, "--input", BERLIN, "--goal-id", "berlin", "--json",
                store=store_url)
    assert run.code == 3 and run.json()["status"] == "waiting"
    waiting = baton("escalations", "--json", store=store_url).json()["escalations"]
    assert [(e["goal_id"], e["task"]) for e in waiting] == [("berlin", "price")]
    assert "below min_confidence 0.7" in waiting[0]["reason"] and waiting[0]["since"]

    invalid = baton("resolve", "berlin", "price", "--output", '{"total": "lots"}',
                    "--reason", "priced by phone", store=store_url)
    assert invalid.code == 2 and "does not satisfy PriceOut" in invalid.err
    assert len(invalid.err.strip().splitlines()) == 1

    offer = {"total": 150.0, "confidence": 1.0,
             "best_offer": {"id": "OF-PHONE", "price_per_passenger": 75.0,
                            "flight": {"id": "X1", "carrier": "XX", "origin": "LHR",
                                       "destination": "Berlin", "departs": "09:00",
                                       "fare": 60.0, "seats_left": 3}}}
    (tmp_path / "offer.json").write_text(json.dumps(offer))
    resolved = baton("resolve", "berlin", "price", "--output", f"@{tmp_path / 'offer.json'}",
                     "--reason", "priced by phone", "--by", "ana", store=store_url)
    assert resolved.code == 0, resolved.err
    resumed = baton("resume", "berlin", "--json", store=store_url)
    assert resumed.code == 0, resumed.err
    assert resumed.json()["output"]["total"] == 150.0
    assert baton("escalations", "--json", store=store_url).json() == {"escalations": []}


def test_ids_names_and_errors_that_look_like_markup_or_escapes_are_shown_as_written(
    sqlite_url: str, tmp_path: Path
) -> None:
    # An agent's message holding `[/]` made `run` and `status GOAL` exit 70 (rich's
    # MarkupError); a goal id `[red]g[/]` was listed as `g`, an id no command finds.
    data = plan(task("a", "raises_with_brackets", input={"text": "$goal.text"},
                     retry={"max_attempts": 1}, on_failure="escalate"), name="[bold]p[/]")
    ran = baton("run", plan_file(tmp_path, data), "--input", '{"text": "x"}', "--goal-id",
                "[red]g[/]", store=sqlite_url)
    assert ran.code == 3, ran.err
    assert "bad value [/] in [bold]x[/bold]" in " ".join(ran.out.split())
    shown = baton("status", "[red]g[/]", store=sqlite_url)
    assert shown.code == 0, shown.err
    assert "goal [red]g[/] · [bold]p[/]" in shown.out
    assert "bad value [/] in [bold]x[/bold]" in " ".join(shown.out.split())
    # the command for the task that waits, ids as shell words: pasted, it works
    assert "resolve with: baton resolve '[red]g[/]' a --retry|--abandon|--output JSON" in shown.out
    listed = baton("status", store=sqlite_url)
    assert listed.code == 0 and "[red]g[/]  [bold]p[/]" in listed.out
    stats = baton("stats", store=sqlite_url)
    assert stats.code == 0 and "raises_with_brackets" in stats.out
    # what waits, and the command that decides it (every kind names one)
    waiting = baton("escalations", store=sqlite_url)
    assert "resolve with: baton resolve '[red]g[/]' a --retry|--abandon|--output JSON --reason" \
        " TEXT" in waiting.out
    # the agent's ESC reaches the operator's terminal as text, not as a sequence it obeys
    for shows in (ran, shown, baton("audit", "[red]g[/]", store=sqlite_url),
                  baton("escalations", store=sqlite_url)):
        assert "\x1b" not in shows.out and "\\x1b[2J" in shows.out


def test_cancel_a_waiting_goal(store_url: str) -> None:
    baton("run", PLAN, "--input", BERLIN, "--goal-id", "g", store=store_url)
    for blank in ("", "   "):  # the audit trail quotes the reason: it is required
        for command in (["cancel", "g"], ["resolve", "g", "price", "--abandon"]):
            refused = baton(*command, "--reason", blank, store=store_url)
            assert refused.code == 2 and "a reason is required" in refused.err, refused.err
    assert baton("status", "g", "--json", store=store_url).json()["status"] == "waiting"
    result = baton("cancel", "g", "--reason", "trip called off", "--json", store=store_url)
    assert result.code == 0 and result.json()["status"] == "cancelled"  # the cancel succeeded
    again = baton("cancel", "g", "--reason", "twice", store=store_url)
    assert again.code == 2 and "already ended" in again.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "missing.yaml"], "missing.yaml: No such file or directory"),
        (["run", PLAN, "--input", "{not json"], "--input: not valid JSON"),
        (["run", PLAN, "--input", '{"origin": "LHR"}'], "goal input does not satisfy TripRequest"),
        (["run", PLAN, "--concurrency", "0"], "must be at least 1"),
        (["run", PLAN, "--concurrency", "x"], "expected a whole number, got 'x'"),
        (["status", "no-such-goal"], "no goal 'no-such-goal'"),
        (["resolve", "g", "t", "--retry"], "the following arguments are required: --reason"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(
    args: list[str], message: str, sqlite_url: str
) -> None:
    result = baton(*args, store=sqlite_url)
    assert result.code == 2
    assert message in result.err
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert "Traceback" not in result.err


def test_a_binary_input_file_is_one_line_and_exit_2(sqlite_url: str, tmp_path: Path) -> None:
    binary = tmp_path / "input.json"
    binary.write_bytes(bytes(range(256)) * 4)
    result = baton("run", PLAN, "--input", f"@{binary}", store=sqlite_url)
    assert result.code == 2, result.err
    assert "not a text file" in result.err and len(result.err.strip().splitlines()) == 1


def test_a_store_file_that_is_not_a_database_is_one_line_and_exit_2(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(bytes(range(256)) * 20)
    for args in (["status"], ["audit", "x"], ["run", PLAN, "--input", LISBON]):
        result = baton(*args, store=f"sqlite:///{junk}")
        assert result.code == 2, (args, result.err)
        assert "file is not a database" in result.err, result.err
        assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err


def test_invalid_input_stores_nothing(sqlite_url: str) -> None:
    baton("run", PLAN, "--input", '{"origin": "LHR"}', "--goal-id", "x", store=sqlite_url)
    assert baton("status", "x", store=sqlite_url).err == "baton: error: no goal 'x' in this store\n"


def test_a_store_that_is_down_is_exit_2() -> None:
    result = baton("run", PLAN, "--input", LISBON,
                   store="postgresql://postgres@127.0.0.1:1/test")
    assert result.code == 2
    assert result.err.startswith("baton: error: store postgresql://postgres@127.0.0.1:1/test")
    assert len(result.err.strip().splitlines()) == 1


def test_help_on_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    from baton.cli.main import build_parser, main

    listed = baton("--help")  # once as a user runs it; every command below in-process
    assert listed.code == 0
    for command in ["validate", "run", "resume", "status", "graph", "escalations", "resolve",
                    "cancel", "audit", "replay", "fork", "export", "import", "stats",
                    "projections"]:
        assert command in listed.out
    # Every command the parser knows, including any added after the list above was written,
    # and every action of the commands that have actions.
    commands = next(a for a in build_parser()._actions if a.dest == "command").choices
    assert commands is not None
    invocations = []
    for command, parser in commands.items():
        invocations.append([command])
        for action in parser._actions:
            if action.dest == "action" and action.choices:
                invocations += [[command, name] for name in action.choices]
    assert ["projections", "follow"] in invocations
    for words in invocations:
        with pytest.raises(SystemExit) as exited:
            main([*words, "--help"])
        out = capsys.readouterr().out
        assert exited.value.code == 0 and "usage: baton " + " ".join(words) in out, words
    for command, parser in commands.items():  # a sentence on what it does, not just usage
        assert parser.description and len(parser.description) > 40, command


def test_a_plan_file_that_is_not_text_or_missing_is_one_line(tmp_path: Path) -> None:
    binary = tmp_path / "plan.yaml"
    binary.write_bytes(b"\xff\xfe plan")
    result = baton("validate", str(binary))
    assert result.code == 2 and "Traceback" not in result.err
    assert result.err.strip() == f"{binary}: not a text file (UTF-8): invalid start byte at byte 0"
    missing = tmp_path / "missing.yaml"
    result = baton("run", str(missing))
    assert result.code == 2
    assert result.err.strip() == f"baton: error: {missing}: No such file or directory"


def test_graph_of_a_plan() -> None:
    mermaid = baton("graph", PLAN)
    assert mermaid.code == 0 and "search --> price" in mermaid.out
    dot = baton("graph", PLAN, "--format", "dot")
    assert '"price" -> "book";' in dot.out


def test_graph_of_a_goal_named_like_a_directory(sqlite_url: str, tmp_path: Path) -> None:
    # `examples` is a directory of the working directory (the repository root): not a plan
    # file, so the goal of that name is drawn, as audit, replay and trace find it
    data = plan(task("a", "upper", input={"text": "$goal.text"}))
    ran = baton("run", plan_file(tmp_path, data), "--input", '{"text": "x"}', "--goal-id",
                "examples", store=sqlite_url)
    assert ran.code == 0, ran.err
    drawn = baton("graph", "examples", store=sqlite_url)
    assert (drawn.code, drawn.err) == (0, "")
    assert 'a["a<br/>(upper) · succeeded"]' in drawn.out


def test_graph_of_a_misspelt_plan_file_says_no_such_file(tmp_path) -> None:
    # `graph PLAN|GOAL` takes a missing file for a goal id: a typo in the plan's path was
    # "no goal 'examples/travel/plan.yml' in this store", about goals the user never named.
    store = f"sqlite:///{tmp_path / 'baton.db'}"
    for target in ["examples/travel/plan.yml", "plan.json"]:
        result = baton("graph", target, store=store)
        assert result.code == 2
        assert result.err.strip() == (
            f"baton: error: {target}: no such plan file (and no goal {target!r} in this store)")
    assert baton("graph", "no-such-goal", store=store).err.strip() == (
        "baton: error: no goal 'no-such-goal' in this store")


def test_graph_labels_survive_quotes_in_names() -> None:
    from baton.cli.render import render_graph
    from baton.domain.plan import load_plan

    plan = load_plan({
        "version": 1, "name": 'say "hi"', "agents": {'the "best" agent': "tests.agents:upper"},
        "tasks": [{"id": "a", "agent": 'the "best" agent', "input": {"text": "$goal.text"}}],
    })
    dot = render_graph(plan, {"a": "succeeded"}, "dot")
    assert dot.splitlines()[0] == 'digraph "say \\"hi\\"" {'
    assert '"a" [label="a\\n(the \'best\' agent) · succeeded"' in dot
    mermaid = render_graph(plan, None, "mermaid")
    assert "  a[\"a<br/>(the 'best' agent)\"]" in mermaid.splitlines()
