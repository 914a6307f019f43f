"""Agent contracts at the handoffs: build an input only from bindings, judge every output.

Both directions go through the agent's own pydantic models, so what an agent receives and what
downstream tasks read is exactly what the contracts allow.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from baton.domain.errors import ResolveError
from baton.domain.json_values import json_problem
from baton.domain.plan import TaskSpec
from baton.domain.references import resolve_binding
from baton.domain.state import GoalState

__all__ = [
    "AgentContract",
    "Contracts",
    "Verdict",
    "build_input",
    "digest",
    "idempotency_key",
    "judge_output",
    "validation_errors",
    "validator_failed",
]

_KEY_NAMESPACE = uuid.UUID("6f1f4bb8-5a7d-4d8e-9c55-0b9a7d1c2e10")


@dataclass(frozen=True)
class AgentContract:
    """What Baton knows of an agent from its signature."""

    input_model: type[BaseModel]
    output_model: type[BaseModel]
    takes_idempotency_key: bool = False
    is_async: bool = False
    takes_attempt: bool = False  # a keyword parameter `attempt` (baton.domain.attempts)
    # The model `attempt` is annotated with when it is not Baton's AttemptContext: the agent
    # gets the same fields in its own model.
    attempt_model: type[BaseModel] | None = None


Contracts = Mapping[str, AgentContract]  # keyed by the plan's agent name


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    rule: str
    errors: tuple[str, ...] = ()
    normalised: Any = None  # the validated output as JSON, when it differs from the raw one


def validation_errors(exc: ValidationError, *, limit: int = 10) -> list[str]:
    """pydantic errors as short `field: message` lines (bounded, so events stay small)."""
    lines = []
    for err in exc.errors()[:limit]:
        where = ".".join(str(part) for part in err["loc"]) or "(root)"
        lines.append(f"{where}: {err['msg']}")
    if exc.error_count() > limit:
        lines.append(f"... and {exc.error_count() - limit} more")
    return lines


def validator_failed(exc: Exception) -> str:
    """A contract whose own validator raised something pydantic does not turn into a
    validation error (a ZeroDivisionError, a KeyError): the value is not accepted, and the
    error says so, rather than failing the orchestrator on the user's validator."""
    detail = " ".join(str(exc).split())[:500]
    return f"(root): a validator raised {type(exc).__name__}" + (f": {detail}" if detail else "")


def build_input(
    state: GoalState, task: TaskSpec, contract: AgentContract
) -> tuple[BaseModel | None, list[str]]:
    """The agent's input built from the task's bindings only, validated; or the errors."""
    try:
        data = resolve_binding(task.bindings, state.input, state.outputs())
    except ResolveError as exc:
        return None, [str(exc)]
    data = _with_clarifications(data, state, task, contract)
    try:
        return contract.input_model.model_validate(data), []
    except ValidationError as exc:
        return None, validation_errors(exc)
    except Exception as exc:  # a validator of the contract's own code failed: see below
        return None, [validator_failed(exc)]


def _with_clarifications(
    data: Any, state: GoalState, task: TaskSpec, contract: AgentContract
) -> Any:
    """Every question the task asked and its answer, in the `clarifications` field of an input
    model that declares one and a plan that does not bind it (docs/reference.md)."""
    own = state.tasks.get(task.id)
    if (
        own is None
        or not own.clarifications
        or not isinstance(data, dict)
        or "clarifications" in data
        or "clarifications" not in contract.input_model.model_fields
    ):
        return data
    return {**data, "clarifications": [dict(pair) for pair in own.clarifications]}


def judge_output(raw: Any, contract: AgentContract, *, min_confidence: float | None) -> Verdict:
    """Validate a raw output against the output contract and the confidence threshold."""
    try:
        model = contract.output_model.model_validate(raw)
    except ValidationError as exc:
        return Verdict(False, "validation.contract", tuple(validation_errors(exc)))
    except Exception as exc:  # a validator of the contract's own code failed: see below
        return Verdict(False, "validation.contract", (validator_failed(exc),))
    if min_confidence is not None:
        confidence = getattr(model, "confidence", None)
        if not isinstance(confidence, int | float):
            return Verdict(
                False, "validation.confidence", ("confidence: missing, min_confidence is set",)
            )
        if confidence < min_confidence:
            message = f"confidence: {confidence:g} is below min_confidence {min_confidence:g}"
            return Verdict(False, "validation.confidence", (message,))
    normalised = model.model_dump(mode="json")
    problem = json_problem(normalised)  # a float field parses "NaN"; --json could not print it
    if problem is not None:
        return Verdict(False, "validation.contract", (problem,))
    return Verdict(
        True, "validation.contract", normalised=None if normalised == raw else normalised
    )


def digest(value: Any) -> str:
    """A stable digest of a JSON value: what was sent, without storing it twice."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:32]


def idempotency_key(goal_id: str, task_id: str) -> str:
    """Identical for every retry and crash-resume of the same task of the same goal."""
    return str(uuid.uuid5(_KEY_NAMESPACE, f"{goal_id}/{task_id}"))
