"""What the CLI prints: the JSON shapes of CONTRACT.md §4 and rich tables for people."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from domain.goal import Goal
from domain.plan import Plan

__all__ = ["goal_json", "print_goal", "print_json", "render_graph"]

_STATUS_STYLE = {
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


def goal_json(goal: Goal) -> dict[str, Any]:
    """`run` / `resume` / `status GOAL` shape."""
    state = goal.state
    return {
        "goal_id": goal.id,
        "status": state.status,
        "output": state.output,
        "reason": state.reason,
        "tasks": {
            tid: {"status": task.status, "attempts": task.attempts}
            for tid, task in state.tasks.items()
        },
    }


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def print_goal(goal: Goal, durations: dict[str, float] | None = None) -> None:
    """A table of tasks with status, attempts and duration, then the goal's outcome."""
    state = goal.state
    console = Console()
    table = Table(title=f"goal {goal.id} · {state.plan.name}", title_justify="left")
    table.add_column("task")
    table.add_column("agent")
    table.add_column("status")
    table.add_column("attempts", justify="right")
    table.add_column("ms", justify="right")
    table.add_column("note", overflow="fold", max_width=60)
    for tid in state.plan.order:
        task = state.tasks[tid]
        style = _STATUS_STYLE.get(task.status, "")
        ms = (durations or {}).get(tid)
        note = task.last_error if task.status in ("failed", "escalated") else ""
        if task.status in ("skipped", "abandoned", "escalated", "cancelled") and not note:
            note = task.reason or ""
        table.add_row(
            tid,
            state.plan.task_map[tid].agent,
            f"[{style}]{task.status}[/]" if style else task.status,
            str(task.attempts),
            "" if ms is None else f"{ms:.1f}",
            note or "",
        )
    console.print(table)
    style = _STATUS_STYLE.get(state.status, "")
    console.print(f"status: [{style}]{state.status}[/]" + (
        f" — {state.reason}" if state.reason and state.status != "completed" else ""
    ))
    if state.status == "completed":
        console.print_json(json.dumps(state.output, default=str))
    elif state.status == "waiting":
        console.print(f"resolve with: baton resolve {goal.id} TASK --retry|--abandon|--output …")


def render_graph(plan: Plan, statuses: dict[str, str] | None, fmt: str) -> str:
    """The task DAG in Mermaid or DOT, annotated with statuses when a goal is given."""
    edges = [(dep, tid) for tid in plan.order for dep in plan.deps[tid]]

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
                colour = colours.get(_STATUS_STYLE.get(statuses[tid], ""), "white")
                fill = f', style=filled, fillcolor="{colour}"'
            lines.append(f'  "{tid}" [label="{label(tid)}"{fill}];')
        lines += [f'  "{a}" -> "{b}";' for a, b in edges]
        lines.append("}")
        return "\n".join(lines)
    lines = ["flowchart LR"]
    for tid in plan.order:
        text = label(tid).replace("\\n", "<br/>")
        lines.append(f'  {tid}["{text}"]')
    lines += [f"  {a} --> {b}" for a, b in edges]
    if statuses:
        classes = {"succeeded": "fill:#c8f7c5", "failed": "fill:#f7c5c5",
                   "escalated": "fill:#f7ecc5", "running": "fill:#c5e3f7",
                   "abandoned": "fill:#e7c5f7", "skipped": "fill:#eeeeee",
                   "cancelled": "fill:#f7c5c5"}
        for status, css in classes.items():
            lines.append(f"  classDef {status} {css}")
        for tid in plan.order:
            if statuses[tid] in classes:
                lines.append(f"  class {tid} {statuses[tid]}")
    return "\n".join(lines)
