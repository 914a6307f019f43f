"""A decision: what `decide` returns and what the aggregate records as an event of that kind."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Decision"]


@dataclass(frozen=True)
class Decision:
    """`kind` names a decision event class of `Goal`; `fields` are exactly its payload.

    Every decision carries `rule` (a stable id of the rule that made it, e.g. `retry.backoff`)
    and `reason` (a sentence for the audit trail), plus `task` when it concerns one task.
    `prepared` is never recorded nor compared: a dispatch carries the validated agent input
    `decide` built for its digest, so the runner need not build it again.
    """

    kind: str
    fields: dict[str, Any] = field(default_factory=dict)
    prepared: Any = field(default=None, compare=False, repr=False)

    @property
    def task(self) -> str | None:
        task = self.fields.get("task")
        return task if isinstance(task, str) else None
