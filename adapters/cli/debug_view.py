"""What `audit`, `replay` and what-if replay print for people (their `--json` is the full data)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from baton.cli.render import shown
from baton.domain.audit import reason_shown

__all__ = ["print_replay", "print_timeline", "print_what_if"]


def _compact(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, int | float) else str(value)


def _observed(entry: dict[str, Any]) -> str:
    """One line on what an observation says."""
    kind = entry["kind"]
    if kind == "Started":
        origin = f"; forked from {entry['forked_from']} at event {entry['forked_at']}"
        forked = origin if entry.get("forked_from") else ""
        return f"plan {entry['plan']!r}, input {_compact(entry['input'])}{forked}"
    usage = entry.get("usage") or {}
    spent = f" · {usage.get('tokens')} tokens ${_num(usage.get('cost_usd'))}" if usage else ""
    took = f" in {_num(entry['duration_ms'])} ms" if "duration_ms" in entry else ""
    if kind == "AgentReturned":
        error = f" (not recordable: {entry['output_error']})" if entry.get("output_error") else ""
        return f"returned{took}{spent}{error}: {_compact(entry.get('output'))}"
    if kind == "AgentRaised":
        return f"raised {entry['error_type']}: {entry['message']}{took}{spent}"
    if kind == "AgentTimedOut":
        return f"no result within {_num(entry['timeout_s'])}s{spent}"
    if kind == "HumanResolved":
        given = f" {_compact(entry['output'])}" if entry.get("output") is not None else ""
        return f"{entry['by']}: {entry['action']}{given} — {entry['reason']}"
    if kind == "HumanAnswered":
        return f"{entry['by']}: answered — {entry['answer']}"
    if kind == "CancelRequested":
        return f"{entry['by']}: cancel — {entry['reason']}"
    if kind == "RunResumed":
        return f"a runner took the goal up again (concurrency {entry['concurrency']})"
    if kind == "StopRequested":
        return ("the runner was asked to stop: it waits for the unsafe attempts in flight and "
                "dispatches nothing new until a runner takes the goal up again")
    return "time passed" if kind == "ClockTicked" else ""


def _decided(entry: dict[str, Any]) -> str:
    why = shown(reason_shown(entry))
    granted = entry.get("granted_by")
    if granted:
        why += shown(
            f"; granted by a human: {granted['by']} chose retry at event {granted['seq']} "
            f"({granted['reason']})"
        )
    if entry.get("kind") == "ApprovalRequested":  # what the human approves
        why += shown(f"; input {_compact(entry.get('input'))}")
    policy = entry.get("policy")
    if policy:
        settings = " ".join(f"{k}={v}" for k, v in policy.items())
        why += f" [dim]\\[{shown(settings)}][/]"
    return why


def print_timeline(audit: dict[str, Any], *, title: str) -> None:
    """One line per event: observations (▸) and, indented under each, the decisions it caused."""
    entries = sorted(audit["observations"] + audit["decisions"], key=lambda e: e["seq"])
    console = Console(highlight=False)
    if not entries:
        console.print(f"[bold]{shown(title)}[/]: nothing recorded")
        return
    start = datetime.fromisoformat(audit["started_at"] or entries[0]["at"])
    console.print(f"[bold]{shown(title)}[/] · started {start.isoformat(sep=' ')}")
    for entry in entries:
        offset = (datetime.fromisoformat(entry["at"]) - start).total_seconds()
        observation = "caused" in entry
        subject = " ".join(
            part
            for part in (
                entry.get("task") or "",
                "" if entry.get("attempt") is None else f"#{entry['attempt']}",
            )
            if part
        )
        head = f"{entry['seq']:>4} {f'+{offset:.3f}s':>10}  "
        if observation:
            line = f"[bold cyan]▸ {entry['kind']}[/]" + (f" {shown(subject)}" if subject else "")
            line += f" · {shown(_observed(entry))}" if _observed(entry) else ""
        else:
            style = _KIND_STYLE.get(entry["kind"], "")
            kind = f"[{style}]{entry['kind']}[/]" if style else entry["kind"]
            line = f"    {kind}" + (f" {shown(subject)}" if subject else "")
            line += f" · [magenta]{shown(entry.get('rule') or '')}[/]"
            line += f" · {_decided(entry)}"
        console.print(head + line)


_KIND_STYLE = {
    "OutputAccepted": "green",
    "GoalCompleted": "bold green",
    "OutputRejected": "yellow",
    "InputRejected": "yellow",
    "RetryScheduled": "yellow",
    "TaskEscalated": "bold yellow",
    "ClarificationRequested": "bold yellow",
    "ApprovalRequested": "bold yellow",
    "GoalSuspended": "bold yellow",
    "BudgetExhausted": "red",
    "TaskFailed": "red",
    "GoalFailed": "bold red",
    "TaskCancelled": "red",
    "GoalCancelled": "bold red",
    "TaskAbandoned": "magenta",
    "TaskSkipped": "dim",
}


def _fields_table(
    recorded: dict[str, Any] | None, replayed: dict[str, Any] | None, fields: list[str]
) -> Table:
    table = Table("field", "recorded", "replayed (today's code)", show_lines=True)
    # The kind first, always: a differing kind is the first thing to see, and equal kinds
    # say what the differing fields belong to.
    keys = ["kind", *(f for f in fields if f != "kind")] if fields else sorted(
        (set(recorded or {}) | set(replayed or {})) - {"seq"},
        key=lambda k: (k != "kind", k),
    )
    if replayed is not None and set(replayed) == {"error"}:
        # Today's code failed there: the error is the finding, beside what the recorded event
        # was about (not every field of it: a Started event holds the whole plan and schemas).
        keys = [k for k in ("kind", "task", "attempt", "error") if k in (recorded or {}) or
                k in replayed]
    for key in keys:
        mine = "—" if recorded is None else _compact(recorded.get(key, "—"), 200)
        theirs = "—" if replayed is None else _compact(replayed.get(key, "—"), 200)
        table.add_row(key, shown(mine), shown(theirs))
    return table


def _state_line(state: dict[str, Any]) -> str:
    tasks = ", ".join(f"{tid} {t['status']} ({t['attempts']})" for tid, t in state["tasks"].items())
    used = state["used"]
    return (
        f"{state['status']} · {tasks} · used {used['attempts']} attempts, "
        f"{used['tokens']} tokens, ${used['cost_usd']:g}"
    )


def print_replay(result: dict[str, Any], *, source: str, mode: str) -> None:
    console = Console()
    inherited = f", {result['inherited']} inherited from the parent" if result["inherited"] else ""
    if result["ok"]:
        console.print(
            f"[green]{mode} of {shown(source)}: ok[/] — {result['events']} events, "
            f"{result['decisions']} decisions re-decided identically{inherited}"
        )
    else:
        divergence = result["divergence"]
        recorded, replayed = divergence["recorded"], divergence["replayed"]
        about = recorded or replayed or {}
        what = " ".join(str(part) for part in (
            about.get("kind", "event"), about.get("task"),
            None if about.get("attempt") is None else f"#{about['attempt']}") if part)
        console.print(
            f"[red]{mode} of {shown(source)}: diverged at event "
            f"{divergence['seq']}[/] ({what}) after {result['decisions']} equal "
            f"decisions{inherited}"
        )
        if recorded is None:
            console.print("  the recording ends here; today's code decides more:")
        elif replayed is None:
            console.print("  today's code decides nothing here; the recording has a decision:")
        console.print(_fields_table(recorded, replayed, divergence["fields"]))
    console.print(f"state after event {result['events']}: {shown(_state_line(result['state']))}")


def _decision_lines(decisions: list[dict[str, Any]]) -> str:
    if not decisions:
        return "(nothing)"
    return "\n".join(
        " ".join(
            str(part)
            for part in (d["kind"], d.get("task"), f"[{d.get('rule')}]", d.get("reason"))
            if part
        )
        for d in decisions
    )


def print_what_if(result: dict[str, Any], *, source: str, plan: str) -> None:
    console = Console()
    inherited = result.get("inherited") or 0
    copied = f" ({inherited} inherited from the parent, not compared)" if inherited else ""
    if result["ok"]:
        console.print(
            f"[green]what-if {shown(plan)} on {shown(source)}: the same decisions[/] "
            f"through event {result['events']}{copied}"
        )
    elif result["differences"]:
        count = len(result["differences"])
        points = "1 point decides" if count == 1 else f"{count} points decide"
        console.print(
            f"[yellow]what-if {shown(plan)} on {shown(source)}: {points} differently[/]{copied}"
        )
    else:  # the same decisions as far as the recording applies, which is not to the end
        console.print(
            f"[yellow]what-if {shown(plan)} on {shown(source)}: the same decisions through "
            f"event {result['events']}, then the recording no longer applies[/]{copied}"
        )
    for diff in result["differences"]:
        obs = diff["observation"]
        table = Table(
            "recorded",
            f"under {plan}",
            show_lines=True,
            title=f"after event {diff['seq']}: {obs['kind']} {obs.get('task') or ''}",
            title_justify="left",
        )
        table.add_row(
            shown(_decision_lines(diff["recorded"])), shown(_decision_lines(diff["whatif"]))
        )
        console.print(table)
    if result["stopped"]:
        console.print(
            f"stopped at event {result['stopped']['seq']}: {shown(result['stopped']['reason'])}"
        )
    console.print(f"recorded: {shown(_state_line(result['recorded_state']))}")
    console.print(f"what-if:  {shown(_state_line(result['state']))}")
