"""Driver errors become jobtrail's own by SQLSTATE, error code or constraint, never by text.

Each test fails if its row of the mapping in `jobtrail.adapters.sql.errors` is removed.
"""

from __future__ import annotations

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
from jobtrail.domain.errors import (
    AppendOnlyViolation,
    ConcurrencyConflict,
    DatabaseUnavailable,
    DuplicateIdempotencyKey,
    JobtrailError,
    SchemaMissing,
    StorageError,
)
from sqlalchemy import Engine, inspect, text

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
        f"SELECT CAST('{words}' AS INTEGER)"  # invalid input syntax (22P02)
        if trail.engine.dialect.name == "postgresql"
        else f"SELECT [{words}]"  # no such column (SQLITE_ERROR, the schema is in place)
    )
    with pytest.raises(JobtrailError) as raised:
        run(trail.engine, statement)
    assert type(raised.value) is StorageError
    assert words in str(raised.value)  # the message is still the reason a person reads


def test_a_missing_table_is_a_missing_schema(trail: Jobtrail) -> None:
    run(trail.engine, "DROP TABLE job_lease")
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
    with pytest.raises(ConcurrencyConflict):
        run(pg_trail.engine, copy_with.format(", ".join(columns)))


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
    ],
)
def test_postgres_errors_map_by_sqlstate(error: psycopg.Error, expected: type) -> None:
    assert type(translate(driver_error(error))) is expected
