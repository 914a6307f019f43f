"""`isolation: process`: a sync agent call in a worker process that its timeout terminates.

A thread cannot be stopped from outside, so a sync agent that times out on a thread keeps running:
its side effect (a file written, a booking sent, tokens spent) can land after the attempt was
recorded as timed out and retried. In a process it cannot: on timeout the runner terminates the
process (SIGTERM, then SIGKILL), and nothing it had not done by then ever happens.

Standard library `multiprocessing`, one fresh process per call, from a `forkserver`:
- not plain fork: the runner is multi-threaded (agent threads, the async loop), and forking a
  threaded process can copy a lock held by another thread into a child that then deadlocks. The
  fork server is a single-threaded process started once (~0.5 s here, with pydantic preloaded),
  by the runner before any attempt's clock starts; each call forks from it: ~0.15 s per call on
  this loaded 2-core machine, counted in the attempt's timeout;
- not spawn: a new interpreter per call, importing pydantic and the agent's module every time;
- one process per call rather than a pool (pebble's, or `concurrent.futures`): a terminated
  worker must be replaced anyway, and a fresh process holds no state from an earlier attempt;
- no new dependency: pebble would give the same `terminate on timeout` on top of the same module.

The agent and its input travel by pickle, so the agent must be importable by its module path (the
plan's `module:callable` always is; a function defined in a script's `__main__` is not) and its
input and output picklable (pydantic models are). As with any `multiprocessing` start method but
fork, each worker imports the caller's main module: a script that runs goals through the Python
API needs the usual `if __name__ == "__main__":` guard (the `baton` command has it).
"""

from __future__ import annotations

import multiprocessing
import threading
from multiprocessing.connection import Connection
from typing import Any

__all__ = ["AgentProcessEnded", "ProcessCalls", "start_fork_server"]

_CONTEXT = multiprocessing.get_context("forkserver")
_PRELOAD = ["pydantic", "baton.runtime.isolation"]
_GRACE_S = 2.0  # after SIGTERM, before SIGKILL


class AgentProcessEnded(RuntimeError):
    """The worker process ended without a result (terminated at its timeout, or crashed)."""


class AgentProcessRaised(RuntimeError):
    """The agent raised in its worker process and its exception could not travel back."""


def _child(conn: Connection, agent: Any, agent_input: Any, kwargs: dict[str, Any]) -> None:
    try:
        result: tuple[str, Any] = ("returned", agent(agent_input, **kwargs))
    except BaseException as exc:
        result = ("raised", exc)
    try:
        conn.send(result)
    except Exception:  # the result or the exception does not pickle: send what it was
        kind, value = result
        message = f"{type(value).__name__}: {value}"
        conn.send(("raised", AgentProcessRaised(f"{kind} a value that cannot pickle: {message}")))
    finally:
        conn.close()


def start_fork_server() -> None:
    """Start the fork server now (once per process), so no attempt's timeout pays for it."""
    from multiprocessing import forkserver

    _CONTEXT.set_forkserver_preload(_PRELOAD)
    forkserver.ensure_running()


class ProcessCalls:
    """The worker processes of one CallPool, by (task, attempt), so a timeout can end one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[tuple[str, int], Any] = {}

    def run(
        self, key: tuple[str, int], agent: Any, agent_input: Any, kwargs: dict[str, Any]
    ) -> Any:
        """Call the agent in a new process and wait: its result, or what it raised."""
        _CONTEXT.set_forkserver_preload(_PRELOAD)  # before the server starts; then a no-op
        receive, send = _CONTEXT.Pipe(duplex=False)
        process = _CONTEXT.Process(
            target=_child, args=(send, agent, agent_input, kwargs), name=f"baton-{key[0]}",
            daemon=True,
        )
        try:
            with self._lock:  # started and registered at once: a timeout finds it either way
                process.start()
                self._running[key] = process
            send.close()  # the child holds the only sending end: its exit means EOF here
            try:
                kind, value = receive.recv()
            except EOFError:
                process.join()
                raise AgentProcessEnded(
                    f"agent process ended without a result (exit code {process.exitcode})"
                ) from None
            process.join()
        finally:
            receive.close()
            with self._lock:
                self._running.pop(key, None)
        if kind == "raised":
            raise value
        return value

    def terminate(self, key: tuple[str, int]) -> None:
        """End a call's process now (its timeout passed); a no-op if it is not running."""
        with self._lock:
            process = self._running.pop(key, None)
        if process is None or process.pid is None:
            return
        process.terminate()
        process.join(_GRACE_S)
        if process.is_alive():
            process.kill()
            process.join()
