"""Where Baton's time goes on a goal workload: pyinstrument (or cProfile) over repeated goals.

    python scripts/bench_profile.py chain [--store sqlite:////tmp/p.db] [--goals 20] [--cprofile]

Needs `pip install pyinstrument` (in the `bench` extra) unless `--cprofile` is given.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from adapters.loading import prepare_plan  # noqa: E402
from adapters.service import start_goal  # noqa: E402
from adapters.store import open_store  # noqa: E402
from scripts.bench_agents import PAYLOAD  # noqa: E402
from scripts.bench_workloads import WORKLOADS  # noqa: E402

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("workload", choices=sorted(WORKLOADS))
    parser.add_argument("--store", help="store URL (default: a fresh SQLite file)")
    parser.add_argument("--goals", type=int, default=20)
    parser.add_argument("--cprofile", action="store_true", help="cProfile, sorted by own time")
    args = parser.parse_args(argv)
    workload = WORKLOADS[args.workload]
    loaded = prepare_plan(workload.plan())
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(args.store or f"sqlite:///{tmp}/profile.db")
        start_goal(store, loaded, {"payload": PAYLOAD})  # warm-up: tables, imports, caches

        def goals() -> None:
            for _ in range(args.goals):
                start_goal(store, loaded, {"payload": PAYLOAD})

        if args.cprofile:
            import cProfile
            import pstats

            stats = cProfile.Profile()
            stats.runcall(goals)
            pstats.Stats(stats).sort_stats("tottime").print_stats(40)
        else:
            from pyinstrument import Profiler

            with Profiler(interval=0.0005) as profiler:
                goals()
            print(profiler.output_text(unicode=True, color=False, show_all=False))
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
