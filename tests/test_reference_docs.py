"""docs/reference.md tells the truth about the code: every command and option it documents
exists, every one that exists is documented, and so are the environment variables, rule ids,
event kinds and lifecycle transitions. Links between the docs resolve, and nothing in the
repository cites a file outside it.
"""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

import pytest
import yaml

from baton.cli.main import build_parser
from baton.domain.goal import DECISION_KINDS, OBSERVATION_KINDS
from baton.domain.lifecycle import GOAL_TRANSITIONS, TASK_TRANSITIONS

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
RULE_ID = re.compile(
    r"^(dag|validation|retry|on_failure|budget|side_effects|human|escalation|goal|output|expands"
    r"|map|clarification|approval)\.[a-z_]+$"
)


def _section(title: str, level: str = "##") -> str:
    """The text under a heading, up to the next heading of the same or a higher level."""
    match = re.search(rf"^{level} {re.escape(title)}\n(.*?)(?=^#{{1,{len(level)}}} |\Z)",
                      REFERENCE, re.S | re.M)
    assert match, f"docs/reference.md has no section {title!r}"
    return match.group(1)


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {
        flag for action in parser._actions for flag in action.option_strings
        if flag.startswith("--") and flag != "--help"
    }


def _mentions(text: str, option: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


COMMANDS = _subcommands(build_parser())


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_and_option_is_documented(command: str) -> None:
    text = _section(f"baton {command}", "###")
    parser = COMMANDS[command]
    for option in _options(parser):
        assert _mentions(text, option), f"baton {command} {option}"
    for action, sub in _subcommands(parser).items():
        assert f"`{action}" in text, f"baton {command} {action}"
        for option in _options(sub):
            assert _mentions(text, option), f"baton {command} {action} {option}"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_documented_option_exists(command: str) -> None:
    """The usage line and option tables of a command's section name only real options."""
    parser = COMMANDS[command]
    real = _options(parser) | {o for sub in _subcommands(parser).values() for o in _options(sub)}
    text = _section(f"baton {command}", "###")
    documented = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", text))
    assert documented <= real, f"baton {command}: documented but absent {documented - real}"


def test_the_global_options_are_documented() -> None:
    text = _section("Command line")
    for option in _options(build_parser()):
        assert _mentions(text, option), option


def test_every_environment_variable_the_code_reads_is_documented_and_no_other() -> None:
    table = _section("Environment variables")
    sources = [*(ROOT / "adapters").rglob("*.py"), *(ROOT / "projections").glob("*.py"),
               ROOT / "tests" / "conftest.py"]
    read = set()
    for path in sources:
        read |= set(re.findall(r"[\"'](BATON_[A-Z_]+|PG[A-Z]+)[\"']", path.read_text()))
    documented = set(re.findall(r"`((?:BATON|PG)[A-Z_]*)[`=]", table))
    assert read - documented == set(), "read by the code, missing from the reference"
    assert documented - read == set(), "in the reference, read by no code"


def _rule_literals() -> set[str]:
    rules = set()
    for path in (ROOT / "domain").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            text = node.value if isinstance(node, ast.Constant) else None
            if isinstance(text, str) and RULE_ID.match(text):
                rules.add(text)
    return rules


def test_every_rule_id_is_in_the_rule_table() -> None:
    table = _section("Decisions and their rules")
    documented = set(re.findall(r"^\| `([a-z_]+\.[a-z_]+)`", table, re.M))
    documented |= set(re.findall(r"`(budget\.[a-z_]+)`", table))
    rules = _rule_literals()
    rules |= {f"on_failure.{value}" for value in ("fail", "escalate", "abandon")}
    rules |= {f"budget.{name}" for name in ("attempts", "tokens", "cost_usd", "deadline_s")}
    assert "dag.dispatch" in rules and "validation.contract" in rules
    assert rules == documented


def test_every_event_kind_is_documented() -> None:
    text = _section("Events")
    documented = set(re.findall(r"`([A-Z][A-Za-z]+)`", text))
    assert set(OBSERVATION_KINDS) | set(DECISION_KINDS) <= documented


def _transitions(table: str) -> dict[tuple[str, str], str]:
    found = {}
    for event, sources, target in re.findall(r"^\| `(\w+)` \| (.+?) \| `(\w+)` \|$", table, re.M):
        for source in re.findall(r"`(\w+)`", sources):
            found[(source, event)] = target
    return found


def test_the_lifecycle_tables_are_the_state_machines() -> None:
    text = _section("Goals and tasks: statuses")
    goal_part, task_part = text.split("Task transitions")
    assert _transitions(task_part) == TASK_TRANSITIONS
    assert _transitions(goal_part) == GOAL_TRANSITIONS


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_links_between_the_docs_resolve() -> None:
    pages = [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            if target.startswith(("http://", "https://")):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            assert linked.exists(), f"{page.name}: {target}"
            if anchor:
                headings = re.findall(r"^#+ (.+)$", linked.read_text(encoding="utf-8"), re.M)
                assert anchor in {_anchor(h) for h in headings}, f"{page.name}: {target}"


def test_nothing_in_the_repository_cites_a_file_outside_it() -> None:
    outside = ("CONTRACT" + ".md", "DESIGN" + ".md", "STYLE" + ".md", "../" + "shared")
    files = [ROOT / "README.md", ROOT / "pyproject.toml", *(ROOT / ".ci").iterdir()]
    for folder in ("adapters", "domain", "projections", "tests", "scripts", "examples", "docs"):
        files += [p for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".md", ".yaml")]
    assert len(files) > 50
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        for needle in outside:
            assert needle not in text, f"{path.relative_to(ROOT)} cites {needle}"


def test_every_whole_plan_shown_in_the_docs_validates() -> None:
    from baton.runtime.loading import prepare_plan

    shown = 0
    for page in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for block in re.findall(r"```yaml\n(.*?)```", page.read_text(encoding="utf-8"), re.S):
            if block.startswith("version: 1"):
                prepare_plan(yaml.safe_load(block), source=page.name)  # PlanError if not
                shown += 1
    assert shown >= 2


def test_every_table_in_the_docs_has_its_header_row() -> None:
    # Rows cut off from their table by a blank line render as plain text with pipes: resolve's
    # --approve and --reject were documented that way, outside its options table.
    for page in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
        for table in re.findall(r"(?:^\|.*\n)+", text, re.M):
            rows = table.splitlines()
            assert len(rows) >= 2 and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", rows[1]), (
                f"{page.name}: a table without a header row: {rows[0][:80]}")
