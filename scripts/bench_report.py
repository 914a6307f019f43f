"""Presenting a benchmark result: a Markdown table for the terminal and the doc, and the plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["cells_table", "markdown_table", "plot"]


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
    lines += ["", *cells_table(result.get("cells", []))]
    return "\n".join(lines)


def cells_table(cells: list[dict[str, Any]]) -> list[str]:
    """The goal workloads x stores against the best peer, with load-back and bytes per task."""
    lines = [
        "| workload | store | Baton ms/task | best peer ms/task | Baton ÷ best peer "
        "| Baton ÷ raw floor | load ms (Baton; peers) | bytes/task (Baton; peers) |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for cell in cells:
        best = cell["best_peer"]
        peer = "n/a" if best is None else f"{best} {cell['best_peer_ms']:.2f}"
        ratio = cell["baton_per_best_peer"]

        def others(figures: dict[str, Any], digits: int) -> str:
            baton = figures.get("baton")
            rest = ", ".join(
                f"{name} {'n/a' if value is None else f'{value:.{digits}f}'}"
                for name, value in figures.items() if name != "baton"
            )
            head = "n/a" if baton is None else f"{baton:.{digits}f}"
            return f"{head}; {rest}" if rest else head

        lines.append(
            f"| {cell['workload']} | {cell['store']} | {cell['baton_ms']:.2f} | {peer} | "
            f"{'n/a' if ratio is None else f'{ratio:.2f}'} | {cell['baton_per_floor']:.1f} | "
            f"{others(cell['load_ms'], 2)} | {others(cell['bytes_per_task'], 0)} |"
        )
    return lines


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
        for peer, data in result.get("peers", {}).items():
            scope = data if store == "sqlite" else data.get(store, {})
            if all("per_task_ms" in scope.get(w, {}) for w in workloads):
                series[f"{peer} ({store})"] = [scope[w]["per_task_ms"] for w in workloads]
    fig, ax = plt.subplots(figsize=(12, 5))
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
