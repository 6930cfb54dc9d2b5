"""A command imports only what it needs (issue 9, point 4), checked in a fresh interpreter.

Each case runs `jobtrail.adapters.cli.main.main([...])` in a subprocess and reads which
top-level packages ended up in `sys.modules`: deterministic, unlike a timing. `--help` and
usage errors load neither SQLAlchemy, Kafka, Alembic nor rich; `submit`, `show` and `jobs`
load no Kafka and no Alembic; `consume` loads no SQLAlchemy.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from jobtrail.adapters.bootstrap import connect
from jobtrail.adapters.cli.args import RELAY_BATCH
from jobtrail.adapters.kafka.relay import RelaySettings

WATCHED = frozenset({"sqlalchemy", "kafka", "alembic", "rich"})

PROBE = """
import contextlib, io, json, sys
from jobtrail.adapters.cli.main import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    try:
        code = main(json.loads(sys.argv[1]))
    except SystemExit as exit:
        code = exit.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def loaded(argv: list[str], database_url: str) -> tuple[int, set[str]]:
    """The exit status of ``jobtrail argv`` and which of `WATCHED` it imported."""
    code, modules = all_loaded(argv, database_url)
    return code, {name.partition(".")[0] for name in modules} & WATCHED


def all_loaded(argv: list[str], database_url: str) -> tuple[int, set[str]]:
    """The exit status of ``jobtrail argv`` and every module it imported."""
    env = {**os.environ, "JOBTRAIL_DATABASE_URL": database_url}
    env.pop("JOBTRAIL_APP", None)
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argv)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    report = json.loads(done.stdout)
    return report["code"], set(report["modules"])


@pytest.fixture
def job_id(sqlite_url: str) -> str:
    trail = connect(sqlite_url)
    try:
        return trail.submit("shot_video_generation", {"shot": 1})
    finally:
        trail.close()


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["--help"], 0),
        (["submit", "--help"], 0),
        (["worker", "--help"], 0),
        (["relay", "--help"], 0),
        (["consume", "--help"], 0),
        (["replay", "--help"], 0),
        (["prune", "--help"], 0),
        (["prune"], 2),
        (["prune", "--finished-before", "soon"], 2),
        (["jobs", "--status", "sleeping"], 2),
        (["submit"], 2),
        (["worker", "--app", "not a module path"], 2),
        (["no-such-command"], 2),
    ],
)
def test_help_and_usage_errors_load_none_of_the_heavy_packages(
    sqlite_url: str, argv: list[str], code: int
) -> None:
    assert loaded(argv, sqlite_url) == (code, set())


@pytest.mark.parametrize(
    "argv",
    [
        ["submit", "shot_video_generation", "--payload", '{"shot": 2}'],
        ["cancel", "{job_id}"],
        ["rebuild"],
        ["prune", "--finished-before", "30d"],
        ["prune", "--finished-before", "2026-01-01", "--dry-run"],
    ],
)
def test_commands_that_write_load_sqlalchemy_and_nothing_else_watched(
    sqlite_url: str, job_id: str, argv: list[str]
) -> None:
    argv = [arg.replace("{job_id}", job_id) for arg in argv]
    assert loaded(argv, sqlite_url) == (0, {"sqlalchemy"})


def test_a_submit_on_sqlite_loads_no_postgresql_dialect(sqlite_url: str) -> None:
    """The PostgreSQL dialect (and the asyncio it imports) is a quarter of a quick command's
    own import time: it loads only for a PostgreSQL database."""
    code, modules = all_loaded(["submit", "shot_video_generation"], sqlite_url)
    assert code == 0 and "sqlalchemy.dialects.sqlite" in modules
    assert not {m for m in modules if m.startswith("sqlalchemy.dialects.postgresql")}


@pytest.mark.parametrize(
    "argv",
    [
        ["jobs"],
        ["jobs", "--json"],
        ["show", "{job_id}"],
        ["show", "{job_id}", "--json"],
        ["history", "{job_id}"],
        ["stats"],
    ],
)
def test_reading_commands_load_no_kafka_and_no_alembic(
    sqlite_url: str, job_id: str, argv: list[str]
) -> None:
    argv = [arg.replace("{job_id}", job_id) for arg in argv]
    code, modules = loaded(argv, sqlite_url)
    assert code == 0
    assert "sqlalchemy" in modules and not modules & {"kafka", "alembic"}


def test_a_worker_without_relay_loads_no_kafka_and_no_alembic(sqlite_url: str) -> None:
    assert loaded(["worker", "--until-empty"], sqlite_url) == (0, {"sqlalchemy"})


def test_only_db_init_loads_alembic(tmp_path: os.PathLike[str]) -> None:
    assert loaded(["db", "init"], f"sqlite:///{tmp_path}/fresh.db") == (
        0,
        {"sqlalchemy", "alembic"},
    )


def test_consume_loads_kafka_and_no_database() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: refused at once
        address = f"127.0.0.1:{sock.getsockname()[1]}"
        argv = ["consume", "--kafka", address, "--connect-timeout", "0.5"]
        code, modules = loaded(argv, "sqlite:///unused.db")
    assert code == 1  # the broker is unreachable: one line, exit 1
    assert "kafka" in modules and "sqlalchemy" not in modules


def test_the_parsers_copy_of_the_relay_batch_is_the_relays_default() -> None:
    assert RelaySettings().batch == RELAY_BATCH
