"""`baton timeline`: the attempt timeline as a picture (PNG or SVG), with matplotlib.

The same bars as the web view's Gantt chart (`baton.web.timeline`): attempts green when
accepted, red when they failed, blue while open; backoffs amber; human waits orange, hatched.
Needs the `timeline` extra.
"""

from __future__ import annotations

from typing import Any, Literal

from baton.web.svg import BAR_COLOURS, ENDING_STYLE, HUMAN_COLOUR, MARK_STYLES
from baton.web.timeline import Timeline

__all__ = ["MAX_ROWS", "draw_timeline"]

MAX_ROWS = 200  # a picture taller than this is no longer readable


def draw_timeline(line: Timeline, *, title: str) -> Any:
    """A matplotlib Figure: one row per task (at most MAX_ROWS), one bar per interval; each
    bar's collection carries a gid `<kind>-<task>-<n>` (an element id in SVG output)."""
    import matplotlib

    matplotlib.use("Agg")  # no display: a file is all we make
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    rows = line.tasks[:MAX_ROWS]
    if len(line.tasks) > MAX_ROWS:
        title += f" (first {MAX_ROWS} of {len(line.tasks)} tasks)"
    row_of = {task: i for i, task in enumerate(rows)}
    figure = Figure(figsize=(10, 1.8 + 0.35 * max(len(rows), 1)), layout="constrained")
    axes = figure.add_subplot()
    counts: dict[tuple[str, str], int] = {}
    for bar in line.bars:
        if bar.task not in row_of:
            continue
        start = line.offset_s(bar.start)
        width = max((bar.end - bar.start).total_seconds(), line.span_s / 500)
        y = row_of[bar.task]
        human = bar.kind == "human"
        thin = 0.0 if bar.kind == "attempt" else 0.15
        collection = axes.broken_barh(
            [(start, width)], (y - 0.35 + thin, 0.7 - 2 * thin),
            facecolors=HUMAN_COLOUR if human else BAR_COLOURS[bar.outcome],
            hatch="//" if human else None, edgecolor="white" if human else None,
        )
        n = counts[(bar.kind, bar.task)] = counts.get((bar.kind, bar.task), 0) + 1
        collection.set_gid(f"{bar.kind}-{bar.task}-{n}")
    marked: dict[str, Line2D] = {}  # one legend entry per kind of mark drawn
    for mark in line.marks:
        colour, dashes = MARK_STYLES.get(mark.kind, ENDING_STYLE)
        style: Literal[":", "-"] = ":" if dashes else "-"  # dotted as in the web view's
        drawn = axes.axvline(line.offset_s(mark.at), color=colour, linestyle=style, linewidth=1.2)
        n = counts[("mark", mark.kind)] = counts.get(("mark", mark.kind), 0) + 1
        drawn.set_gid(f"mark-{mark.kind}-{n}")
        legend_label = "goal ended" if (colour, dashes) == ENDING_STYLE else mark.label
        marked.setdefault(legend_label, Line2D([], [], color=colour, linestyle=style,
                                               label=legend_label))
    # Ids and names are data, not TeX: matplotlib reads `$…$` as mathtext, so a goal id
    # `$\frac{$` stopped the drawing (ValueError) and `cost $5 and $6` lost its dollars.
    axes.set_yticks(range(len(rows)), labels=rows, parse_math=False)
    axes.set_ylim(len(rows) - 0.5, -0.5)
    axes.set_xlim(0, line.span_s * 1.02)
    axes.set_xlabel("seconds since the goal started")
    axes.grid(axis="x", color="#eeeeee")
    axes.set_title(title, parse_math=False)
    axes.set_axisbelow(True)
    figure.legend(
        handles=[Patch(color=BAR_COLOURS["ok"], label="accepted"),
                 Patch(color=BAR_COLOURS["error"], label="failed"),
                 Patch(color=BAR_COLOURS["open"], label="no outcome"),
                 Patch(color=BAR_COLOURS["wait"], label="backoff"),
                 Patch(facecolor=HUMAN_COLOUR, hatch="//", label="waiting for a human"),
                 *marked.values()],
        loc="outside lower center", ncols=5 + len(marked), frameon=False, fontsize="small",
    )
    return figure
