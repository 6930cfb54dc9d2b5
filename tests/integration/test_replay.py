"""`jobtrail replay` on every backend: a clean log, and a log tampered with as a superuser would.

Tampering bypasses the append-only triggers: on PostgreSQL with
``session_replication_role = replica`` (the test server's user is a superuser), on SQLite by
dropping the triggers. Each tampering must be reported naming the job and the version, with
exit status 1.
"""

from __future__ import annotations

import json
import queue
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from jobtrail.adapters.audit.parallel import Part, _collect, work
from jobtrail.adapters.audit.passes import Scope
from jobtrail.adapters.bootstrap import Jobtrail, connect
from jobtrail.adapters.cli.main import main
from jobtrail.adapters.sql.schema import job_events
from jobtrail.domain.errors import InsufficientCredits, StorageError, UpstreamTimeout
from jobtrail.domain.events import JobFailed
from sqlalchemy import insert, text

from tests.helpers import SteppingClock

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DIFF_KINDS = {"row_differs", "row_missing", "row_without_events"}
"""Problems only a database source can have (they compare with the live table)."""


@pytest.fixture
def trail(backend_url: str) -> Iterator[Jobtrail]:
    trail = connect(backend_url, clock=SteppingClock(T0))
    yield trail
    trail.close()


def make_log(trail: Jobtrail) -> dict[str, str]:
    """Four jobs: completed, failed for credits, retried then completed, still queued."""
    service = trail.service
    ids = {
        name: trail.submit("shot_video_generation", {"job": name})
        for name in ("completed", "failed", "retried", "queued")
    }
    service.start(ids["completed"], "w1", 30)
    service.report_progress(ids["completed"], 1, 50, "half")
    service.complete(ids["completed"], 1, {"url": "s3://x"})
    service.start(ids["failed"], "w1", 30)
    service.fail(ids["failed"], InsufficientCredits(), 1)
    service.start(ids["retried"], "w2", 30)
    service.fail(ids["retried"], UpstreamTimeout(), 1)
    trail.engine.dispose()
    return ids


EDGE_PAYLOAD = {
    "big": 1e21,
    "negative_zero": -0.0,
    "e16": 1e16,
    "one": 1.0,
    "tiny": 1e-7,
    "e_minus_5": 0.00001,
    "max_safe": 2**53 - 1,
    "é": "latin",
    "\ue000": "private use",
    "\U0001f600": "non-BMP",
    "rows": [{"b": 1, "a": [{"y": 0.5, "x": [1.0, -0.0]}]}, {"c": None, "d": True}],
    "escapes": '" \\ / \b\f\n\r\t \x01\x1f\x7f \u2028\u2029',
}
"""The payloads the event contract's issue names: numbers stores rewrite (PostgreSQL's jsonb
gives 1e16 back as 10000000000000000 and -0.0 as 0.0), keys that sort differently by UTF-16
code units than by code points, nested arrays of objects, every JSON escape."""


def make_edge_log(trail: Jobtrail) -> str:
    """A job with the edge payload, completed with it as its result."""
    job_id = trail.submit("shot_video_generation", EDGE_PAYLOAD)
    trail.service.start(job_id, "w1", 30)
    trail.service.report_progress(job_id, 1, 50, str(EDGE_PAYLOAD["escapes"]))
    trail.service.complete(job_id, 1, EDGE_PAYLOAD)
    trail.engine.dispose()
    return job_id


def replay(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> tuple[int, dict[str, Any]]:
    """The exit code and the JSON report; on PostgreSQL, worker processes must give the same."""
    code = main(["--db", url, "replay", "--json", "--workers", "1", *args])
    report = json.loads(capsys.readouterr().out)
    if url.startswith("postgresql") and "--job" not in args and "--as-of" not in args:
        parallel_code = main(["--db", url, "replay", "--json", "--workers", "2", *args])
        assert (parallel_code, json.loads(capsys.readouterr().out)) == (code, report)
    return code, report


def found(report: dict[str, Any]) -> set[tuple[str, str | None, int | None]]:
    return {(p["kind"], p["job_id"], p["version"]) for p in report["problems"]}


@pytest.fixture
def log(trail: Jobtrail) -> dict[str, str]:
    return make_log(trail)


def tamper(trail: Jobtrail, *statements: str, **params: Any) -> None:
    """Run ``statements`` past the append-only triggers, as a superuser could."""
    with trail.engine.begin() as conn:
        if trail.engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        else:
            for name in ("update", "delete"):
                conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS job_events_no_{name}")
        for statement in statements:
            conn.execute(text(statement), params)
    trail.engine.dispose()


def position_of(trail: Jobtrail, job_id: str, version: int) -> int:
    with trail.engine.connect() as conn:
        found: int = conn.execute(
            text("SELECT position FROM job_events WHERE job_id = :j AND version = :v"),
            {"j": job_id, "v": version},
        ).scalar_one()
        return found


def seal(capsys: pytest.CaptureFixture[str], url: str) -> dict[str, Any]:
    assert main(["--db", url, "seal", "--json"]) == 0
    sealed: dict[str, Any] = json.loads(capsys.readouterr().out)
    return sealed


# ------------------------------------------------------------------------ clean


def test_a_clean_log_replays_with_exit_0_and_the_same_report_twice(
    capsys: pytest.CaptureFixture[str], trail: Jobtrail, log: dict[str, str], backend_url: str
) -> None:
    seal(capsys, backend_url)
    code, first = replay(capsys, backend_url)
    assert code == 0 and first["clean"], first["problems"]
    assert (first["events"], first["jobs"], first["rows_compared"]) == (11, 4, 4)
    assert first["seals"]["checked"] and first["seals"]["seals"] == 1
    _, second = replay(capsys, backend_url)
    assert second == first


def test_edge_payloads_replay_clean_from_the_database_and_an_export(
    capsys: pytest.CaptureFixture[str],
    trail: Jobtrail,
    log: dict[str, str],
    backend_url: str,
    tmp_path: Path,
) -> None:
    edge = make_edge_log(trail)
    assert trail.store.load(edge)[-1].result == EDGE_PAYLOAD  # the same values, as Python sees them
    seal(capsys, backend_url)
    out = tmp_path / "log.jsonl"
    assert main(["--db", backend_url, "export", "--out", str(out)]) == 0
    capsys.readouterr()
    for source in ("db", f"file:{out}"):
        code, report = replay(capsys, backend_url, "--source", source)
        assert (code, report["problems"]) == (0, []), source
        assert report["events"] == report["hashes"]["jcs"] == 15
        assert report["seals"]["mismatched"] == 0


def test_the_human_report_says_clean(
    capsys: pytest.CaptureFixture[str], log: dict[str, str], backend_url: str
) -> None:
    assert main(["--db", backend_url, "replay"]) == 0
    out = capsys.readouterr().out
    assert "11 events, 4 jobs" in out and "clean" in out


# ------------------------------------------------------------------------ tampering


def test_changed_event_data_is_reported(
    capsys: pytest.CaptureFixture[str], trail: Jobtrail, log: dict[str, str], backend_url: str
) -> None:
    change = (
        "jsonb_set(data, '{error_message}', '\"all fine\"')"
        if trail.engine.dialect.name == "postgresql"
        else "json_set(data, '$.error_message', 'all fine')"
    )
    tamper(
        trail,
        f"UPDATE job_events SET data = {change} WHERE job_id = :j AND version = 3",
        j=log["failed"],
    )
    code, report = replay(capsys, backend_url)
    assert code == 1
    assert ("hash_mismatch", log["failed"], 3) in found(report)
    differs = [p for p in report["problems"] if p["kind"] == "row_differs"]
    assert differs[0]["details"]["error_message"] == {
        "live": "insufficient credits",
        "log": "all fine",
    }


def test_a_deleted_event_is_reported_as_the_missing_version(
    capsys: pytest.CaptureFixture[str], trail: Jobtrail, log: dict[str, str], backend_url: str
) -> None:
    tamper(trail, "DELETE FROM job_events WHERE job_id = :j AND version = 2", j=log["completed"])
    code, report = replay(capsys, backend_url)
    assert code == 1
    assert ("version_gap", log["completed"], 2) in found(report)


def test_a_deleted_history_is_caught_by_the_seal_and_the_live_table(
    capsys: pytest.CaptureFixture[str], trail: Jobtrail, log: dict[str, str], backend_url: str
) -> None:
    seal(capsys, backend_url)
    tamper(trail, "DELETE FROM job_events WHERE job_id = :j", j=log["retried"])
    code, report = replay(capsys, backend_url)
    assert code == 1
    kinds = found(report)
    assert ("row_without_events", log["retried"], 3) in kinds
    assert ("seal_mismatch", None, None) in kinds
    assert report["seals"]["mismatched"] == 1


def test_swapped_positions_within_a_job_are_reported(
    capsys: pytest.CaptureFixture[str], trail: Jobtrail, log: dict[str, str], backend_url: str
) -> None:
    first, second = (position_of(trail, log["failed"], v) for v in (1, 2))
    tamper(
        trail,
        "UPDATE job_events SET position = -1 WHERE position = :a",
        "UPDATE job_events SET position = :a WHERE position = :b",
        "UPDATE job_events SET position = :b WHERE position = -1",
        a=first,
        b=second,
    )
    code, report = replay(capsys, backend_url)
    assert code == 1
    assert ("position_order", log["failed"], 2) in found(report)


def test_swapped_positions_of_two_jobs_are_caught_by_a_seal(
    capsys: pytest.CaptureFixture[str], trail: Jobtrail, log: dict[str, str], backend_url: str
) -> None:
    """Each job's own order survives such a swap; only the digest of the whole log changes."""
    sealed = seal(capsys, backend_url)
    # the queued job's only event and the completed job's second one are neighbours
    a, b = position_of(trail, log["queued"], 1), position_of(trail, log["completed"], 2)
    assert b == a + 1
    tamper(
        trail,
        "UPDATE job_events SET position = -1 WHERE position = :a",
        "UPDATE job_events SET position = :a WHERE position = :b",
        "UPDATE job_events SET position = :b WHERE position = -1",
        a=a,
        b=b,
    )
    code, report = replay(capsys, backend_url)
    assert code == 1
    (problem,) = report["problems"]
    assert problem["kind"] == "seal_mismatch" and problem["position"] == sealed["position"]
    assert "changed or reordered" in problem["reason"]


def test_a_forged_second_failure_is_reported(
    capsys: pytest.CaptureFixture[str], trail: Jobtrail, log: dict[str, str], backend_url: str
) -> None:
    """Even with a correct hash chained to the real last event."""
    last = trail.store.load(log["failed"])[-1]
    forged = JobFailed.new(
        job_id=log["failed"],
        version=last.version + 1,
        occurred_at=last.occurred_at + timedelta(seconds=60),
        prev_hash=last.hash,
        attempt=1,
        error_type="LeaseExpired",
        error_code="lease_expired",
        error_message="forged",
        error_category="system",
        retryable=True,
    )
    with trail.engine.begin() as conn:  # inserting needs no bypass: the log takes appends
        conn.execute(
            insert(job_events),
            {
                "event_id": forged.event_id,
                "job_id": forged.job_id,
                "version": forged.version,
                "type": forged.type,
                "schema_version": forged.schema_version,
                "data": forged.data(),
                "metadata": forged.metadata(),
                "occurred_at": forged.occurred_at,
                "prev_hash": forged.prev_hash,
                "hash": forged.hash,
            },
        )
    code, report = replay(capsys, backend_url)
    assert code == 1
    kinds = found(report)
    assert ("after_terminal", log["failed"], last.version + 1) in kinds
    assert ("hash_mismatch", log["failed"], last.version + 1) not in kinds


# ------------------------------------------------------------------------ scope, time, files


def test_as_of_prints_the_table_as_it_was(
    capsys: pytest.CaptureFixture[str], trail: Jobtrail, log: dict[str, str], backend_url: str
) -> None:
    failed = trail.store.load(log["failed"])
    started = failed[1].occurred_at  # the failed job was processing from here until failed[2]
    code = main(["--db", backend_url, "replay", "--json", "--as-of", started.isoformat()])
    output = json.loads(capsys.readouterr().out)
    assert code == 0
    rows = {row["id"]: row for row in output["rows"]}
    assert rows[log["failed"]]["status"] == "processing"
    assert rows[log["completed"]]["status"] == "completed"
    assert log["retried"] not in rows or rows[log["retried"]]["status"] == "queued"
    assert len(rows) < 4 or rows[log["queued"]]["status"] == "queued"

    code = main(["--db", backend_url, "replay", "--json", "--as-of", "2000-01-01"])
    assert json.loads(capsys.readouterr().out)["rows"] == []


def test_one_job_and_since(
    capsys: pytest.CaptureFixture[str], trail: Jobtrail, log: dict[str, str], backend_url: str
) -> None:
    tamper(trail, "DELETE FROM job_events WHERE job_id = :j AND version = 2", j=log["completed"])
    code, report = replay(capsys, backend_url, "--job", log["failed"])
    assert code == 0 and report["jobs"] == 1 and not report["seals"]["checked"]
    code, report = replay(capsys, backend_url, "--job", log["completed"])
    assert code == 1 and report["jobs"] == 1
    late = position_of(trail, log["retried"], 3)
    code, report = replay(capsys, backend_url, "--since", str(late - 1))
    assert code == 0 and report["jobs"] == 1


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], backend_url: str) -> None:
    for args in (
        ["--job", "not-a-uuid"],
        ["--as-of", "yesterday"],
        ["--source", "ftp:x"],
        ["--source", "file:/nonexistent/export.jsonl"],
        ["--since", "-3"],
        ["--workers", "0"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(["--db", backend_url, "replay", *args])
        assert exit_info.value.code == 2, args
    assert "not an ISO 8601 time" in capsys.readouterr().err


def test_a_worker_that_cannot_join_the_snapshot_fails_the_replay(postgres_url: str) -> None:
    todo: queue.Queue[Part | None] = queue.Queue()
    done: queue.Queue[Any] = queue.Queue()
    todo.put(Part(0, None))
    work(postgres_url, "00000003-0000001B-1", Scope(), 10, todo, done)
    with pytest.raises(StorageError, match="a replay worker failed: .*snapshot"):
        _collect(done, [], 1, None, None)


@pytest.mark.parametrize("tampered", [False, True])
def test_an_export_replays_like_the_database(
    capsys: pytest.CaptureFixture[str],
    trail: Jobtrail,
    log: dict[str, str],
    backend_url: str,
    tmp_path: Path,
    tampered: bool,
) -> None:
    seal(capsys, backend_url)
    if tampered:
        tamper(trail, "DELETE FROM job_events WHERE job_id = :j AND version = 2", j=log["failed"])
    out = tmp_path / "log.jsonl"
    assert main(["--db", backend_url, "export", "--out", str(out), "--json"]) == 0
    exported = json.loads(capsys.readouterr().out)
    db_code, from_db = replay(capsys, backend_url)
    file_code, from_file = replay(capsys, backend_url, "--source", f"file:{out}")
    assert file_code == db_code == (1 if tampered else 0)
    assert exported["count"] == from_file["events"] == from_db["events"]
    assert from_file["seals"] == from_db["seals"]
    assert [p for p in from_db["problems"] if p["kind"] not in DIFF_KINDS] == from_file["problems"]


def test_a_cut_or_edited_export_is_reported(
    capsys: pytest.CaptureFixture[str], log: dict[str, str], backend_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "log.jsonl"
    assert main(["--db", backend_url, "export", "--out", str(out)]) == 0
    assert "exported 11 events" in capsys.readouterr().out
    lines = out.read_text().splitlines()
    cut = tmp_path / "cut.jsonl"
    cut.write_text("\n".join(lines[:-2]) + "\n")  # the last event and the manifest are gone
    code, report = replay(capsys, backend_url, "--source", f"file:{cut}")
    assert code == 1 and "manifest_missing" in report["problems_by_kind"]

    dropped = tmp_path / "dropped.jsonl"
    dropped.write_text("\n".join(lines[:3] + lines[4:]) + "\n")  # the third event is gone
    code, report = replay(capsys, backend_url, "--source", f"file:{dropped}")
    assert code == 1 and "manifest_mismatch" in report["problems_by_kind"]

    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("hello\n")
    assert main(["--db", backend_url, "replay", "--source", f"file:{garbage}"]) == 1
    assert "is not a jobtrail export" in capsys.readouterr().err


def test_unreadable_data_in_an_export_is_reported_with_its_job_and_version(
    capsys: pytest.CaptureFixture[str], log: dict[str, str], backend_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "log.jsonl"
    assert main(["--db", backend_url, "export", "--out", str(out)]) == 0
    capsys.readouterr()
    lines = out.read_text().splitlines()
    index, event = next(
        (i, json.loads(line))
        for i, line in enumerate(lines)
        if json.loads(line).get("type") == "JobStarted"
    )
    event["data"]["lease_expires_at"] = "not a time"
    lines[index] = json.dumps(event)
    edited = tmp_path / "edited.jsonl"
    edited.write_text("\n".join(lines) + "\n")
    code, report = replay(capsys, backend_url, "--source", f"file:{edited}")
    bad = [p for p in report["problems"] if p["kind"] == "bad_data"]
    assert code == 1
    assert [(p["job_id"], p["version"]) for p in bad] == [(event["job_id"], event["version"])]
