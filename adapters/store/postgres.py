"""PostgreSQL store URLs: libpq's own parameters passed through, a missing database named.

eventsourcing's PostgreSQL persistence connects with host, port, user, password and database
only. A URL's other libpq parameters (`sslmode`, `sslrootcert`, `application_name`, ...) reach
every connection through `PostgresFactory` below, which eventsourcing finds by the
`PERSISTENCE_MODULE` topic (this module, so the application, its read models and the projection
runner all connect the same way). Only this module and the store's PostgreSQL path import psycopg.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import eventsourcing.postgres as es_postgres
import psycopg
from psycopg.conninfo import conninfo_to_dict

__all__ = [
    "LIBPQ_PARAMS",
    "PostgresFactory",
    "connect_kwargs",
    "connect_problem",
    "holds_events_table",
    "parse_postgres_url",
    "server_words",
]

LIBPQ_PARAMS = "POSTGRES_LIBPQ_PARAMS"  # env key: JSON of the extra libpq parameters
# How long the pool tries to reconnect a lost connection before it gives the slot up (below).
RECONNECT_TIMEOUT_S = 10.0
# What eventsourcing's datastore sets itself, from its own settings.
_OWN = ("host", "port", "user", "password", "dbname", "connect_timeout")


class UrlError(ValueError):
    """A PostgreSQL URL libpq would refuse; the message is one line."""


def parse_postgres_url(url: str) -> tuple[dict[str, str], str | None]:
    """libpq's parameters of `url` (checked by libpq's own parser) and Baton's `schema`."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [value for key, value in query if key == "schema"]
    if len(schemas) > 1 or (schemas and not schemas[0].strip()):
        # An empty one would fall back to `public` without a word, two would drop one.
        shown = "given twice" if len(schemas) > 1 else "empty"
        raise UrlError(
            f"schema is {shown}: ?schema=NAME names one schema (leave it out for public)"
        )
    schema = schemas[0] if schemas else None
    if schema is not None and not re.fullmatch(r"[^\W\d][\w$]*", schema):
        # eventsourcing names some of the schema's objects unquoted: anything else failed as an
        # SQL "syntax error at or near ..." when the store opened.
        raise UrlError(
            f"schema {schema!r}: expected a plain name (letters, digits, _ and $, not starting "
            "with a digit)"
        )
    # quote, not urlencode's default quote_plus: libpq decodes %20 in a URI but not "+".
    rest = urlencode([(key, value) for key, value in query if key != "schema"], quote_via=quote)
    try:
        # Built by hand: geturl() drops an empty host's "//" (`postgresql:///db` would become
        # `postgresql:/db`, which libpq refuses), and the defaults apply to a URL without one.
        uri = f"{parts.scheme}://{parts.netloc}{parts.path}" + (f"?{rest}" if rest else "")
        params = conninfo_to_dict(uri)
    except psycopg.ProgrammingError as exc:
        detail = " ".join(str(exc).split())
        raise UrlError(
            f"{detail} (a PostgreSQL store URL takes libpq's parameters and schema)"
        ) from None
    return {key: str(value) for key, value in params.items()}, schema


def extra_params(params: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in params.items() if key not in _OWN}


def connect_kwargs(env: dict[str, str]) -> dict[str, Any]:
    """`psycopg.connect` arguments for a store's own sessions beside eventsourcing's pool (the
    ownership locks, a worker's LISTEN): the same server, login and libpq parameters."""
    return {
        "host": env.get("POSTGRES_HOST"),
        "port": env.get("POSTGRES_PORT"),
        "user": env.get("POSTGRES_USER"),
        "password": env.get("POSTGRES_PASSWORD") or None,
        "dbname": env.get("POSTGRES_DBNAME"),
        "connect_timeout": int(float(env.get("POSTGRES_CONNECT_TIMEOUT", "5"))),
        **json.loads(env.get(LIBPQ_PARAMS, "{}")),
    }


def connect_problem(env: dict[str, str]) -> str | None:
    """Why a connection with these settings fails, in the server's words (None if it works):
    the pool only says it timed out, which hides a missing database or a refused login."""
    try:
        psycopg.connect(**connect_kwargs(env)).close()
    except psycopg.Error as exc:
        return server_words(exc)
    return None


def server_words(exc: psycopg.Error) -> str:
    """A connection error on one line, in the server's words where it gave some."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text.rpartition("FATAL: ")[2]  # 'database "x" does not exist', if it says so


def holds_events_table(env: dict[str, str], table: str) -> bool:
    """Whether the store's schema holds its events table (one connection; its `psycopg.Error`
    is the caller's)."""
    schema = env.get("POSTGRES_SCHEMA") or "public"
    with psycopg.connect(**connect_kwargs(env)) as conn:
        row = conn.execute("SELECT to_regclass(format('%%I.%%I', %s::text, %s::text))",
                           (schema, table)).fetchone()
    return row is not None and row[0] is not None


class PostgresFactory(es_postgres.PostgresFactory):
    """eventsourcing's factory, its connection pool given the URL's other libpq parameters."""

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        # A connection the pool lost (the server restarted or failed over) is reconnected with
        # a backoff that doubles from 1 s for `reconnect_timeout` (psycopg_pool's default: 5
        # min): after a 90 s outage the next try came up to a minute after the server was back,
        # and every command and worker of the process failed until then. Given up sooner, the
        # slot is freed and the next request for a connection opens one at once.
        self.datastore.pool.reconnect_timeout = RECONNECT_TIMEOUT_S
        extra = json.loads(self.env.get(LIBPQ_PARAMS) or "{}")
        pool_kwargs = self.datastore.pool.kwargs
        if extra and isinstance(pool_kwargs, dict):  # eventsourcing passes a dict
            pool_kwargs.update(extra)
