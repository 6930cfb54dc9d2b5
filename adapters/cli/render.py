"""Output for people: tables that fit the terminal, data as JSON; and ``--json`` for scripts.

A table of rows (`jobs`, `stats`, the demo's) never wraps a cell: on a narrow terminal the
least important columns are left out and long text is cut with ``…``. `show` wraps a long
value instead of cutting it, and ``--json`` gives everything.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from jobtrail.domain.canonical import utc_iso
from jobtrail.domain.status import JobStatus
from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

PIPE_WIDTH = 160
"""Width when stdout is not a terminal and COLUMNS is unset (rich would assume 80)."""
GAP = 3
"""Columns between two cells of a table (padding and the rule's blank separator)."""
STATUS_STYLES: dict[str, str] = {
    JobStatus.QUEUED: "",
    JobStatus.PROCESSING: "cyan",
    JobStatus.COMPLETED: "green",
    JobStatus.FAILED: "red",
    JobStatus.CANCELLED: "yellow",
}

Row = Mapping[str, Any]


def console() -> Console:
    """The console of stdout: the terminal's width, or COLUMNS, or `PIPE_WIDTH` in a pipe."""
    piped = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    # no markup: error messages and payloads print as they are, brackets and all
    return Console(width=PIPE_WIDTH if piped else None, highlight=False, markup=False)


# ------------------------------------------------------------------------ values


def as_json(value: Any) -> str:
    """Data as people read it: JSON (``null``, ``false``, double quotes), on one line."""
    return json.dumps(value, ensure_ascii=False, default=json_default)


def cell(value: Any) -> str:
    """One value on one line: ``-`` for nothing, JSON for data, a UTC time to the second."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dict | list | bool):
        return as_json(value)
    return " ".join(str(value).split())


def whole(value: Any) -> str:
    """One value in full (`show`): the exact time, the text as it is, data as JSON."""
    if isinstance(value, datetime):
        return utc_iso(value)
    return value if isinstance(value, str) else cell(value)


def status_text(status: str, progress: Any = None) -> Text:
    style = STATUS_STYLES.get(status, "")
    label = f"{status} {progress}%" if status == JobStatus.PROCESSING and progress else status
    return Text(label, style=style)


def print_json(value: Any) -> None:
    """``--json``: what scripts parse; keep it byte for byte."""
    print(json.dumps(value, default=json_default, indent=2, sort_keys=False))


def json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return utc_iso(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


# ------------------------------------------------------------------------ fitted tables


@dataclass(frozen=True)
class Col:
    """A column of a table that fits: what it shows, and how much it matters."""

    header: str
    value: Callable[[Row], str | Text]
    priority: int
    """Lower is kept longer: a narrow terminal leaves out the highest first."""
    min_width: int
    """Narrower than this the column is left out rather than cut."""
    max_width: int | None = None
    justify: Literal["left", "right"] = "left"


def fit(natural: Sequence[int], columns: Sequence[Col], width: int) -> list[int | None]:
    """Each column's width (None: left out) so that the table is at most ``width`` wide.

    Columns are taken by priority while their narrowest fits; the room left is shared in
    proportion to what each still lacks of its natural width (its widest cell, within
    ``max_width``), so a long error message gets more of it than a job type.
    """
    order = sorted(range(len(columns)), key=lambda i: columns[i].priority)
    widths: list[int | None] = [None] * len(columns)
    used = -GAP
    for i in order:
        narrowest = min(natural[i], columns[i].min_width)
        if used + GAP + narrowest <= width:
            widths[i] = narrowest
            used += GAP + narrowest
    if used < 0 and order:  # not even the first fits: it gets the whole width, cut
        widths[order[0]] = used = min(natural[order[0]], width)
    lacks = {i: natural[i] - w for i, w in enumerate(widths) if w is not None}
    spare, total = width - used, sum(lacks.values())
    share = {i: min(lack, spare * lack // total) if total else 0 for i, lack in lacks.items()}
    rest = spare - sum(share.values())  # what rounding down left over, given by priority
    for i in order:
        current = widths[i]
        if current is not None:
            extra = min(rest, lacks[i] - share[i])
            widths[i], rest = current + share[i] + extra, rest - extra
    return widths


def fitted_table(
    columns: Sequence[Col], rows: Iterable[Row], width: int, title: str | None = None
) -> Table:
    """A table of ``rows`` at most ``width`` wide: no cell wraps, long text ends in ``…``."""
    cells = [[_text(c.value(row)) for c in columns] for row in rows]
    natural = [
        min(
            max([cell_len(c.header), *(line[i].cell_len for line in cells)]),
            c.max_width or width,
        )
        for i, c in enumerate(columns)
    ]
    widths = fit(natural, columns, width)
    kept = [i for i, w in enumerate(widths) if w is not None]
    table = Table(
        *(
            Column(
                columns[i].header,
                width=widths[i],
                no_wrap=True,
                overflow="ellipsis",
                justify=columns[i].justify,
            )
            for i in kept
        ),
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1),
        title=title,
        title_justify="left",
    )
    for line in cells:
        table.add_row(*(line[i] for i in kept))
    return table


def _text(value: str | Text) -> Text:
    return value if isinstance(value, Text) else Text(value)


# ------------------------------------------------------------------------ jobs


def _duration(row: Row) -> str:
    finished, created = row.get("completed_at"), row.get("created_at")
    if not finished or not created:
        return "-"
    return f"{(finished - created).total_seconds():.2f} s"


JOB_COLUMNS = (
    Col("type", lambda r: cell(r["job_type"]), priority=2, min_width=14, max_width=28),
    Col("status", lambda r: status_text(r["status"], r.get("progress")), priority=1, min_width=9),
    Col("try", lambda r: f"{r['attempt']}/{r['max_attempts']}", priority=4, min_width=3),
    Col("error", lambda r: cell(r.get("error_message")), priority=3, min_width=24),
    Col("took", _duration, priority=5, min_width=6, justify="right"),
    Col("created", lambda r: cell(r.get("created_at")), priority=6, min_width=19),
)
"""The job table of `jobs` and the demo, after the id: at 80 columns type, status and error."""
ROUTING_COLUMNS = (
    Col("queue", lambda r: cell(r.get("queue")), priority=7, min_width=7, max_width=20),
    Col("key", lambda r: cell(r.get("concurrency_key")), priority=8, min_width=5, max_width=20),
)
"""Shown when some row is in a queue other than ``default`` or has a concurrency key."""
FULL_ID = Col("id", lambda r: r["id"], priority=0, min_width=36)
SHORT_ID = Col("id", lambda r: r["id"][:8], priority=0, min_width=8)


def job_table(
    rows: Sequence[Row], width: int, title: str | None = None, *, short_ids: bool = False
) -> Table:
    """Full ids by default, to be copied into `show`; the demo's showcase takes eight characters."""
    columns: tuple[Col, ...] = (SHORT_ID if short_ids else FULL_ID, *JOB_COLUMNS)
    if any(r.get("queue", "default") != "default" or r.get("concurrency_key") for r in rows):
        columns += ROUTING_COLUMNS
    return fitted_table(columns, rows, width, title or f"{len(rows)} job(s)")


def job_fields(row: Row) -> Table:
    """`show`: every column of the job's row, each value whole (long ones wrap)."""
    table = Table(
        Column("column", style="bold", no_wrap=True),
        Column("value", overflow="fold"),
        box=None,
        show_header=False,
        pad_edge=False,
        padding=(0, 1),
    )
    for name, value in row.items():
        shown = status_text(value) if name == "status" else Text(whole(value))
        table.add_row(name, shown)
    return table


def lineage(row: Row, original: Row | None, retries: Sequence[Row]) -> list[Text]:
    """`show`'s lines about retries: the job this one retries, then the jobs that retry it
    (id and status each, the oldest first)."""
    lines = []
    if row.get("retry_of"):
        status = None if original is None else original["status"]
        lines.append(_pointer("retry of", row["retry_of"], status))
    lines.extend(_pointer("retried as", r["id"], r["status"]) for r in retries)
    return lines


def _pointer(label: str, job_id: str, status: str | None) -> Text:
    line = Text(f"{label} {job_id} (")
    line.append_text(status_text(status) if status else Text("not in the job table"))
    line.append(")")
    return line


def stats_table(by_type: Mapping[str, Mapping[str, int]], width: int, total: int) -> Table:
    """Jobs by type and status."""
    columns = [Col("job type", lambda r: r["job_type"], priority=0, min_width=12)]
    columns += [
        Col(status, _count_of(status), priority=1, min_width=len(status), justify="right")
        for status in JobStatus
    ]
    rows = [{"job_type": t, "counts": counts} for t, counts in by_type.items()]
    return fitted_table(columns, rows, width, f"{total} job(s)")


def _count_of(status: str) -> Callable[[Row], str]:
    return lambda row: str(row["counts"].get(status, 0))
