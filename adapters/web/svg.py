"""The web view's drawings, as inline SVG built here (nothing fetched at run time): the task
graph coloured by status, and the attempt timeline as a Gantt chart."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from html import escape
from urllib.parse import quote

from baton.web.timeline import Timeline

__all__ = ["STATUS_COLOURS", "graph_svg", "layers", "timeline_svg"]

STATUS_COLOURS = {
    "pending": "#d0d4da", "ready": "#9ecbff", "running": "#4f8ff7", "retry_wait": "#f5c26b",
    "succeeded": "#5cb85c", "failed": "#d9534f", "escalated": "#f0883e",
    "abandoned": "#9a6fb0", "skipped": "#b8b8b8", "cancelled": "#777777",
}
BAR_COLOURS = {"ok": "#5cb85c", "error": "#d9534f", "open": "#4f8ff7", "wait": "#f5c26b"}
HUMAN_COLOUR = "#f0883e"
# Goal-wide moments (baton.web.timeline.MARKS and the goal's end): colour, dash pattern
MARK_STYLES = {"RunResumed": ("#4f8ff7", "2 2"), "StopRequested": ("#d9534f", "2 2")}
ENDING_STYLE = ("#333333", "")


def layers(order: Sequence[str], deps: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Each task's column: one more than the deepest task it depends on."""
    depth: dict[str, int] = {}
    for task in order:  # plan order lists every dependency first (the plan check ensures it)
        depth[task] = 1 + max((depth.get(dep, 0) for dep in deps.get(task, ())), default=-1)
    return depth


def graph_svg(
    order: Sequence[str],
    deps: Mapping[str, Sequence[str]],
    statuses: Mapping[str, str],
    *,
    selected: str | None = None,
    link: str = "?task=",
) -> str:
    """Left to right by dependency depth; each node links to its task's details."""
    width, height, gap_x, gap_y = 150, 34, 50, 14
    column = layers(order, deps)
    rows: dict[int, int] = {}
    place: dict[str, tuple[int, int]] = {}
    for task in order:
        col = column[task]
        row = rows.get(col, 0)
        rows[col] = row + 1
        place[task] = (10 + col * (width + gap_x), 10 + row * (height + gap_y))
    total_w = 20 + (max(column.values(), default=0) + 1) * (width + gap_x)
    total_h = 20 + max(rows.values(), default=1) * (height + gap_y)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" width="{total_w}" '
        f'height="{total_h}" viewBox="0 0 {total_w} {total_h}" role="img" '
        f'aria-label="task graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#666"/></marker>'
        "</defs>",
    ]
    for task in order:
        x2, y2 = place[task]
        for dep in deps.get(task, ()):
            if dep not in place:
                continue
            x1, y1 = place[dep]
            parts.append(
                f'<line x1="{x1 + width}" y1="{y1 + height / 2}" x2="{x2}" y2="{y2 + height / 2}"'
                ' stroke="#666" stroke-width="1.2" marker-end="url(#arrow)"/>'
            )
    for task in order:
        x, y = place[task]
        status = statuses.get(task, "pending")
        colour = STATUS_COLOURS.get(status, "#cccccc")
        stroke = ' stroke="#111" stroke-width="3"' if task == selected else ' stroke="#333"'
        name = escape(task if len(task) <= 18 else task[:17] + "…")
        parts.append(
            f'<a href="{escape(link)}{quote(task)}#task" class="node" data-task="{escape(task)}"'
            f' data-status="{status}"><title>{escape(task)}: {status}</title>'
            f'<rect x="{x}" y="{y}" rx="6" width="{width}" height="{height}" fill="{colour}"'
            f"{stroke}/>"
            f'<text x="{x + width / 2}" y="{y + 15}" text-anchor="middle" font-size="12" '
            f'font-weight="bold">{name}</text>'
            f'<text x="{x + width / 2}" y="{y + 28}" text-anchor="middle" font-size="10">'
            f"{status}</text></a>"
        )
    parts.append("</svg>")
    return "".join(parts)


def timeline_svg(
    line: Timeline, tasks: Sequence[str], *, marker: datetime | None = None, width: int = 900
) -> str:
    """One row per task in `tasks`; bars for attempts (green ok, red failed, blue open),
    backoffs (amber) and human waits (orange, hatched); thin lines across every row where a
    process resumed the goal (blue, dotted), was asked to stop (red, dotted) and where the goal
    ended (black); a dashed line at `marker`."""
    label_w, row_h, top = 130, 22, 24
    plot_w = width - label_w - 10
    scale = plot_w / line.span_s
    height = top + row_h * max(len(tasks), 1) + 10
    row_of = {task: i for i, task in enumerate(tasks)}

    def x_of(at: datetime) -> float:
        return label_w + max(0.0, line.offset_s(at)) * scale

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="attempt timeline">',
        '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
        f'patternTransform="rotate(45)"><rect width="6" height="6" fill="{HUMAN_COLOUR}"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#fff" stroke-width="2"/></pattern></defs>',
    ]
    for i in range(5):  # a time axis: five ticks
        seconds = line.span_s * i / 4
        x = label_w + seconds * scale
        parts.append(f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{height - 8}" '
                     'stroke="#eee"/>')
        anchor = "end" if i == 4 else "middle"  # the last label inside the picture
        parts.append(f'<text x="{x:.1f}" y="{top - 10}" font-size="10" text-anchor="{anchor}">'
                     f"+{seconds:.3g}s</text>")
    for task, i in row_of.items():
        y = top + i * row_h
        parts.append(f'<text x="{label_w - 6}" y="{y + 15}" font-size="11" text-anchor="end">'
                     f"{escape(task[:20])}</text>")
    for bar in line.bars:
        if bar.task not in row_of:
            continue
        y = top + row_of[bar.task] * row_h + 3
        x1, x2 = x_of(bar.start), x_of(bar.end)
        w = max(x2 - x1, 2.0)
        fill = "url(#hatch)" if bar.kind == "human" else BAR_COLOURS[bar.outcome]
        height_bar = row_h - 6 if bar.kind == "attempt" else row_h - 12
        y_bar = y if bar.kind == "attempt" else y + 3
        seconds = (bar.end - bar.start).total_seconds()
        tip = f"{bar.label} ({bar.kind}, {seconds:.3g}s){': ' + bar.detail if bar.detail else ''}"
        parts.append(
            f'<rect class="bar bar-{bar.kind} bar-{bar.outcome}" x="{x1:.1f}" y="{y_bar}" '
            f'width="{w:.1f}" height="{height_bar}" fill="{fill}" rx="2">'
            f"<title>{escape(tip)}</title></rect>"
        )
    for mark in line.marks:
        x = x_of(mark.at)
        colour, dashes = MARK_STYLES.get(mark.kind, ENDING_STYLE)
        dash = f' stroke-dasharray="{dashes}"' if dashes else ""
        stamp = mark.at.isoformat(timespec="milliseconds")
        parts.append(f'<line class="mark mark-{mark.kind}" x1="{x:.1f}" y1="{top - 6}" '
                     f'x2="{x:.1f}" y2="{height - 8}" stroke="{colour}" stroke-width="1.5"{dash}>'
                     f"<title>{escape(mark.label)} at +{line.offset_s(mark.at):.3g}s "
                     f"({stamp})</title></line>")
    if marker is not None:
        x = x_of(marker)
        parts.append(f'<line class="marker" x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" '
                     f'y2="{height - 8}" stroke="#c00" stroke-dasharray="4 2"/>')
    parts.append("</svg>")
    return "".join(parts)
