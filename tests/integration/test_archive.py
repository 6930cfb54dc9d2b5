"""`jobtrail archive`: whole finished histories leave the log with proof, on every backend.

What an auditor relies on: only whole histories of finished jobs move; the file and the
record agree; `replay` stays clean without the files and checks every seal again with them;
a missing, cut, edited or swapped file is named; archiving twice moves nothing more; an
archive stopped half-way loses and doubles nothing; and no plain DELETE reaches the log.

About 550 lines, over the ~300 a module aims at: every test shares the one log of finished
and open jobs, the archive folder and the snapshot of everything held.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from jobtrail.adapters.audit import archive_removal
from jobtrail.adapters.audit.archive import Cut, archive
from jobtrail.adapters.audit.passes import Scope
from jobtrail.adapters.audit.replay import replay_database
from jobtrail.adapters.audit.seal import append_seal
from jobtrail.adapters.bootstrap import Jobtrail, connect
from jobtrail.adapters.cli.main import main
from jobtrail.adapters.sql.engine import translated_errors
from jobtrail.adapters.sql.schema import job, job_events, job_log_archive_jobs, relay_position
from jobtrail.domain.errors import (
    AppendOnlyViolation,
    ArchiveRefused,
    InsufficientCredits,
    UpstreamTimeout,
)
from sqlalchemy import func, insert, inspect, select, text

from tests.helpers import SteppingClock, jobtrail_process

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def trail(backend_url: str) -> Iterator[Jobtrail]:
    trail = connect(backend_url, clock=SteppingClock(T0))
    yield trail
    trail.close()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Where the archive files go (the SQLite database lives beside it, in ``tmp_path``)."""
    path = tmp_path / "archives"
    path.mkdir()
    return path


def finished_and_open(trail: Jobtrail, rounds: int = 1) -> dict[str, list[str]]:
    """Jobs that finished (completed, failed, cancelled, retried then completed) and jobs
    still open (queued, processing, waiting for a retry)."""
    service = trail.service
    ids: dict[str, list[str]] = {"finished": [], "open": []}
    for _ in range(rounds):
        done, failed, cancelled, retried = (trail.submit("t", {"n": i}) for i in range(4))
        queued, running, waiting = (trail.submit("t", {"open": i}) for i in range(3))
        service.start(done, "w1", 30)
        service.report_progress(done, 1, 50, "half")
        service.complete(done, 1, {"ok": True})
        service.start(failed, "w1", 30)
        service.fail(failed, InsufficientCredits(), 1)
        service.cancel(cancelled, "not needed")
        service.start(retried, "w1", 30)
        service.fail(retried, UpstreamTimeout(), 1)
        service.start(running, "w2", 30)
        service.start(waiting, "w2", 30)
        service.fail(waiting, UpstreamTimeout(), 1)
        _run_retry(trail, retried)
        ids["finished"] += [done, failed, cancelled, retried]
        ids["open"] += [queued, running, waiting]
    return ids


def _run_retry(trail: Jobtrail, job_id: str) -> None:
    """The scheduled retry's second attempt, completed."""
    trail.service.start(job_id, "w1", 30)
    trail.service.complete(job_id, 2, {"ok": "again"})


def events_of(trail: Jobtrail) -> dict[int, tuple[str, str]]:
    with trail.engine.connect() as conn:
        rows = conn.execute(select(job_events.c.position, job_events.c.job_id, job_events.c.hash))
        return {int(p): (j, h) for p, j, h in rows}


def row_ids(trail: Jobtrail) -> set[str]:
    with trail.engine.connect() as conn:
        return set(conn.execute(select(job.c.id)).scalars())


def file_events(path: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [v for v in lines if "event_id" in v]


def test_only_whole_finished_histories_move_and_replay_stays_clean(
    trail: Jobtrail, folder: Path
) -> None:
    ids = finished_and_open(trail, rounds=2)
    before = events_of(trail)
    out = folder / "a1.jsonl"
    done = archive(trail.engine, Cut(), out, "test")
    assert done is not None
    record = done.record
    after = events_of(trail)
    moved = {p: v for p, v in before.items() if p not in after}
    assert {job_id for job_id, _ in moved.values()} == set(ids["finished"])
    assert {job_id for job_id, _ in after.values()} == set(ids["open"])
    assert row_ids(trail) == set(ids["open"])
    in_file = file_events(out)
    assert [e["position"] for e in in_file] == sorted(moved)
    assert [(e["job_id"], e["hash"]) for e in in_file] == [moved[p] for p in sorted(moved)]
    assert (record.event_count, record.job_count) == (len(moved), len(ids["finished"]))
    assert (record.first_position, record.last_position) == (min(moved), max(moved))
    assert record.kept_count == len(after)

    plain = replay_database(trail.engine, Scope())
    assert plain.clean, plain.problems
    assert plain.seals["archives"] == {
        "records": 1,
        "events": len(moved),
        "jobs": len(ids["finished"]),
        "files_checked": False,
    }
    assert plain.seals["from_position"] == record.seal_position
    with_files = replay_database(trail.engine, Scope(), archives=folder)
    assert with_files.clean, with_files.problems
    assert with_files.seals["from_position"] == 0  # every seal checked again from the start
    assert with_files.seals["events"] == len(before)


def test_the_cli_archives_and_replays_with_and_without_the_files(
    backend_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trail = connect(backend_url, clock=SteppingClock(T0))
    ids = finished_and_open(trail)
    trail.close()
    db = ["--db", backend_url]
    out = tmp_path / "archives" / "2026-03.jsonl"
    out.parent.mkdir()
    assert main([*db, "archive", "--before", "2026-03-02", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert f"events of {len(ids['finished'])} jobs" in said and str(out) in said
    assert main([*db, "replay"]) == 0
    said = capsys.readouterr().out
    assert "jobs are in 1 archive(s), not in the log" in said and "clean" in said
    assert main([*db, "replay", "--archives", str(out.parent)]) == 0
    assert "1 file(s) checked against their records" in capsys.readouterr().out
    assert main([*db, "replay", "--source", f"file:{out}"]) == 0
    said = capsys.readouterr().out
    assert f"{len(ids['finished'])} jobs" in said and "an archive cut at seal" in said
    assert main([*db, "archive", "--list"]) == 0
    assert "2026-03.jsonl" in capsys.readouterr().out


def test_a_retry_of_an_archived_job_names_its_archive(backend_url: str, folder: Path) -> None:
    """As `show` does: the job's history is in a file now, and a retry cannot read it."""
    trail = connect(backend_url, clock=SteppingClock(T0))
    ids = finished_and_open(trail)
    done = archive(trail.engine, Cut(), folder / "2026-03.jsonl", "test")
    trail.close()
    assert done is not None
    archived = ids["finished"][1]

    result = jobtrail_process(backend_url, "retry", archived)

    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"Job {archived} is archived: archive {done.record.archive_id}" in result.stderr
    assert "2026-03.jsonl" in result.stderr
    unknown = "0194a2b0-0000-7000-8000-000000000000"
    both = jobtrail_process(backend_url, "retry", unknown, archived)
    assert both.returncode == 1 and f"No job with id {unknown}" in both.stderr


def test_archiving_again_over_the_same_cut_archives_nothing_more(
    trail: Jobtrail, folder: Path
) -> None:
    finished_and_open(trail)
    seal = append_seal(trail.engine, "test")
    first = archive(trail.engine, Cut(seal_id=seal.seal_id), folder / "a.jsonl", "test")
    assert first is not None
    left = events_of(trail)
    assert archive(trail.engine, Cut(seal_id=seal.seal_id), folder / "b.jsonl", "test") is None
    assert archive(trail.engine, Cut(before=T0), folder / "c.jsonl", "test") is None
    assert events_of(trail) == left
    assert sorted(p.name for p in folder.iterdir()) == ["a.jsonl"]


def test_a_later_archive_continues_the_proof(trail: Jobtrail, folder: Path) -> None:
    first_ids = finished_and_open(trail)
    assert archive(trail.engine, Cut(), folder / "1.jsonl", "test") is not None
    for job_id in first_ids["open"]:  # the jobs left open finish after the first cut
        if trail.get(job_id)["status"] == "processing":
            trail.service.fail(job_id, InsufficientCredits(), trail.get(job_id)["attempt"])
        else:
            trail.service.cancel(job_id, "late")
    second = archive(trail.engine, Cut(), folder / "2.jsonl", "test")
    assert second is not None and second.record.job_count == len(first_ids["open"])
    assert events_of(trail) == {}
    assert replay_database(trail.engine, Scope()).clean
    report = replay_database(trail.engine, Scope(), archives=folder)
    assert report.clean, report.problems
    assert report.seals["archives"]["files_found"] == 2


def _two_archives(trail: Jobtrail, folder: Path) -> None:
    finished_and_open(trail)
    assert archive(trail.engine, Cut(), folder / "1.jsonl", "test") is not None
    finished_and_open(trail)
    assert archive(trail.engine, Cut(), folder / "2.jsonl", "test") is not None


def _edit_an_event(folder: Path) -> None:
    path = folder / "2.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    lines[3] = lines[3].replace('"n":', '"N":')
    path.write_text("".join(lines))


def _remove_a_line(folder: Path) -> None:
    path = folder / "2.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:4] + lines[5:]))


def _swap_the_files(folder: Path) -> None:
    (folder / "1.jsonl").rename(folder / "tmp")
    (folder / "2.jsonl").rename(folder / "1.jsonl")
    (folder / "tmp").rename(folder / "2.jsonl")


def _cut_short(folder: Path) -> None:
    path = folder / "2.jsonl"
    path.write_bytes(path.read_bytes()[:-300])


def _remove_the_file(folder: Path) -> None:
    (folder / "2.jsonl").unlink()


@pytest.mark.parametrize(
    ("tamper", "kinds", "named"),
    [
        (
            _edit_an_event,
            {"archive_altered", "hash_mismatch"},
            "2.jsonl",
        ),
        (
            _remove_a_line,
            {"archive_altered", "archive_record_mismatch", "seal_mismatch"},
            "2.jsonl",
        ),
        (_swap_the_files, {"archive_altered"}, "is archive"),
        (_cut_short, {"archive_altered", "manifest_missing"}, "2.jsonl"),
        (_remove_the_file, {"archive_missing", "seal_mismatch"}, "is not in"),
    ],
    ids=["edited-event", "removed-line", "swapped-files", "cut-short", "missing"],
)
def test_a_tampered_archive_file_is_caught_and_named(
    trail: Jobtrail, folder: Path, tamper: Any, kinds: set[str], named: str
) -> None:
    _two_archives(trail, folder)
    assert replay_database(trail.engine, Scope(), archives=folder).clean
    tamper(folder)
    report = replay_database(trail.engine, Scope(), archives=folder)
    assert kinds <= set(report.counts), report.counts
    assert any(named in p.reason for p in report.problems if p.kind.startswith("archive_"))
    assert replay_database(trail.engine, Scope()).clean  # the log itself is untouched


def test_a_deleted_event_left_by_an_archive_is_caught_without_the_files(
    trail: Jobtrail, folder: Path
) -> None:
    ids = finished_and_open(trail)
    assert archive(trail.engine, Cut(), folder / "a.jsonl", "test") is not None
    with trail.engine.begin() as conn:
        _bypass_triggers(conn)
        conn.execute(job_events.delete().where(job_events.c.job_id == ids["open"][0]))
    report = replay_database(trail.engine, Scope())
    assert "archive_kept_mismatch" in report.counts, report.counts
    assert "event(s) fewer" in next(p.reason for p in report.problems)


def _bypass_triggers(conn: Any) -> None:
    """Tampering as a superuser would: past the append-only triggers."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SET LOCAL session_replication_role = replica"))
    else:
        conn.execute(text("DROP TRIGGER job_events_no_delete"))


def test_an_archive_refuses_a_log_that_no_longer_matches_its_seal(
    trail: Jobtrail, folder: Path
) -> None:
    ids = finished_and_open(trail)
    seal = append_seal(trail.engine, "test")
    with trail.engine.begin() as conn:
        _bypass_triggers(conn)
        conn.execute(job_events.delete().where(job_events.c.job_id == ids["finished"][0]))
    left = events_of(trail)
    with pytest.raises(ArchiveRefused, match=f"does not fold into seal {seal.seal_id}"):
        archive(trail.engine, Cut(seal_id=seal.seal_id), folder / "a.jsonl", "test")
    assert events_of(trail) == left
    assert list(folder.iterdir()) == []


def test_events_removed_that_differ_from_the_file_undo_the_archive(
    trail: Jobtrail, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The removal is compared with the file (count and digest) before it commits."""
    finished_and_open(trail)
    left = events_of(trail)
    real = archive_removal.compare_removed

    def with_another_file(removed: Any, listed: int, record: Any) -> None:
        real(removed, listed, replace(record, events_digest="0" * 64))

    monkeypatch.setattr(archive_removal, "compare_removed", with_another_file)
    with pytest.raises(ArchiveRefused, match="are not the ones written to a.jsonl"):
        archive(trail.engine, Cut(), folder / "a.jsonl", "test")
    assert events_of(trail) == left
    with trail.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM job_log_archives")).scalar_one() == 0


def test_an_archive_leaves_what_the_relay_has_not_published(trail: Jobtrail, folder: Path) -> None:
    first = finished_and_open(trail)
    with trail.engine.begin() as conn:
        published = conn.execute(select(func.max(job_events.c.position))).scalar_one()
        conn.execute(insert(relay_position).values(name="main", position=published, updated_at=T0))
    second = finished_and_open(trail)
    done = archive(trail.engine, Cut(), folder / "a.jsonl", "test")
    assert done is not None
    left = {job_id for job_id, _ in events_of(trail).values()}
    assert left == set(first["open"] + second["open"] + second["finished"])


def test_an_archive_cut_before_the_last_one_is_refused(trail: Jobtrail, folder: Path) -> None:
    finished_and_open(trail)
    early = append_seal(trail.engine, "test")
    finished_and_open(trail)
    assert archive(trail.engine, Cut(), folder / "a.jsonl", "test") is not None
    with pytest.raises(ArchiveRefused, match=f"seal {early.seal_id} .* is before the cut"):
        archive(trail.engine, Cut(seal_id=early.seal_id), folder / "b.jsonl", "test")


# ------------------------------------------------------------------------ interrupted


KILLER = """
import os, signal, sys
from jobtrail.adapters.audit import archive, archive_removal
from jobtrail.adapters.cli.main import main

point = sys.argv.pop(1)
module = archive_removal if point == "compare_removed" else archive
real = getattr(module, point)
calls = []


def killed(*args, **kwargs):
    calls.append(1)
    if point == "compare_removed":
        real(*args, **kwargs)  # the events are gone inside the transaction, then the end
    if point != "write_line" or len(calls) == 40:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)


setattr(module, point, killed)
sys.exit(main(sys.argv[1:]))
"""
"""Runs `jobtrail` in a process that SIGKILLs itself at a point of the archive: while writing
the file (its 40th line), once the file is in place (on PostgreSQL the events are removed by
then, not committed), or once the events are removed and compared with the file but before
the transaction commits."""


def _snapshot_everything(trail: Jobtrail, folder: Path) -> dict[int, str]:
    """Every event, in the log or in a recorded archive file: position -> hash."""
    found = {p: h for p, (_, h) in events_of(trail).items()}
    with trail.engine.connect() as conn:
        names = conn.execute(text("SELECT file_name FROM job_log_archives")).scalars().all()
    for name in names:
        for event in file_events(folder / name):
            assert event["position"] not in found, "an event both archived and in the log"
            found[event["position"]] = event["hash"]
    return found


@pytest.mark.parametrize("point", ["write_line", "finish", "compare_removed"])
def test_an_archive_killed_half_way_loses_and_doubles_nothing(
    backend_url: str, folder: Path, point: str
) -> None:
    trail = connect(backend_url, clock=SteppingClock(T0))
    finished_and_open(trail, rounds=10)
    everything = _snapshot_everything(trail, folder)
    out = folder / "a.jsonl"
    command = ["--db", backend_url, "archive", "--before", "1d", "--out", str(out), "--json"]
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, point, *command], capture_output=True, timeout=120
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert _snapshot_everything(trail, folder) == everything  # nothing lost, nothing doubled
    assert out.exists() == (point != "write_line")  # in place, but no record names it
    assert replay_database(trail.engine, Scope()).clean
    again = subprocess.run(
        [sys.executable, "-m", "jobtrail", *command], capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["replaced_unrecorded_file"] == (point != "write_line")
    assert _snapshot_everything(trail, folder) == everything
    report = replay_database(trail.engine, Scope(), archives=folder)
    assert report.clean, report.problems
    assert report.seals["archives"]["jobs"] == 40
    trail.close()


# ------------------------------------------------------------------------ the narrow path


def test_a_plain_delete_of_the_log_is_refused(trail: Jobtrail, folder: Path) -> None:
    ids = finished_and_open(trail)
    assert archive(trail.engine, Cut(), folder / "a.jsonl", "test") is not None
    open_job = ids["open"][0]
    for statement in (
        job_events.delete(),
        job_events.delete().where(job_events.c.job_id == open_job),
        job_events.update().values(type="JobCompleted"),
    ):
        with (
            pytest.raises(AppendOnlyViolation, match="job_events is append-only"),
            translated_errors(),
            trail.engine.begin() as conn,
        ):
            conn.execute(statement)
    # Listing a job as archived by hand does not open the path on PostgreSQL either: the
    # DELETE must come from the archive function.
    if trail.engine.dialect.name == "postgresql":
        with (
            pytest.raises(AppendOnlyViolation),
            translated_errors(),
            trail.engine.begin() as conn,
        ):
            conn.execute(insert(job_log_archive_jobs).values(job_id=open_job, archive_id=1))
            conn.execute(job_events.delete().where(job_events.c.job_id == open_job))


@pytest.mark.postgres
def test_no_role_can_delete_from_the_log_outside_the_archive_path(pg_trail: Jobtrail) -> None:
    """The owner (here a superuser), a role granted every privilege on the table, and a role
    with none: each is refused, and none but the owner may call the archive function."""
    job_id = pg_trail.submit("t")
    pg_trail.service.cancel(job_id, "done")
    role = f"jobtrail_test_{os.getpid()}_{int(time.time() * 1000) % 100000}"
    with pg_trail.engine.begin() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN"))
        conn.execute(text(f"GRANT ALL ON job_events, job_log_archive_jobs TO {role}"))
    try:
        for who in (None, role):
            with pg_trail.engine.connect() as conn, conn.begin():
                if who:
                    conn.execute(text(f"SET LOCAL ROLE {who}"))
                for statement in (
                    "DELETE FROM job_events",
                    "TRUNCATE job_events",
                    "SET LOCAL jobtrail.archive_id = '1'; DELETE FROM job_events",
                ):
                    conn.execute(text("SAVEPOINT s"))
                    with pytest.raises(AppendOnlyViolation), translated_errors():
                        conn.execute(text(statement))
                    conn.execute(text("ROLLBACK TO SAVEPOINT s"))
                if who:
                    conn.execute(text("SAVEPOINT s"))
                    with pytest.raises(Exception, match="permission denied"):
                        conn.execute(text("SELECT * FROM jobtrail_archive_events(1, 1)"))
                    conn.execute(text("ROLLBACK TO SAVEPOINT s"))
        with pg_trail.engine.begin() as conn:
            conn.execute(text(f"REVOKE ALL ON job_events, job_log_archive_jobs FROM {role}"))
            conn.execute(text(f"SET LOCAL ROLE {role}"))
            with pytest.raises(Exception, match="permission denied"):
                conn.execute(text("DELETE FROM job_events"))
    finally:
        with pg_trail.engine.begin() as conn:
            conn.execute(text(f"DROP OWNED BY {role}"))
            conn.execute(text(f"DROP ROLE {role}"))
    with pg_trail.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(job_events)).scalar_one() == 2


# ------------------------------------------------------------------------ bad input


def test_bad_archive_commands_are_one_line(
    backend_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ["--db", backend_url]
    tmp_path = tmp_path / "archives"
    tmp_path.mkdir()
    taken = tmp_path / "taken.txt"
    taken.write_text("someone's notes\n")
    cases: list[tuple[list[str], int, str]] = [
        (["archive", "--out", str(tmp_path / "x")], 2, "give --before TIME or --seal SEAL_ID"),
        (["archive", "--before", "soon", "--out", "x"], 2, "neither an ISO 8601 time"),
        (["archive", "--before", "1d", "--seal", "1", "--out", "x"], 2, "not allowed with"),
        (["archive", "--seal", "99", "--out", str(tmp_path / "x")], 1, "there is no seal 99"),
        (["replay", "--archives", str(tmp_path / "nowhere")], 2, "no directory"),
    ]
    trail = connect(backend_url, clock=SteppingClock(T0))
    finished_and_open(trail)
    trail.close()
    cases.append((["archive", "--before", "0s", "--out", str(taken)], 1, "it exists"))
    cases.append((["archive", "--before", "0s", "--out", str(tmp_path)], 1, "is a directory"))
    for argv, code, message in cases:
        try:
            status = main([*db, *argv])
        except SystemExit as exit_:
            status = int(exit_.code or 0)
        captured = capsys.readouterr()
        assert status == code, (argv, captured)
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (argv, captured.err)
    assert taken.read_text() == "someone's notes\n"
    assert [p.name for p in tmp_path.iterdir()] == ["taken.txt"]


def test_archive_on_a_database_without_the_schema_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "jobtrail", "--db", f"sqlite:///{tmp_path / 'empty.db'}"]
        + ["archive", "--before", "1d", "--out", str(tmp_path / "a.jsonl")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "jobtrail db init" in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []  # not even the database file


def test_migration_0012_downgrades_to_the_plain_append_only_log_and_back(
    trail: Jobtrail, folder: Path
) -> None:
    from tests.integration.test_lease_migration import migrate_to

    finished_and_open(trail)
    migrate_to(trail, "0011")
    with trail.engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
    assert not tables & {"job_log_archives", "job_log_archive_jobs"}
    with (
        pytest.raises(AppendOnlyViolation),
        translated_errors(),
        trail.engine.begin() as conn,
    ):
        conn.execute(job_events.delete())
    migrate_to(trail, "head")
    assert archive(trail.engine, Cut(), folder / "a.jsonl", "test") is not None
    assert replay_database(trail.engine, Scope(), archives=folder).clean
