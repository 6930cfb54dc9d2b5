"""The `jobtrail` command, on every backend, in-process (and as a real process where it matters)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from jobtrail.adapters.bootstrap import connect
from jobtrail.adapters.cli.main import main

from tests.helpers import event_count


def run(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> tuple[int, str, str]:
    code = main(["--db", url, *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def events_in(url: str) -> int:
    trail = connect(url)
    try:
        return event_count(trail)
    finally:
        trail.close()


def test_submit_prints_only_the_new_id(
    capsys: pytest.CaptureFixture[str], backend_url: str
) -> None:
    code, out, err = run(
        capsys,
        backend_url,
        "submit",
        "shot_video_generation",
        "--payload",
        '{"credits": 3}',
        "--max-attempts",
        "2",
        "--priority",
        "4",
    )
    assert code == 0 and err == ""
    job_id = out.strip()
    assert out == f"{uuid.UUID(job_id)}\n"

    code, out, _ = run(capsys, backend_url, "show", job_id, "--json")
    row = json.loads(out)
    assert (row["status"], row["payload"], row["max_attempts"], row["priority"]) == (
        "queued",
        {"credits": 3},
        2,
        4,
    )


def test_a_repeated_idempotency_key_prints_the_same_id_and_records_nothing(
    capsys: pytest.CaptureFixture[str], backend_url: str
) -> None:
    _, first, _ = run(capsys, backend_url, "submit", "t", "--idempotency-key", "order-1")
    count = events_in(backend_url)
    _, second, _ = run(capsys, backend_url, "submit", "t", "--idempotency-key", "order-1")
    assert first == second
    assert events_in(backend_url) == count


def test_jobs_history_cancel_rebuild_and_stats(
    capsys: pytest.CaptureFixture[str], backend_url: str
) -> None:
    ids = [run(capsys, backend_url, "submit", t)[1].strip() for t in ("a", "b", "a")]
    code, out, _ = run(capsys, backend_url, "cancel", ids[0], "--reason", "not needed")
    assert code == 0 and "recorded" in out and "cancelled" in out
    code, out, _ = run(capsys, backend_url, "cancel", ids[0])
    assert code == 0 and "already_finished" in out

    _, out, _ = run(capsys, backend_url, "jobs", "--json", "--type", "a")
    assert {r["id"] for r in json.loads(out)} == {ids[0], ids[2]}
    _, out, _ = run(capsys, backend_url, "jobs", "--json", "--status", "cancelled")
    assert [r["id"] for r in json.loads(out)] == [ids[0]]
    _, out, _ = run(capsys, backend_url, "jobs", "--limit", "2")
    assert "2 job(s)" in out

    _, out, _ = run(capsys, backend_url, "history", ids[0], "--json")
    history = json.loads(out)
    assert [e["type"] for e in history] == ["JobQueued", "JobCancelled"]
    assert [e["version"] for e in history] == [1, 2]
    assert history[1]["data"] == {"reason": "not needed", "by": "cli"}
    assert history[1]["prev_hash"] == history[0]["hash"]
    _, out, _ = run(capsys, backend_url, "history", ids[0])
    assert "JobCancelled" in out

    code, out, _ = run(capsys, backend_url, "rebuild")
    assert code == 0 and "3 job(s)" in out

    _, out, _ = run(capsys, backend_url, "stats", "--json")
    stats = json.loads(out)
    assert stats["by_status"] == {"cancelled": 1, "queued": 2}
    assert stats["failure_rate"] == 0
    _, out, _ = run(capsys, backend_url, "stats")
    assert "failure rate: 0.0%" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("show", "not-a-job"), "'not-a-job' is not a job id"),
        (("history", "42"), "'42' is not a job id"),
        (("cancel", "x y"), "is not a job id"),
        (("show", "00000000-0000-4000-8000-000000000000"), "No job with id"),
        (("submit", "t", "--payload", "{credits: 3"), "--payload is not valid JSON"),
        (("submit", "t", "--payload", "[1, 2]"), "--payload must be a JSON object"),
        (("submit", "  "), "job_type: must not be empty"),
    ],
)
def test_bad_input_is_one_clear_line_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], backend_url: str, args: tuple[str, ...], message: str
) -> None:
    run(capsys, backend_url, "submit", "t")
    count = events_in(backend_url)

    code, out, err = run(capsys, backend_url, *args)

    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("jobtrail: error: ") and message in err
    assert events_in(backend_url) == count


def test_an_unreachable_database_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "postgresql://nobody@127.0.0.1:1/jobs", "submit", "t")
    assert code == 1 and out == ""
    assert err.startswith("jobtrail: error: Cannot reach the database") and err.count("\n") == 1


def test_a_database_without_schema_says_to_run_db_init(
    capsys: pytest.CaptureFixture[str], tmp_path: os.PathLike[str]
) -> None:
    url = f"sqlite:///{tmp_path}/fresh.db"
    code, _, err = run(capsys, url, "jobs")
    assert code == 1 and "run `jobtrail db init`" in err
    code, _, err = run(capsys, url, "db", "init")
    assert code == 0
    code, _, _ = run(capsys, url, "db", "init")
    assert code == 0
    assert run(capsys, url, "jobs", "--json")[1].strip() == "[]"


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], sqlite_url: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--db", sqlite_url, "jobs", "--status", "sleeping"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_the_console_script_reads_the_database_from_the_environment(sqlite_url: str) -> None:
    env = {**os.environ, "JOBTRAIL_DATABASE_URL": sqlite_url}
    submitted = subprocess.run(
        [sys.executable, "-m", "jobtrail", "submit", "asset_image_generation"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    job_id = submitted.stdout.strip()
    shown = subprocess.run(
        [sys.executable, "-m", "jobtrail", "show", job_id, "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(shown.stdout)["job_type"] == "asset_image_generation"


def test_what_people_read_fits_80_columns(sqlite_url: str) -> None:
    env = {**os.environ, "JOBTRAIL_DATABASE_URL": sqlite_url, "COLUMNS": "80"}
    trail = connect(sqlite_url)
    try:
        job_id = trail.submit("a_job_type_with_a_rather_long_name", {"prompt": "a cat " * 40})
        trail.cancel(job_id, "the storyboard was deleted before anyone could render it")
    finally:
        trail.close()

    def lines(*args: str) -> list[str]:
        done = subprocess.run(
            [sys.executable, "-m", "jobtrail", *args],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        printed = done.stdout.splitlines()
        assert printed and all(len(line) <= 80 for line in printed), printed
        return printed

    history = lines("history", job_id)
    assert len(history) == 3  # a heading, then one line per event
    assert history[1].split()[2] == "JobQueued" and history[2].split()[2] == "JobCancelled"
    assert history[1].endswith("…")
    jobs = lines("jobs")
    assert any(line.startswith(job_id) for line in jobs)
    shown = " ".join(line.strip() for line in lines("show", job_id))
    assert '{"prompt": "' + "a cat " * 10 in shown  # whole, wrapped: show cuts nothing
    assert shown.count(" JobQueued ") == shown.count(" JobCancelled ") == 1  # and its timeline
    lines("stats")


def test_history_json_is_every_envelope_indented(
    capsys: pytest.CaptureFixture[str], backend_url: str
) -> None:
    job_id = run(capsys, backend_url, "submit", "t", "--payload", '{"a": null}')[1].strip()
    run(capsys, backend_url, "cancel", job_id)
    trail = connect(backend_url)
    try:
        envelopes = [event.envelope() for event in trail.history(job_id)]
    finally:
        trail.close()

    _, out, _ = run(capsys, backend_url, "history", job_id, "--json")

    assert out == json.dumps(envelopes, indent=2) + "\n"
