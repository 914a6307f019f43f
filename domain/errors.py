"""One error root for Baton; small subclasses that carry the fields a message needs.

Exceptions are for rejected commands (an invalid plan, an illegal transition, a store that is
down). Business failures of a goal (an agent raised, a budget ran out) are events, not exceptions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "BatonError",
    "BatonWarning",
    "GoalInputError",
    "GoalOwned",
    "IllegalTransition",
    "InputError",
    "PlanError",
    "PlanIssue",
    "ResolveError",
    "UnknownRules",
    "one_line",
    "still_running",
    "unrecorded_outcomes",
]


def one_line(text: str) -> str:
    """`text` with every non-printable character escaped (a newline becomes `\\n`), so an
    error that quotes user data (a task id, a key, a reference) stays one line."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


class BatonError(Exception):
    """Root of every error Baton raises on purpose; the CLI turns these into exit code 2."""


class BatonWarning(UserWarning):
    """Something that works but likely not as meant (a cost budget an unpriced model escapes);
    the CLI prints it as one `baton: warning: ...` line."""


@dataclass(frozen=True)
class PlanIssue:
    """One thing wrong with a plan, located as precisely as we can."""

    where: str  # e.g. "tasks[price].input.flights" or "agents.search"
    message: str

    def __str__(self) -> str:
        return one_line(f"{self.where}: {self.message}")


class PlanError(BatonError):
    """The plan cannot run; `issues` lists every problem found, each naming task and field."""

    def __init__(self, issues: list[PlanIssue], *, source: str = "plan") -> None:
        self.issues = issues
        self.source = source
        first = issues[0] if issues else PlanIssue(source, "invalid plan")
        more = f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""
        super().__init__(f"{one_line(source)}: {self.located(first)}{more}")

    def located(self, issue: PlanIssue) -> str:
        """The issue as it reads after "SOURCE: " (without saying the source twice), one line."""
        return one_line(issue.message) if issue.where == self.source else str(issue)


class InputError(BatonError):
    """The goal input does not satisfy the plan's input model (or is not a JSON object)."""


GoalInputError = InputError  # its name before release 0.2; kept so existing imports work


class GoalOwned(BatonError):
    """Another live process drives this goal (docs/reference.md, "Workers"): one owner at a time."""

    def __init__(
        self, goal_id: str, *, host: str, pid: int, since: str, unrecorded: Sequence[str] = (),
        running: Sequence[str] = (), this_process: bool = False,
    ) -> None:
        self.goal_id = goal_id
        self.host = host
        self.pid = pid
        self.since = since
        self.unrecorded = list(unrecorded)  # see `unrecorded_outcomes`
        self.running = list(running)  # see `still_running`
        driver = ("this process already, from another thread or call" if this_process
                  else "another process")
        super().__init__(
            f"goal {goal_id!r} is driven by {driver} (host {host!r}, pid {pid}, since {since})"
            f"{unrecorded_outcomes(unrecorded)}{still_running(running)}"
        )


def unrecorded_outcomes(unrecorded: Sequence[str]) -> str:
    """What a runner that lost its goal to another runner got from unsafe calls it could no
    longer record (`book #1 returned {...}`): the new owner escalates each as "outcome
    unknown", and the human who resolves it needs what the agent said, which is nowhere else."""
    if not unrecorded:
        return ""
    return ("; not recorded, so the goal holds these unsafe attempts as outcome unknown: "
            + "; ".join(unrecorded))


def still_running(running: Sequence[str]) -> str:
    """The unsafe attempts a runner leaves still running when it loses its goal or its store
    (`pay #1`): their outcomes, when they come, are recorded by no one, and the next owner
    escalates them as outcome unknown; this is the only word that they were running here."""
    if not running:
        return ""
    return ("; in flight here when it stopped, their outcome recorded by no one (the goal holds "
            "them as outcome unknown): " + ", ".join(running))


class ResolveError(BatonError):
    """A reference could not be resolved against the recorded data."""


class UnknownRules(BatonError):
    """A goal started under decision rules newer than this Baton's: deciding it here would
    record decisions that Baton's own replay then refuses (docs/reference.md, "Decision
    rules"). Nothing is recorded; a Baton that knows those rules drives it."""

    def __init__(self, goal_id: str, rules: int, known: int) -> None:
        self.goal_id = goal_id
        self.rules = rules
        super().__init__(one_line(
            f"goal {goal_id}: started under decision rules {rules}; this Baton knows rules "
            f"1..{known} (upgrade it to drive this goal)"
        ))


class IllegalTransition(BatonError):
    """A lifecycle was asked to move along an edge its state machine does not have."""

    def __init__(self, *, lifecycle: str, subject: str, status: str, event: str) -> None:
        self.lifecycle = lifecycle
        self.subject = subject
        self.status = status
        self.event = event
        super().__init__(
            f"{lifecycle} {subject!r}: cannot {event.replace('_', ' ')} from status {status!r}"
        )
