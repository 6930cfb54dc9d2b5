"""Processors that do what no processor should, on SQLite and PostgreSQL (issue 11).

Each hostile job runs beside a normal one. The hostile job ends `failed` exactly once
(one terminal event) through the one `fail` path, the worker keeps running and the normal
job completes in the same run, and `jobtrail replay` is clean. The same processors run
through the CLI (``python -m jobtrail worker --app …``, a module written to a temporary
directory), which exits 0. Results that are not JSON (NaN, infinities, mixed-type keys) are
tested through the API in test_bad_json.py; here they run through the CLI too.

Also here: a processor thread that dies anyway is replaced, settings a worker refuses, and a
database that will not take the worker's writes (no schema, a read-only role): exit 1 with
one line instead of retrying forever.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest
from jobtrail.adapters.bootstrap import Jobtrail, connect
from jobtrail.domain.errors import JobtrailError, SchemaMissing, UserError
from jobtrail.domain.services import JobSpec
from jobtrail.processors.engine.failures import MAX_MESSAGE, MAX_RETRY_AFTER, MAX_TYPE_NAME
from jobtrail.processors.engine.outcomes import Finished, Progressed
from jobtrail.processors.engine.runner import ProcessorThreads
from jobtrail.processors.engine.worker import (
    DatabaseRefusesWrites,
    InvalidWorkerSettings,
    WorkerSettings,
)
from psycopg import sql

from tests.conftest import ADMIN_URL, database_url
from tests.integration.test_bad_json import failed_once, replay_is_clean, run_to_the_end

HOSTILE_APP = '''
"""Processors that do what no processor should."""

import threading
import time

from jobtrail import JobContext, JobView, Registry, TransientError, UserError

registry = Registry()


class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no str()")

    def __repr__(self):
        raise RuntimeError("no repr()")


class UnreadableMessage(UserError):
    code = "unreadable_message"

    @property
    def message(self):
        raise RuntimeError("no message")

    def __str__(self):
        raise RuntimeError("no str()")


class CodeRaises(UserError):
    @property
    def code(self):
        raise RuntimeError("no code")


class OddlyLongCode(UserError):
    code = "a_code_of_" + "x" * 140


LONG_NAME = type("L" + "o" * 500 + "ng", (Exception,), {})


def late_reports(ctx: JobContext) -> None:
    for percent in range(100):
        ctx.progress(percent, "after the end")
        time.sleep(0.005)


def hostile(job: JobView, ctx: JobContext):
    kind = job.payload["kind"]
    if kind == "SystemExit":
        raise SystemExit
    if kind == "SystemExit(3)":
        raise SystemExit(3)
    if kind == "sys.exit('bye')":
        import sys

        sys.exit("bye")
    if kind == "KeyboardInterrupt":
        raise KeyboardInterrupt
    if kind == "MemoryError":
        raise MemoryError
    if kind == "GeneratorExit":
        raise GeneratorExit
    if kind == "str() and repr() raise":
        raise Unprintable()
    if kind == "a typed error without a message":
        raise UnreadableMessage()
    if kind == "a code that raises":
        raise CodeRaises("credits?")
    if kind == "a code too long":
        raise OddlyLongCode("a team's error")
    if kind == "a type name too long":
        raise LONG_NAME("x")
    if kind == "a huge message":
        raise RuntimeError("x" * 5_000_000)
    if kind == "a huge result":
        return {"frames": ["x" * 1000] * 600}
    if kind == "retry after infinity":
        raise TransientError("slow down", retry_after=float("inf"))
    if kind == "progress NaN":
        ctx.progress(float("nan"))
        ctx.progress(float("inf"), "done?")
        raise RuntimeError("finished badly")
    if kind == "reports after returning":
        threading.Thread(target=late_reports, args=(ctx,), daemon=True).start()
        raise RuntimeError("left a thread behind")
    if kind == "NaN":
        return float("nan")
    if kind == "Infinity":
        return {"x": float("inf")}
    if kind == "mixed keys":
        return {1: "a", "b": 2}
    raise AssertionError(kind)


registry.processor("hostile")(hostile)


@registry.processor("normal")
def normal(job: JobView, ctx: JobContext):
    ctx.progress(50, "halfway")
    return {"n": job.payload["n"]}
'''

Check = Callable[[str], bool]


def equals(text: str) -> Check:
    return lambda message: message == text


def starts(text: str) -> Check:
    return lambda message: message.startswith(text)


EXPECTED: dict[str, tuple[str, str, str, Check]] = {
    "SystemExit": ("SystemExit", "unexpected_error", "system", equals("SystemExit")),
    "SystemExit(3)": ("SystemExit", "unexpected_error", "system", equals("SystemExit: 3")),
    "sys.exit('bye')": ("SystemExit", "unexpected_error", "system", equals("SystemExit: bye")),
    "KeyboardInterrupt": (
        "KeyboardInterrupt",
        "unexpected_error",
        "system",
        equals("KeyboardInterrupt"),
    ),
    "MemoryError": ("MemoryError", "unexpected_error", "system", equals("MemoryError")),
    "GeneratorExit": ("GeneratorExit", "unexpected_error", "system", equals("GeneratorExit")),
    "str() and repr() raise": ("Unprintable", "unexpected_error", "system", equals("Unprintable")),
    "a typed error without a message": (
        "UnreadableMessage",
        "unreadable_message",
        "user",
        equals("UnreadableMessage('')"),  # its str() raises: its repr()
    ),
    "a code that raises": (
        "InternalError",
        "system_error",
        "system",
        equals(
            "the failure could not be stored (its code is not a non-empty str); "
            "it was CodeRaises (a NoneType): credits?"
        ),
    ),
    "a code too long": (
        "InternalError",
        "system_error",
        "system",
        equals(
            "the failure could not be stored (its code is longer than 100 characters); "
            f"it was OddlyLongCode (a_code_of_{'x' * 140}): a team's error"
        ),
    ),
    "a type name too long": (
        "L" + "o" * (MAX_TYPE_NAME - 26) + "… (503 characters in all)",
        "unexpected_error",
        "system",
        starts("Loooo"),
    ),
    "a huge message": (
        "RuntimeError",
        "unexpected_error",
        "system",
        lambda m: (
            len(m) == MAX_MESSAGE
            and m.startswith("RuntimeError: xxx")
            and m.endswith("x… (5,000,014 characters in all)")
        ),
    ),
    "a huge result": (
        "InvalidResult",
        "invalid_result",
        "system",
        equals(
            "result: 601,812 bytes of JSON, more than the 524,288 a result may take "
            "(store the data elsewhere and return where it is)"
        ),
    ),
    "progress NaN": (
        "RuntimeError",
        "unexpected_error",
        "system",
        equals("RuntimeError: finished badly"),
    ),
    "reports after returning": (
        "RuntimeError",
        "unexpected_error",
        "system",
        equals("RuntimeError: left a thread behind"),
    ),
}
NOT_JSON = {
    "NaN": "result: NaN is not JSON (use null or a string)",
    "Infinity": "result.x: Infinity is not JSON (use null or a string)",
    "mixed keys": "result: key 1 is not a string",
}
FAST = WorkerSettings(until_empty=True, poll_seconds=0.01, concurrency=1, prefetch=1)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "hostile_app.py").write_text(HOSTILE_APP)
    return tmp_path


@pytest.fixture
def app(app_dir: Path) -> ModuleType:
    """The module, imported under a name of its own (the CLI imports it as `hostile_app`)."""
    name = f"hostile_app_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, app_dir / "hostile_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cli_worker(
    app_dir: Path, url: str, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JOBTRAIL_DATABASE_URL": url, "PYTHONUNBUFFERED": "1"}
    env.pop("JOBTRAIL_APP", None)
    return subprocess.run(
        [sys.executable, "-m", "jobtrail", "worker", "--app", "hostile_app:registry", *args],
        cwd=app_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_failed_as_expected(trail: Jobtrail, job_id: str, kind: str) -> None:
    row = failed_once(trail, job_id)
    type_name, code, category, message = EXPECTED[kind]
    assert (row["error_type"], row["error_code"], row["error_category"]) == (
        type_name,
        code,
        category,
    ), kind
    assert message(row["error_message"]), (kind, row["error_message"][:300])
    assert row["attempt"] == 1


# ------------------------------------------------------------------ through the API


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_a_hostile_processor_fails_its_job_once_and_the_worker_goes_on(
    capsys: pytest.CaptureFixture[str],
    trail: Jobtrail,
    backend_url: str,
    app: ModuleType,
    kind: str,
) -> None:
    bad = trail.submit("hostile", {"kind": kind}, max_attempts=3)
    good = trail.submit("normal", {"n": 1})  # after it, on the worker's one thread

    stats = run_to_the_end(trail, app.registry, FAST)

    assert_failed_as_expected(trail, bad, kind)
    assert trail.get(good)["status"] == "completed"
    assert trail.get(good)["result"] == {"n": 1}
    assert (stats.completed, stats.failed, stats.retried, stats.absorbed) == (1, 1, 0, 0)
    replay_is_clean(capsys, backend_url)


def test_a_retry_after_of_infinity_waits_the_longest_retry_after(
    capsys: pytest.CaptureFixture[str], trail: Jobtrail, backend_url: str, app: ModuleType
) -> None:
    """An error's own retry-after wins over the policy's backoff: infinity once overflowed
    the date arithmetic in the worker's main loop and killed it."""
    bad = trail.submit("hostile", {"kind": "retry after infinity"}, max_attempts=2)
    good = trail.submit("normal", {"n": 2})

    stats = run_to_the_end(trail, app.registry, FAST)

    retry = trail.history(bad)[-1]
    assert retry.type == "JobRetryScheduled"
    assert retry.data()["delay_seconds"] == MAX_RETRY_AFTER
    assert trail.get(bad)["status"] == "queued"
    assert trail.get(good)["status"] == "completed"
    assert (stats.completed, stats.retried) == (1, 1)
    replay_is_clean(capsys, backend_url)


# ------------------------------------------------------------------ through the CLI


@pytest.mark.parametrize("concurrency", ["1", "3"])
def test_the_cli_worker_runs_every_hostile_processor_and_exits_0(
    capsys: pytest.CaptureFixture[str],
    trail: Jobtrail,
    backend_url: str,
    app_dir: Path,
    concurrency: str,
) -> None:
    kinds = [*EXPECTED, *NOT_JSON]
    specs = []
    for n, kind in enumerate(kinds):
        specs += [JobSpec("hostile", {"kind": kind}), JobSpec("normal", {"n": n})]
    ids = trail.submit_many(specs)

    done = cli_worker(app_dir, backend_url, "--until-empty", "--concurrency", concurrency)

    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    for kind, bad, good in zip(kinds, ids[::2], ids[1::2], strict=True):
        if kind in NOT_JSON:
            row = failed_once(trail, bad)
            assert (row["error_code"], row["error_message"]) == ("invalid_result", NOT_JSON[kind])
        else:
            assert_failed_as_expected(trail, bad, kind)
        assert trail.get(good)["status"] == "completed", kind
    summary = done.stderr.strip().splitlines()[-1]
    assert summary.startswith(f"claimed {len(ids)}, completed {len(kinds)}, failed {len(kinds)}")
    replay_is_clean(capsys, backend_url)


def test_a_system_exit_on_the_one_thread_does_not_stop_the_next_job(
    trail: Jobtrail, backend_url: str, app_dir: Path
) -> None:
    """``--concurrency 1``: the thread that ran a SystemExit runs the next job."""
    bad = trail.submit("hostile", {"kind": "SystemExit(3)"}, priority=1)
    good = trail.submit("normal", {"n": 7})

    done = cli_worker(
        app_dir, backend_url, "--until-empty", "--concurrency", "1", "--prefetch", "1"
    )

    assert done.returncode == 0, done.stderr[-3000:]
    assert_failed_as_expected(trail, bad, "SystemExit(3)")
    assert trail.get(good)["status"] == "completed"
    assert [e.type for e in trail.history(good)][-1] == "JobCompleted"


# ------------------------------------------------------------------ a thread that dies


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_processor_thread_that_dies_is_noticed_its_job_failed_and_the_thread_replaced(
    capsys: pytest.CaptureFixture[str],
    trail: Jobtrail,
    backend_url: str,
    app: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`process` never raises; should the thread die anyway (a bug of ours), the job it held
    fails once instead of staying `processing` with its lease renewed for ever."""
    doomed = trail.submit("normal", {"n": 0})
    good = trail.submit("normal", {"n": 1})
    real_process = ProcessorThreads.process

    def process(self: ProcessorThreads, running: Any) -> Any:
        if running.job.id == doomed:
            raise SystemExit("a bug of the worker's own")
        return real_process(self, running)

    monkeypatch.setattr(ProcessorThreads, "process", process)
    stats = run_to_the_end(trail, app.registry, FAST)

    row = failed_once(trail, doomed)
    assert (row["error_code"], row["error_message"]) == (
        "system_error",
        "the worker thread running the processor died",
    )
    assert trail.get(good)["status"] == "completed"
    assert (stats.completed, stats.failed) == (1, 1)
    assert any("died; failing the job, starting another" in r.message for r in caplog.records)
    replay_is_clean(capsys, backend_url)


# ------------------------------------------------------------------ the main loop's guards


class UnreadableError(UserError):
    """An error whose fields raise when read: what `failures` keeps from the main loop."""

    @property
    def message(self) -> str:
        raise RuntimeError("no message")


def test_an_outcome_the_main_loop_cannot_record_fails_its_job_alone(
    capsys: pytest.CaptureFixture[str], trail: Jobtrail, backend_url: str, app: ModuleType
) -> None:
    """Should an outcome reach the main loop unchecked and its command raise, that job fails
    alone (the other outcomes of the turn are written) and the worker goes on."""
    bad, good = trail.submit("normal", {"n": 0}), trail.submit("normal", {"n": 1})
    worker = trail.worker(WorkerSettings(concurrency=1, prefetch=2), registry=app.registry)
    assert worker._exchange() == 2
    while not worker._todo.empty():  # the jobs are not run: their outcomes are made here
        worker._todo.get_nowait()
    worker._done.put(Finished(bad, 1, 0.01, error=UnreadableError(), raised_at=time.monotonic()))
    worker._done.put(Finished(good, 1, 0.01, result={"n": 1}))
    worker._done.put(Progressed("0b6c1a8e-0000-4000-8000-000000000000", 1, 5, "not held"))

    worker._exchange(claiming=False)

    row = failed_once(trail, bad)
    assert (row["error_code"], row["error_message"]) == (
        "system_error",
        "the worker could not record the processor's outcome (RuntimeError)",
    )
    assert trail.get(good)["status"] == "completed"
    assert (worker.stats.completed, worker.stats.failed) == (1, 1)
    assert not worker._running
    replay_is_clean(capsys, backend_url)


# ------------------------------------------------------------------ settings refused


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("heartbeat_seconds", float("nan"), "heartbeat_seconds: must be more than 0"),
        ("lease_seconds", float("nan"), "lease_seconds: must be more than 0 and at most"),
        ("lease_seconds", float("inf"), "not inf."),
        ("lease_seconds", 1e300, "not 1e+300."),
        ("lease_seconds", 0, "not 0."),
        ("grace_seconds", -1, "grace_seconds: must be 0 or more and at most 604800 seconds"),
        ("grace_seconds", float("nan"), "not nan."),
        ("poll_seconds", float("-inf"), "poll_seconds"),
        ("reap_seconds", "1", "not a value of type str."),
        ("progress_seconds", float("nan"), "progress_seconds"),
        ("give_up_seconds", 0.0, "give_up_seconds"),
        ("concurrency", 0, "concurrency: must be from 1 to 1024, not 0."),
        ("concurrency", True, "concurrency: must be a whole number, not a value of type bool."),
        ("prefetch", 2.0, "prefetch: must be a whole number"),
        ("max_jobs", 0, "max_jobs: must be at least 1, not 0."),
        ("job_types", "resize", "job_types: must be a set of job types or None"),
        ("job_types", frozenset(), "job_types: must name at least one job type"),
    ],
)
def test_a_setting_that_cannot_work_is_refused_in_one_line(
    field: str, value: Any, said: str
) -> None:
    with pytest.raises(InvalidWorkerSettings) as refused:
        WorkerSettings(**{field: value})
    message = str(refused.value)
    assert message.startswith(f"Worker setting {field}: ") and "\n" not in message
    assert said in message
    assert isinstance(refused.value, JobtrailError)


@pytest.mark.parametrize("worker_id", ["", "w" * 191, "a\x00b", 42])
def test_a_worker_id_that_cannot_be_stored_is_refused(sqlite_url: str, worker_id: Any) -> None:
    trail = connect(sqlite_url)
    with pytest.raises(InvalidWorkerSettings, match="^Worker setting worker_id: must be a str"):
        trail.worker(FAST, worker_id=worker_id)
    trail.close()


def test_settings_within_the_limits_are_kept() -> None:
    settings = WorkerSettings(
        lease_seconds=5, heartbeat_seconds=10, grace_seconds=0, job_types={"a", "b"}
    )
    assert settings.job_types == frozenset({"a", "b"})
    assert settings.renew_every == 2.5, "renewed at least twice per lease"


# ------------------------------------------------------------------ databases that refuse


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("jobtrail: error: ")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    assert stderr.rstrip().endswith(lines[0]), "the error is the last line"
    return lines[0]


@pytest.fixture
def empty_postgres() -> Iterator[str]:
    """A PostgreSQL database without jobtrail's schema."""
    name = f"jobtrail_empty_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        pytest.skip(f"PostgreSQL is not reachable: {error}")
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield database_url(psycopg.conninfo.make_conninfo(ADMIN_URL, dbname=name))
        finally:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def schemaless_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        url: str = request.getfixturevalue("empty_postgres")
        return url
    import sqlite3

    path = tmp_path / "empty.db"
    sqlite3.connect(path).execute("CREATE TABLE unrelated (x)").connection.close()
    return f"sqlite:///{path}"


@pytest.mark.parametrize("until_empty", [True, False])
def test_a_database_without_the_schema_stops_the_worker_with_one_line(
    app_dir: Path, schemaless_url: str, until_empty: bool
) -> None:
    started = time.monotonic()
    done = cli_worker(app_dir, schemaless_url, *(["--until-empty"] if until_empty else []))

    assert done.returncode == 1, done.stderr[-3000:]
    assert "run `jobtrail db init` first" in one_error_line(done.stderr)
    assert "Trying again" not in done.stderr, "a missing schema is not waited for"
    assert time.monotonic() - started < 60


@pytest.fixture
def read_only_role(pg_trail: Jobtrail, postgres_url: str) -> Iterator[str]:
    """The URL of the test database as a role that may read every table and write none."""
    role = f"jobtrail_reader_{uuid.uuid4().hex[:8]}"
    database = pg_trail.engine.url.database
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    with psycopg.connect(
        psycopg.conninfo.make_conninfo(ADMIN_URL, dbname=database), autocommit=True
    ) as owner:
        owner.execute(
            sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(
                sql.Identifier(role)
            )
        )
    try:
        yield postgres_url.replace("postgresql://postgres@", f"postgresql://{role}@", 1)
    finally:
        with psycopg.connect(
            psycopg.conninfo.make_conninfo(ADMIN_URL, dbname=database), autocommit=True
        ) as owner:
            owner.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (role,),
            )
            owner.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.mark.postgres
def test_a_read_only_role_stops_the_cli_worker_with_one_line(
    pg_trail: Jobtrail, read_only_role: str, app_dir: Path
) -> None:
    """Permission denied is not an outage: retried for `give_up_seconds` (10 s), then exit 1."""
    job_id = pg_trail.submit("normal", {"n": 1})
    started = time.monotonic()

    done = cli_worker(app_dir, read_only_role, "--until-empty", timeout=90)

    took = time.monotonic() - started
    assert done.returncode == 1, done.stderr[-3000:]
    line = one_error_line(done.stderr)
    assert line.startswith("jobtrail: error: The database refused every write of the worker")
    assert "permission denied" in line
    assert 10 <= took < 60
    assert pg_trail.get(job_id)["status"] == "queued"


@pytest.mark.postgres
def test_a_read_only_database_stops_the_worker_after_give_up_seconds(
    pg_trail: Jobtrail, postgres_url: str, app: ModuleType
) -> None:
    job_id = pg_trail.submit("normal", {"n": 1})
    database = pg_trail.engine.url.database
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(
            sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on").format(
                sql.Identifier(database)
            )
        )
    trail = connect(postgres_url)
    worker = trail.worker(
        WorkerSettings(until_empty=True, poll_seconds=0.01, give_up_seconds=1.0),
        registry=app.registry,
    )
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            worker.run()
        except BaseException as error:  # noqa: BLE001 - checked below
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=30)
    trail.close()

    assert not thread.is_alive(), "the worker kept retrying a database that refuses writes"
    assert len(outcome) == 1 and isinstance(outcome[0], DatabaseRefusesWrites), outcome
    assert "read-only transaction" in str(outcome[0])
    assert pg_trail.get(job_id)["status"] == "queued"


def test_schema_missing_is_raised_by_run(sqlite_url: str, app: ModuleType) -> None:
    trail = connect(sqlite_url)
    trail.submit("normal", {"n": 1})
    with trail.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE job_events")
    with pytest.raises(SchemaMissing):
        trail.worker(FAST, registry=app.registry).run()
    trail.close()
