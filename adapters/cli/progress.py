"""Live progress of `baton run` / `resume` on a terminal (rich), fed by the runner's observer.

Shows tasks done, running and waiting, retries, the budget used against its caps and what the
goal waits for (a backoff until when, a human). Only on a terminal and never with `--json`: the
display is drawn on stdout while the goal runs and erased before the result is printed, so
nothing of it is left in what a program reads.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from baton.domain.goal import Goal, GoalEvent
from baton.domain.state import GoalState

__all__ = ["LiveProgress", "describe", "live_progress"]


def _cap(used: float, cap: float | None, fmt: str) -> str:
    return fmt.format(used) + ("" if cap is None else "/" + fmt.format(cap))


def describe(state: GoalState, now: datetime) -> list[str]:
    """The progress lines for a goal state at wall time `now`."""
    tasks = state.tasks.values()
    by = {status: [t.id for t in tasks if t.status == status] for status in
          ("succeeded", "running", "retry_wait", "escalated")}
    ended = sum(1 for t in tasks if t.status in ("failed", "abandoned", "skipped", "cancelled"))
    retries = sum(max(0, t.attempts - 1) for t in tasks)
    elapsed = (now - state.started_at).total_seconds()
    running = ", ".join(by["running"][:5]) + ("…" if len(by["running"]) > 5 else "")
    budget = state.plan.budget
    lines = [
        f"goal {state.goal_id} · {state.plan.name} · {state.status} · {elapsed:.1f}s",
        f"tasks {len(by['succeeded'])}/{len(state.tasks)} done · {len(by['running'])} running"
        + (f" ({running})" if running else "")
        + f" · {len(by['retry_wait']) + len(by['escalated'])} waiting"
        + (f" · {ended} ended otherwise" if ended else "")
        + f" · {retries} retries",
        f"budget attempts {_cap(state.attempts_used, budget.max_attempts, '{:g}')}"
        f" · tokens {_cap(state.used.tokens, budget.max_tokens, '{:g}')}"
        f" · cost ${_cap(state.used.cost_usd, budget.max_cost_usd, '{:.4g}')}"
        + ("" if budget.deadline_s is None else f" · time {elapsed:.0f}s/{budget.deadline_s:g}s"),
    ]
    for task_id in by["retry_wait"]:
        due = state.tasks[task_id].due_at
        if due is not None:
            left = max(0.0, (due - now).total_seconds())
            lines.append(f"waiting: {task_id} backs off until {due:%H:%M:%S} ({left:.1f}s)")
    for task_id in by["escalated"]:
        lines.append(f"waiting: a human is needed on {task_id} (baton escalations)")
    return lines


class LiveProgress:
    """A run observer that redraws the progress lines after every save (and 4 times a second,
    so waits count down)."""

    def __init__(self, console: Console, clock: Callable[[], datetime] | None = None) -> None:
        self.clock = clock or (lambda: datetime.now(UTC))
        self._state: GoalState | None = None
        self._lock = threading.Lock()
        self._drawn = 0.0
        self.live = Live(console=console, transient=True, refresh_per_second=4,
                         get_renderable=self._render)

    def _render(self) -> Group:
        with self._lock:
            state = self._state
        if state is None:
            return Group(Text("starting…", style="dim"))
        lines = describe(state, self.clock())
        return Group(Text(lines[0], style="bold"), *(Text(line) for line in lines[1:]))

    def saved(self, goal: Goal, events: Sequence[GoalEvent]) -> None:
        with self._lock:
            self._state = goal.state
        # Drawing costs a few milliseconds: at most ten times a second from here (the refresh
        # thread draws too, and stopping draws the last state).
        now = time.monotonic()
        if now - self._drawn >= 0.1:
            self._drawn = now
            self.live.refresh()

    def calling(self, goal_id: str, task: str, attempt: int,
                agent: Callable[..., Any]) -> Callable[..., Any]:
        return agent


@contextmanager
def live_progress(*, enabled: bool, console: Console | None = None) -> Iterator[Any]:
    """A LiveProgress shown while the block runs, when `enabled` and stdout is a terminal;
    else None (nothing is drawn)."""
    console = console or Console()
    if not enabled or not (console.is_terminal and sys.stdout.isatty()):
        yield None
        return
    progress = LiveProgress(console)
    with progress.live:
        yield progress
