"""The example media service (examples/media_service.py) runs on a real worker, on SQLite.

It is what docker-compose's workers run (`worker --app examples.media_service:registry`), and
the pattern the README shows a team: so its jobs must end as its docstring says, and it must
use nothing but the public API.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jobtrail
import pytest
import yaml
from jobtrail import Jobtrail, Registry, RetryPolicy, WorkerSettings, connect

from examples import media_service

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
FAST = WorkerSettings(until_empty=True, poll_seconds=0.01, progress_seconds=0.0)
SOURCE = "s3://uploads/storyboard-7/shot-3.mp4"


@pytest.fixture
def sqlite_trail(sqlite_url: str) -> Iterator[Jobtrail]:
    trail = connect(sqlite_url, policy=RetryPolicy(base_delay=0.01, max_delay=0.02))
    yield trail
    trail.close()


def run(trail: Jobtrail, job_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Submit one job, run the example's registry until the queue is empty, return its row."""
    job_id = trail.submit(job_type, payload)
    trail.worker(FAST, registry=media_service.registry).run()
    return trail.get(job_id)


def test_the_registry_has_a_class_and_two_function_processors() -> None:
    registry = media_service.registry
    assert registry.job_types == ["generate_thumbnails", "resize_image", "transcode_video"]
    assert isinstance(registry.get("transcode_video"), media_service.TranscodeVideo)


def test_an_image_is_resized_to_fit_keeping_its_aspect_ratio(sqlite_trail: Jobtrail) -> None:
    row = run(sqlite_trail, "resize_image", {"source": SOURCE, "width": 1920, "height": 1080})
    assert row["status"] == "completed", row["error_message"]
    assert row["result"]["size"] == [512, 288]
    assert row["result"]["image_url"].endswith(f"/resize_image/{row['id']}/512x288.jpg")


def test_thumbnails_are_spread_over_the_video_with_progress(sqlite_trail: Jobtrail) -> None:
    row = run(sqlite_trail, "generate_thumbnails", {"source": SOURCE, "duration_s": 10})
    assert (row["status"], row["progress"]) == ("completed", 100), row["error_message"]
    assert [t["at_s"] for t in row["result"]["thumbnails"]] == [2.0, 4.0, 6.0, 8.0]
    progressed = [e for e in sqlite_trail.history(row["id"]) if e.type == "JobProgressed"]
    assert progressed, "the function's progress reports reach the log"


def test_a_busy_encoder_is_retried_and_the_video_transcoded(sqlite_trail: Jobtrail) -> None:
    payload = {
        "source": SOURCE,
        "duration_s": 8,
        "renditions": ["1080p", "480p"],
        "encoder_busy_attempts": 1,
    }
    row = run(sqlite_trail, "transcode_video", payload)
    assert (row["status"], row["attempt"]) == ("completed", 2), row["error_message"]
    types = [event.type for event in sqlite_trail.history(row["id"])]
    assert types[:4] == ["JobQueued", "JobStarted", "JobRetryScheduled", "JobStarted"]
    outputs = row["result"]["renditions"]
    assert [(o["name"], o["bytes"]) for o in outputs] == [("1080p", 5_000_000), ("480p", 1_400_000)]


@pytest.mark.parametrize(
    ("job_type", "payload", "message"),
    [
        ("transcode_video", {"source": SOURCE, "duration_s": 8, "renditions": ["4k"]}, "4k"),
        ("resize_image", {"source": SOURCE, "width": 0, "height": 10}, "'width'"),
        ("generate_thumbnails", {"duration_s": 10}, "'source'"),
    ],
    ids=["unknown-rendition", "zero-width", "no-source"],
)
def test_bad_input_fails_at_once_as_a_user_error(
    sqlite_trail: Jobtrail, job_type: str, payload: dict[str, Any], message: str
) -> None:
    row = run(sqlite_trail, job_type, payload)
    assert (row["status"], row["attempt"]) == ("failed", 1)
    assert (row["error_code"], row["error_category"]) == ("invalid_input", "user")
    assert message in row["error_message"]


def test_the_example_imports_only_the_public_api() -> None:
    tree = ast.parse((ROOT / "examples" / "media_service.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jobtrail"):
            assert node.module == "jobtrail", f"imports {node.module}: use `from jobtrail import`"
            assert {a.name for a in node.names} <= set(jobtrail.__all__)
        elif isinstance(node, ast.Import):
            assert not any(a.name.startswith("jobtrail.") for a in node.names)


def test_the_compose_workers_run_the_example_from_the_image() -> None:
    command = COMPOSE["services"]["worker"]["command"]
    app = command[command.index("--app") + 1]
    module, attribute = app.split(":")
    assert module == media_service.__name__
    assert isinstance(getattr(media_service, attribute), Registry)
    dockerfile = (ROOT / "Dockerfile").read_text().splitlines()
    assert "WORKDIR /app" in dockerfile, "the CLI puts the working directory on sys.path"
    assert f"COPY {module.split('.')[0]} ./{module.split('.')[0]}" in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert module.split(".")[0] not in ignored


def test_the_compose_submit_tools_job_runs_on_the_compose_workers_command(tmp_path: Path) -> None:
    """As in the image: examples/ in the working directory, the CLI's own sys.path."""
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBTRAIL_", "PYTHONPATH"))}
    env["JOBTRAIL_DATABASE_URL"] = f"sqlite:///{tmp_path / 'compose.db'}"
    jobtrail_cli = str(Path(sys.executable).parent / "jobtrail")

    def cli(*args: str) -> str:
        result = subprocess.run(
            [jobtrail_cli, *args], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60
        )
        assert result.returncode == 0, f"jobtrail {' '.join(args)}:\n{result.stderr}"
        return result.stdout

    cli("db", "init")
    job_id = cli("submit", *COMPOSE["services"]["submit"]["command"]).strip()
    cli(*COMPOSE["services"]["worker"]["command"], "--until-empty")
    row = json.loads(cli("show", job_id, "--json"))
    assert (row["job_type"], row["status"]) == ("transcode_video", "completed"), row
