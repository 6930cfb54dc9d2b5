"""The dashboard in a real browser: `jobtrail web` as a subprocess, Debian's headless Chromium
driven by playwright-core (tests/node/dashboard.mjs), checked against the log.

A mixed batch runs first (completed, a user failure, a system failure, a retried job); the
script filters the jobs to `failed`, opens a failed job (timeline, error, chain), opens the
failure-rate chart for the run's window and compares its table and SVG bars with the counts
read here from the log, screenshots every page under tmp_path, and fails on any console or
page error. Without chromium, node or tests/node/node_modules the test skips, unless
JOBTRAIL_REQUIRE_BROWSER=1 or JOBTRAIL_REQUIRE_KAFKA=1 (CI), where that is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from jobtrail.adapters.bootstrap import Jobtrail, connect
from jobtrail.domain.events import TERMINAL_EVENT_TYPES, JobFailed
from jobtrail.domain.retry import RetryPolicy
from jobtrail.processors.engine.worker import WorkerSettings

from tests.conftest import KAFKA_REQUIRED, unavailable

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
CHROMIUM = Path("/usr/bin/chromium")
REQUIRED = KAFKA_REQUIRED or os.environ.get("JOBTRAIL_REQUIRE_BROWSER") == "1"


def node_and_browser() -> str:
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed: the browser test cannot run", REQUIRED)
    if not (NODE_DIR / "node_modules" / "playwright-core").is_dir():
        unavailable(
            f"playwright-core is missing: `npm ci --ignore-scripts --prefix {NODE_DIR}`", REQUIRED
        )
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is missing: apt-get install chromium (make test does)", REQUIRED)
    return node


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def dashboard(sqlite_url: str, tmp_path: Path) -> Iterator[str]:
    """`jobtrail web` on a free port; its base URL once it answers."""
    port = free_port()
    log = (tmp_path / "web.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "jobtrail.adapters.cli.main", "--db", sqlite_url, "web"]
        + ["--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/counts", timeout=2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        "jobtrail web did not start:\n" + (tmp_path / "web.log").read_text()
                    ) from None
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def run_batch(trail: Jobtrail) -> dict[str, str]:
    trail.service.policy = RetryPolicy(base_delay=0)
    ids = {
        "ok": trail.submit("shot_video_generation", {"duration_ms": 5}),
        "ok2": trail.submit("asset_image_generation", {"duration_ms": 5}),
        "no_credits": trail.submit("shot_video_generation", {"credits": 0, "cost": 3}),
        "crash": trail.submit("asset_image_generation", {"crash": True}),
        "flaky": trail.submit("shot_video_generation", {"fail_times": 1, "duration_ms": 5}),
    }
    trail.worker(WorkerSettings(until_empty=True, poll_seconds=0.01)).run()
    return ids


def expectations(trail: Jobtrail, ids: dict[str, str]) -> dict[str, object]:
    """What the log says, read through the API (not through the dashboard's SQL)."""
    failures: Counter[str] = Counter({"finished": 0, "failed": 0, "user": 0, "system": 0})
    failed_ids = []
    for job_id in ids.values():
        for event in trail.history(job_id):
            failures["finished"] += event.type in TERMINAL_EVENT_TYPES
            if isinstance(event, JobFailed):
                failures["failed"] += 1
                failures[event.error_category] += 1
                failed_ids.append(job_id)
    job_id = ids["no_credits"]
    row = trail.get(job_id)
    return {
        "jobs": len(ids),
        "failed_ids": failed_ids,
        "failures": dict(failures),
        "job": {
            "id": job_id,
            "events": [[e.version, e.type] for e in trail.history(job_id)],
            "error_code": row["error_code"],
            "error_message": row["error_message"],
        },
    }


def test_the_dashboard_in_a_real_browser(sqlite_url: str, dashboard: str, tmp_path: Path) -> None:
    node = node_and_browser()
    started = datetime.now(UTC) - timedelta(seconds=1)
    trail = connect(sqlite_url)
    try:
        ids = run_batch(trail)
        expected = expectations(trail, ids)
    finally:
        trail.close()
    assert expected["failures"] == {"finished": 5, "failed": 2, "user": 1, "system": 1}
    screenshots = tmp_path / "screenshots"
    screenshots.mkdir()
    until = datetime.now(UTC) + timedelta(seconds=1)
    spec = tmp_path / "expected.json"
    spec.write_text(
        json.dumps(
            {
                **expected,
                "base": dashboard,
                "chromium": str(CHROMIUM),
                "screenshots": str(screenshots),
                "since": started.isoformat(),
                "until": until.isoformat(),
            }
        )
    )
    done = subprocess.run(
        [node, str(NODE_DIR / "dashboard.mjs"), str(spec)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=NODE_DIR,
    )
    results = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    explained = f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert results, explained
    result = json.loads(results[-1].removeprefix("RESULT "))
    assert result["problems"] == [], explained
    assert done.returncode == 0, explained
    shots = sorted(p.name for p in screenshots.iterdir())
    assert shots == ["failures.png", "job.png", "jobs-failed.png", "jobs.png", "latency.png"]
    assert all((screenshots / name).stat().st_size > 5000 for name in shots)
