"""A wide map: one task whose output is a list of N elements, then one instance per element
(`for_each`), every agent a no-op; the whole goal timed, on a SQLite file.

    python scripts/bench_map.py [--widths 1000,2500,10000] [--store URL]

What it shows is how the orchestration's cost per task grows with the width of a map (dispatch
order, snapshots of a goal whose plan grew at run time); a linear runner keeps ms per task flat.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import baton  # noqa: E402

__all__ = ["main", "map_plan"]


def map_plan(width: int) -> dict[str, Any]:
    agents = "scripts.bench_agents"
    return {
        "version": 1,
        "name": f"map-{width}",
        "agents": {"spread": f"{agents}:spread", "hop": f"{agents}:hop"},
        "limits": {"max_tasks": width},
        "budget": {"max_attempts": width + 1},
        "tasks": [
            {"id": "spread", "agent": "spread", "input": {"count": width}},
            {"id": "each", "agent": "hop", "for_each": "$spread.payloads", "as": "payload",
             "input": {"payload": "$payload"}},
        ],
        "output": "$each",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--widths", default="1000,2500,10000")
    parser.add_argument("--store", help="store URL (default: a fresh SQLite file per width)")
    args = parser.parse_args(argv)
    print("| width | events | seconds | ms per task |")
    print("| ---: | ---: | ---: | ---: |")
    for width in (int(w) for w in args.widths.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            url = args.store or f"sqlite:///{tmp}/map.db"
            with baton.Baton(url) as client:
                plan = baton.load_plan(map_plan(width))
                started = time.perf_counter()
                result = client.run(plan, {})
                seconds = time.perf_counter() - started
                if result.status != "completed":
                    raise SystemExit(f"width {width}: goal {result.status}: {result.reason}")
                events = len(client.store.events(result.goal_id))
        print(f"| {width} | {events} | {seconds:.2f} | {1000 * seconds / (width + 1):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
