"""`jobtrail worker --app module:attribute` runs a team's own processors (issue 9, point 3).

The processors module is written to a temporary directory and the worker is the console
script, started there as a subprocess: a console script does not put the current directory
on `sys.path`, so these tests fail unless the CLI does. A bad `--app` is one line on stderr,
exit 1, and nothing claimed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from jobtrail.adapters.bootstrap import Jobtrail, connect
from jobtrail.adapters.cli.app import AppNotLoaded, load_registry

PROCESSORS = '''
"""A team's processors, as the README shows them."""

from jobtrail import BaseProcessor, InsufficientCredits, JobContext, JobView, Registry


class ResizeImage(BaseProcessor):
    job_type = "resize_image"

    def process(self, job: JobView, ctx: JobContext) -> dict[str, int]:
        return {"width": job.payload["width"] // 2}


registry = Registry([ResizeImage()])


@registry.processor("make_thumbnail")
def make_thumbnail(job: JobView, ctx: JobContext) -> dict[str, str]:
    ctx.progress(50, "halfway")
    return {"thumbnail": f"thumb-{job.payload['image']}"}


@registry.processor("charge_credits")
def charge_credits(job: JobView, ctx: JobContext) -> None:
    raise InsufficientCredits(f"{job.payload['credits']} credits left, 5 needed")


def make_registry() -> Registry:
    return registry


NOT_A_REGISTRY = 42
'''

JOBTRAIL = Path(sys.executable).with_name("jobtrail")
"""The console script: it does not put the current directory on `sys.path` (python -m does)."""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A directory holding the team's module `team_processors` and modules that fail."""
    (tmp_path / "team_processors.py").write_text(PROCESSORS)
    (tmp_path / "broken_processors.py").write_text("raise RuntimeError('no config file')\n")
    (tmp_path / "needs_a_package.py").write_text("import package_not_installed\n")
    return tmp_path


@pytest.fixture
def db(backend_url: str) -> Iterator[Jobtrail]:
    trail = connect(backend_url)
    yield trail
    trail.close()


def worker(
    project: Path, url: str, *args: str, app_env: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JOBTRAIL_DATABASE_URL": url}
    env.pop("JOBTRAIL_APP", None)
    if app_env is not None:
        env["JOBTRAIL_APP"] = app_env
    return subprocess.run(
        [str(JOBTRAIL), "worker", "--until-empty", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_worker_runs_the_apps_class_and_function_processors(
    project: Path, db: Jobtrail, backend_url: str
) -> None:
    resized = db.submit("resize_image", {"width": 640})
    thumbnail = db.submit("make_thumbnail", {"image": "cat.png"})
    charged = db.submit("charge_credits", {"credits": 2})
    unknown = db.submit("shot_video_generation", {"shot": 1})  # a sample type, not the app's

    done = worker(project, backend_url, "--app", "team_processors:registry")

    assert done.returncode == 0, done.stderr
    first_log_line = done.stderr.splitlines()[0]
    assert "running the processors of team_processors:registry" in first_log_line
    assert "charge_credits, make_thumbnail, resize_image" in first_log_line
    rows = {job_id: db.get(job_id) for job_id in (resized, thumbnail, charged, unknown)}
    assert [rows[j]["status"] for j in (resized, thumbnail, charged, unknown)] == [
        "completed",
        "completed",
        "failed",
        "failed",
    ]
    assert rows[resized]["result"] == {"width": 320}
    assert rows[thumbnail]["result"] == {"thumbnail": "thumb-cat.png"}
    assert rows[charged]["error_code"] == "insufficient_credits"
    assert rows[charged]["error_category"] == "user"
    assert rows[charged]["error_message"] == "2 credits left, 5 needed"
    assert rows[unknown]["error_code"] == "unknown_job_type"
    progressed = [e for e in db.history(thumbnail) if e.type == "JobProgressed"]
    assert [(e.data()["percent"], e.data()["message"]) for e in progressed] == [(50, "halfway")]


def test_jobtrail_app_names_a_function_returning_the_registry(
    project: Path, sqlite_url: str
) -> None:
    trail = connect(sqlite_url)
    try:
        job_id = trail.submit("resize_image", {"width": 100})
        done = worker(project, sqlite_url, app_env="team_processors:make_registry")
        assert done.returncode == 0, done.stderr
        assert trail.get(job_id)["result"] == {"width": 50}
    finally:
        trail.close()


def test_without_an_app_the_worker_says_it_runs_the_samples(project: Path, sqlite_url: str) -> None:
    done = worker(project, sqlite_url)
    assert done.returncode == 0, done.stderr
    first_log_line = done.stderr.splitlines()[0]
    assert "running the sample processors" in first_log_line
    assert "shot_video_generation" in first_log_line


@pytest.mark.parametrize(
    ("app", "message"),
    [
        ("no_such_module:registry", "no module named 'no_such_module'"),
        ("team_processors:nothing", "module 'team_processors' has no attribute 'nothing'"),
        ("team_processors:NOT_A_REGISTRY", "it is a int, not a Registry"),
        ("broken_processors", "importing 'broken_processors' raised RuntimeError: no config"),
        (
            "needs_a_package:registry",
            "importing 'needs_a_package' raised ModuleNotFoundError: "
            "No module named 'package_not_installed'",
        ),
    ],
)
def test_a_bad_app_is_one_line_exit_1_and_nothing_claimed(
    project: Path, db: Jobtrail, backend_url: str, app: str, message: str
) -> None:
    job_id = db.submit("resize_image", {"width": 640})

    done = worker(project, backend_url, "--app", app)

    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"jobtrail: error: Cannot load the processors of --app {app}")
    assert message in done.stderr
    row = db.get(job_id)
    assert (row["status"], row["version"]) == ("queued", 1)


def test_a_malformed_app_is_a_usage_error(project: Path, sqlite_url: str) -> None:
    done = worker(project, sqlite_url, "--app", "team_processors:a:b")
    assert done.returncode == 2
    assert "expected module.path or module.path:attribute" in done.stderr


# ------------------------------------------------------------------------ in process


@pytest.fixture
def importable(project: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """`load_registry` run from the project directory, leaving sys.path and modules as found."""
    monkeypatch.chdir(project)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(project))])
    yield project
    for name in ("team_processors", "broken_processors", "needs_a_package"):
        sys.modules.pop(name, None)


def test_the_attribute_defaults_to_registry(importable: Path) -> None:
    registry = load_registry("team_processors")
    assert registry.job_types == ["charge_credits", "make_thumbnail", "resize_image"]
    assert str(importable) == sys.path[0]


def test_a_factory_that_raises_is_reported_in_one_line(importable: Path) -> None:
    (importable / "factory_fails.py").write_text(
        textwrap.dedent(
            """
            def registry():
                raise KeyError("JOBTRAIL_SECRET")
            """
        )
    )
    try:
        with pytest.raises(AppNotLoaded, match="calling it raised KeyError: 'JOBTRAIL_SECRET'"):
            load_registry("factory_fails")
    finally:
        sys.modules.pop("factory_fails", None)
