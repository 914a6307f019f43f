"""The benchmark script runs from a checkout and prints the JSON shape users and CI read.

Timings are never asserted: only that every workload ran to completion through the real path
and that the figures are consistent with each other.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
        for key in ("per_task_ms", "floor_per_task_ms", "ratio", "events_per_task", "load_ms",
                    "bytes_per_task", "snapshot_bytes_per_task"):
            assert row[key] > 0, (name, key)
        assert abs(row["ratio"] - row["per_task_ms"] / row["floor_per_task_ms"]) < 0.01
    # Each retry task records a failed attempt and a successful one: more events than a hop.
    chain, retry = (result["workloads"][w]["sqlite"] for w in ("chain", "retry"))
    assert retry["events_per_task"] > chain["events_per_task"]
    # One cell per goal workload and store; no peer ran, so none is best.
    assert [(c["workload"], c["store"]) for c in result["cells"]] == [
        ("chain", "sqlite"), ("retry", "sqlite")]
    for cell in result["cells"]:
        row = result["workloads"][cell["workload"]]["sqlite"]
        assert cell["best_peer"] is None and cell["baton_ms"] == row["per_task_ms"]
        assert cell["load_ms"] == {"baton": row["load_ms"]}
        assert cell["bytes_per_task"] == {"baton": row["bytes_per_task"]}


def test_the_cells_name_the_fastest_peer_per_store() -> None:
    """`cells` compares Baton with the fastest peer of each store: the SQLite figures at the
    top of a peer's entry (their place in earlier runs), PostgreSQL's under `postgres`."""
    sys.path.insert(0, str(ROOT))
    from scripts.bench import cells

    def cell(ms: float) -> dict[str, float]:
        return {"per_task_ms": ms, "load_ms": ms / 10, "bytes_per_task": 100.0}

    result = {
        "workloads": {"chain": {
            "sqlite": {"per_task_ms": 1.0, "ratio": 3.0, "load_ms": 0.5, "bytes_per_task": 1200},
            "postgres": {"per_task_ms": 2.0, "ratio": 2.0, "load_ms": 0.9,
                         "bytes_per_task": 1200},
        }},
        "peers": {
            "langgraph": {"chain": cell(2.0), "postgres": {"chain": cell(1.5)}},
            "burr": {"chain": cell(1.5), "postgres": {"error": "unreachable"}},
            "dbos": {"error": "not installed"},
        },
    }
    sqlite, postgres = cells(result)
    assert (sqlite["best_peer"], sqlite["best_peer_ms"], sqlite["baton_per_best_peer"]) == (
        "burr", 1.5, 0.67)
    assert sqlite["load_ms"] == {"baton": 0.5, "langgraph": 0.2, "burr": 0.15}
    assert (postgres["best_peer"], postgres["baton_per_best_peer"]) == ("langgraph", 1.33)
    assert postgres["bytes_per_task"] == {"baton": 1200, "langgraph": 100.0}


def test_bench_map_runs_a_map_to_completion_and_reports_each_width(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from scripts import bench_map

    assert bench_map.main(["--widths", "3,5"]) == 0
    rows = [line.split("|") for line in capsys.readouterr().out.splitlines()[2:]]
    # width, events: Started and the spreader's 3, the map's TaskReady, MapExpanded and
    # MapCollected, 3 per instance (each dispatch holds its readiness), the end
    assert [(int(row[1]), int(row[2])) for row in rows] == [(3, 17), (5, 23)]
