"""The charts: the rows the tables under them show, and their SVG, drawn on the server.

Every bar and point carries its numbers as ``data-*`` attributes (the browser test reads
them), and the table under each chart shows the same rows, so what is drawn can be checked
against the log. Failure rate = JobFailed / terminal events (completed, failed, cancelled)
finished in the bucket; a retry scheduled is not a failure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from jobtrail.adapters.web.params import Window, iso
from jobtrail.adapters.web.queries import Durations, FailureCount
from markupsafe import Markup, escape

WIDTH, HEIGHT, PAD = 900, 260, 40
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")


@dataclass
class FailureRow:
    """Finished jobs in one bucket (of one job type, or of every type: ``job_type`` None)."""

    bucket: int
    start: str
    job_type: str | None = None
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    user: int = 0
    system: int = 0

    @property
    def finished(self) -> int:
        return self.completed + self.failed + self.cancelled

    @property
    def rate(self) -> float:
        return self.failed / self.finished if self.finished else 0.0

    def add(self, count: FailureCount) -> None:
        if count.event_type == "JobCompleted":
            self.completed += count.count
        elif count.event_type == "JobCancelled":
            self.cancelled += count.count
        else:
            self.failed += count.count
            if count.category == "user":
                self.user += count.count
            else:
                self.system += count.count


@dataclass
class FailureChart:
    totals: list[FailureRow]
    by_type: dict[str, list[FailureRow]] = field(default_factory=dict)


def failure_chart(window: Window, counts: Iterable[FailureCount]) -> FailureChart:
    """Every bucket of the window (empty ones too), in total and per job type."""
    totals = [FailureRow(b, iso(window.start(b)) or "") for b in range(window.count)]
    by_type: dict[str, list[FailureRow]] = {}
    for count in counts:
        if not 0 <= count.bucket < window.count:
            continue
        totals[count.bucket].add(count)
        if count.job_type not in by_type:
            by_type[count.job_type] = [
                FailureRow(b, row.start, count.job_type) for b, row in enumerate(totals)
            ]
        by_type[count.job_type][count.bucket].add(count)
    return FailureChart(totals, dict(sorted(by_type.items())))


def _svg(body: str, label: str) -> Markup:
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT + PAD}" '
        f'width="100%" role="img" aria-label="{escape(label)}">'
        f'<line x1="{PAD}" y1="{HEIGHT}" x2="{WIDTH}" y2="{HEIGHT}" stroke="#888"/>'
        f"{body}</svg>"
    )


def _x(bucket: int, count: int) -> float:
    return PAD + (WIDTH - PAD) * bucket / max(count, 1)


def _y(value: float, top: float) -> float:
    return HEIGHT - (HEIGHT - 10) * (value / top if top else 0.0)


def _axis(top: float, unit: str) -> str:
    label = f"{top:.0%}" if unit == "%" else f"{top:.3g} s"
    return (
        f'<text x="2" y="14" font-size="11">{label}</text>'
        f'<text x="2" y="{HEIGHT}" font-size="11">0</text>'
    )


def failure_svg(chart: FailureChart) -> Markup:
    """Bars: the failure rate of each bucket, split into user and system failures; lines:
    the failure rate of each job type."""
    count = len(chart.totals)
    slot = (WIDTH - PAD) / max(count, 1)
    parts = [_axis(1.0, "%")]
    for row in chart.totals:
        x = _x(row.bucket, count)
        user_h = (HEIGHT - 10) * (row.user / row.finished if row.finished else 0.0)
        system_h = (HEIGHT - 10) * (row.system / row.finished if row.finished else 0.0)
        parts.append(
            f'<g class="bar" data-bucket="{row.bucket}" data-start="{row.start}" '
            f'data-finished="{row.finished}" data-failed="{row.failed}" '
            f'data-user="{row.user}" data-system="{row.system}" data-rate="{row.rate:.4f}">'
            f"<title>{row.start}: {row.failed}/{row.finished} failed</title>"
            f'<rect x="{x:.1f}" y="{HEIGHT - user_h:.1f}" width="{max(slot - 1, 1):.1f}" '
            f'height="{user_h:.1f}" fill="#ff7f0e" class="user"/>'
            f'<rect x="{x:.1f}" y="{HEIGHT - user_h - system_h:.1f}" '
            f'width="{max(slot - 1, 1):.1f}" height="{system_h:.1f}" fill="#d62728" '
            'class="system"/></g>'
        )
    for index, (job_type, rows) in enumerate(chart.by_type.items()):
        colour = COLOURS[index % len(COLOURS)]
        points = [(_x(r.bucket, count) + slot / 2, _y(r.rate, 1.0), r) for r in rows if r.finished]
        parts.append(_line(job_type, colour, points, lambda r: f"{r.rate:.4f}", "rate"))
    return _svg("".join(parts), "failure rate by bucket")


def _line(
    name: str,
    colour: str,
    points: Sequence[tuple[float, float, Any]],
    value: Callable[[Any], str],
    key: str,
) -> str:
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in points)
    dots = "".join(
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}" '
        f'data-series="{escape(name)}" data-bucket="{r.bucket}" '
        f'data-{key}="{value(r)}"/>'
        for x, y, r in points
    )
    return (
        f'<g class="series" data-series="{escape(name)}">'
        f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.5"/>'
        f"{dots}</g>"
    )


@dataclass
class LatencyRow:
    bucket: int
    start: str
    count: int = 0
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None


def latency_rows(window: Window, durations: Iterable[Durations], kind: str) -> list[LatencyRow]:
    rows = [LatencyRow(b, iso(window.start(b)) or "") for b in range(window.count)]
    for d in durations:
        if d.kind == kind and 0 <= d.bucket < window.count:
            rows[d.bucket] = LatencyRow(
                d.bucket, rows[d.bucket].start, d.count, d.p50, d.p95, d.p99
            )
    return rows


def latency_svg(rows: Sequence[LatencyRow], label: str) -> Markup:
    """One line per percentile over the buckets that have durations."""
    filled = [r for r in rows if r.count]
    top = max((r.p99 or 0.0 for r in filled), default=0.0) or 1.0
    slot = (WIDTH - PAD) / max(len(rows), 1)
    parts = [_axis(top, "s")]
    for index, name in enumerate(("p50", "p95", "p99")):
        points = [
            (_x(r.bucket, len(rows)) + slot / 2, _y(getattr(r, name), top), r) for r in filled
        ]
        parts.append(_line(name, COLOURS[index], points, _seconds_of(name), "seconds"))
    return _svg("".join(parts), label)


def _seconds_of(name: str) -> Callable[[Any], str]:
    """The ``data-seconds`` of a point: the row's percentile ``name``."""
    return lambda row: f"{getattr(row, name):.6f}"
