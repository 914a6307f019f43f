"""Presenting a benchmark result: a Markdown table for the terminal and the doc, and the plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["markdown_table", "plot"]


def _ms(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def markdown_table(result: dict[str, Any]) -> str:
    """Per workload and store: Baton per task, the floor, the ratio, and what was written."""
    lines = [
        "| workload | store | Baton ms/unit | floor ms/unit | ratio | events/task | bytes/task "
        "| saves/task |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, stores in result["workloads"].items():
        for store, row in stores.items():
            if "error" in row:
                lines.append(f"| {name} | {store} | {row['error']} | | | | | |")
                continue
            unit = row.get("unit", "task")
            ratio = "n/a" if row.get("ratio") is None else f"{row['ratio']:.2f}x"
            lines.append(
                f"| {name} (per {unit}) | {store} | {_ms(row['per_task_ms'])} | "
                f"{_ms(row['floor_per_task_ms'])} | {ratio} | "
                f"{row.get('events_per_task', '')} | {row.get('bytes_per_task', '')} | "
                f"{row.get('saves_per_task', '')} |"
            )
    peers = result.get("peers", {})
    if peers:
        lines += ["", "| peer (SQLite) | workload | peer ms/task | Baton ms/task | Baton ÷ peer |",
                  "| --- | --- | ---: | ---: | ---: |"]
        for peer, data in peers.items():
            if "error" in data:
                lines.append(f"| {peer} | not measured: {data['error']} | | | |")
                continue
            for name in ("chain", "fanout", "retry"):
                baton = result["workloads"].get(name, {}).get("sqlite", {})
                ratio = data.get("baton_ratio", {}).get(name)
                lines.append(
                    f"| {peer} {data.get('version', '')} | {name} | "
                    f"{_ms(data[name]['per_task_ms'])} | {_ms(baton.get('per_task_ms'))} | "
                    f"{'n/a' if ratio is None else f'{ratio:.2f}x'} |"
                )
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    """Grouped bars: per-task ms by goal workload, for Baton, the floors and the peers."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    workloads = [w for w in ("chain", "fanout", "retry") if w in result["workloads"]]
    series: dict[str, list[float]] = {}
    for store in ("sqlite", "postgres"):  # SQLite systems side by side, then PostgreSQL
        rows = [result["workloads"][w].get(store, {}) for w in workloads]
        if all("per_task_ms" in row for row in rows):
            series[f"Baton ({store})"] = [row["per_task_ms"] for row in rows]
            series[f"raw floor ({store})"] = [row["floor_per_task_ms"] for row in rows]
        if store == "sqlite":
            for peer, data in result.get("peers", {}).items():
                if "error" not in data:
                    series[f"{peer} (sqlite)"] = [data[w]["per_task_ms"] for w in workloads]
    fig, ax = plt.subplots(figsize=(9, 4.8))
    width = 0.8 / max(1, len(series))
    for index, (label, values) in enumerate(series.items()):
        xs = [pos + (index - (len(series) - 1) / 2) * width for pos in range(len(workloads))]
        bars = ax.bar(xs, values, width, label=label)
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
    ax.set_xticks(range(len(workloads)), workloads)
    ax.set_ylabel("ms per task (median; no-op agents)")
    ax.set_title("Orchestration + durability cost per task")
    ax.legend(fontsize=8, ncols=2)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
