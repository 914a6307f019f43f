"""What each event type, and each field, contributes to the bytes a goal stores.

    python scripts/bench_bytes.py [--workload chain|fanout|retry] [--json]

Runs one goal of the workload through the real path on a fresh SQLite file, then reads its
stored rows back: per event type the rows and the bytes of their stored `state` (what
`bytes_per_task` in bench.py counts), and per field the bytes of its JSON value. Then what
storing outputs once per goal by content hash (each further copy a 64-hex reference) would save
on this goal, computed from the same rows (nothing is changed). (`TaskReady` folded into the
dispatch, the other change issue 17 discussed, is decision rules 3: run this on an earlier
checkout to see the goal as rules 2 recorded it.)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a file: make `scripts.*` importable
    sys.path.insert(0, str(ROOT))

from baton.runtime.loading import prepare_plan  # noqa: E402
from baton.runtime.service import start_goal  # noqa: E402
from baton.store.eventstore import open_store  # noqa: E402
from scripts.bench_agents import PAYLOAD  # noqa: E402
from scripts.bench_workloads import WORKLOADS  # noqa: E402

__all__ = ["breakdown", "main"]

# Fields holding an agent's output or the goal's (the candidates for storing once by hash).
OUTPUT_FIELDS = {("AgentReturned", "output"), ("OutputAccepted", "output"),
                 ("GoalCompleted", "output"), ("HumanResolved", "output")}
REFERENCE = len(json.dumps("sha256:" + "0" * 64))  # a stored reference in place of a copy


def breakdown(rows: list[Any], tasks: int) -> dict[str, Any]:
    """Bytes by event type and by field, and the saving of outputs stored once, from stored
    rows."""
    types: dict[str, dict[str, Any]] = {}
    fields: dict[str, Counter[str]] = defaultdict(Counter)
    seen: set[str] = set()
    output_bytes = dedup_saving = 0
    for row in rows:
        kind = row.topic.rsplit(".", 1)[-1]
        entry = types.setdefault(kind, {"rows": 0, "bytes": 0})
        entry["rows"] += 1
        entry["bytes"] += len(row.state)
        state = json.loads(row.state)
        for name, value in state.items():
            size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False))
            fields[kind][name] += size
            if (kind, name) in OUTPUT_FIELDS and value is not None:
                output_bytes += size
                digest = hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()
                if digest in seen:
                    dedup_saving += size - REFERENCE
                seen.add(digest)
    total = sum(entry["bytes"] for entry in types.values())
    return {
        "tasks": tasks,
        "rows": len(rows),
        "bytes": total,
        "bytes_per_task": round(total / tasks),
        "by_type": {
            kind: {**entry, "bytes_per_task": round(entry["bytes"] / tasks, 1),
                   "share": round(entry["bytes"] / total, 3),
                   "fields": dict(fields[kind].most_common())}
            for kind, entry in sorted(types.items(), key=lambda item: -item[1]["bytes"])
        },
        "savings": {
            "outputs_once_by_content_hash": {
                "output_bytes_per_task": round(output_bytes / tasks),
                "bytes_per_task": round(dedup_saving / tasks),
                "share": round(dedup_saving / total, 3),
            },
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workload", default="chain", choices=sorted(WORKLOADS))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    workload = WORKLOADS[args.workload]
    with tempfile.TemporaryDirectory(prefix="baton-bench-bytes-") as tmp:
        store = open_store(f"sqlite:///{tmp}/bytes.db")
        try:
            loaded = prepare_plan(workload.plan(), source=f"bench {workload.name} plan")
            goal = start_goal(store, loaded, {"payload": PAYLOAD}, concurrency=8)
            result = breakdown(list(store.recorder.select_events(goal.id)), workload.tasks)
        finally:
            store.close()
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.workload}: {result['rows']} rows, {result['bytes']} bytes, "
          f"{result['bytes_per_task']} per task\n")
    print("| event | rows | bytes/task | share | largest fields (bytes/task) |")
    print("| --- | ---: | ---: | ---: | --- |")
    for kind, entry in result["by_type"].items():
        top = ", ".join(f"{name} {size / workload.tasks:.0f}"
                        for name, size in list(entry["fields"].items())[:4])
        print(f"| {kind} | {entry['rows']} | {entry['bytes_per_task']:.0f} | "
              f"{entry['share']:.0%} | {top} |")
    print()
    for change, saving in result["savings"].items():
        print(f"{change}: -{saving['bytes_per_task']} bytes/task ({saving['share']:.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
