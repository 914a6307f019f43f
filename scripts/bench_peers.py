"""Peers on the same goal workloads, each in a subprocess of its own (run: `-m scripts.bench_peers
SYSTEM RUNS WORKDIR`, prints JSON): LangGraph with its SQLite checkpointer, DBOS on SQLite.

The nodes/steps call the same no-op functions as Baton's agents. Both peers are optional
(`pip install -e .[peers]`); one that is missing or fails is reported with the reason.
"""

from __future__ import annotations

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

__all__ = ["PEERS", "run_peer"]

PEERS = ("langgraph", "dbos")
SIZES = {"chain": 50, "fanout": 100, "retry": 20}


def run_peer(system: str, *, runs: int, workdir: Path, timeout: float = 300) -> dict[str, Any]:
    """Per-task ms of one peer on each workload, or {"error": why} when it cannot run here."""
    root = Path(__file__).resolve().parent.parent
    command = [sys.executable, "-m", "scripts.bench_peers", system, str(runs), str(workdir)]
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


def _timed(run: Callable[[], Any], runs: int, tasks: int) -> dict[str, Any]:
    samples = []
    for index in range(runs + 1):
        started = time.perf_counter()
        run()
        if index:  # the first call is the warm-up
            samples.append(time.perf_counter() - started)
    median = statistics.median(samples)
    return {"per_task_ms": round(median * 1000 / tasks, 4), "median_ms": round(median * 1000, 2),
            "runs": runs, "tasks": tasks}


# --- LangGraph ----------------------------------------------------------------------------------


class _Chain(TypedDict):
    payload: str


class _Fan(TypedDict):
    payload: str
    items: Annotated[list[dict[str, Any]], operator.add]
    count: int


def _langgraph(runs: int, workdir: Path) -> dict[str, Any]:
    import sqlite3

    import langgraph
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.config import get_config
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import RetryPolicy

    conn = sqlite3.connect(str(workdir / "langgraph.db"), check_same_thread=False)
    saver = SqliteSaver(conn)
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
        return builder.compile(checkpointer=saver)

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
        return builder.compile(checkpointer=saver)

    def flaky_node(state: _Chain) -> dict[str, Any]:
        config = get_config()
        key = f"{config['configurable']['thread_id']}/{config['metadata']['langgraph_node']}"
        return {"payload": flaky(Hop(payload=state["payload"]), idempotency_key=key).payload}

    retry = RetryPolicy(max_attempts=2, initial_interval=0.0, jitter=False, retry_on=RuntimeError)
    graphs = {
        "chain": (chain_graph(SIZES["chain"], hop_node, None), {"payload": PAYLOAD}),
        "fanout": (fan_graph(SIZES["fanout"]), {"payload": PAYLOAD, "items": [], "count": 0}),
        "retry": (chain_graph(SIZES["retry"], flaky_node, retry), {"payload": PAYLOAD}),
    }
    tasks = {"chain": SIZES["chain"], "fanout": SIZES["fanout"] + 2, "retry": SIZES["retry"]}
    result: dict[str, Any] = {"version": getattr(langgraph, "__version__", _version("langgraph"))}
    result["setup"] = f"SqliteSaver on a file, durability={durability}"
    for name, (graph, initial) in graphs.items():

        def run(graph: Any = graph, initial: Any = initial) -> None:
            config = {"configurable": {"thread_id": uuid.uuid4().hex}}
            graph.invoke(initial, config, durability=durability)

        result[name] = _timed(run, runs, tasks[name])
    conn.close()
    return result


# --- DBOS ---------------------------------------------------------------------------------------


def _dbos(runs: int, workdir: Path) -> dict[str, Any]:
    from dbos import DBOS, SetWorkflowID

    DBOS(config={"name": "baton-bench", "system_database_url": f"sqlite:///{workdir}/dbos.db"})

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
    result: dict[str, Any] = {"version": _version("dbos"), "setup": "system database on SQLite"}
    workflows = {
        "chain": (chain_wf, SIZES["chain"], SIZES["chain"]),
        "fanout": (fan_wf, SIZES["fanout"], SIZES["fanout"] + 2),
        "retry": (retry_wf, SIZES["retry"], SIZES["retry"]),
    }
    try:
        for name, (workflow, size, tasks) in workflows.items():

            def run(workflow: Any = workflow, size: int = size) -> None:
                with SetWorkflowID(uuid.uuid4().hex):
                    workflow(size)

            result[name] = _timed(run, runs, tasks)
    finally:
        DBOS.destroy()
    return result


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def _main(argv: list[str]) -> int:
    system, runs, workdir = argv[0], int(argv[1]), Path(argv[2])
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        measure = {"langgraph": _langgraph, "dbos": _dbos}[system]
        result = measure(runs, workdir)
    except ImportError as exc:
        result = {"error": f"{system} is not installed ({exc.name}); pip install -e '.[peers]'"}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
