"""The benchmark script runs from a checkout and prints the JSON shape users and CI read.

Timings are never asserted: only that every workload ran to completion through the real path
and that the figures are consistent with each other.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_prints_one_json_object_with_every_figure(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable, str(ROOT / "scripts" / "bench.py"), "--json", "--runs", "1",
            "--workloads", "chain,retry", "--stores", "sqlite", "--no-peers",
        ],
        cwd=tmp_path,  # not the repo root: the script must find its own modules
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result) >= {"machine", "workloads", "peers"}
    assert result["machine"]["sqlite_store"]["journal_mode"] == "wal"
    for name in ("chain", "retry"):
        row = result["workloads"][name]["sqlite"]
        for key in ("per_task_ms", "floor_per_task_ms", "ratio", "events_per_task"):
            assert row[key] > 0, (name, key)
        assert abs(row["ratio"] - row["per_task_ms"] / row["floor_per_task_ms"]) < 0.01
    # Each retry task records a failed attempt and a successful one: more events than a hop.
    chain, retry = (result["workloads"][w]["sqlite"] for w in ("chain", "retry"))
    assert retry["events_per_task"] > chain["events_per_task"]
