"""What people read fits an 80-column terminal, shows data as JSON, and history as a timeline.

Rendered with a rich console of a fixed width writing to a string, as the CLI's console does
on a terminal of that width.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from typing import Any

import pytest
from jobtrail.adapters.cli import render
from jobtrail.adapters.cli.timeline import print_timeline, timeline
from jobtrail.domain.errors import InsufficientCredits
from jobtrail.domain.job import Job
from jobtrail.projections.job_table import fold
from rich.console import Console, RenderableType

from tests.unit.histories import ALL_HISTORIES, WORKER, at, failed, policy, processing

WIDTH = 80
PYTHON_REPR = re.compile(r"\bNone\b|\bFalse\b|\bTrue\b|'")
"""What a Python repr of data shows and JSON never does (quotes: JSON uses double quotes)."""


def rendered(*renderables: RenderableType | str, width: int = WIDTH) -> list[str]:
    text = io.StringIO()
    out = Console(width=width, file=text, color_system=None, markup=False)
    for renderable in renderables:
        out.print(renderable)
    return [line.rstrip() for line in text.getvalue().splitlines()]


def envelopes(job: Job) -> list[dict[str, Any]]:
    return [event.envelope() for event in job.pending]


def row_of(job: Job) -> dict[str, Any]:
    return fold(job.pending)


def long_failure(job_id: str) -> Job:
    job = processing(job_id)
    message = "insufficient credits: the storyboard needs 120 credits and the account has 3 left"
    job.fail(InsufficientCredits(message), 1, now=at(2), policy=policy(), meta=WORKER)
    return job


def job_rows(count: int = 6) -> list[dict[str, Any]]:
    jobs = [long_failure(f"0b6c1a8e-0000-4000-8000-{n:012d}") for n in range(count)]
    return [row_of(job) for job in jobs]


def assert_fits(lines: Sequence[str], width: int = WIDTH) -> None:
    too_long = [line for line in lines if len(line) > width]
    assert not too_long, too_long


# ------------------------------------------------------------------------ tables


def test_the_job_table_fits_80_columns_and_keeps_the_whole_id() -> None:
    rows = job_rows()
    lines = rendered(render.job_table(rows, WIDTH))
    assert_fits(lines)
    assert lines[0] == f"{len(rows)} job(s)"
    body = lines[3:]
    assert len(body) == len(rows)  # one line per job: nothing wraps
    for row, line in zip(rows, body, strict=True):
        assert line.startswith(row["id"])


def test_a_narrow_table_cuts_long_text_with_an_ellipsis() -> None:
    rows = job_rows()
    lines = rendered(render.job_table(rows, WIDTH, short_ids=True))
    assert_fits(lines)
    assert "error" in lines[1]
    assert all("insufficient credits: the storyboard" in line for line in lines[3:])
    assert all(line.endswith("…") or "… " in line for line in lines[3:])


def test_a_wide_terminal_shows_every_column_whole() -> None:
    rows = job_rows(2)
    lines = rendered(render.job_table(rows, 240), width=240)
    header = lines[1].split()
    assert header == ["id", "type", "status", "try", "error", "took", "created"]
    assert "…" not in "\n".join(lines)
    assert rows[0]["error_message"] in lines[3]


@pytest.mark.parametrize("width", [40, 60, 80, 100, 120])
def test_fit_keeps_the_most_important_columns_within_the_width(width: int) -> None:
    columns = render.JOB_COLUMNS
    natural = [30, 10, 3, 70, 6, 19]
    widths = render.fit(natural, columns, width)
    kept = [w for w in widths if w is not None]
    assert sum(kept) + render.GAP * (len(kept) - 1) <= width
    narrowest = [min(n, c.min_width) for n, c in zip(natural, columns, strict=True)]
    for i, column in enumerate(columns):
        if widths[i] is None:  # left out: it did not fit beside the more important ones kept
            before = [
                narrowest[k]
                for k, other in enumerate(columns)
                if other.priority < column.priority and widths[k] is not None
            ]
            assert sum(before) + render.GAP * len(before) + narrowest[i] > width
    assert widths[columns.index(next(c for c in columns if c.header == "status"))] is not None


def test_fit_shares_the_room_by_what_each_column_lacks() -> None:
    columns = [
        render.Col("a", str, priority=0, min_width=10),
        render.Col("b", str, priority=1, min_width=10),
    ]
    assert render.fit([20, 50], columns, 10 + render.GAP + 10 + 40) == [18, 42]
    assert render.fit([20, 50], columns, 200) == [20, 50]


def test_stats_fit_80_columns() -> None:
    by_type = {"a_rather_long_job_type_name_for_a_table": {"completed": 3, "failed": 1}}
    lines = rendered(render.stats_table(by_type, WIDTH, total=4))
    assert_fits(lines)
    assert lines[1].split()[-5:] == ["queued", "processing", "completed", "failed", "cancelled"]


# ------------------------------------------------------------------------ data as JSON


def test_data_is_json_not_python_reprs() -> None:
    value = {"shot": None, "draft": False, "name": "it's", "tags": ["a"]}
    assert render.cell(value) == '{"shot": null, "draft": false, "name": "it\'s", "tags": ["a"]}'
    assert render.cell(None) == "-"
    assert render.cell(True) == "true"


def test_show_gives_every_field_whole_and_data_as_json() -> None:
    job = failed("0b6c1a8e-0000-4000-8000-000000000001")
    row = row_of(job)
    row["payload"] = {"prompt": "a cat " * 30, "seed": None, "draft": False}
    lines = rendered(render.job_fields(row))
    assert_fits(lines)
    text = " ".join(line.strip() for line in lines)
    assert [line.split()[0] for line in lines if not line.startswith(" ")] == list(row)
    assert '"seed": null, "draft": false' in text
    assert "a cat " * 5 in text  # wrapped, not cut
    assert not PYTHON_REPR.search(text.replace("it's", ""))


# ------------------------------------------------------------------------ timelines


@pytest.mark.parametrize("history", sorted(ALL_HISTORIES))
def test_a_history_is_one_line_per_event_in_version_order(history: str) -> None:
    events = envelopes(ALL_HISTORIES[history]())
    lines = [line.plain for line in timeline(events, WIDTH, with_date=False)]
    assert len(lines) == len(events)
    assert_fits(lines)
    for event, line in zip(events, lines, strict=True):
        version, clock, kind, actor = line.split()[:4]
        assert version == f"v{event['version']}"
        assert event["occurred_at"][11:23] == clock
        assert kind == event["type"]
        assert actor == event["metadata"]["actor"]


def test_the_timeline_shows_the_fields_that_matter_as_json() -> None:
    events = envelopes(ALL_HISTORIES["retried_then_completed"]())
    lines = [line.plain for line in timeline(events, 200, with_date=True)]
    queued, started, progressed, retry, _, completed = lines
    assert 'video {"shot": 7, "prompt": "a cat"}, max 3 attempts, priority 5' in queued
    assert "attempt 1 on w1, lease 30 s" in started
    assert "attempt 1: 10%" in progressed
    assert "attempt 1: retry in" in retry and "(upstream_timeout, system)" in retry
    assert completed.endswith(": [1, 2, 3]")
    assert all(not PYTHON_REPR.search(line) for line in lines)


def test_a_failure_shows_its_message_then_its_code() -> None:
    lines = rendered(*timeline(envelopes(long_failure("j")), WIDTH, with_date=False))
    assert len(lines) == 3
    assert_fits(lines)
    assert lines[-1].split()[2] == "JobFailed"
    assert "attempt 1: insufficient credits: the" in lines[-1]
    assert lines[-1].endswith("…")


def test_print_timeline_names_the_day_once_and_fits() -> None:
    job = ALL_HISTORIES["cancelled"]()
    text = io.StringIO()
    print_timeline(Console(width=WIDTH, file=text, color_system=None), job.id, envelopes(job))
    lines = text.getvalue().splitlines()
    assert lines[0] == f"history of job {job.id} (UTC, 2024-05-01)"
    assert len(lines) == 1 + len(job.pending)
    assert_fits(lines)
    assert lines[-1].split()[2:] == ["JobCancelled", "user:42", "by", "user:42:", "user", "asked"]


def test_json_output_keeps_its_format(capsys: pytest.CaptureFixture[str]) -> None:
    render.print_json({"id": "j", "payload": {"a": None}, "created_at": at(0), "n": [1]})
    assert capsys.readouterr().out == (
        '{\n  "id": "j",\n  "payload": {\n    "a": null\n  },\n'
        '  "created_at": "2024-05-01T12:00:00.000000+00:00",\n  "n": [\n    1\n  ]\n}\n'
    )


def test_a_terminal_narrower_than_the_first_column_still_shows_it_cut() -> None:
    rows = job_rows(2)
    lines = rendered(render.job_table(rows, 20), width=20)
    assert_fits(lines, 20)
    assert lines[3] == rows[0]["id"][:19] + "…"


def test_queue_and_key_columns_show_only_when_some_job_uses_them() -> None:
    plain = job_rows(2)
    routed = [{**plain[0], "queue": "media", "concurrency_key": "customer-7"}, plain[1]]
    assert "queue" not in rendered(render.job_table(plain, 240), width=240)[1].split()
    header, first = (rendered(render.job_table(routed, 240), width=240)[i] for i in (1, 3))
    assert header.split()[-2:] == ["queue", "key"]
    assert first.split()[-2:] == ["media", "customer-7"]
