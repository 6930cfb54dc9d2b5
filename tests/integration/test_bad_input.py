"""One clear line for every bad input, the same on SQLite and PostgreSQL (issue 11 points 5, 7, 8).

Every field of a command is checked in one place before anything is written
(`jobtrail.domain.limits`, `JobService.submit_many`'s `check_spec`, the CLI's argument types):

- the CLI, as a real process (``python -m jobtrail``): exit 2 for a usage error (an option's
  number malformed or out of range, an empty ``--db``), exit 1 for everything a command
  refuses; either way exactly one line on stderr, no traceback, nothing on stdout and nothing
  written (events, `job` rows, seals);
- the API: `InvalidField` / `InvalidJsonValue` naming the field, nothing written;
- the limits' boundaries: the largest accepted values are stored and read back on both
  backends (nothing the check accepts is refused by PostgreSQL);
- the small ones: concurrent ``db init``, ``export`` onto an existing file, into a missing
  directory and after a failure, SQLite paths that do not exist or sit in a read-only
  directory, ``replay --job`` with an unknown id, ``submit`` with a falsy payload.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest
from jobtrail.adapters.bootstrap import Jobtrail, connect
from jobtrail.adapters.sql.schema import job, job_log_seals
from jobtrail.domain import limits
from jobtrail.domain.errors import (
    InvalidCommand,
    InvalidDatabaseUrl,
    InvalidField,
    InvalidJsonValue,
    NoDatabase,
)
from jobtrail.domain.job import Meta
from jobtrail.domain.services import JobSpec
from psycopg import sql
from sqlalchemy import func, select, text

from tests.conftest import ADMIN_URL, database_url
from tests.helpers import event_count

Arg = str | bytes

KNOWN = "00000000-0000-4000-8000-000000000000"
"""A job id no test submits."""


# ------------------------------------------------------------------ helpers


def written(url: str) -> tuple[int, int, int]:
    """Events, `job` rows and seals in the database at ``url``."""
    trail = connect(url)
    try:
        with trail.engine.connect() as conn:
            rows = conn.execute(select(func.count()).select_from(job)).scalar_one()
            seals = conn.execute(select(func.count()).select_from(job_log_seals)).scalar_one()
        return event_count(trail), rows, seals
    finally:
        trail.close()


def jobtrail(*args: Arg, url: str | None = None, cwd: Path | None = None) -> tuple[int, str, str]:
    """``python -m jobtrail [--db url] args…`` as a user runs it: exit status, stdout, stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBTRAIL_")}
    argv: list[Arg] = [sys.executable, "-m", "jobtrail"]
    if url is not None:
        argv += ["--db", url]
    done = subprocess.run(
        [*argv, *args], env=env, capture_output=True, timeout=120, cwd=cwd, check=False
    )
    decode = lambda data: data.decode("utf-8", "backslashreplace")  # noqa: E731
    return done.returncode, decode(done.stdout), decode(done.stderr)


def assert_one_line(result: tuple[int, str, str], code: int, message: str) -> None:
    status, out, err = result
    assert (status, out) == (code, ""), err
    assert err.startswith("jobtrail: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert message in err, err


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """A directory for the files commands write (a SQLite test database is in tmp_path)."""
    path = tmp_path / "files"
    path.mkdir()
    return path


@pytest.fixture
def url(backend_url: str) -> str:
    """A database on each backend, with one job in it (so "nothing written" means something)."""
    trail = connect(backend_url)
    try:
        trail.submit("t", {"n": 1})
    finally:
        trail.close()
    return backend_url


# ------------------------------------------------------------------ the CLI: usage errors

NUMBER = "must be a whole number from"
SECONDS = "must be a finite number of seconds"

USAGE_ERRORS: list[tuple[list[str], str]] = [
    (["submit", "t", "--delay", "nan"], f"argument --delay: {SECONDS} from 0 to 315360000"),
    (["submit", "t", "--delay", "inf"], "argument --delay"),
    (["submit", "t", "--delay", "-inf"], "argument --delay"),
    (["submit", "t", "--delay", "1e20"], "argument --delay"),
    (["submit", "t", "--delay", "3e11"], "argument --delay"),
    (["submit", "t", "--delay", "315360000.5"], "argument --delay"),
    (["submit", "t", "--delay", "-1"], "argument --delay"),
    (["submit", "t", "--delay", "soon"], "argument --delay"),
    (
        ["submit", "t", "--priority", "18446744073709551616"],
        f"argument --priority: {NUMBER} -2147483648 to 2147483647, not '18446744073709551616'",
    ),
    (["submit", "t", "--priority", "2147483648"], "argument --priority"),
    (["submit", "t", "--priority", "-2147483649"], "argument --priority"),
    (["submit", "t", "--priority", "1.5"], "argument --priority"),
    (["submit", "t", "--priority", "7" * 5000], "(5,000 characters)"),
    (["submit", "t", "--max-attempts", "0"], f"argument --max-attempts: {NUMBER} 1 to 1000"),
    (["submit", "t", "--max-attempts", "1001"], "argument --max-attempts"),
    (["submit", "t", "--max-attempts", "1000000000000"], "argument --max-attempts"),
    (["jobs", "--limit", "99999999999999999999"], f"argument --limit: {NUMBER} 1 to 1000000"),
    (["jobs", "--limit", "0"], "argument --limit"),
    (["jobs", "--limit", "1e3"], "argument --limit"),
    (["jobs", "--status", "sleeping"], "argument --status: invalid choice"),
    (
        ["replay", "--since", "99999999999999999999"],
        f"argument --since: {NUMBER} 0 to 9223372036854775807",
    ),
    (["replay", "--since", "9223372036854775808"], "argument --since"),
    (["replay", "--since", "-1"], "argument --since"),
    (["replay", "--max-problems", "-1"], "argument --max-problems"),
    (["replay", "--max-problems", "99999999999999999999"], "argument --max-problems"),
    (["replay", "--idle", "nan"], "argument --idle"),
    (["replay", "--as-of", "0001-01-01T00:00:00+01:00"], "outside the years 1 to 9999"),
    (["replay", "--job", "not-a-job"], "argument --job: 'not-a-job' is not a job id"),
    (["worker", "--lease", "nan"], f"argument --lease: {SECONDS} more than 0 and up to 604800"),
    (["worker", "--lease", "inf"], "argument --lease"),
    (["worker", "--lease", "1e300"], "argument --lease"),
    (["worker", "--lease", "0"], "argument --lease"),
    (["worker", "--heartbeat", "nan"], "argument --heartbeat"),
    (["worker", "--grace", "-1"], f"argument --grace: {SECONDS} from 0 to 604800"),
    (["worker", "--grace", "nan"], "argument --grace"),
    (["worker", "--concurrency", "1001"], "argument --concurrency"),
    (["worker", "--prefetch", "0"], "argument --prefetch"),
    (["worker", "--max-jobs", "99999999999999999999"], "argument --max-jobs"),
    (["reap", "--interval", "nan"], "argument --interval"),
    (["relay", "--partitions", "0"], "argument --partitions"),
    (["relay", "--batch", "1e9"], "argument --batch"),
    (["consume", "--connect-timeout", "inf"], "argument --connect-timeout"),
    (["submit"], "the following arguments are required: TYPE"),
]


@pytest.mark.parametrize(
    ("args", "message"), USAGE_ERRORS, ids=[" ".join(a)[:60] for a, _ in USAGE_ERRORS]
)
def test_a_usage_error_is_one_line_exit_2_and_writes_nothing(
    url: str, args: list[str], message: str
) -> None:
    before = written(url)
    result = jobtrail(*args, url=url)
    assert_one_line(result, 2, message)
    assert "(see `jobtrail" in result[2]
    assert written(url) == before


def test_an_empty_database_url_is_refused(tmp_path: Path) -> None:
    """``--db ""`` once meant ./jobtrail.db. On the command line it is a usage error; in the
    environment it is configuration, refused when the command connects (exit 1)."""
    assert_one_line(
        jobtrail("jobs", url="", cwd=tmp_path), 2, "argument --db: the database URL is empty"
    )
    env = {**os.environ, "JOBTRAIL_DATABASE_URL": " "}
    done = subprocess.run(
        [sys.executable, "-m", "jobtrail", "jobs"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    result = (done.returncode, done.stdout, done.stderr)
    assert_one_line(result, 1, "' ' is not a database URL jobtrail can use: it is empty")
    assert list(tmp_path.iterdir()) == []  # no ./jobtrail.db made instead
    with pytest.raises(InvalidDatabaseUrl):
        connect("")


# ------------------------------------------------------------------ the CLI: command errors

LONG = "x" * 201

COMMAND_ERRORS: list[tuple[list[Arg], str]] = [
    (["submit", ""], "job_type: must not be empty."),
    (["submit", "  "], "job_type: must not be empty."),
    (["submit", LONG], "job_type: is 201 characters long; the limit is 200."),
    (["submit", " t"], "job_type: ' t' starts or ends with a space."),
    (["submit", "a\tb"], "job_type: contains the unprintable character U+0009 at index 1."),
    (["submit", "a\u200bb"], "unprintable character U+200B"),
    (
        [b"submit", b"video-\xff"],
        "job_type: contains a lone surrogate \\udcff, which is not Unicode.",
    ),
    (["submit", "t", "--idempotency-key", ""], "idempotency_key: must not be empty."),
    (["submit", "t", "--idempotency-key", LONG], "idempotency_key: is 201 characters long"),
    (
        [b"submit", b"t", b"--idempotency-key", b"\xfe"],
        "idempotency_key: contains a lone surrogate",
    ),
    (["submit", "t", "--actor", LONG], "meta.actor: is 201 characters long"),
    ([b"submit", b"t", b"--actor", b"\xff"], "meta.actor: contains a lone surrogate"),
    (["submit", "t", "--payload", "[]"], "--payload must be a JSON object"),
    (["submit", "t", "--payload", '{"x": NaN}'], "payload.x: NaN is not JSON"),
    (
        ["cancel", "{job}", "--reason", "r" * 1001],
        "reason: is 1,001 characters long; the limit is 1000.",
    ),
    ([b"cancel", b"{job}", b"--reason", b"\xff"], "reason: contains a lone surrogate"),
    (["cancel", KNOWN], f"No job with id {KNOWN}."),
    (["show", "not-a-job"], "'not-a-job' is not a job id"),
    ([b"jobs", b"--type", b"\xff"], "job_type: contains a lone surrogate"),
    (["jobs", "--type", LONG], "job_type: is 201 characters long"),
    (["worker", "--types", f"t,{LONG}", "--until-empty"], "--types: is 201 characters long"),
    (["seal", "--actor", LONG], "--actor: is 201 characters long"),
    (["replay", "--job", KNOWN], f"No job with id {KNOWN}."),
    (["export", "--out", "{tmp}/no such directory/log.jsonl"], "there is no directory"),
    (["export", "--out", "{tmp}"], "it is a directory; name a file in it."),
    (["export", "--out", "{tmp}/existing.jsonl"], "it exists (--force replaces it)."),
]


def _ids(cases: Sequence[tuple[Sequence[Arg], str]]) -> list[str]:
    return [
        " ".join(a if isinstance(a, str) else a.decode("latin-1") for a in args)[:60]
        for args, _ in cases
    ]


@pytest.mark.parametrize(("args", "message"), COMMAND_ERRORS, ids=_ids(COMMAND_ERRORS))
def test_a_refused_command_is_one_line_exit_1_and_writes_nothing(
    url: str, files: Path, args: list[Arg], message: str
) -> None:
    (files / "existing.jsonl").write_text("an earlier export\n")
    trail = connect(url)
    job_id = trail.jobs()[0]["id"]
    trail.close()
    args = [
        a.replace("{job}", job_id).replace("{tmp}", str(files))
        if isinstance(a, str)
        else a.replace(b"{job}", job_id.encode())
        for a in args
    ]
    before = written(url)

    assert_one_line(jobtrail(*args, url=url), 1, message)

    assert written(url) == before
    assert sorted(p.name for p in files.iterdir()) == ["existing.jsonl"]  # no .partial
    assert (files / "existing.jsonl").read_text() == "an earlier export\n"


BAD_URLS = [
    ("mysql://x/y", "jobtrail runs on SQLite and PostgreSQL, not 'mysql'"),
    ("oracle://scott:tiger@db/x", "not 'oracle'"),
    (
        "postgresql://user:hunter2@db:abc/jobs",
        "'postgresql://user:***@db:abc/jobs' is not a database URL",
    ),
    ("postgresql+psycopg2://user:hunter2@db/jobs", "through psycopg 3, not 'psycopg2'"),
    ("postgresql+asyncpg://db/jobs", "not 'asyncpg'"),
    ("sqlite+pysqlcipher:///x.db", "Python's sqlite3, not 'pysqlcipher'"),
    ("sqlite:///x.db?mode=ro", "SQLite takes no option mode"),
    ("sqlite:///x.db?timeout=soon", "could not convert string to float"),
    ("sqlite://user@host/x.db", "is not a database URL jobtrail can use"),
    ("::::", "is not a database URL jobtrail can use"),
    ("postgresql://[::1/x", "is not a database URL jobtrail can use"),
]


@pytest.mark.parametrize(("bad", "message"), BAD_URLS, ids=[u for u, _ in BAD_URLS])
def test_a_database_url_jobtrail_cannot_use_is_one_line_without_its_password(
    tmp_path: Path, bad: str, message: str
) -> None:
    for args in (["jobs"], ["submit", "t"], ["db", "init"]):
        result = jobtrail(*args, url=bad, cwd=tmp_path)
        assert_one_line(result, 1, message)
        assert "hunter2" not in result[2] and "tiger" not in result[2]
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InvalidDatabaseUrl):
        connect(bad)


# ------------------------------------------------------------------ the API

NAN, INF = math.nan, math.inf

API_ERRORS: list[tuple[dict[str, Any], str]] = [
    ({"job_type": ""}, "job_type: must not be empty."),
    ({"job_type": "x" * 201}, "job_type: is 201 characters long; the limit is 200."),
    ({"job_type": "a\x00b"}, "job_type: contains U+0000, which PostgreSQL cannot store."),
    ({"job_type": "\udcff"}, "job_type: contains a lone surrogate \\udcff"),
    ({"job_type": "a\nb"}, "job_type: contains the unprintable character U+000A at index 1."),
    (
        {"job_type": None},
        "job_type: must be a str of 1 to 200 printable characters, not a NoneType.",
    ),
    ({"job_type": 7}, "job_type: must be a str"),
    ({"delay": NAN}, "delay: must be a finite number of seconds from 0 to 315360000, not nan."),
    ({"delay": INF}, "delay: must be a finite number of seconds from 0 to 315360000, not inf."),
    ({"delay": 1e20}, "delay:"),
    ({"delay": 3e11}, "delay:"),
    (
        {"delay": 10**400},
        "delay: must be a finite number of seconds from 0 to 315360000, "
        "not an integer of about 401 digits.",
    ),
    ({"delay": -0.5}, "delay:"),
    ({"delay": "5"}, "delay: must be a finite number of seconds from 0 to 315360000, not a str."),
    ({"delay": True}, "delay:"),
    (
        {"priority": 2**64},
        "priority: must be a whole number from -2147483648 to 2147483647, "
        "not 18446744073709551616.",
    ),
    ({"priority": 2**31}, "priority:"),
    ({"priority": -(2**31) - 1}, "priority:"),
    ({"priority": 2**40}, "priority:"),
    (
        {"priority": 1.0},
        "priority: must be a whole number from -2147483648 to 2147483647, not a float.",
    ),
    ({"max_attempts": 0}, "max_attempts: must be a whole number from 1 to 1000, not 0."),
    ({"max_attempts": 10**12}, "max_attempts:"),
    ({"max_attempts": True}, "max_attempts: must be a whole number from 1 to 1000, not a bool."),
    ({"idempotency_key": ""}, "idempotency_key: must not be empty."),
    ({"idempotency_key": "k" * 201}, "idempotency_key: is 201 characters long; the limit is 200."),
    ({"idempotency_key": "\x00"}, "idempotency_key: contains U+0000"),
    ({"idempotency_key": 42}, "idempotency_key: must be a str"),
    ({"payload": []}, "payload: must be a JSON object (a dict), not list."),
    ({"payload": ""}, "payload: must be a JSON object (a dict), not str."),
    ({"payload": 0}, "payload: must be a JSON object (a dict), not int."),
    ({"payload": False}, "payload: must be a JSON object (a dict), not bool."),
    (
        {"payload": {"blob": "x" * limits.MAX_PAYLOAD_BYTES}},
        "payload: is 524,299 bytes as JSON; the limit is 524,288",
    ),
    ({"meta": Meta(actor="a" * 201)}, "meta.actor: is 201 characters long"),
    ({"meta": Meta(actor="")}, "meta.actor: must not be empty."),
    ({"meta": Meta(correlation_id="\udc80")}, "meta.correlation_id: contains a lone surrogate"),
]


@pytest.mark.parametrize(("fields", "message"), API_ERRORS, ids=[m[:50] for _, m in API_ERRORS])
def test_the_api_refuses_a_field_beyond_its_limits_before_writing(
    url: str, fields: dict[str, Any], message: str
) -> None:
    spec = {"job_type": "t", "payload": {"n": 2}, **fields}
    meta = spec.pop("meta", Meta())
    before = written(url)
    trail = connect(url)
    try:
        with pytest.raises(InvalidCommand) as raised:
            trail.submit(spec.pop("job_type"), spec.pop("payload"), meta=meta, **spec)
        assert isinstance(raised.value, InvalidField | InvalidJsonValue)
        assert message in str(raised.value)
        assert str(raised.value).count("\n") == 0
        if "meta" not in fields:
            with pytest.raises(InvalidCommand) as in_batch:
                trail.submit_many([JobSpec("t"), JobSpec(**{"job_type": "t", **fields})])
            assert str(in_batch.value).startswith("specs[1].")
    finally:
        trail.close()
    assert written(url) == before


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda t, j: t.cancel(j, "r" * 1001), "reason: is 1,001 characters long"),
        (lambda t, j: t.cancel(j, "\x00"), "reason: contains U+0000"),
        (
            lambda t, j: t.cancel(j, None, Meta(actor="a" * 201)),
            "meta.actor: is 201 characters long",
        ),
        (lambda t, j: t.jobs(limit=0), "limit: must be a whole number from 1 to 1000000, not 0."),
        (lambda t, j: t.jobs(limit=2**70), "limit:"),
        (lambda t, j: t.jobs(status="sleeping"), "status: must be one of queued, "),
        (lambda t, j: t.jobs(job_type="\udcff"), "job_type: contains a lone surrogate"),
        (lambda t, j: t.service.submit(("t", {}), Meta()), "spec: must be a JobSpec, not a tuple."),  # type: ignore[arg-type]
    ],
    ids=[
        "long reason",
        "NUL reason",
        "long actor",
        "limit 0",
        "limit 2^70",
        "status",
        "type filter",
        "not a spec",
    ],
)
def test_other_api_calls_check_their_fields_too(url: str, call: Any, message: str) -> None:
    trail = connect(url)
    job_id = trail.jobs()[0]["id"]
    before = written(url)
    try:
        with pytest.raises(InvalidField) as raised:
            call(trail, job_id)
        assert message in str(raised.value)
    finally:
        trail.close()
    assert written(url) == before


def test_only_none_means_an_empty_payload(trail: Jobtrail) -> None:
    """`Jobtrail.submit` once turned ``[]``, ``""`` and ``0`` into ``{}`` (``payload or {}``)."""
    assert trail.get(trail.submit("t"))["payload"] == {}
    assert trail.get(trail.submit("t", None))["payload"] == {}
    assert trail.get(trail.submit("t", {}))["payload"] == {}
    for falsy in ([], "", 0, False):
        with pytest.raises(InvalidJsonValue, match="must be a JSON object"):
            trail.submit("t", falsy)  # type: ignore[arg-type]
    assert len(trail.jobs()) == 3


# ------------------------------------------------------------------ the boundaries


def test_the_largest_accepted_values_are_stored_on_both_backends(trail: Jobtrail) -> None:
    """Nothing the check accepts is refused by PostgreSQL (VARCHAR(200) counts characters,
    INTEGER is 32-bit), and SQLite gives the same values back."""
    wide = "é" + "\U0001f600" * 198 + "z"  # 200 characters, 797 bytes of UTF-8
    edges = [
        dict(
            job_type=wide,
            priority=limits.INT32_MAX,
            max_attempts=1000,
            delay=315_360_000,
            idempotency_key="k" + "\U0001f511" * 199,
        ),
        dict(
            job_type="t" * 200,
            priority=limits.INT32_MIN,
            max_attempts=1,
            delay=0,
            idempotency_key="\t\u200b" * 100,
        ),
        dict(job_type="a b", priority=0, max_attempts=3, delay=0.000001, idempotency_key=None),
    ]
    big = {"blob": "x" * (limits.MAX_PAYLOAD_BYTES - len('{"blob":""}'))}
    for fields in edges:
        meta = Meta(actor="a" * 200, correlation_id="c" * 200)
        job_id = trail.submit(
            payload=big if fields["max_attempts"] == 1000 else {}, meta=meta, **fields
        )  # type: ignore[arg-type]
        row = trail.get(job_id)
        for name in ("job_type", "priority", "max_attempts", "idempotency_key"):
            assert row[name] == fields[name], name
        assert (row["available_at"] - row["created_at"]).total_seconds() == pytest.approx(
            fields["delay"]
        )
    assert trail.get(trail.jobs(limit=limits.LIST_LIMIT.high)[-1]["id"])["payload"] == big
    cancelled = trail.submit("t")
    trail.cancel(cancelled, "r" * 1000, Meta(actor="a" * 200))
    assert trail.history(cancelled)[-1].reason == "r" * 1000  # type: ignore[attr-defined]


def test_the_largest_accepted_values_pass_the_cli_on_both_backends(url: str) -> None:
    code, out, err = jobtrail(
        "submit", "t" * 200, "--priority", "-2147483648", "--max-attempts", "1000",
        "--delay", "315360000", "--idempotency-key", "k" * 200, "--actor", "a" * 200, url=url,
    )  # fmt: skip
    assert (code, err) == (0, "")
    job_id = out.strip()
    code, out, err = jobtrail("jobs", "--limit", "1000000", "--json", url=url)
    assert code == 0 and job_id in out
    code, out, err = jobtrail(
        "replay", "--since", "9223372036854775807", "--max-problems", "0", url=url
    )
    assert code == 0 and "clean" in out, err
    code, _, err = jobtrail("seal", "--actor", "a" * 200, url=url)
    assert code == 0, err


# ------------------------------------------------------------------ the small ones


@pytest.fixture
def empty_postgres() -> Iterator[Callable[[], str]]:
    """Makes PostgreSQL databases without schema (dropped at the end)."""
    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        pytest.skip(f"PostgreSQL is not reachable: {error}")
    names: list[str] = []

    def make() -> str:
        names.append(f"jobtrail_empty_{uuid.uuid4().hex[:10]}")
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(names[-1])))
        return database_url(psycopg.conninfo.make_conninfo(ADMIN_URL, dbname=names[-1]))

    yield make
    for name in names:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
    admin.close()


READY_THEN_INIT = """
import pathlib, sys, time
from jobtrail.adapters.cli.main import main
import alembic.command, jobtrail.adapters.bootstrap, jobtrail.adapters.sql.migrate  # loaded first
go = pathlib.Path(sys.argv[2])
while not go.exists():
    time.sleep(0.001)
sys.exit(main(["--db", sys.argv[1], "db", "init"]))
"""


@pytest.mark.postgres
def test_db_init_at_once_on_an_empty_postgres_database(
    empty_postgres: Callable[[], str], tmp_path: Path
) -> None:
    """Four `db init` released at the same instant, three times: without the migration's
    advisory lock some fail on a duplicate key in pg_type or on alembic_version."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBTRAIL_")}
    for round_ in range(3):
        url, go = empty_postgres(), tmp_path / f"go-{round_}"
        command = [sys.executable, "-c", READY_THEN_INIT, url, str(go)]
        runs = [
            subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True) for _ in range(4)
        ]
        time.sleep(3)  # every process has loaded what it needs and waits
        go.touch()
        results = [(run.wait(timeout=120), run.stderr.read() if run.stderr else "") for run in runs]
        assert results == [(0, "schema is up to date\n")] * 4
        assert written(url) == (0, 0, 0)


def test_export_refuses_an_existing_file_unless_forced(url: str, files: Path) -> None:
    out = files / "log.jsonl"
    assert jobtrail("export", "--out", str(out), url=url)[0] == 0
    first = out.read_text()
    trail = connect(url)
    trail.submit("t")
    trail.close()
    assert_one_line(
        jobtrail("export", "--out", str(out), url=url),
        1,
        f"Cannot write {out}: it exists (--force replaces it).",
    )
    assert out.read_text() == first
    code, stdout, _ = jobtrail("export", "--out", str(out), "--force", url=url)
    assert code == 0 and "exported 2 events" in stdout
    assert out.read_text() != first
    assert sorted(p.name for p in files.iterdir()) == ["log.jsonl"]


def test_a_failed_export_leaves_no_partial_file(url: str, files: Path) -> None:
    """The log is read, then the seals: without the seals' table the export fails half-way."""
    trail = connect(url)
    with trail.engine.begin() as conn:
        conn.execute(text("DROP TABLE job_log_seals"))
    trail.close()
    out = files / "log.jsonl"
    assert_one_line(jobtrail("export", "--out", str(out), url=url), 1, "run `jobtrail db init`")
    assert list(files.iterdir()) == []


def test_replay_of_an_unknown_job_says_so(url: str) -> None:
    unknown = str(uuid.uuid4())
    assert_one_line(jobtrail("replay", "--job", unknown, url=url), 1, f"No job with id {unknown}.")
    trail = connect(url)
    known = trail.jobs()[0]["id"]
    trail.close()
    code, out, _ = jobtrail("replay", "--job", known, url=url)
    assert code == 0 and "clean" in out


@pytest.mark.parametrize(
    "args",
    [
        ["jobs"],
        ["show", KNOWN],
        ["stats"],
        ["replay"],
        ["export", "--out", "x.jsonl"],
        ["submit", "t"],
    ],
)
def test_a_mistyped_sqlite_path_makes_no_file(tmp_path: Path, args: list[str]) -> None:
    missing = tmp_path / "jobtral.db"
    result = jobtrail(*args, url=f"sqlite:///{missing}", cwd=tmp_path)
    assert_one_line(result, 1, f"No database at {missing}; run `jobtrail db init` first.")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(NoDatabase):
        connect(f"sqlite:///{missing}").jobs()
    assert list(tmp_path.iterdir()) == []


def test_db_init_creates_the_sqlite_file_and_then_commands_find_it(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    assert jobtrail("db", "init", url=f"sqlite:///{path}")[0] == 0
    assert path.is_file()
    assert jobtrail("submit", "t", url=f"sqlite:///{path}")[0] == 0
    assert_one_line(
        jobtrail("db", "init", url=f"sqlite:///{tmp_path}/none/jobs.db"),
        1,
        "Cannot reach the database: no directory",
    )


def _without_write_permission() -> list[str]:
    """A command prefix under which the tests cannot write a directory they do not own."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: root writes any directory")
    caps = "-dac_override,-dac_read_search,-fowner"
    return [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}"]


def test_reading_commands_read_a_sqlite_database_in_a_read_only_directory(
    sqlite_url: str, tmp_path: Path
) -> None:
    """SQLite cannot make the WAL's -shm file there: readers open it read-only (immutable
    when no -wal or -journal file says a writer is at work); writers get one clear line."""
    trail = connect(sqlite_url)
    job_id = trail.submit("t", {"n": 1})
    trail.close()
    directory = tmp_path / "read-only"
    directory.mkdir()
    source = Path(sqlite_url.removeprefix("sqlite:///"))
    assert not Path(f"{source}-wal").exists()  # checkpointed when the last connection closed
    shutil.copy(source, directory / "jobs.db")
    url = f"sqlite:///{directory / 'jobs.db'}"
    if os.geteuid() == 0:
        os.chown(directory, 65534, 65534)  # nobody's: root without CAP_FOWNER may not write it
        os.chown(directory / "jobs.db", 65534, 65534)
    directory.chmod(0o555)
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBTRAIL_")}
    prefix = _without_write_permission()

    def run(*args: str) -> tuple[int, str, str]:
        done = subprocess.run(
            [*prefix, sys.executable, "-m", "jobtrail", "--db", url, *args],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        return done.returncode, done.stdout, done.stderr

    try:
        for args in (
            ["jobs", "--json"],
            ["show", job_id],
            ["history", job_id],
            ["stats"],
            ["replay"],
        ):
            code, out, err = run(*args)
            assert code == 0 and err == "", (args, err)
            assert job_id in out or "clean" in out or "failure rate" in out
        assert_one_line(run("submit", "t"), 1, "attempt to write a readonly database")
        assert_one_line(
            run("export", "--out", str(directory / "x.jsonl")),
            1,
            "no permission to create files in",
        )
        assert sorted(p.name for p in directory.iterdir()) == ["jobs.db"]
    finally:
        directory.chmod(0o755)
