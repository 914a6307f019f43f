"""Every environment setting Baton reads, read in this one place and only when asked.

| variable | meaning |
| --- | --- |
| `BATON_STORE` | the store URL when `--store` is not given (default `sqlite:///baton.db`) |
| `BATON_MAX_OUTPUT_BYTES` | the largest agent output recorded, as JSON (default 1,000,000) |
| `BATON_USER` | who `resolve`, `answer` and `cancel` record without `--by` (default: $USER) |
| `BATON_DEBUG` | show the traceback of an internal error |
| `BATON_CRASH_AT_EVENT` | fault injection for crash tests: SIGKILL the runner once a save |
|  | brings the goal to this many events |
| `BATON_SQLITE_LOCK_TIMEOUT` | whole seconds a SQLite command waits for another writer's lock |
|  | before it fails in one line (default 30) |
| `BATON_PROJECTION_PAGE` | events per read-model transaction when catching up (default 2,000) |
| `BATON_CRASH_IN_PROJECTION` | fault injection: `before_commit:N` or `after_commit:N` SIGKILLs |
|  | the projector at that point of the batch that reaches notification N |
| `BATON_LLM_BASE_URL` | the OpenAI-compatible endpoint of LLM agents (a plan's `base_url` wins) |
| `BATON_LLM_API_KEY` | its API key (else `OPENAI_API_KEY`); never recorded, logged or printed |
| `BATON_LLM_MODEL` | the model every LLM agent asks for, overriding the plan's (e.g. on Ollama) |
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from baton.domain.errors import BatonError

__all__ = ["DEFAULT_MAX_OUTPUT_BYTES", "DEFAULT_STORE", "Settings", "settings"]

DEFAULT_STORE = "sqlite:///baton.db"
DEFAULT_MAX_OUTPUT_BYTES = 1_000_000
_CRASH_STAGES = ("before_commit", "after_commit")


class SettingError(BatonError):
    pass


@dataclass(frozen=True)
class Settings:
    store: str = DEFAULT_STORE
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
    user: str | None = None
    debug: bool = False
    crash_at_event: int | None = None
    projection_page_size: int | None = None  # None: the projections' own default
    crash_in_projection: tuple[str, int] | None = None
    sqlite_lock_timeout: int = 30  # whole seconds: eventsourcing's SQLITE_LOCK_TIMEOUT
    llm_base_url: str | None = None
    llm_api_key: str | None = field(default=None, repr=False)  # never shown, even in a repr
    llm_model: str | None = None


def _int(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        number = int(value)
    except ValueError:
        raise SettingError(f"{name}={value!r}: expected a whole number") from None
    if number < 1:
        raise SettingError(f"{name}={value!r}: expected a number of at least 1")
    return number


def _crash_point(name: str) -> tuple[str, int] | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    stage, _, at = value.partition(":")
    if stage not in _CRASH_STAGES or not at.isdigit():
        raise SettingError(f"{name}={value!r}: expected before_commit:N or after_commit:N")
    return stage, int(at)


def settings() -> Settings:
    """The settings from the environment as it is now."""
    return Settings(
        store=os.environ.get("BATON_STORE") or DEFAULT_STORE,
        max_output_bytes=_int("BATON_MAX_OUTPUT_BYTES") or DEFAULT_MAX_OUTPUT_BYTES,
        user=os.environ.get("BATON_USER") or None,
        debug=bool(os.environ.get("BATON_DEBUG")),
        crash_at_event=_int("BATON_CRASH_AT_EVENT"),
        projection_page_size=_int("BATON_PROJECTION_PAGE"),
        crash_in_projection=_crash_point("BATON_CRASH_IN_PROJECTION"),
        sqlite_lock_timeout=_int("BATON_SQLITE_LOCK_TIMEOUT") or 30,
        llm_base_url=os.environ.get("BATON_LLM_BASE_URL") or None,
        llm_api_key=os.environ.get("BATON_LLM_API_KEY") or None,
        llm_model=os.environ.get("BATON_LLM_MODEL") or None,
    )
