"""The write ceiling: N `baton worker` processes on one PostgreSQL against N plain writers.

For each N: a fresh schema; N workers started and ready; then every goal stored at once (one
insert, so no worker gets a head start); the time from the first dispatch to the last goal's
end is read from the events themselves. In the same schema, N plain writer processes then do
one INSERT + COMMIT per task (no table lock), as many rows as Baton's run had tasks.

    .venv/bin/python -m scripts.bench_workers [--workers 1,2,4,8] [--goals 96] [--tasks 10]
    .venv/bin/python -m scripts.bench_workers --inserts-only [--rounds 3]   # the insert alone
    .venv/bin/python -m scripts.bench_workers --workloads sleep100 --goals 1000 --tasks 3 \
        --workers 1,2,4 --slots 16,64,256   # against the ideal: no plain writers

Workloads: `noop` (sync agent that returns its input), `sleep` (async agent, 50 ms) and
`sleep100` (async agent, 100 ms). With `sleep100` each row is set against the ideal, the time
the agents alone need with the slots there are: ceil(goals / slots) x tasks x 0.1 s, where
slots = workers x concurrency (`--slots S` sets concurrency = S / workers for each row).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scripts.bench_agents import Hop
from scripts.bench_stores import PG_DSN, open_target

ROOT = Path(__file__).resolve().parents[1]


async def nap(inp: Hop) -> Hop:
    """An agent that waits on I/O for 50 ms."""
    await asyncio.sleep(0.05)
    return inp


async def nap100(inp: Hop) -> Hop:
    """An agent that waits on I/O for 100 ms."""
    await asyncio.sleep(0.1)
    return inp


AGENTS = {"noop": "scripts.bench_agents:hop", "sleep": "scripts.bench_workers:nap",
          "sleep100": "scripts.bench_workers:nap100"}
AGENT_SECONDS = {"sleep100": 0.1}  # what one call of the agent takes, for the ideal
STORE_NAME = "baton-bench-store"  # the workers' store connections (their lock sessions say
# "baton PID@host since", their owner lookups "baton PID lookups", their NOTIFY listener
# "baton worker listener")


def chain(agent: str, tasks: int) -> dict[str, Any]:
    steps = [{"id": "t0", "agent": "a", "input": {"payload": "$goal.payload"}}]
    steps += [{"id": f"t{i}", "agent": "a", "input": {"payload": f"$t{i - 1}.payload"}}
              for i in range(1, tasks)]
    return {"version": 1, "name": f"bench-{agent}", "agents": {"a": AGENTS[agent]},
            "tasks": steps, "output": f"$t{tasks - 1}"}


def start_workers(url: str, n: int, concurrency: int, logdir: Path) -> list[Any]:
    env = {**os.environ, "BATON_STORE": f"{url}&application_name={STORE_NAME}"}
    procs: list[Any] = []
    try:
        for i in range(n):  # one at a time: concurrent opens of one schema can still collide
            log = logdir / f"worker-{i}.log"
            proc = subprocess.Popen(
                [sys.executable, "-m", "baton.cli", "worker", "--concurrency", str(concurrency)],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log.open("w"),
            )
            procs.append(proc)
            while "worker started" not in log.read_text():
                if proc.poll() is not None:
                    raise SystemExit(f"worker {i} exited: {log.read_text()[-500:]}")
                time.sleep(0.02)
    except BaseException:  # never leave workers (and their connections) behind
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=60)
        raise
    return procs


def run_baton(url: str, workload: str, *, workers: int, goals: int, tasks: int,
              concurrency: int, logdir: Path) -> dict[str, float]:
    from baton.domain.goal import Goal
    from baton.runtime.loading import prepare_plan
    from baton.store.eventstore import open_store

    store = open_store(url)
    loaded = prepare_plan(chain(workload, tasks))
    procs = start_workers(url, workers, concurrency, logdir)
    sampler = LockSampler([proc.pid for proc in procs])
    sampler.start()
    cpu_ready = sum(_cpu_seconds(proc.pid) for proc in procs)
    try:
        pending = [
            Goal.start(goal_id=f"{workload}-{i:05d}", plan=loaded.plan,
                       goal_input={"payload": "x" * 64}, concurrency=1, at=datetime.now(UTC))
            for i in range(goals)
        ]
        store.app.events.put([e for goal in pending for e in goal.collect_events()])
        ids = [goal.id for goal in pending]
        ended, after = 0, 0
        while ended < goals:  # poll the log's tail: every goal ended? (only what is new: the
            time.sleep(0.2)   # whole log read five times a second cost the server ~10 % here)
            notes = store.recorder.select_notifications(
                start=after + 1, limit=10**9, topics=_ended_topics())
            ended += len(notes)
            after = notes[-1].id if notes else after
        first, last = _span(store, ids)
        cpu = sum(_cpu_seconds(proc.pid) for proc in procs) - cpu_ready
    finally:
        sampler.stop()
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=120)
        store.close()
    seconds = (last - first).total_seconds()
    return {"seconds": seconds, "tasks_s": goals * tasks / seconds, "goals_s": goals / seconds,
            "worker_cpu_ms_per_task": cpu * 1000 / (goals * tasks), **sampler.summary()}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU a process used so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class LockSampler(threading.Thread):
    """Samples pg_stat_activity every 10 ms: how many sessions are inside Baton's insert, and
    how many of those wait on a lock (the ordering lock taken around the insert); every 100 ms,
    the sessions on the server: all client sessions, the workers' (store pools, NOTIFY listener,
    owner lookups, goal locks) and, of those, their goal-lock sessions (peaks)."""

    def __init__(self, pids: list[int] | None = None) -> None:
        super().__init__(daemon=True)
        self.done = threading.Event()
        self.pids = pids or []
        self.samples = 0
        self.inserting = 0
        self.waiting = 0
        self.peak_sessions = 0
        self.peak_worker_sessions = 0
        self.peak_lock_sessions = 0

    def run(self) -> None:
        import psycopg

        from baton.store.pg_recorder import INSERT_FUNCTION

        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            while not self.done.wait(0.01):
                rows = conn.execute(
                    "SELECT wait_event_type FROM pg_stat_activity "
                    "WHERE state = 'active' AND query LIKE %s AND pid <> pg_backend_pid()",
                    (f"%{INSERT_FUNCTION}%",)).fetchall()
                self.samples += 1
                self.inserting += len(rows)
                self.waiting += sum(1 for (kind,) in rows if kind == "Lock")
                if self.samples % 10 == 1:
                    self._count_sessions(conn)

    def _count_sessions(self, conn: Any) -> None:
        locks = [f"baton {pid}@%" for pid in self.pids]  # "baton PID@host since"
        lookups = [f"baton {pid} lookups" for pid in self.pids]
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE application_name = ANY(%s) "
            "OR application_name LIKE ANY(%s)), count(*) FILTER (WHERE application_name "
            "LIKE ANY(%s)) FROM pg_stat_activity WHERE backend_type = 'client backend'",
            ([STORE_NAME, "baton worker listener", *lookups], locks, locks)).fetchone()
        assert row is not None
        self.peak_sessions = max(self.peak_sessions, row[0])
        self.peak_worker_sessions = max(self.peak_worker_sessions, row[1])
        self.peak_lock_sessions = max(self.peak_lock_sessions, row[2])

    def stop(self) -> None:
        self.done.set()
        self.join()

    def summary(self) -> dict[str, float]:
        samples = max(1, self.samples)
        return {"inserts_in_flight": self.inserting / samples,
                "waiting_on_a_lock": self.waiting / samples,
                "peak_sessions": self.peak_sessions,
                "peak_worker_sessions": self.peak_worker_sessions,
                "peak_lock_sessions": self.peak_lock_sessions}


def _ended_topics() -> list[str]:
    return [f"baton.domain.goal:Goal.{name}" for name in ("GoalCompleted", "GoalFailed")]


def _span(store: Any, ids: list[str]) -> tuple[datetime, datetime]:
    """First dispatch to last goal end, from the events' own timestamps."""
    firsts, lasts = [], []
    for goal_id in ids:
        events = store.events(goal_id)
        firsts.append(events[1].timestamp)  # the first decision after Started
        lasts.append(events[-1].timestamp)
    return min(firsts), max(lasts)


def _plain_writer(schema: str, rows: int, start: Any, done: Any) -> None:
    import psycopg

    conn = psycopg.connect(PG_DSN, autocommit=True)
    conn.execute(f'SET search_path TO "{schema}"')
    payload = json.dumps({"payload": "x" * 64}).encode()
    key = f"{os.getpid()}"
    start.wait()
    for seq in range(rows):
        with conn.transaction():
            conn.execute("INSERT INTO plain_rows VALUES (%s, %s, %s)", (key, seq, payload))
    done.put(time.perf_counter())
    conn.close()


# The previous release's insert, for `--inserts-only`: eventsourcing's way, the table's EXCLUSIVE
# lock held through the commit and NOTIFY inside the transaction (one round trip).
LOCKED_INSERT = """
CREATE OR REPLACE FUNCTION "{schema}".es_insert_events_locked(
    ids text[], versions bigint[], topics text[], states bytea[]) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$ BEGIN
    LOCK TABLE "{schema}".baton_events IN EXCLUSIVE MODE;
    NOTIFY baton_events;
    RETURN QUERY INSERT INTO "{schema}".baton_events (originator_id, originator_version, topic,
        state) SELECT * FROM unnest(ids, versions, topics, states) RETURNING notification_id;
END; $$"""


def _baton_writer(url: str, rows: int, start: Any, done: Any, locked: bool = False) -> None:
    """Baton's own insert (the store's recorder; with `locked`, the previous release's function),
    one event per transaction."""
    from eventsourcing.persistence import StoredEvent

    from baton.store.eventstore import open_store

    for _ in range(20):  # concurrent opens of one schema can collide on its DDL: try again
        try:
            store = open_store(url)
            break
        except Exception:
            time.sleep(0.1)
    payload = json.dumps({"payload": "x" * 64}).encode()
    key = f"w{os.getpid()}{'l' if locked else ''}{time.monotonic_ns()}"
    schema = store.env["POSTGRES_SCHEMA"]
    start.wait()
    for seq in range(rows):
        event = StoredEvent(originator_id=f"{key}-{seq}", originator_version=1,
                            topic="bench:Row", state=payload)
        if not locked:
            store.recorder.insert_events([event])
            continue
        with store.recorder.datastore.get_connection() as conn:
            conn.execute(f'SELECT * FROM "{schema}".es_insert_events_locked(%b, %b, %b, %b)',
                         ([event.originator_id], [1], [event.topic], [event.state]),
                         prepare=True).fetchall()
    done.put(time.perf_counter())
    store.close()


def run_plain(schema: str, *, writers: int, rows: int, url: str | None = None,
              locked: bool = False) -> dict[str, float]:
    """N plain writers (or, with `url`, N writers through Baton's insert)."""
    import psycopg

    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE IF NOT EXISTS "{schema}".plain_rows (writer text, seq int, '
                     "state bytea, PRIMARY KEY (writer, seq))")
    ctx = multiprocessing.get_context("spawn")
    start, done = ctx.Event(), ctx.Queue()
    each = rows // writers
    procs = [ctx.Process(target=_baton_writer, args=(url, each, start, done, locked))
             if url else ctx.Process(target=_plain_writer, args=(schema, each, start, done))
             for _ in range(writers)]
    for proc in procs:
        proc.start()
    time.sleep(1.0)  # let every writer connect before the start signal
    began = time.perf_counter()
    start.set()
    ends = [done.get(timeout=300) for _ in procs]
    for proc in procs:
        proc.join()
    seconds = max(ends) - began
    return {"seconds": seconds, "tasks_s": each * writers / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2,4,8")
    parser.add_argument("--goals", type=int, default=96)
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--workloads", default="noop,sleep",
                        help="comma-separated: noop, sleep (50 ms); or sleep100 alone (100 ms "
                        "agents, each row against the ideal, no plain writers)")
    parser.add_argument("--concurrency", type=int, default=4,
                        help="goals per worker (a worker holds all its goals' locks on one "
                        "session)")
    parser.add_argument("--slots", default=None,
                        help="comma-separated total slots: each row's concurrency is "
                        "slots / workers (instead of --concurrency)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--inserts-only", action="store_true",
                        help="no orchestration: N writers through the previous release's "
                        "table-locking insert, through Baton's, and plain ones (the insert alone)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="--inserts-only: interleaved rounds per N (the median is shown)")
    args = parser.parse_args()
    rows = []
    if args.inserts_only:
        _inserts_only([int(x) for x in args.workers.split(",")], args.goals * args.tasks,
                      args.rounds)
        return
    if args.workloads == "sleep100":
        _against_the_ideal(args)
        return
    for workload in args.workloads.split(","):
        for n in [int(x) for x in args.workers.split(",")]:
            with open_target("postgres", ROOT) as target:
                logdir = Path(f"/tmp/bench-workers-{target.pg_schema}")
                logdir.mkdir(exist_ok=True)
                concurrency = args.concurrency
                baton = run_baton(target.url, workload, workers=n, goals=args.goals,
                                  tasks=args.tasks, concurrency=concurrency, logdir=logdir)
                assert target.pg_schema is not None
                plain = run_plain(target.pg_schema, writers=n, rows=args.goals * args.tasks)
            row = {"workload": workload, "workers": n, "baton_tasks_s": baton["tasks_s"],
                   "baton_goals_s": baton["goals_s"], "plain_tasks_s": plain["tasks_s"],
                   "inserts_in_flight": baton["inserts_in_flight"],
                   "waiting_on_a_lock": baton["waiting_on_a_lock"]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    _table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


def _against_the_ideal(args: argparse.Namespace) -> None:
    """`sleep100`: each (workers, slots) row set against the ideal; no plain writers."""
    rows = []
    for n in [int(x) for x in args.workers.split(",")]:
        slot_counts = ([int(x) for x in args.slots.split(",")] if args.slots
                       else [n * args.concurrency])
        for total in slot_counts:
            concurrency = max(1, total // n)
            with open_target("postgres", ROOT) as target:
                logdir = Path(f"/tmp/bench-workers-{target.pg_schema}")
                logdir.mkdir(exist_ok=True)
                began = time.monotonic()
                baton = run_baton(target.url, "sleep100", workers=n, goals=args.goals,
                                  tasks=args.tasks, concurrency=concurrency, logdir=logdir)
            slots = n * concurrency
            ideal = math.ceil(args.goals / slots) * args.tasks * AGENT_SECONDS["sleep100"]
            row = {"workload": "sleep100", "workers": n, "concurrency": concurrency,
                   "slots": slots, "goals": args.goals, "tasks": args.tasks,
                   "seconds": baton["seconds"], "ideal_seconds": ideal,
                   "ratio": baton["seconds"] / ideal, "goals_s": baton["goals_s"],
                   "tasks_s": baton["tasks_s"],
                   "worker_cpu_ms_per_task": baton["worker_cpu_ms_per_task"],
                   "peak_sessions": baton["peak_sessions"],
                   "peak_worker_sessions": baton["peak_worker_sessions"],
                   "peak_lock_sessions": baton["peak_lock_sessions"],
                   "run_seconds": time.monotonic() - began}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("| workers | concurrency | slots | wall s | ideal s | wall ÷ ideal | goals/s | tasks/s "
          "| worker CPU ms/task | server sessions (peak) | workers' sessions | of which lock |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row['workers']} | {row['concurrency']} | {row['slots']} "
              f"| {row['seconds']:.2f} | {row['ideal_seconds']:.1f} | {row['ratio']:.2f} "
              f"| {row['goals_s']:,.0f} | {row['tasks_s']:,.0f} "
              f"| {row['worker_cpu_ms_per_task']:.2f} | {row['peak_sessions']} "
              f"| {row['peak_worker_sessions']} | {row['peak_lock_sessions']} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


def _inserts_only(ns: list[int], rows: int, rounds: int) -> None:
    """Per N: `rounds` rounds, each running the three writers one after the other (so a change
    of load hits all three alike); the median of each."""
    import psycopg

    from baton.store.eventstore import open_store

    print("| writers | previous insert/s (table lock) | vs 1 | Baton insert/s | vs 1 "
          "| plain insert/s | vs 1 | previous ÷ plain speed-up | Baton ÷ plain speed-up |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    base: tuple[float, float, float] | None = None
    for n in ns:
        with open_target("postgres", ROOT) as target:
            assert target.pg_schema is not None
            open_store(target.url).close()  # create the table and functions once
            with psycopg.connect(PG_DSN, autocommit=True) as conn:
                conn.execute(LOCKED_INSERT.format(schema=target.pg_schema))
            runs: dict[str, list[float]] = {"locked": [], "baton": [], "plain": []}
            for _ in range(rounds):
                for kind in runs:
                    url = None if kind == "plain" else target.url
                    runs[kind].append(run_plain(target.pg_schema, writers=n, rows=rows, url=url,
                                                locked=kind == "locked")["tasks_s"])
        locked, ours, plain = (statistics.median(runs[k]) for k in ("locked", "baton", "plain"))
        base = base or (locked, ours, plain)
        lk, us, pl = locked / base[0], ours / base[1], plain / base[2]
        print(f"| {n} | {locked:,.0f} | {lk:.2f}x | {ours:,.0f} | {us:.2f}x | {plain:,.0f} "
              f"| {pl:.2f}x | {lk / pl:.2f} | {us / pl:.2f} |", flush=True)


def _table(rows: list[dict[str, Any]]) -> None:
    print("| workload | workers | Baton tasks/s | Baton goals/s | vs 1 | plain tasks/s | vs 1 "
          "| Baton speed-up / plain speed-up | inserts in flight | of which wait on a lock |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    base: dict[str, dict[str, Any]] = {}
    for row in rows:
        one = base.setdefault(row["workload"], row)
        b = row["baton_tasks_s"] / one["baton_tasks_s"]
        p = row["plain_tasks_s"] / one["plain_tasks_s"]
        print(f"| {row['workload']} | {row['workers']} | {row['baton_tasks_s']:,.0f} "
              f"| {row['baton_goals_s']:,.1f} | {b:.2f}x | {row['plain_tasks_s']:,.0f} "
              f"| {p:.2f}x | {b / p:.2f} | {row['inserts_in_flight']:.2f} "
              f"| {row['waiting_on_a_lock']:.2f} |")


if __name__ == "__main__":
    main()
