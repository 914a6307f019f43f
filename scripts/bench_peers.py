"""Peers on the same goal workloads, each in a subprocess of its own (run: `-m scripts.bench_peers
SYSTEM RUNS WORKDIR STORE`, prints JSON): LangGraph with its SQLite or PostgreSQL checkpointer,
Burr with its SQLite or PostgreSQL persister, DBOS with its system database on either.

The nodes/steps/actions call the same no-op functions as Baton's agents. Every peer is optional
(`pip install -e .[peers]`); one that is missing or fails is reported with the reason. Per
workload: the median time per task, `load_ms` (reading the last finished run's state back
through a handle opened for it) and `bytes_per_task` (what the run left in the peer's tables).
"""

from __future__ import annotations

import itertools
import json
import operator
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypedDict

from scripts.bench_agents import PAYLOAD, Hop, Items, flaky, gather, hop

__all__ = ["LOADS", "PEERS", "median_read_ms", "run_peer"]

PEERS = ("langgraph", "burr", "dbos")
SIZES = {"chain": 50, "fanout": 100, "retry": 20}


def run_peer(
    system: str, *, runs: int, workdir: Path, store: str = "sqlite", timeout: float = 300
) -> dict[str, Any]:
    """Per-task ms of one peer on each workload, or {"error": why} when it cannot run here."""
    root = Path(__file__).resolve().parent.parent
    command = [
        sys.executable, "-m", "scripts.bench_peers", system, str(runs), str(workdir), store
    ]
    try:
        done = subprocess.run(
            command, cwd=root, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return {"error": f"{system}: gave no result within {timeout:g}s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = " ".join((done.stderr or done.stdout).split())[-300:]
        return {"error": f"{system}: exit {done.returncode}: {tail}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


LOADS = 20  # reads of the finished run's state for `load_ms`, after one untimed


def _timed(
    run: Callable[[], Any],
    runs: int,
    tasks: int,
    *,
    load: Callable[[Any], tuple[Callable[[], Any], Callable[[], Any]]] | None = None,
    footprint: Callable[[Any], int | None] | None = None,
) -> dict[str, Any]:
    """`run()` returns the run's id; `load(id)` opens a handle of its own and returns how to
    read the run's state back through it (timed) and how to close it; `footprint(id)` counts
    the bytes the run stored."""
    samples, last = [], None
    for index in range(runs + 1):
        started = time.perf_counter()
        last = run()
        if index:  # the first call is the warm-up
            samples.append(time.perf_counter() - started)
    median = statistics.median(samples)
    result: dict[str, Any] = {
        "per_task_ms": round(median * 1000 / tasks, 4), "median_ms": round(median * 1000, 2),
        "runs": runs, "tasks": tasks,
    }
    if load is not None:
        read, close = load(last)
        try:
            result["load_ms"] = round(median_read_ms(read), 3)
        finally:
            close()
    if footprint is not None and (size := footprint(last)) is not None:
        result["bytes_per_task"] = round(size / tasks)
    return result


def median_read_ms(read: Callable[[], Any], loads: int = LOADS) -> float:
    """Median ms of `loads` calls of `read` after one untimed (the handle's first statement):
    how `load_ms` is measured for Baton and every peer alike."""
    read()
    samples = []
    for _ in range(loads):
        started = time.perf_counter()
        read()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


class _Schema:
    """A PostgreSQL schema of the peer's own (its tables in it), dropped afterwards."""

    def __init__(self) -> None:
        import psycopg

        from scripts.bench_stores import PG_DSN

        self.dsn = PG_DSN
        self.name = f"bench_peer_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'create schema "{self.name}"')
        self.options = f"-c search_path={self.name}"

    def connect(self, **kwargs: Any) -> Any:
        import psycopg

        return psycopg.connect(self.dsn, autocommit=True, options=self.options, **kwargs)

    def drop(self) -> None:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f'drop schema "{self.name}" cascade')


# --- LangGraph ----------------------------------------------------------------------------------


class _Chain(TypedDict):
    payload: str


class _Fan(TypedDict):
    payload: str
    items: Annotated[list[dict[str, Any]], operator.add]
    count: int


def _langgraph(runs: int, workdir: Path, store: str) -> dict[str, Any]:
    import langgraph
    from langgraph.config import get_config
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import RetryPolicy

    saver, footprint, close = _langgraph_saver(workdir, store)
    # Durable before the next step, as Baton is: the checkpoint is written synchronously.
    durability = "sync"

    def hop_node(state: _Chain) -> dict[str, Any]:
        return {"payload": hop(Hop(payload=state["payload"])).payload}

    def chain_graph(n: int, node: Callable[..., Any], retry: RetryPolicy | None) -> Any:
        builder = StateGraph(_Chain)
        for i in range(n):
            builder.add_node(f"t{i}", node, retry_policy=retry)
            builder.add_edge(START if i == 0 else f"t{i - 1}", f"t{i}")
        builder.add_edge(f"t{n - 1}", END)
        return builder

    def fan_graph(n: int) -> Any:
        builder = StateGraph(_Fan)
        builder.add_node("planner", lambda s: {"payload": hop(Hop(payload=s["payload"])).payload})
        workers = [f"w{i}" for i in range(n)]
        for name in workers:
            builder.add_node(
                name, lambda s: {"items": [hop(Hop(payload=s["payload"])).model_dump()]}
            )
            builder.add_edge("planner", name)
        builder.add_node("reduce", lambda s: {"count": gather(Items(items=s["items"])).count})
        builder.add_edge(START, "planner")
        builder.add_edge(workers, "reduce")
        builder.add_edge("reduce", END)
        return builder

    def flaky_node(state: _Chain) -> dict[str, Any]:
        config = get_config()
        key = f"{config['configurable']['thread_id']}/{config['metadata']['langgraph_node']}"
        return {"payload": flaky(Hop(payload=state["payload"]), idempotency_key=key).payload}

    retry = RetryPolicy(max_attempts=2, initial_interval=0.0, jitter=False, retry_on=RuntimeError)
    builders = {
        "chain": (chain_graph(SIZES["chain"], hop_node, None), {"payload": PAYLOAD}),
        "fanout": (fan_graph(SIZES["fanout"]), {"payload": PAYLOAD, "items": [], "count": 0}),
        "retry": (chain_graph(SIZES["retry"], flaky_node, retry), {"payload": PAYLOAD}),
    }
    tasks = {"chain": SIZES["chain"], "fanout": SIZES["fanout"] + 2, "retry": SIZES["retry"]}
    result: dict[str, Any] = {"version": getattr(langgraph, "__version__", _version("langgraph"))}
    result["setup"] = f"{type(saver).__name__}, durability={durability}"
    try:
        for name, (builder, initial) in builders.items():
            graph = builder.compile(checkpointer=saver)

            def run(graph: Any = graph, initial: Any = initial) -> str:
                thread = uuid.uuid4().hex
                graph.invoke(initial, {"configurable": {"thread_id": thread}},
                             durability=durability)
                return thread

            def load(thread: str, builder: Any = builder) -> tuple[Any, Any]:
                fresh, _, close_fresh = _langgraph_saver(workdir, store, reuse=saver)
                reader = builder.compile(checkpointer=fresh)
                config = {"configurable": {"thread_id": thread}}

                def read() -> None:
                    assert reader.get_state(config).values, "no state read back"

                return read, close_fresh

            result[name] = _timed(run, runs, tasks[name], load=load, footprint=footprint)
    finally:
        close()
    return result


def _langgraph_saver(
    workdir: Path, store: str, *, reuse: Any = None
) -> tuple[Any, Callable[[str], int | None], Callable[[], None]]:
    """A checkpointer on its own connection (`reuse`: the same database as that one's), how
    many bytes a thread stored, and how to close it."""
    if store == "sqlite":
        import sqlite3

        from langgraph.checkpoint.sqlite import SqliteSaver

        conn = sqlite3.connect(str(workdir / "langgraph.db"), check_same_thread=False)
        saver = SqliteSaver(conn)

        def sqlite_bytes(thread: str) -> int:
            one = conn.execute(
                "select coalesce(sum(length(checkpoint) + length(metadata)), 0) "
                "from checkpoints where thread_id = ?", (thread,)).fetchone()[0]
            two = conn.execute("select coalesce(sum(length(value)), 0) from writes "
                               "where thread_id = ?", (thread,)).fetchone()[0]
            return int(one + two)

        return saver, sqlite_bytes, conn.close
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row

    schema = reuse.bench_schema if reuse is not None else _Schema()
    pg = schema.connect(prepare_threshold=0, row_factory=dict_row)
    saver = PostgresSaver(pg)
    saver.bench_schema = schema  # type: ignore[attr-defined]
    if reuse is None:
        saver.setup()

    def pg_bytes(thread: str) -> int:
        total = 0
        for sql in (
            "select coalesce(sum(octet_length(checkpoint::text) + octet_length(metadata::text)),"
            " 0) as n from checkpoints where thread_id = %s",
            "select coalesce(sum(octet_length(blob)), 0) as n from checkpoint_blobs "
            "where thread_id = %s",
            "select coalesce(sum(octet_length(blob)), 0) as n from checkpoint_writes "
            "where thread_id = %s",
        ):
            total += int(pg.execute(sql, (thread,)).fetchone()["n"])
        return total

    def close() -> None:
        pg.close()
        if reuse is None:
            schema.drop()

    return saver, pg_bytes, close


# --- Burr ---------------------------------------------------------------------------------------


def _burr(runs: int, workdir: Path, store: str) -> dict[str, Any]:
    from burr.core import ApplicationBuilder, State, action
    from burr.core.graph import GraphBuilder

    table = "burr_state"
    partition = "bench"  # Burr's PostgreSQL table has no default partition key
    persister, footprint, close = _burr_persister(workdir, store, table)

    @action(reads=["payload"], writes=["payload"])
    def hop_action(state: State) -> State:
        return state.update(payload=hop(Hop(payload=state["payload"])).payload)

    @action(reads=["payload"], writes=["items"])
    def work_action(state: State) -> State:
        return state.append(items=hop(Hop(payload=state["payload"])).model_dump())

    @action(reads=["items"], writes=["count"])
    def reduce_action(state: State) -> State:
        return state.update(count=gather(Items(items=state["items"])).count)

    @action(reads=["payload"], writes=["payload"])
    def flaky_action(state: State, __context: Any) -> State:
        # Burr has no retry policy of its own: the action calls again, as LangGraph's
        # RetryPolicy does inside the step (the failed attempt is not persisted either way).
        key = f"{__context.app_id}/{__context.sequence_id}"
        try:
            out = flaky(Hop(payload=state["payload"]), idempotency_key=key)
        except RuntimeError:
            out = flaky(Hop(payload=state["payload"]), idempotency_key=key)
        return state.update(payload=out.payload)

    def line(names: list[str], actions: dict[str, Any]) -> Any:
        pairs = list(itertools.pairwise(names))
        return GraphBuilder().with_actions(**actions).with_transitions(*pairs).build()

    chain = [f"t{i}" for i in range(SIZES["chain"])]
    fan = ["planner", *(f"w{i}" for i in range(SIZES["fanout"])), "reduce"]
    retry = [f"t{i}" for i in range(SIZES["retry"])]
    graphs = {
        # A fan-out runs its 100 actions one after another (Burr's parallelism runs a sub-
        # application per item, each persisted): the cheapest durable form, as for DBOS.
        "chain": (line(chain, dict.fromkeys(chain, hop_action)), chain),
        "fanout": (line(fan, {"planner": hop_action, "reduce": reduce_action,
                              **dict.fromkeys(fan[1:-1], work_action)}), fan),
        "retry": (line(retry, dict.fromkeys(retry, flaky_action)), retry),
    }
    result: dict[str, Any] = {
        "version": _version("apache-burr"),
        "setup": f"{type(persister).__name__}, a state row written after every action",
    }
    try:
        for name, (graph, order) in graphs.items():

            def run(graph: Any = graph, order: list[str] = order) -> str:
                app_id = uuid.uuid4().hex
                app = (
                    ApplicationBuilder()
                    .with_graph(graph)
                    .with_entrypoint(order[0])
                    .with_state(payload=PAYLOAD, items=[], count=0)
                    .with_state_persister(persister)
                    .with_identifiers(app_id=app_id, partition_key=partition)
                    .build()
                )
                app.run(halt_after=[order[-1]])
                return app_id

            def load(app_id: str) -> tuple[Any, Any]:
                fresh, _, close_fresh = _burr_persister(workdir, store, table, reuse=persister)

                def read() -> None:
                    assert fresh.load(partition, app_id) is not None, "no state read back"

                return read, close_fresh

            result[name] = _timed(run, runs, len(order), load=load, footprint=footprint)
    finally:
        close()
    return result


def _burr_persister(
    workdir: Path, store: str, table: str, *, reuse: Any = None
) -> tuple[Any, Callable[[str], int | None], Callable[[], None]]:
    if store == "sqlite":
        from burr.core.persistence import SQLitePersister

        persister = SQLitePersister(str(workdir / "burr.db"), table_name=table,
                                    connect_kwargs={"check_same_thread": False})
        if reuse is None:
            persister.initialize()
        conn = persister.connection

        def sqlite_bytes(app_id: str) -> int:
            row = conn.execute(f"select coalesce(sum(length(state)), 0) from {table} "
                               "where app_id = ?", (app_id,)).fetchone()
            return int(row[0])

        return persister, sqlite_bytes, conn.close
    import psycopg2
    from burr.integrations.persisters.b_psycopg2 import PostgreSQLPersister

    schema = reuse.bench_schema if reuse is not None else _Schema()
    pg = psycopg2.connect(schema.dsn, options=schema.options)
    persister = PostgreSQLPersister(pg, table_name=table)
    persister.bench_schema = schema
    if reuse is None:
        persister.initialize()

    def pg_bytes(app_id: str) -> int:
        with pg.cursor() as cursor:
            cursor.execute(f"select coalesce(sum(octet_length(state::text)), 0) from {table} "
                           "where app_id = %s", (app_id,))
            return int(cursor.fetchone()[0])

    def close() -> None:
        pg.close()
        if reuse is None:
            schema.drop()

    return persister, pg_bytes, close


# --- DBOS ---------------------------------------------------------------------------------------


def _dbos(runs: int, workdir: Path, store: str) -> dict[str, Any]:
    from dbos import DBOS, SetWorkflowID

    database = None
    if store == "sqlite":
        url = f"sqlite:///{workdir}/dbos.db"
    else:  # a database of its own: DBOS creates its system database and schema itself
        from scripts.bench_stores import PG_DSN

        database = f"bench_dbos_{uuid.uuid4().hex[:10]}"
        url = PG_DSN.rsplit("/", 1)[0] + "/" + database
    DBOS(config={"name": "baton-bench", "system_database_url": url})

    @DBOS.step()
    def hop_step(payload: str) -> str:
        return hop(Hop(payload=payload)).payload

    @DBOS.step()
    def gather_step(items: list[str]) -> int:
        return gather(Items(items=[Hop(payload=item) for item in items])).count

    @DBOS.step(retries_allowed=True, max_attempts=2, interval_seconds=0.0, backoff_rate=1.0)
    def flaky_step(payload: str, key: str) -> str:
        return flaky(Hop(payload=payload), idempotency_key=key).payload

    @DBOS.workflow()
    def chain_wf(n: int) -> str:
        payload = PAYLOAD
        for _ in range(n):
            payload = hop_step(payload)
        return payload

    @DBOS.workflow()
    def fan_wf(n: int) -> int:
        # Steps run one after another inside the workflow: DBOS's cheapest durable form (a
        # queue per item would add a child workflow each), so this favours the peer.
        planned = hop_step(PAYLOAD)
        return gather_step([hop_step(planned) for _ in range(n)])

    @DBOS.workflow()
    def retry_wf(n: int) -> str:
        payload, run_id = PAYLOAD, DBOS.workflow_id
        for i in range(n):
            payload = flaky_step(payload, f"{run_id}/{i}")
        return payload

    DBOS.launch()
    result: dict[str, Any] = {"version": _version("dbos"), "setup": f"system database on {store}"}
    workflows = {
        "chain": (chain_wf, SIZES["chain"], SIZES["chain"]),
        "fanout": (fan_wf, SIZES["fanout"], SIZES["fanout"] + 2),
        "retry": (retry_wf, SIZES["retry"], SIZES["retry"]),
    }

    def load(workflow_id: str) -> tuple[Any, Any]:
        # DBOS is one instance per process: the same handle reads the result back.
        def read() -> None:
            assert DBOS.retrieve_workflow(workflow_id).get_result() is not None

        return read, lambda: None

    try:
        for name, (workflow, size, tasks) in workflows.items():

            def run(workflow: Any = workflow, size: int = size) -> str:
                workflow_id = uuid.uuid4().hex
                with SetWorkflowID(workflow_id):
                    workflow(size)
                return workflow_id

            result[name] = _timed(run, runs, tasks, load=load)
    finally:
        DBOS.destroy()
        if database is not None:
            import psycopg

            from scripts.bench_stores import PG_DSN

            with psycopg.connect(PG_DSN, autocommit=True) as conn:
                conn.execute(f'drop database if exists "{database}" with (force)')
    return result


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def _main(argv: list[str]) -> int:
    system, runs, workdir = argv[0], int(argv[1]), Path(argv[2])
    store = argv[3] if len(argv) > 3 else "sqlite"
    workdir.mkdir(parents=True, exist_ok=True)
    package = {"langgraph": "langgraph", "burr": "apache-burr", "dbos": "dbos"}[system]
    try:
        measure = {"langgraph": _langgraph, "burr": _burr, "dbos": _dbos}[system]
        result = measure(runs, workdir, store)
    except ImportError as exc:
        result = {"error": f"{package} is not installed ({exc.name}); pip install -e '.[peers]'"}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
