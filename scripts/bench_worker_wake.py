"""What one wake-up of a worker's loop costs while many goals wait for a human.

Every save anywhere wakes every worker (NOTIFY), so the bookkeeping of one wake-up runs up to a
hundred times a second per writing process. Here a worker knows N goals it has already looked
at, each waiting for a human (nothing to claim, no timer): its state is set directly, as its
own looks leave it, and nothing touches the store. Timed: the loop's own steps for one
wake-up with a slot free (is the log worth reading, claim, how long to sleep), against the
same with no goal known (the baseline, same run).

    .venv/bin/python -m scripts.bench_worker_wake [--goals 1000,10000,100000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from baton.runtime.worker import Worker, _Seen
from baton.store.eventstore import open_store

WAKES = 200


def per_wake_us(goals: int, workdir: Path) -> float:
    store = open_store(f"sqlite:///{workdir / f'wake-{goals}.db'}")
    pool = ThreadPoolExecutor(1)
    try:
        worker = Worker(store=store, concurrency=4, refresh_s=0)
        worker.versions = {f"waiting-{n}": 7 for n in range(goals)}
        worker.seen = {goal_id: _Seen(7, None) for goal_id in worker.versions}
        worker._followed = time.monotonic()  # the log was just read
        samples = []
        for _ in range(WAKES):
            started = time.perf_counter()
            worker._reap()
            worker._log_worth_reading()
            worker._claim(pool)
            worker._timeout()
            samples.append(time.perf_counter() - started)
        return statistics.median(samples) * 1e6
    finally:
        pool.shutdown()
        store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--goals", default="1000,10000,100000")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        base = per_wake_us(0, Path(workdir))
        print("| goals waiting | one wake-up | ratio to none waiting |")
        print("| ---: | ---: | ---: |")
        print(f"| 0 | {base:.1f} µs | 1.0x |")
        for goals in (int(n) for n in args.goals.split(",")):
            us = per_wake_us(goals, Path(workdir))
            print(f"| {goals:,} | {us:.1f} µs | {us / base:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
