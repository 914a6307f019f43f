"""The read models' tables: one definition, rendered for SQLite and for PostgreSQL.

Real tables that users query with SQL, in the same database as the events. Every value is
derived from events only (times are event timestamps, never the projector's clock), so a rebuild
gives the same rows whatever the batch boundaries were.

`VIEWS_VERSION` names the meaning of these rows: change a column or how one is derived, bump it,
and the next catch-up drops the tables and rebuilds them from the log.
"""

from __future__ import annotations

from dataclasses import dataclass

from baton.domain.lifecycle import TaskStatus

__all__ = [
    "MODEL_STATS",
    "TABLES",
    "TASK_STATUSES",
    "VIEWS_VERSION",
    "Column",
    "Table",
]

# 2: model_stats (tokens and cost per agent and model); 3: what an escalated task waits for;
# 4: task_status.added_by; 5: agent_stats.p50_position / p95_position, so a batch moves
# the percentiles instead of recounting them; 6: SQLite holds times in UTC, to the
# microsecond (they were in each event's own offset, so text order was not time order), and
# a waiting goal's reason says what it waits for once a human's decision moved a task on;
# 7: agent_stats.interrupted counts an unsafe attempt a crash left without an outcome too,
# and an attempt a cancel or a goal's failure ended while it ran; cost_usd sums are rounded
# to 1e-9 as they add up (no binary float drift); 8: agent_stats, model_stats and
# agent_latency count each attempt once, in the goal it was dispatched in: a fork's copied
# history no longer counts again (goal_summary.forked_at, task_status.forked_attempts)
VIEWS_VERSION = 8

# Column order of `goal_summary`'s `tasks_<status>` counts (the members are TaskStatus's).
TASK_STATUSES: tuple[TaskStatus, ...] = (
    "pending",
    "ready",
    "running",
    "retry_wait",
    "succeeded",
    "failed",
    "escalated",
    "abandoned",
    "skipped",
    "cancelled",
)

# Column kinds and their SQL type in each dialect.
_TYPES = {
    "text": {"sqlite": "TEXT", "postgres": "text"},
    "int": {"sqlite": "INTEGER", "postgres": "bigint"},
    "float": {"sqlite": "REAL", "postgres": "double precision"},
    "time": {"sqlite": "TEXT", "postgres": "timestamptz"},  # ISO 8601 text on SQLite
    "json": {"sqlite": "TEXT", "postgres": "jsonb"},  # JSON text on SQLite
}


@dataclass(frozen=True)
class Column:
    name: str
    kind: str
    doc: str


@dataclass(frozen=True)
class Table:
    name: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    doc: str
    indexes: tuple[tuple[str, ...], ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    def ddl(self, dialect: str, qualified: str) -> list[str]:
        """CREATE statements for this table, named `qualified` (schema-qualified on PG)."""
        cols = ", ".join(f"{c.name} {_TYPES[c.kind][dialect]}" for c in self.columns)
        statements = [
            f"CREATE TABLE IF NOT EXISTS {qualified} ({cols}, PRIMARY KEY ({', '.join(self.key)}))"
        ]
        for position, index in enumerate(self.indexes):
            statements.append(
                f"CREATE INDEX IF NOT EXISTS {self.name}_ix{position} "
                f"ON {qualified} ({', '.join(index)})"
            )
        return statements


def _c(name: str, kind: str, doc: str) -> Column:
    return Column(name, kind, doc)


GOAL_SUMMARY = Table(
    name="goal_summary",
    key=("goal_id",),
    doc="One row per goal: where it stands and what it has spent.",
    columns=(
        _c("goal_id", "text", "the goal's id"),
        _c("plan", "text", "the plan's name"),
        _c("status", "text", "running | waiting | completed | failed | cancelled"),
        _c("reason", "text", "why the goal is in its status (last goal decision)"),
        _c("started_at", "time", "when the goal was submitted"),
        _c("updated_at", "time", "time of the goal's last event"),
        _c("ended_at", "time", "when it completed, failed or was cancelled"),
        _c("forked_from", "text", "the goal it was forked from, if any"),
        _c("forked_at", "int", "events of forked_from a fork copied (its totals include what "
           "they spent; agent_stats counts that in forked_from)"),
        _c("tasks", "int", "tasks in the plan"),
        *(_c(f"tasks_{s}", "int", f"tasks now {s}") for s in TASK_STATUSES),
        _c("attempts", "int", "agent attempts dispatched, all tasks"),
        _c("tokens", "int", "tokens reported by agents"),
        _c("cost_usd", "float", "cost reported by agents"),
        _c("output", "json", "the goal's output once completed"),
        _c("events", "int", "events recorded for the goal so far"),
        _c("position", "int", "notification id of the goal's last event"),
    ),
    # The web view's goal list filters by status, plan or time and pages newest first, in SQL:
    # ix1 and ix2 serve a filter together with the order (goal_id included, so a page's ids and
    # a count read the index only), ix1 a lookup by status alone too (no index of its own: one
    # more to update on every goal event), and ix2 lists the plans by a skip scan.
    indexes=(("updated_at",), ("status", "updated_at", "goal_id"),
             ("plan", "updated_at", "goal_id")),
)

TASK_STATUS = Table(
    name="task_status",
    key=("goal_id", "task_id"),
    doc="One row per task of every goal.",
    columns=(
        _c("goal_id", "text", "the goal's id"),
        _c("task_id", "text", "the task's id in the plan"),
        _c("plan_index", "int", "the task's position in the plan, from 0"),
        _c("agent", "text", "the plan's name for the task's agent"),
        _c("status", "text", "a task status (docs/reference.md, \"Goals and tasks: statuses\")"),
        _c("attempts", "int", "attempts dispatched"),
        _c("last_error", "text", "the last failure, cleared when an output is accepted"),
        _c("last_reason", "text", "the reason of the last decision about the task"),
        _c("last_rule", "text", "the rule id of the last decision about the task"),
        _c("updated_at", "time", "time of the task's last event"),
        _c("status_since", "time", "when the task entered its status"),
        _c("duration_ms", "float", "agent time over all attempts"),
        _c("tokens", "int", "tokens reported by its attempts"),
        _c("cost_usd", "float", "cost reported by its attempts"),
        _c("attempt_in_flight", "int", "the attempt running now, if any"),
        _c("last_outcome", "text", "returned | raised | timed_out | human: the attempt's fate"),
        # While escalated (baton.domain.gates): why, the question asked, the input to approve.
        _c("waiting_for", "text", "failure | low_confidence | budget | outcome_unknown | "
           "clarification | approval, while escalated"),
        _c("question", "text", "the clarification question waiting for an answer"),
        _c("approval_input", "json", "the input a task waiting for approval will be sent"),
        _c("added_by", "text", "the planner or map task that added it while the goal ran; "
           "null for the plan's own tasks"),
        _c("forked_attempts", "int", "attempts a fork copied from forked_from (0 otherwise)"),
    ),
    indexes=(("status",), ("agent",)),
)

AGENT_STATS = Table(
    name="agent_stats",
    key=("agent",),
    doc="One row per agent name, over every goal.",
    columns=(
        _c("agent", "text", "the plan's name for the agent"),
        _c("attempts", "int", "attempts dispatched to it"),
        _c("succeeded", "int", "attempts whose own output was accepted"),
        _c("failed", "int", "attempts that raised, timed out or had their output rejected"),
        _c("retries", "int", "retries scheduled after its failures"),
        _c("escalations", "int", "times a task of this agent was escalated to a human"),
        _c("rejected_outputs", "int", "outputs that failed the contract or confidence"),
        _c("timed_out", "int", "attempts that timed out"),
        _c("interrupted", "int", "attempts left without an outcome by a crash"),
        _c("tokens", "int", "tokens it reported"),
        _c("cost_usd", "float", "cost it reported"),
        _c("latency_samples", "int", "attempts with a measured duration"),
        _c("p50_ms", "float", "median duration (nearest rank, exact)"),
        _c("p95_ms", "float", "95th percentile duration (nearest rank, exact)"),
        _c("p50_position", "int", "agent_latency.position of the sample p50_ms is "
           "(samples of equal duration ordered by position)"),
        _c("p95_position", "int", "agent_latency.position of the sample p95_ms is"),
    ),
)

# Usage per agent and model: which model answered, in what tokens, at what cost. Only results
# that report usage count here; `model` is "unknown" when the usage named none.
MODEL_STATS = Table(
    name="model_stats",
    key=("agent", "model"),
    doc="One row per agent and model, over every goal: what its reported usage adds up to.",
    columns=(
        _c("agent", "text", "the plan's name for the agent"),
        _c("model", "text", "the model its usage names ('unknown' when it names none)"),
        _c("results", "int", "results (returned, raised or timed out) that reported usage"),
        _c("requests", "int", "model requests those results made"),
        _c("input_tokens", "int", "input (prompt) tokens"),
        _c("output_tokens", "int", "output (completion) tokens"),
        _c("cache_read_tokens", "int", "input tokens read from the provider's cache"),
        _c("cache_write_tokens", "int", "input tokens written to the provider's cache"),
        _c("tokens", "int", "tokens counted against budgets"),
        _c("cost_usd", "float", "cost reported, or priced from tokens"),
    ),
)

# Every measured duration, so the percentiles above stay exact: moved per batch, for the agents
# the batch touched, by a walk along the index (agent, duration_ms, position) that is as long as
# the batch added samples (baton.projections.ranks).
AGENT_LATENCY = Table(
    name="agent_latency",
    key=("position",),
    doc="One row per attempt with a measured duration (the samples behind p50/p95).",
    columns=(
        _c("position", "int", "notification id of the observation"),
        _c("agent", "text", "the plan's name for the agent"),
        _c("goal_id", "text", "the goal's id"),
        _c("task_id", "text", "the task's id"),
        _c("attempt", "int", "the attempt"),
        _c("duration_ms", "float", "how long the agent took"),
    ),
    indexes=(("agent", "duration_ms", "position"),),
)

# The version of the rows above, and the row a projector locks so two never interleave.
VIEWS_META = Table(
    name="baton_views_meta",
    key=("name",),
    doc="The read models' version.",
    columns=(
        _c("name", "text", "always 'baton_views'"),
        _c("version", "int", "VIEWS_VERSION the rows were built with"),
    ),
)

TABLES = (GOAL_SUMMARY, TASK_STATUS, AGENT_STATS, AGENT_LATENCY, MODEL_STATS)
