"""What the CLI prints: the JSON shapes of docs/reference.md and rich tables for people."""

from __future__ import annotations

import json
import math
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from baton.api.results import GoalResult
from baton.domain.errors import one_line
from baton.domain.goal import Goal
from baton.domain.plan import Plan
from baton.domain.state import parent_of

__all__ = [
    "STATUS_STYLE",
    "TaskLine",
    "goal_json",
    "goes_on",
    "print_goal",
    "print_json",
    "print_summary",
    "quoted",
    "render_graph",
    "shown",
    "styled",
    "terminal_safe",
]

STATUS_STYLE = {
    "succeeded": "green",
    "completed": "green",
    "running": "cyan",
    "ready": "cyan",
    "retry_wait": "yellow",
    "waiting": "yellow",
    "escalated": "yellow",
    "failed": "red",
    "cancelled": "red",
    "abandoned": "magenta",
    "skipped": "dim",
    "pending": "dim",
}


def goes_on(goal_id: str) -> str:
    """How a goal a human has decided goes on: a running `baton worker` takes it up by itself,
    `baton resume` is for a store without one."""
    return f"a worker picks it up; without workers: baton resume {terminal_safe(quoted(goal_id))}"


def quoted(arg: str) -> str:
    """A goal or task id as a shell word, for the commands we suggest: `x y`, `search[0]` or
    `a;b` pasted bare would be split, globbed or run as two commands."""
    return shlex.quote(arg)


def goal_json(goal: Goal) -> dict[str, Any]:
    """`run` / `resume` / `status GOAL` shape: what the Python API returns, as JSON."""
    return GoalResult.of_goal(goal).to_json()


def print_json(data: Any) -> None:
    """Always valid JSON: a NaN or Infinity (recorded before the handoff refused them) is null."""
    try:
        text = json.dumps(data, indent=2, default=str, allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(data), indent=2, default=str, allow_nan=False)
    sys.stdout.write(text + "\n")


def _finite(data: Any) -> Any:
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: _finite(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(value) for value in data]
    return data


@dataclass(frozen=True)
class TaskLine:
    """One row of the task table, from an aggregate or from the task_status read model."""

    task: str
    agent: str
    status: str
    attempts: int
    ms: float | None
    last_error: str | None
    reason: str | None
    waiting_for: str | None = None  # an escalated task's escalation kind

    @property
    def note(self) -> str:
        """The error of a failed or escalated task, else why it was skipped, abandoned…"""
        note = self.last_error if self.status in ("failed", "escalated") else ""
        if self.status in ("skipped", "abandoned", "escalated", "cancelled") and not note:
            note = self.reason or ""
        return note or ""


def terminal_safe(text: str) -> str:
    """`text` with its control characters but the newline written out (`\x1b` for ESC): an
    agent's error, output or question reaches the operator's terminal as text, never as an
    escape sequence that recolours, moves the cursor or retitles the window."""
    if text.isprintable():
        return text
    return "\n".join(map(one_line, text.split("\n")))  # one_line, newlines kept


def shown(text: str) -> str:
    """Data for a rich console: terminal-safe, and escaped so rich prints `[/]` as written."""
    return escape(terminal_safe(text))


def styled(status: str) -> str:
    style = STATUS_STYLE.get(status, "")
    return f"[{style}]{status}[/]" if style else status


def print_summary(
    *, goal_id: str, plan: str, status: str, reason: str | None, output: Any,
    lines: list[TaskLine],
) -> None:
    """A table of tasks with status, attempts and duration, then the goal's outcome."""
    # Ids, names, errors and reasons are data (an agent's message may hold `[/]` or ESC):
    # shown as written, never read as markup (or failed on) nor sent as escape sequences.
    console = Console()
    table = Table(title=f"goal {shown(goal_id)} · {shown(plan)}", title_justify="left")
    table.add_column("task")
    table.add_column("agent")
    table.add_column("status")
    table.add_column("attempts", justify="right")
    table.add_column("ms", justify="right")
    table.add_column("note", overflow="fold", max_width=60)
    for line in lines:
        table.add_row(shown(line.task), shown(line.agent), styled(line.status),
                      str(line.attempts), "" if line.ms is None else f"{line.ms:.1f}",
                      shown(line.note))
    console.print(table)
    # Waiting with nothing escalated: a human resolved what the goal waited for (what
    # `escalations` says too, and the folded reason: GoalState.move, the read models' fold).
    resolved = status == "waiting" and not any(line.status == "escalated" for line in lines)
    console.print(f"status: {styled(status)}" + (
        f" — {shown(reason)}" if reason and status != "completed" else ""
    ))
    if status == "completed":
        console.print_json(json.dumps(output, default=str))
    elif resolved:
        console.print(escape(goes_on(goal_id)))  # terminal-safe already
    elif status == "waiting":
        # The command for each task that waits, as `baton escalations` gives it: the reader at
        # 2am copies one line, not a template to fill in from another command's output.
        for line in lines:
            if line.status == "escalated":
                console.print(shown(decide_with(goal_id, line.task, line.waiting_for)),
                              soft_wrap=True)


def decide_with(goal_id: str, task: str, waiting_for: str | None) -> str:
    """The command a human decides an escalated task with, by what it waits for (the
    `kind` of `baton escalations`), its ids quoted as shell words."""
    which = f"{quoted(goal_id)} {quoted(task)}"
    if waiting_for == "clarification":
        return f"answer with: baton answer {which} TEXT"
    if waiting_for == "approval":
        return f"decide with: baton resolve {which} --approve|--reject --reason TEXT"
    # failure, low_confidence, budget, outcome_unknown
    return f"resolve with: baton resolve {which} --retry|--abandon|--output JSON --reason TEXT"


def print_goal(goal: Goal, durations: dict[str, float] | None = None) -> None:
    """The summary of a goal from its aggregate (what `run` and `resume` print)."""
    state = goal.state
    lines = []
    for tid in state.plan.order:
        task = state.tasks[tid]
        lines.append(TaskLine(tid, state.plan.task_map[tid].agent, task.status, task.attempts,
                              (durations or {}).get(tid), task.last_error, task.reason,
                              task.waiting_for))
    print_summary(goal_id=goal.id, plan=state.plan.name, status=state.status,
                  reason=state.reason, output=state.output, lines=lines)


def render_graph(plan: Plan, statuses: Mapping[str, str] | None, fmt: str) -> str:
    """The task DAG in Mermaid or DOT, annotated with statuses when a goal is given. A goal's
    graph holds the tasks its planners and maps added, each joined to the task that added it by
    a dashed `added` edge."""
    edges = [(dep, tid) for tid in plan.order for dep in plan.deps[tid]]
    added = [(parent, tid) for tid in plan.order if (parent := parent_of(tid)) is not None]

    def node(tid: str) -> str:
        # `plan/x` and `search[3]` are no Mermaid ids: an added task is named by its position.
        return tid if parent_of(tid) is None else f"_added_{plan.index[tid]}"

    def label(tid: str) -> str:
        # Agent names are free text: keep quotes from closing the label in either format.
        agent = plan.task_map[tid].agent.replace('"', "'").replace("\\", "/")
        status = f" · {statuses[tid]}" if statuses else ""
        return f"{tid}\\n({agent}){status}"

    if fmt == "dot":
        name = plan.name.replace("\\", "\\\\").replace('"', '\\"')
        lines = [f'digraph "{name}" {{', "  rankdir=LR;", "  node [shape=box];"]
        colours = {"green": "palegreen", "red": "salmon", "yellow": "khaki", "cyan": "lightblue",
                   "magenta": "plum", "dim": "lightgrey"}
        for tid in plan.order:
            fill = ""
            if statuses:
                colour = colours.get(STATUS_STYLE.get(statuses[tid], ""), "white")
                fill = f', style=filled, fillcolor="{colour}"'
            lines.append(f'  "{tid}" [label="{label(tid)}"{fill}];')
        lines += [f'  "{a}" -> "{b}";' for a, b in edges]
        lines += [f'  "{a}" -> "{b}" [style=dashed, label="added"];' for a, b in added]
        lines.append("}")
        return "\n".join(lines)
    lines = ["flowchart LR"]
    for tid in plan.order:
        text = label(tid).replace("\\n", "<br/>")
        lines.append(f'  {node(tid)}["{text}"]')
    lines += [f"  {node(a)} --> {node(b)}" for a, b in edges]
    lines += [f"  {node(a)} -.->|added| {node(b)}" for a, b in added]
    if statuses:
        classes = {"succeeded": "fill:#c8f7c5", "failed": "fill:#f7c5c5",
                   "escalated": "fill:#f7ecc5", "running": "fill:#c5e3f7",
                   "abandoned": "fill:#e7c5f7", "skipped": "fill:#eeeeee",
                   "cancelled": "fill:#f7c5c5"}
        for status, css in classes.items():
            lines.append(f"  classDef {status} {css}")
        for tid in plan.order:
            if statuses[tid] in classes:
                lines.append(f"  class {node(tid)} {statuses[tid]}")
    return "\n".join(lines)
