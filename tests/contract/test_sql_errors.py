"""Driver errors become jobtrail's own by SQLSTATE, error code or constraint, never by text.

Each test fails if its row of the mapping in `jobtrail.adapters.sql.errors` is removed.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from jobtrail.adapters.bootstrap import Jobtrail, connect
from jobtrail.adapters.sql.errors import (
    APPEND_ONLY_SQLSTATE,
    POSTGRES_CONSTRAINTS,
    Collision,
    driver_error,
    translate,
    translated_errors,
)
from jobtrail.adapters.sql.schema import job
from jobtrail.domain.errors import (
    AppendOnlyViolation,
    ConcurrencyConflict,
    DatabaseUnavailable,
    DataRejected,
    DuplicateIdempotencyKey,
    JobtrailError,
    SchemaMissing,
    StorageError,
)
from sqlalchemy import Engine, insert, inspect, text

# ------------------------------------------------------------------ on the databases


def run(engine: Engine, statement: str) -> None:
    with translated_errors(), engine.begin() as conn:
        conn.execute(text(statement))


@pytest.mark.parametrize("statement", ["DELETE FROM job_events", "TRUNCATE job_log_seals"])
def test_append_only_tables_refuse_changes_by_their_own_code(
    pg_trail: Jobtrail, statement: str
) -> None:
    pg_trail.submit("t")
    with pytest.raises(AppendOnlyViolation, match="append-only") as raised:
        run(pg_trail.engine, statement)
    assert getattr(raised.value.__cause__.orig, "sqlstate", None) == APPEND_ONLY_SQLSTATE  # type: ignore[union-attr]


def test_a_message_that_reads_like_a_known_error_is_not_taken_for_one(trail: Jobtrail) -> None:
    """An unrelated error whose message holds the words the old translation looked for
    ("append-only", "no such table", "relation … does not exist") is a plain StorageError."""
    words = "job_events is append-only: no such table, relation x does not exist"
    statement = (
        f"DO $$BEGIN RAISE EXCEPTION '{words}'; END$$"  # P0001 (a bad cast: DataRejected)
        if trail.engine.dialect.name == "postgresql"
        else f"SELECT [{words}]"  # no such column (SQLITE_ERROR, the schema is in place)
    )
    with pytest.raises(JobtrailError) as raised:
        run(trail.engine, statement)
    assert type(raised.value) is StorageError
    assert words in str(raised.value)  # the message is still the reason a person reads


def test_a_missing_table_is_a_missing_schema(trail: Jobtrail) -> None:
    run(trail.engine, "DROP TABLE job")
    with pytest.raises(SchemaMissing):
        trail.queue.expired(trail.service.clock.now())


def test_a_database_never_initialised_is_a_missing_schema(tmp_path: Path) -> None:
    trail = connect(f"sqlite:///{tmp_path / 'never.db'}")
    try:
        with pytest.raises(SchemaMissing):
            trail.jobs()
        with pytest.raises(SchemaMissing):
            trail.submit("t")
    finally:
        trail.close()


def test_an_sqlite_error_with_the_schema_in_place_is_not_a_missing_schema(
    sqlite_url: str,
) -> None:
    """SQLite gives "no such table" and a syntax error the same code: the schema is checked."""
    trail = connect(sqlite_url)
    try:
        with pytest.raises(StorageError) as raised:
            run(trail.engine, "SELEC 1")
        assert type(raised.value) is StorageError
    finally:
        trail.close()


def test_duplicate_keys_outside_the_store_are_told_apart_by_constraint(
    pg_trail: Jobtrail,
) -> None:
    """On PostgreSQL the constraint's name says which key collided, wherever the insert ran."""
    pg_trail.submit("t", idempotency_key="k")
    copy_with = "INSERT INTO job SELECT {} FROM job"
    columns = [c["name"] for c in inspect(pg_trail.engine).get_columns("job")]
    new_id = ", ".join("gen_random_uuid()::text" if c == "id" else c for c in columns)
    with pytest.raises(DuplicateIdempotencyKey):
        run(pg_trail.engine, copy_with.format(new_id))
    same_id = ", ".join("NULL" if c == "idempotency_key" else c for c in columns)
    with pytest.raises(ConcurrencyConflict):  # only the key collides (index order aside)
        run(pg_trail.engine, copy_with.format(same_id))


def test_the_unique_keys_are_the_ones_the_translation_knows(trail: Jobtrail) -> None:
    """`collision` relies on these: on SQLite, job's only unique index besides its key is
    the idempotency key, and job_events' two unique keys both mean "already in the log";
    on PostgreSQL, the names map to those keys."""
    schema = inspect(trail.engine)

    def unique(table: str) -> dict[tuple[str, ...], str | None]:
        found = {tuple(u["column_names"]): u["name"] for u in schema.get_unique_constraints(table)}
        found.update(
            {tuple(i["column_names"]): i["name"] for i in schema.get_indexes(table) if i["unique"]}  # type: ignore[misc]
        )
        return found

    assert schema.get_pk_constraint("job")["constrained_columns"] == ["id"]
    assert set(unique("job")) == {("idempotency_key",)}
    assert schema.get_pk_constraint("job_events")["constrained_columns"] == ["position"]
    assert set(unique("job_events")) == {("job_id", "version"), ("event_id",)}
    if trail.engine.dialect.name == "postgresql":
        names = {
            schema.get_pk_constraint("job")["name"]: Collision.JOB_ID,
            unique("job")[("idempotency_key",)]: Collision.IDEMPOTENCY_KEY,
            unique("job_events")[("job_id", "version")]: Collision.EVENT,
            unique("job_events")[("event_id",)]: Collision.EVENT,
        }
        assert names == POSTGRES_CONSTRAINTS


def test_an_unreachable_database_is_unavailable(tmp_path: Path) -> None:
    for url in (
        "postgresql://nobody@127.0.0.1:1/jobs",
        f"sqlite:///{tmp_path / 'no such directory' / 'jobs.db'}",
    ):
        trail = connect(url)
        try:
            with pytest.raises(DatabaseUnavailable):
                trail.jobs()
        finally:
            trail.close()


# -------------------------------------------------- the PostgreSQL table, code by code


class _AppendOnly(psycopg.DatabaseError):
    sqlstate = APPEND_ONLY_SQLSTATE


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (_AppendOnly("job_events is append-only"), AppendOnlyViolation),
        (psycopg.errors.UndefinedTable("x"), SchemaMissing),
        (psycopg.errors.SerializationFailure("x"), ConcurrencyConflict),
        (psycopg.errors.DeadlockDetected("x"), ConcurrencyConflict),
        (psycopg.errors.ConnectionFailure("x"), DatabaseUnavailable),
        (psycopg.errors.AdminShutdown("x"), DatabaseUnavailable),
        (psycopg.errors.CrashShutdown("x"), DatabaseUnavailable),
        (psycopg.errors.CannotConnectNow("x"), DatabaseUnavailable),
        (psycopg.errors.TooManyConnections("x"), DatabaseUnavailable),
        (psycopg.errors.InvalidCatalogName("x"), DatabaseUnavailable),
        (psycopg.OperationalError("connection refused"), DatabaseUnavailable),  # no SQLSTATE
        (psycopg.errors.UniqueViolation("x"), StorageError),  # no constraint we know
        (psycopg.errors.RaiseException("job_events is append-only"), StorageError),
        (psycopg.errors.SyntaxError("relation does not exist"), StorageError),
        (psycopg.errors.StringDataRightTruncation("x"), DataRejected),  # 22001
        (psycopg.errors.NumericValueOutOfRange("x"), DataRejected),  # 22003
        (psycopg.errors.UntranslatableCharacter("x"), DataRejected),  # 22P05
        (psycopg.errors.CharacterNotInRepertoire("x"), DataRejected),  # 22021
        (psycopg.errors.InvalidTextRepresentation("x"), DataRejected),  # 22P02
        (psycopg.errors.NotNullViolation("x"), DataRejected),  # 23502
        (psycopg.errors.CheckViolation("x"), DataRejected),  # 23514
        (psycopg.DataError("NUL bytes"), DataRejected),  # refused by psycopg while binding
    ],
)
def test_postgres_errors_map_by_sqlstate(error: psycopg.Error, expected: type) -> None:
    assert type(translate(driver_error(error))) is expected


# -------------------------------------------------- refused values: the last line of defence

NOW = datetime.now(UTC)
ROW = {
    "job_type": "t",
    "status": "queued",
    "priority": 0,
    "attempt": 0,
    "max_attempts": 3,
    "payload": {},
    "progress": 0,
    "created_at": NOW,
    "available_at": NOW,
    "updated_at": NOW,
    "version": 1,
}

BOTH, POSTGRES = "both", "postgresql"
"""Where the database refuses the value; SQLite stores the others as given, which is why
the domain's limits (`jobtrail.domain.limits`) check every field before anything is written."""


@pytest.mark.parametrize(
    ("values", "where", "message"),
    [
        (
            {"job_type": "x" * 300},
            POSTGRES,
            "job.job_type: is 300 characters long; the column holds 200",
        ),
        ({"priority": 2**40}, POSTGRES, "job.priority: 1099511627776 is beyond a 32-bit integer"),
        ({"priority": 2**70}, BOTH, "job.priority: 1180591620717411303424 is beyond a"),
        (
            {"job_type": "a\x00b"},
            POSTGRES,
            "job.job_type: contains U+0000, which PostgreSQL cannot",
        ),
        ({"job_type": "\udcff"}, BOTH, "job.job_type: contains a lone surrogate \\udcff"),
        ({"job_type": None}, BOTH, "job.job_type: must not be null"),
        ({"payload": {"a": "\x00"}}, POSTGRES, "job.payload: a: contains U+0000"),
        ({"payload": {"a": ["\ud800"]}}, POSTGRES, "job.payload: a[0]: contains a lone surrogate"),
        ({"payload": {"x": [float("nan")]}}, POSTGRES, "job.payload: x[0]: NaN is not JSON"),
    ],
    ids=[
        "long text",
        "int32",
        "int64",
        "NUL",
        "surrogate",
        "null",
        "json NUL",
        "json surrogate",
        "NaN",
    ],
)
def test_a_value_the_database_refuses_is_one_line_naming_its_column(
    trail: Jobtrail, values: dict[str, object], where: str, message: str
) -> None:
    row = {**ROW, "id": str(uuid.uuid4()), **values}
    backend = trail.engine.dialect.name
    if where == POSTGRES and backend != POSTGRES:
        pytest.skip("SQLite stores it as given: the domain's check is what refuses it there")
    with pytest.raises(DataRejected) as raised, translated_errors(), trail.engine.begin() as conn:
        conn.execute(insert(job), row)
    assert str(raised.value).startswith("The database refused the value of ")
    assert message in str(raised.value) and "\n" not in str(raised.value)
    assert raised.value.column == message.partition(":")[0]
    assert isinstance(raised.value, StorageError)  # what the worker catches


def test_a_refused_query_parameter_is_named_too(trail: Jobtrail) -> None:
    with pytest.raises(DataRejected, match="beyond a 64-bit integer"):
        trail.queries.list_jobs(None, None, 2**70)
    with pytest.raises(DataRejected, match="job_type: contains a lone surrogate"):
        trail.queries.list_jobs(None, "\udcff", 5)


@pytest.mark.postgres
def test_the_postgres_write_pipeline_refusals_are_data_rejected(pg_trail: Jobtrail) -> None:
    """A job's later events go through psycopg's pipeline on PostgreSQL, outside SQLAlchemy's
    hook: the SQLSTATE still makes a refusal `DataRejected` (PostgreSQL's words as the reason),
    which the worker tells from the database being out of reach."""
    job_id = pg_trail.submit("t")
    cancelling = pg_trail.service.get(job_id)
    cancelling.cancel("a\x00b", now=datetime.now(UTC))  # JobService.cancel would refuse it
    with pytest.raises(DataRejected) as raised:
        pg_trail.store.append(cancelling.pending, expected_version=1)
    assert "unsupported Unicode escape sequence" in str(raised.value)
    assert pg_trail.get(job_id)["status"] == "queued"  # nothing of it was written
