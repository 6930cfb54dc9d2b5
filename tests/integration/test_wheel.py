"""jobtrail as a user gets it: the wheel, installed in a fresh virtual environment.

The wheel is built from a copy of the package's sources (so no stale `build/` of the
repository can slip files in), installed in a venv outside the repository, and every check
runs from an empty directory with a clean environment: nothing of the repository is on
sys.path, so only what the wheel ships can be imported. Dependencies come from the package
index (or pip's cache). One build and one venv serve the whole module.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import jobtrail
import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = (
    "pyproject.toml",
    "README.md",
    "jobtrail",
    "domain",
    "adapters",
    "processors",
    "projections",
)
FOLDERS = ("domain", "adapters", "processors", "projections")
STEP_TIMEOUT = 180


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    home: Path
    """An empty directory outside the repository: the working directory of every check."""

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    @property
    def jobtrail(self) -> str:
        return str(self.venv / "bin" / "jobtrail")

    def env(self) -> dict[str, str]:
        """The caller's environment without anything that points at the repository."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("JOBTRAIL_", "PYTHON", "VIRTUAL_ENV", "COVERAGE"))
        }
        env["PATH"] = os.pathsep.join([str(self.venv / "bin"), os.defpath])
        return env

    def run(self, *argv: str, cwd: Path | None = None, timeout: float = 60) -> Completed:
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            cwd=cwd or self.home,
            env=self.env(),
            timeout=timeout,
        )
        return Completed(result.returncode, result.stdout, result.stderr)

    def cli(self, *args: str, cwd: Path | None = None) -> str:
        """Run `jobtrail ARGS` and return its stdout; any failure fails the test."""
        result = self.run(self.jobtrail, *args, cwd=cwd)
        assert result.code == 0, f"jobtrail {' '.join(args)} exited {result.code}:\n{result.err}"
        return result.out


@dataclass(frozen=True)
class Completed:
    code: int
    out: str
    err: str


def step(argv: list[str], what: str, cwd: Path) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=STEP_TIMEOUT)
    assert result.returncode == 0, f"{what} failed:\n{result.stdout}\n{result.stderr}"
    assert "would be ignored" not in result.stdout + result.stderr, (
        f"setuptools found a folder missing from `packages`:\n{result.stderr}"
    )


def copy_sources(to: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, to / name, ignore=ignore)
        else:
            shutil.copy2(source, to / name)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("wheel")
    assert ROOT not in base.parents, "the venv must live outside the repository"
    src, dist, venv, home = base / "src", base / "dist", base / "venv", base / "home"
    src.mkdir()
    copy_sources(src)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    step(
        [*pip, "wheel", "--no-deps", "--verbose", "--wheel-dir", str(dist), str(src)], "build", base
    )
    [wheel] = dist.glob("jobtrail-*.whl")
    step([sys.executable, "-m", "venv", "--without-pip", str(venv)], "venv", base)
    step(
        [*pip, "--python", str(venv / "bin" / "python"), "install", "-q", str(wheel)],
        "install",
        base,
    )
    home.mkdir()
    return Installed(wheel, venv, home)


# ---------------------------------------------------------------- what the wheel holds


def wheel_files(installed: Installed) -> list[str]:
    with zipfile.ZipFile(installed.wheel) as wheel:
        return wheel.namelist()


def test_the_wheel_installs_jobtrail_and_nothing_else_at_top_level(installed: Installed) -> None:
    tops = {name.split("/")[0] for name in wheel_files(installed)}
    [metadata] = tops - {"jobtrail"}
    assert metadata.startswith("jobtrail-") and metadata.endswith(".dist-info"), tops


def test_the_wheel_holds_the_migrations_schemas_and_type_marker(installed: Installed) -> None:
    files = set(wheel_files(installed))
    versions = ROOT / "adapters" / "sql" / "migrations" / "versions"
    migrations = {
        f"jobtrail/adapters/sql/migrations/versions/{p.name}" for p in versions.glob("*.py")
    }
    assert len(migrations) >= 5
    assert migrations <= files
    assert {
        "jobtrail/py.typed",
        "jobtrail/adapters/sql/migrations/script.py.mako",
        "jobtrail/adapters/sql/migrations/env.py",
        "jobtrail/adapters/kafka/schemas/job-event.schema.json",
        "jobtrail/adapters/kafka/schemas/asyncapi.yaml",
    } <= files
    templates = ROOT / "adapters" / "web" / "templates"
    assert {f"jobtrail/adapters/web/templates/{p.name}" for p in templates.glob("*.html")} <= files


# ---------------------------------------------------------------- importing it


IMPORTS = """
import importlib, json
import jobtrail

missing = [name for name in jobtrail.__all__ if getattr(jobtrail, name, None) is None]
bare = {}
for name in ("domain", "adapters", "processors", "projections"):
    try:
        importlib.import_module(name)
        bare[name] = "imported"
    except ModuleNotFoundError as error:
        bare[name] = error.name
print(json.dumps({"file": jobtrail.__file__, "all": sorted(jobtrail.__all__),
                  "missing": missing, "bare": bare}))
"""


def test_the_whole_public_api_imports_and_the_folders_do_not(installed: Installed) -> None:
    result = installed.run(installed.python, "-c", IMPORTS)
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert Path(report["file"]).is_relative_to(installed.venv), "jobtrail came from elsewhere"
    assert report["all"] == sorted(jobtrail.__all__), "the wheel's API is not the source's"
    assert report["missing"] == []
    assert report["bare"] == {name: name for name in FOLDERS}, "a folder is importable bare"


def test_python_m_jobtrail_is_the_cli(installed: Installed) -> None:
    result = installed.run(installed.python, "-m", "jobtrail", "--help")
    assert result.code == 0, result.err
    assert result.out.startswith("usage: jobtrail")


# ---------------------------------------------------------------- the CLI on SQLite


def test_submit_and_run_a_sample_job_in_an_empty_directory(
    installed: Installed, tmp_path: Path
) -> None:
    """No configuration: the database is a SQLite file in the working directory."""
    installed.cli("db", "init", cwd=tmp_path)
    assert (tmp_path / "jobtrail.db").is_file()
    payload = json.dumps({"duration_ms": 20})
    job_id = installed.cli("submit", "asset_image_generation", "--payload", payload, cwd=tmp_path)
    job_id = job_id.strip()
    installed.cli("worker", "--until-empty", cwd=tmp_path)
    row = json.loads(installed.cli("show", job_id, "--json", cwd=tmp_path))
    assert (row["status"], row["attempt"]) == ("completed", 1), row
    assert row["result"]["image_url"].endswith(job_id)


def test_the_installed_dashboard_serves_a_job_from_an_empty_directory(
    installed: Installed, tmp_path: Path
) -> None:
    """`jobtrail web` from the wheel: its templates load, a job's page shows its timeline."""
    installed.cli("db", "init", cwd=tmp_path)
    job_id = installed.cli("submit", "asset_image_generation", cwd=tmp_path).strip()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    web = subprocess.Popen(
        [installed.jobtrail, "web", "--port", str(port)],
        cwd=tmp_path,
        env=installed.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        page = _get_when_up(f"http://127.0.0.1:{port}/jobs/{job_id}", web)
        assert job_id in page and "JobQueued" in page and "verified" in page
    finally:
        web.terminate()
        _, err = web.communicate(timeout=30)
    assert "Traceback" not in err, err


def _get_when_up(url: str, server: subprocess.Popen[str], timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                body: str = response.read().decode()
                return body
        except OSError:
            assert server.poll() is None, "jobtrail web exited"
            assert time.monotonic() < deadline, "jobtrail web did not answer"
            time.sleep(0.2)


TEAM_MODULE = '''
"""A team's processors, as the quick start writes them."""

from jobtrail import BaseProcessor, InsufficientCredits, JobContext, JobView, Registry

registry = Registry()


class Watermark(BaseProcessor):
    job_type = "watermark"

    def process(self, job: JobView, ctx: JobContext) -> dict:
        ctx.progress(100, "stamped")
        return {"stamped": job.payload["image"]}


registry.register(Watermark())


@registry.processor("resize_image")
def resize_image(job: JobView, ctx: JobContext) -> dict:
    ctx.progress(50, "half way")
    return {"width": job.payload["width"] // 2}


NOT_A_REGISTRY = {"resize_image": resize_image}


@registry.processor("bill_storyboard")
def bill_storyboard(job: JobView, ctx: JobContext) -> None:
    raise InsufficientCredits(f"{job.payload['credits']} credits left, 5 needed")
'''


def test_a_teams_processors_run_with_app(installed: Installed, tmp_path: Path) -> None:
    (tmp_path / "mymod.py").write_text(textwrap.dedent(TEAM_MODULE))
    installed.cli("db", "init", cwd=tmp_path)
    ids = {
        job_type: installed.cli("submit", job_type, "--payload", payload, cwd=tmp_path).strip()
        for job_type, payload in (
            ("watermark", '{"image": "s3://in/a.png"}'),
            ("resize_image", '{"width": 640}'),
            ("bill_storyboard", '{"credits": 2}'),
        )
    }
    installed.cli("worker", "--app", "mymod:registry", "--until-empty", cwd=tmp_path)
    rows = {t: json.loads(installed.cli("show", i, "--json", cwd=tmp_path)) for t, i in ids.items()}
    assert (rows["watermark"]["status"], rows["watermark"]["result"]) == (
        "completed",
        {"stamped": "s3://in/a.png"},
    )
    assert (rows["resize_image"]["status"], rows["resize_image"]["result"]) == (
        "completed",
        {"width": 320},
    )
    failed = rows["bill_storyboard"]
    assert (failed["status"], failed["attempt"]) == ("failed", 1)
    assert (failed["error_code"], failed["error_category"]) == ("insufficient_credits", "user")
    assert failed["error_message"] == "2 credits left, 5 needed"


@pytest.mark.parametrize(
    "app",
    [
        "nosuchmodule:registry",
        "mymod:nosuchattribute",
        "mymod:NOT_A_REGISTRY",
        "mymod:resize_image",
    ],
    ids=["missing-module", "missing-attribute", "not-a-registry", "a-processor-function"],
)
def test_a_bad_app_is_one_line_and_exit_1_with_nothing_claimed(
    installed: Installed, tmp_path: Path, app: str
) -> None:
    (tmp_path / "mymod.py").write_text(textwrap.dedent(TEAM_MODULE))
    installed.cli("db", "init", cwd=tmp_path)
    job_id = installed.cli("submit", "resize_image", "--payload", '{"width": 8}', cwd=tmp_path)
    result = installed.run(
        installed.jobtrail, "worker", "--app", app, "--until-empty", cwd=tmp_path
    )
    assert result.code == 1, result.err
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert app in result.err
    assert "Traceback" not in result.err
    row = json.loads(installed.cli("show", job_id.strip(), "--json", cwd=tmp_path))
    assert (row["status"], row["attempt"]) == ("queued", 0)
