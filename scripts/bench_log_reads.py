"""A long-lived reader of the PostgreSQL log: what each read costs as the log grows.

For each size N: a fresh schema whose event table holds N events (one bulk insert, analysed),
then one connection, as a worker's or `projections follow`'s pool keeps it, reading what is new
after the head 30 times (PL/pgSQL plans its statements generically from the sixth call on), the
same again with a transaction left open elsewhere on the server (holding back the oldest
running transaction id), and the head itself (`max_notification_id`, the web view's poll).
Baseline, same connection, same rounds: the plain indexed read of the rows after a position,
which knows nothing of uncommitted gaps.

    .venv/bin/python -m scripts.bench_log_reads [--events 10000,1000000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from baton.store.eventstore import open_store
from scripts.bench_stores import PG_DSN, open_target, postgres_unreachable

CALLS = 30


def median_ms(call: Callable[[], Any], *, skip: int = 5) -> float:
    """Median of the calls after the first `skip` (those get custom plans)."""
    samples = []
    for index in range(CALLS):
        started = time.perf_counter()
        call()
        if index >= skip:
            samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1e3


def measure(events: int) -> dict[str, Any]:
    import psycopg

    with open_target("postgres", Path(".")) as target:
        store = open_store(target.url)  # creates the table and the read functions
        store.close()
        schema = target.pg_schema
        table = f'"{schema}".baton_events'
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(
                f"INSERT INTO {table} (originator_id, originator_version, topic, state) "
                "SELECT gen_random_uuid(), 1, 'bulk', '\\x00'::bytea "
                "FROM generate_series(1, %s)", (events,))
            conn.execute(f"ANALYZE {table}")
            after = events - 3

            def baton() -> None:
                conn.execute(f'SELECT * FROM "{schema}".es_select_final_notifications('
                             "%s, NULL, NULL, 100)", (after,)).fetchall()

            def head() -> None:
                conn.execute(f'SELECT "{schema}".es_final_notification_id()').fetchone()

            def plain() -> None:
                conn.execute(f"SELECT * FROM {table} WHERE notification_id > %s "
                             "ORDER BY notification_id LIMIT 100", (after,)).fetchall()

            row: dict[str, Any] = {"events": events, "read_ms": median_ms(baton),
                                   "head_ms": median_ms(head), "plain_ms": median_ms(plain)}
            with psycopg.connect(PG_DSN) as other:  # a transaction left open, holding an xid
                other.execute("SELECT pg_current_xact_id()")
                conn.execute(
                    f"INSERT INTO {table} (originator_id, originator_version, topic, state) "
                    "SELECT gen_random_uuid(), 1, 'bulk', '\\x00'::bytea "
                    "FROM generate_series(1, %s)", (events // 10,))
                after = events + events // 10 - 3
                row.update(behind_read_ms=median_ms(baton), behind_head_ms=median_ms(head),
                           behind_plain_ms=median_ms(plain))
                other.rollback()
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", default="10000,1000000")
    args = parser.parse_args()
    if why := postgres_unreachable():
        print(why, file=sys.stderr)
        return 1
    print("| events | read after the head | head | plain read (baseline) | ratio "
          "| behind an open transaction: read | head | plain | ratio |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for events in (int(n) for n in args.events.split(",")):
        r = measure(events)
        print(f"| {events:,} | {r['read_ms']:.2f} ms | {r['head_ms']:.2f} ms "
              f"| {r['plain_ms']:.2f} ms | {r['read_ms'] / r['plain_ms']:.1f}x "
              f"| {r['behind_read_ms']:.2f} ms | {r['behind_head_ms']:.2f} ms "
              f"| {r['behind_plain_ms']:.2f} ms "
              f"| {r['behind_read_ms'] / r['behind_plain_ms']:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
