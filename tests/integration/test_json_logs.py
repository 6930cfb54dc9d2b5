"""`--log-format json` (issue 13, part 4): every stderr line of a long-running command is one
JSON object, and the lines about one job carry its fields."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from typing import Any

from jobtrail.adapters.bootstrap import connect
from jobtrail.domain.services import JobSpec

BASE_KEYS = {"time", "level", "logger", "message"}


def jobtrail_cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JOBTRAIL_DATABASE_URL": url}
    env.pop("JOBTRAIL_APP", None)
    return subprocess.run(
        [sys.executable, "-m", "jobtrail", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def json_lines(stderr: str) -> list[dict[str, Any]]:
    """Every line parsed as one JSON object with the base keys (raises otherwise)."""
    lines = stderr.splitlines()
    assert lines, "nothing was logged"
    parsed = [json.loads(line) for line in lines]
    for line in parsed:
        assert isinstance(line, dict) and set(line) >= BASE_KEYS, line
        assert datetime.fromisoformat(line["time"]).utcoffset() is not None
    return parsed


def test_the_worker_logs_one_json_object_per_line_with_the_job_fields(sqlite_url: str) -> None:
    trail = connect(sqlite_url)
    try:
        ok, broke, flaky, unknown = trail.submit_many(
            [
                JobSpec("asset_image_generation", {"duration_ms": 0}),
                JobSpec("shot_video_generation", {"duration_ms": 0, "credits": 0}),
                JobSpec("asset_image_generation", {"duration_ms": 0, "fail_times": 1}),
                JobSpec("no_such_type"),
            ]
        )
    finally:
        trail.close()
    done = jobtrail_cli(sqlite_url, "worker", "--log-format", "json", "--until-empty")
    assert done.returncode == 0, done.stderr
    lines = json_lines(done.stderr)
    assert {line["level"] for line in lines} <= {"DEBUG", "INFO", "WARNING", "ERROR"}
    assert any(line["message"].startswith("claimed 5, completed 2, failed 2") for line in lines)

    def about(job_id: str, event: str) -> dict[str, Any]:
        (line,) = [x for x in lines if x.get("job_id") == job_id and x.get("event") == event]
        return line

    failed = about(broke, "JobFailed")
    assert failed["error_code"] == "insufficient_credits"
    assert failed["error_category"] == "user"
    assert failed["job_type"] == "shot_video_generation" and failed["attempt"] == 1
    assert "insufficient credits" in failed["error_message"]
    assert about(ok, "JobCompleted")["job_type"] == "asset_image_generation"
    assert about(ok, "attempt_started")["attempt"] == 1
    retry = about(flaky, "JobRetryScheduled")
    assert retry["error_code"] == "upstream_timeout" and retry["attempt"] == 1
    assert about(unknown, "JobFailed")["error_code"] == "unknown_job_type"
    assert about(unknown, "unknown_type")["job_type"] == "no_such_type"


def test_the_root_option_and_a_failing_command_log_json_too(sqlite_url: str) -> None:
    connect(sqlite_url).close()
    done = jobtrail_cli(sqlite_url, "--log-format", "json", "scheduler", "--once")
    assert done.returncode == 0, done.stderr
    (line,) = json_lines(done.stderr)
    assert line["message"] == "enqueued 0 job(s)"
    refused = jobtrail_cli(sqlite_url, "--log-format", "json", "cancel", "not-an-id")
    assert refused.returncode == 1
    (error,) = json_lines(refused.stderr)
    assert error["level"] == "ERROR" and error["message"].startswith("jobtrail: error: ")


def test_text_stays_the_default(sqlite_url: str) -> None:
    connect(sqlite_url).close()
    done = jobtrail_cli(sqlite_url, "worker", "--until-empty")
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[-1].startswith("claimed 0, completed 0")
    assert not done.stderr.lstrip().startswith("{")
