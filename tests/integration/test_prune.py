"""`jobtrail prune` and what `show`/`history` say of a job whose row is gone, on both backends.

A population of jobs finished before the cut, exactly at it and after it, plus queued and
running ones, is made with a set clock; `prune` must take exactly the first group, write no
event, record itself in the control log, and `rebuild` must bring every row back as it was.

About 500 lines, over the ~300 a module aims at: the prune, its CLI and the answers of `show`
for pruned and archived jobs share one population of jobs and its helpers.
"""

from __future__ import annotations

import json
import shlex
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from jobtrail.adapters.audit.archive_removal import NEXT_ARCHIVE_ID
from jobtrail.adapters.audit.seal import append_seal
from jobtrail.adapters.bootstrap import Jobtrail, connect
from jobtrail.adapters.cli.main import main
from jobtrail.adapters.sql.control import ControlChange, read_control_log
from jobtrail.adapters.sql.engine import WRITE, is_postgres
from jobtrail.adapters.sql.retention import prune_job_rows, pruned_before
from jobtrail.adapters.sql.schema import job, job_events, job_log_archive_jobs, job_log_archives
from jobtrail.domain.errors import InsufficientCredits, UpstreamTimeout
from psycopg import sql
from sqlalchemy import Delete, delete, event, insert, select, text

from tests.conftest import REQUIRED, _admin, _url_for, database_url, unavailable
from tests.helpers import SetClock, jobtrail_process, table_fingerprint

OLD = datetime(2026, 1, 10, 8, 30, tzinfo=UTC)
CUT = datetime(2026, 2, 1, 0, 0, tzinfo=UTC)
NEW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CUT_TEXT = "2026-02-01T00:00:00Z"


@dataclass(frozen=True)
class Population:
    before: list[str]
    """Completed, failed and cancelled before the cut: what a prune takes."""
    at_cut: list[str]
    """Finished exactly at the cut: kept (the cut is exclusive)."""
    after: list[str]
    unfinished: list[str]
    """Queued, running, and queued again for a retry after a failure: never pruned."""


def finished_at(url: str, moment: datetime) -> list[str]:
    """A completed, a failed and a cancelled job, each finished at ``moment``."""
    trail = connect(url, clock=SetClock(moment))
    try:
        completed = trail.submit(
            "render", {"shot": 1}, idempotency_key=f"shot-{moment:%Y%m%d}", priority=3
        )
        trail.service.start(completed, "worker-1", 60)
        trail.service.complete(completed, 1, {"frames": 24})
        failed = trail.submit("render", {"shot": 2})
        trail.service.fail(failed, InsufficientCredits(), attempt=None)
        cancelled = trail.submit("render", {"shot": 3}, queue="slow")
        trail.cancel(cancelled, reason="not needed")
        return [completed, failed, cancelled]
    finally:
        trail.close()


def unfinished_at(url: str, moment: datetime) -> list[str]:
    trail = connect(url, clock=SetClock(moment))
    try:
        queued = trail.submit("render", {"shot": 4})
        running = trail.submit("render", {"shot": 5})
        trail.service.start(running, "worker-1", 60)
        again = trail.submit("render", {"shot": 6})
        trail.service.start(again, "worker-1", 60)
        trail.service.fail(again, UpstreamTimeout(), attempt=1)  # a retry is scheduled
        return [queued, running, again]
    finally:
        trail.close()


@pytest.fixture
def jobs(backend_url: str) -> Population:
    before = finished_at(backend_url, OLD)
    unfinished = unfinished_at(backend_url, OLD)
    return Population(
        before, finished_at(backend_url, CUT), finished_at(backend_url, NEW), unfinished
    )


def run(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> tuple[int, str, str]:
    code = main(["--db", url, *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


jobtrail = jobtrail_process


def the_log(trail: Jobtrail) -> list[tuple[Any, ...]]:
    """Every event, every column, as stored."""
    with trail.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(job_events).order_by(job_events.c.position))]


def ids_in_table(trail: Jobtrail) -> set[str]:
    return {row["id"] for row in trail.queries.all_rows()}


def prunes(trail: Jobtrail) -> list[ControlChange]:
    with trail.engine.connect() as conn:
        return [c for c in read_control_log(conn) if c.action == "job_rows_pruned"]


def one_error_line(err: str) -> bool:
    return err.count("\n") == 1 and err.startswith("jobtrail: error: ")


# ------------------------------------------------------------------ the prune


def test_prune_removes_exactly_the_rows_finished_before_the_cut(
    capsys: pytest.CaptureFixture[str], backend_url: str, jobs: Population, trail: Jobtrail
) -> None:
    rows = {row["id"]: row for row in trail.queries.all_rows()}
    log = the_log(trail)

    code, out, err = run(
        capsys, backend_url, "prune", "--finished-before", CUT_TEXT, "--actor", "ops",
        "--reason", "keep 30 days",
    )  # fmt: skip

    assert (code, err) == (0, "")
    cut = CUT.isoformat(timespec="microseconds")
    assert out == f"pruned 3 job row(s) finished before {cut} (the log keeps their events)\n"
    kept = jobs.at_cut + jobs.after + jobs.unfinished
    assert ids_in_table(trail) == set(kept)
    assert trail.queries.all_rows() == [rows[job_id] for job_id in sorted(kept)]  # untouched
    assert the_log(trail) == log  # not one event written or removed
    (change,) = prunes(trail)
    assert (change.subject, change.actor, change.reason) == ("job", "ops", "keep 30 days")
    assert change.data == {"finished_before": "2026-02-01T00:00:00.000000+00:00", "rows": 3}
    with trail.engine.connect() as conn:
        assert pruned_before(conn) == CUT

    code, out, _ = run(capsys, backend_url, "prune", "--finished-before", CUT_TEXT)
    assert code == 0 and out.startswith("pruned 0 job row(s)")  # idempotent
    assert ids_in_table(trail) == set(kept) and the_log(trail) == log
    assert [c.data["rows"] for c in prunes(trail)] == [3, 0]


def test_a_dry_run_counts_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], backend_url: str, jobs: Population, trail: Jobtrail
) -> None:
    before = table_fingerprint(trail)
    with trail.engine.connect() as conn:
        control = read_control_log(conn)

    code, out, err = run(capsys, backend_url, "prune", "--finished-before", CUT_TEXT, "--dry-run")

    assert (code, err) == (0, "")
    assert out.startswith("would prune 3 job row(s) finished before 2026-02-01T00:00:00")
    assert out.endswith("(dry run: nothing written)\n") and out.count("\n") == 1
    assert table_fingerprint(trail) == before
    with trail.engine.connect() as conn:
        assert read_control_log(conn) == control
        assert pruned_before(conn) is None


def test_a_prune_goes_in_batches_of_one_transaction_each(
    backend_url: str, jobs: Population, trail: Jobtrail
) -> None:
    later = finished_at(backend_url, OLD + timedelta(days=1))  # 6 rows before the cut
    commits: list[int] = []
    deleted: list[int] = []
    event.listen(trail.engine, "commit", lambda _conn: commits.append(1))

    @event.listens_for(trail.engine, "after_execute")
    def _count(_conn: Any, statement: Any, _p: Any, _m: Any, _o: Any, result: Any) -> None:
        if isinstance(statement, Delete):
            deleted.append(result.rowcount)

    count = prune_job_rows(trail.engine, CUT, clock=SetClock(NEW), batch=4)

    assert count == 6
    assert (deleted, len(commits)) == ([4, 2], 2)  # 4 rows, then the last 2 and the record
    assert not ids_in_table(trail) & set(jobs.before + later)
    assert set(jobs.at_cut + jobs.after + jobs.unfinished) <= ids_in_table(trail)
    assert [c.data["rows"] for c in prunes(trail)] == [6]

    deleted.clear()
    commits.clear()
    finished_at(backend_url, OLD)
    assert prune_job_rows(trail.engine, CUT, clock=SetClock(NEW), batch=3) == 3
    assert (deleted, len(commits)) == ([3, 0], 2)  # a full batch, then one recording the prune
    assert [c.data["rows"] for c in prunes(trail)] == [6, 3]


def test_an_age_prunes_jobs_finished_longer_ago(
    capsys: pytest.CaptureFixture[str], backend_url: str, trail: Jobtrail
) -> None:
    now = datetime.now(UTC)
    long_ago = finished_at(backend_url, now - timedelta(days=40))
    recent = finished_at(backend_url, now - timedelta(days=20))

    code, out, _ = run(capsys, backend_url, "prune", "--finished-before", "30d")

    assert code == 0 and out.startswith("pruned 3 job row(s)")
    assert ids_in_table(trail) == set(recent)
    with trail.engine.connect() as conn:
        cut = pruned_before(conn)
    assert cut is not None and abs(cut - (now - timedelta(days=30))) < timedelta(minutes=5)
    assert not ids_in_table(trail) & set(long_ago)


def test_rebuild_restores_the_pruned_rows_as_they_were_and_replay_is_clean(
    capsys: pytest.CaptureFixture[str], backend_url: str, jobs: Population, trail: Jobtrail
) -> None:
    fingerprint, rows = table_fingerprint(trail), trail.queries.all_rows()
    run(capsys, backend_url, "prune", "--finished-before", CUT_TEXT)
    assert not ids_in_table(trail) & set(jobs.before)

    code, out, _ = run(capsys, backend_url, "rebuild")

    assert code == 0 and f"{len(rows)} job(s)" in out
    assert trail.queries.all_rows() == rows  # whole rows
    assert table_fingerprint(trail) == fingerprint  # byte for byte, leases included
    done = jobtrail(backend_url, "replay")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "clean: no problems found" in done.stdout


def test_replay_after_a_prune_counts_the_pruned_rows_and_still_finds_a_lost_one(
    capsys: pytest.CaptureFixture[str], backend_url: str, jobs: Population, trail: Jobtrail
) -> None:
    run(capsys, backend_url, "prune", "--finished-before", CUT_TEXT)
    code, out, _ = run(capsys, backend_url, "replay")
    assert code == 0, out
    said = " ".join(out.split())
    assert f"{len(jobs.before)} rows of jobs finished before 2026-02-01" in said
    assert "clean: no problems found" in said
    lost = jobs.after[0]  # finished after the cut: no prune explains its missing row
    with trail.engine.connect() as conn, conn.begin():
        conn.execute(delete(job).where(job.c.id == lost))
    code, out, _ = run(capsys, backend_url, "replay", "--json")
    report = json.loads(out)
    assert code == 1 and report["problems_by_kind"] == {"row_missing": 1}
    assert report["problems"][0]["job_id"] == lost and report["rows_pruned"] == len(jobs.before)


def test_a_pruned_jobs_idempotency_key_is_forgotten(
    capsys: pytest.CaptureFixture[str], backend_url: str, jobs: Population, trail: Jobtrail
) -> None:
    key = f"shot-{OLD:%Y%m%d}"
    assert trail.submit("render", {"shot": 1}, idempotency_key=key) == jobs.before[0]
    run(capsys, backend_url, "prune", "--finished-before", CUT_TEXT)

    again = trail.submit("render", {"shot": 1}, idempotency_key=key)

    assert again != jobs.before[0]  # a new job: the key lived in the pruned row
    assert trail.get(again)["status"] == "queued"


# ------------------------------------------------------------------ show and history


def test_show_and_history_of_a_pruned_job_come_from_the_log(
    capsys: pytest.CaptureFixture[str], backend_url: str, jobs: Population
) -> None:
    completed = jobs.before[0]
    shown = json.loads(run(capsys, backend_url, "show", completed, "--json")[1])
    history = run(capsys, backend_url, "history", completed, "--json")[1]
    run(capsys, backend_url, "prune", "--finished-before", CUT_TEXT)

    code, out, err = run(capsys, backend_url, "show", completed, "--json")
    assert (code, err) == (0, "")
    assert json.loads(out) == {**shown, "job_table": "pruned", "log_events": 3}

    code, out, err = run(capsys, backend_url, "show", completed)
    assert (code, err) == (0, "")
    text = " ".join(out.split())
    assert (
        f"job {completed} row pruned from the job table; the log still holds its 3 events" in text
    )
    assert "`jobtrail rebuild` restores it" in text
    assert "status completed" in text and "JobCompleted" in text  # the row, then the timeline

    assert run(capsys, backend_url, "history", completed, "--json") == (0, history, "")
    code, out, _ = run(capsys, backend_url, "history", completed)
    assert code == 0 and "JobCompleted" in out


def test_show_of_a_row_missing_without_a_prune_does_not_say_pruned(
    capsys: pytest.CaptureFixture[str], backend_url: str, jobs: Population, trail: Jobtrail
) -> None:
    run(capsys, backend_url, "prune", "--finished-before", CUT_TEXT)
    lost = jobs.after[1]  # finished after the cut: no prune took it
    with trail.engine.connect() as conn, conn.begin():
        conn.execute(delete(job).where(job.c.id == lost))

    code, out, _ = run(capsys, backend_url, "show", lost, "--json")
    assert code == 0
    shown = json.loads(out)
    assert (shown["status"], shown["job_table"], shown["log_events"]) == ("failed", "missing", 2)
    code, out, _ = run(capsys, backend_url, "show", lost)
    assert "row not in the job table (no recorded prune explains it)" in " ".join(out.split())


def archive_directly(trail: Jobtrail, job_id: str, file_name: str) -> dict[str, Any]:
    """What `jobtrail archive` leaves for one job: its record and listing, its events
    removed through the log's one DELETE path, its row gone. The record as stored."""
    seal = append_seal(trail.engine, "test")
    with trail.engine.connect().execution_options(**WRITE) as conn, conn.begin():
        values = dict(
            seal_id=seal.seal_id, seal_position=seal.position, finished_before=CUT,
            file_name=file_name, file_digest="0" * 64, file_bytes=1, event_count=3,
            job_count=1, first_position=1, last_position=seal.position,
            events_digest="0" * 64, kept_count=0, kept_digest="0" * 64, actor="test",
        )  # fmt: skip
        if is_postgres(conn):  # as `archive_removal`: removed first, recorded last
            archive_id = conn.execute(NEXT_ARCHIVE_ID).scalar_one()
            conn.execute(insert(job_log_archive_jobs), {"job_id": job_id, "archive_id": archive_id})
            conn.execute(
                text("SELECT count(*) FROM jobtrail_archive_events(:a, :s)"),
                {"a": archive_id, "s": seal.seal_id},
            )
            conn.execute(insert(job_log_archives), {**values, "archive_id": archive_id})
        else:
            added = conn.execute(
                insert(job_log_archives).returning(job_log_archives.c.archive_id), values
            )
            archive_id = added.scalar_one()
            conn.execute(insert(job_log_archive_jobs), {"job_id": job_id, "archive_id": archive_id})
            conn.execute(delete(job_events).where(job_events.c.job_id == job_id))
        conn.execute(delete(job).where(job.c.id == job_id))
        query = select(job_log_archives).where(job_log_archives.c.archive_id == archive_id)
        return dict(conn.execute(query).mappings().one())


def test_show_and_history_of_an_archived_job_name_the_archive(
    capsys: pytest.CaptureFixture[str], backend_url: str, jobs: Population, trail: Jobtrail
) -> None:
    archived = jobs.before[0]
    record = archive_directly(trail, archived, "jobs 2026-01.jsonl")
    assert trail.store.load(archived) == [] and trail.queries.get(archived) is None
    command = f"jobtrail replay --source 'file:jobs 2026-01.jsonl' --job {archived}"
    when = record["archived_at"].isoformat(timespec="seconds")

    for name in ("show", "history"):
        code, out, err = run(capsys, backend_url, name, archived)
        assert (code, out) == (1, "") and one_error_line(err)
        assert err == (
            f"jobtrail: error: Job {archived} is archived: archive {record['archive_id']} holds "
            f"its history, in file jobs 2026-01.jsonl (archived {when}); read it with "
            f"`{command}`.\n"
        )
        code, out, err = run(capsys, backend_url, name, archived, "--json")
        assert (code, err) == (1, "")
        assert json.loads(out) == {
            "id": archived,
            "archived": True,
            "archive_id": record["archive_id"],
            "file_name": "jobs 2026-01.jsonl",
            "archived_at": record["archived_at"].isoformat(timespec="microseconds"),
            "read_with": command,
        }


@pytest.mark.parametrize("name", ["show", "history"])
@pytest.mark.parametrize("as_json", [False, True])
def test_show_and_history_of_an_unknown_job_say_not_found(
    capsys: pytest.CaptureFixture[str], backend_url: str, jobs: Population, name: str, as_json: bool
) -> None:
    run(capsys, backend_url, "prune", "--finished-before", CUT_TEXT)
    unknown = "00000000-0000-4000-8000-000000000000"

    code, out, err = run(capsys, backend_url, name, unknown, *(["--json"] if as_json else []))

    assert (code, out) == (1, "")
    assert err == f"jobtrail: error: No job with id {unknown}.\n"


def test_a_job_archived_by_jobtrail_archive_is_named_with_how_to_read_it(
    backend_url: str, jobs: Population, tmp_path: Path
) -> None:
    """The whole way as users meet it: processes, the real `archive`, the printed command."""
    done = jobtrail(
        backend_url, "archive", "--before", CUT_TEXT, "--out", str(tmp_path / "a.jsonl")
    )
    assert done.returncode == 0, done.stderr
    archived = jobs.before[0]

    shown = jobtrail(backend_url, "show", archived)
    assert (shown.returncode, shown.stdout) == (1, "") and one_error_line(shown.stderr)
    assert (
        f"Job {archived} is archived: archive 1 holds its history, in file a.jsonl" in shown.stderr
    )

    shown = jobtrail(backend_url, "show", archived, "--json")
    assert shown.returncode == 1
    answer = json.loads(shown.stdout)
    assert (answer["archive_id"], answer["file_name"]) == (1, "a.jsonl")
    command = shlex.split(answer["read_with"])
    assert command[0] == "jobtrail"
    read = jobtrail(backend_url, *command[1:], cwd=tmp_path)  # run where the file is
    assert read.returncode == 0, read.stdout + read.stderr
    assert "clean: no problems found" in read.stdout

    kept = jobtrail(backend_url, "show", jobs.at_cut[0], "--json")  # finished at the cut
    assert kept.returncode == 0 and json.loads(kept.stdout)["status"] == "completed"


# ------------------------------------------------------------------ as users meet it


def test_prune_as_a_process(backend_url: str, jobs: Population) -> None:
    done = jobtrail(
        backend_url, "prune", "--finished-before", CUT_TEXT, "--batch", "2", "--actor", "cron",
        "--reason", "nightly",
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith("pruned 3 job row(s) finished before 2026-02-01T00:00:00")
    assert done.stdout.count("\n") == 1

    shown = jobtrail(backend_url, "show", jobs.before[2])
    assert shown.returncode == 0, shown.stderr
    assert "row pruned from the job table" in shown.stdout and "status" in shown.stdout
    assert jobtrail(backend_url, "show", jobs.unfinished[1], "--json").returncode == 0

    again = jobtrail(backend_url, "prune", "--finished-before", CUT_TEXT, "--dry-run")
    assert again.stdout.startswith("would prune 0 job row(s)")


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "the following arguments are required: --finished-before"),
        (("--finished-before", "last tuesday"), "is neither an ISO 8601 time"),
        (("--finished-before", "2026-13-01"), "is neither an ISO 8601 time"),
        (("--finished-before", "30x"), "is neither an ISO 8601 time"),
        (("--finished-before",), "expected one argument"),
        (("--finished-before", "30d", "--batch", "0"), "argument --batch"),
    ],
)
def test_a_bad_command_line_is_a_usage_error_in_one_line(
    capsys: pytest.CaptureFixture[str],
    backend_url: str,
    jobs: Population,
    trail: Jobtrail,
    args: tuple[str, ...],
    message: str,
) -> None:
    before = table_fingerprint(trail)
    with pytest.raises(SystemExit) as exit_info:
        main(["--db", backend_url, "prune", *args])
    captured = capsys.readouterr()
    assert exit_info.value.code == 2 and captured.out == ""
    assert one_error_line(captured.err) and message in captured.err
    assert "(see `jobtrail prune --help`)" in captured.err
    assert table_fingerprint(trail) == before and prunes(trail) == []


def test_a_bad_actor_is_one_line_and_prunes_nothing(
    capsys: pytest.CaptureFixture[str], backend_url: str, jobs: Population, trail: Jobtrail
) -> None:
    before = table_fingerprint(trail)
    code, out, err = run(capsys, backend_url, "prune", "--finished-before", CUT_TEXT, "--actor", "")
    assert (code, out) == (1, "") and one_error_line(err) and "meta.actor" in err
    assert table_fingerprint(trail) == before and prunes(trail) == []


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def schemaless_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database that exists but has no jobtrail table, on each backend."""
    if request.param == "sqlite":
        empty = tmp_path / "empty.db"
        empty.touch()  # an empty SQLite database
        yield f"sqlite:///{empty}"
        return
    try:
        admin = _admin()
    except psycopg.OperationalError as error:
        unavailable(f"PostgreSQL is not reachable: {error}", REQUIRED)
    name = f"jobtrail_empty_{uuid.uuid4().hex[:8]}"
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        yield database_url(_url_for(name))
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_database_without_the_schema_is_one_line(
    capsys: pytest.CaptureFixture[str], schemaless_url: str, tmp_path: Path, dry_run: bool
) -> None:
    args = ["prune", "--finished-before", "30d", *(["--dry-run"] if dry_run else [])]

    code, out, err = run(capsys, schemaless_url, *args)
    assert (code, out) == (1, "") and one_error_line(err) and "run `jobtrail db init`" in err

    code, out, err = run(capsys, f"sqlite:///{tmp_path / 'none.db'}", *args)
    assert (code, out) == (1, "") and one_error_line(err) and "No database at" in err
