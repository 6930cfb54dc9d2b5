"""Engines for SQLite and PostgreSQL.

SQLite: WAL journal, a busy timeout, and ``BEGIN IMMEDIATE`` for write transactions so
two writers never deadlock upgrading a read lock; its ``handle_error`` hook tells a missing
schema from other errors (`jobtrail.adapters.sql.errors`). PostgreSQL: psycopg 3, plain
``postgresql://`` URLs accepted; every session asks the server to end it once its client has
been silent for about 12 s (`SERVER_KEEPALIVES`), so a host cut off mid-transaction frees
its locks.

A URL is checked when its engine is made, before anything connects: an empty one, another
database or driver, a malformed URL or an option the driver does not take is one
`InvalidDatabaseUrl` (its password never shown). On SQLite the file must exist: only
`ensure_sqlite_file` (`jobtrail db init`) creates it, so a mistyped path is `NoDatabase`
instead of a new empty file. A read-only engine opens the file with ``mode=ro``; in a
directory the reader cannot write, where SQLite cannot make the WAL's shared-memory file,
it opens it ``immutable`` as long as no ``-wal`` or ``-journal`` file says a writer is at
work.

Driver errors are translated in `jobtrail.adapters.sql.errors`; `translated_errors` is
importable from here too, where the engine's users have always found it.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from pathlib import Path
from typing import Any

from jobtrail.adapters.sql.errors import confirm_sqlite_schema, name_refused_value
from jobtrail.adapters.sql.errors import translated_errors as translated_errors
from jobtrail.domain.errors import DatabaseUnavailable, InvalidDatabaseUrl, NoDatabase
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url

WRITE = {"jobtrail_write": True}
"""Execution options for a connection that will write (SQLite: BEGIN IMMEDIATE)."""

SQLITE_OPTIONS = frozenset(
    {"uri", "timeout", "isolation_level", "detect_types", "check_same_thread", "cached_statements"}
)
"""The query options SQLAlchemy's SQLite driver takes (others it would ignore, warning)."""
URL_FORMS = "sqlite:///PATH or postgresql://USER@HOST[:PORT]/DATABASE"

_PASSWORD = re.compile(r"(://[^/@:]*:)[^/@]*@")

SERVER_KEEPALIVES = {
    "tcp_keepalives_idle": 5,
    "tcp_keepalives_interval": 2,
    "tcp_keepalives_count": 3,
    "tcp_user_timeout": 12_000,
}
"""Asked of the server for each PostgreSQL session: end the session of a client that has
not been heard from for about 12 s — probes of a silent connection after 5 s, 2 s apart
(keepalives), and at most 12 s for data sent to it to be acknowledged (the user timeout,
PostgreSQL 12 and later). A worker's host cut off in the middle of a transaction (say
between a turn's writes and its COMMIT) otherwise keeps its row locks and the append lock
for as long as the server's kernel waits, two hours or a quarter of an hour: the other
hosts' appends, and their reapers, wait with it. A live client's kernel answers at once,
however long its transaction; a URL whose ``options`` set ``tcp_*`` keeps its own."""


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` URLs and use psycopg 3 for them."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def masked(url: str) -> str:
    """``url`` as messages show it: quoted, with any password replaced by ``***``."""
    return repr(_PASSWORD.sub(r"\1***@", url))


def create(url: str, *, read_only: bool = False, **kwargs: Any) -> Engine:
    """An engine for ``url``; nothing connects until first use.

    `InvalidDatabaseUrl` for a URL jobtrail cannot use. ``read_only`` (SQLite): open the
    file read-only (PostgreSQL engines are the same either way).
    """
    parsed = parse_url(url)
    try:
        if parsed.get_backend_name() == "sqlite":
            engine = create_engine(parsed, connect_args={"timeout": 30}, **kwargs)
        else:
            kwargs.setdefault("pool_pre_ping", True)
            # Many-row inserts go to psycopg's executemany (pipeline mode, one prepared
            # statement) rather than SQLAlchemy's multi-VALUES statements, which psycopg
            # re-parses for every batch.
            kwargs.setdefault("use_insertmanyvalues", False)
            kwargs.setdefault("pool_size", 20)
            kwargs.setdefault("max_overflow", 20)
            engine = create_engine(parsed, connect_args={"connect_timeout": 5}, **kwargs)
    except (sa_exc.ArgumentError, ValueError, TypeError, ImportError) as error:
        raise InvalidDatabaseUrl(url=masked(url), reason=_first_line(error)) from error
    event.listen(engine, "handle_error", name_refused_value)
    if parsed.get_backend_name() == "sqlite":
        _configure_sqlite(engine, read_only)
    elif "tcp_" not in str(parsed.query.get("options", "")):
        _ask_for_keepalives(engine)
    return engine


def parse_url(url: str) -> URL:
    """``url`` parsed, if it names a database jobtrail runs on, else `InvalidDatabaseUrl`."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidDatabaseUrl(
            url=repr(url), reason=f"it is empty (give --db or JOBTRAIL_DATABASE_URL: {URL_FORMS})"
        )
    try:
        parsed = make_url(normalise_url(url))
    except (sa_exc.ArgumentError, ValueError) as error:
        raise InvalidDatabaseUrl(
            url=masked(url), reason=f"{_first_line(error)}; expected {URL_FORMS}"
        ) from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend not in ("sqlite", "postgresql"):
        raise InvalidDatabaseUrl(
            url=masked(url), reason=f"jobtrail runs on SQLite and PostgreSQL, not {backend!r}"
        )
    if backend == "postgresql" and driver != "psycopg":
        raise InvalidDatabaseUrl(
            url=masked(url),
            reason=f"jobtrail talks to PostgreSQL through psycopg 3, not {driver!r}: "
            "write postgresql://…",
        )
    if backend == "sqlite":
        if driver not in ("", "pysqlite"):
            raise InvalidDatabaseUrl(
                url=masked(url), reason=f"jobtrail uses Python's sqlite3, not {driver!r}"
            )
        unknown = sorted(set(parsed.query) - SQLITE_OPTIONS)
        if unknown:
            raise InvalidDatabaseUrl(
                url=masked(url),
                reason=f"SQLite takes no option {', '.join(unknown)} (SQLite URI options "
                "need uri=true)",
            )
    return parsed


def is_postgres(bind: Engine | Connection) -> bool:
    return bind.dialect.name == "postgresql"


def sqlite_file(engine: Engine) -> Path | None:
    """The file of a SQLite engine's database; None in memory, for a ``uri=true`` URL or
    for PostgreSQL."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.query.get("uri") in ("true", "1", "True"):
        return None
    database = url.database or ""
    if database in ("", ":memory:"):
        return None
    return Path(database)


def ensure_sqlite_file(engine: Engine) -> None:
    """Create the SQLite database file if it does not exist (for `jobtrail db init` only)."""
    path = sqlite_file(engine)
    if path is None or path.exists():
        return
    if not path.absolute().parent.is_dir():
        raise DatabaseUnavailable(reason=f"no directory {path.absolute().parent} for {path}")
    try:
        path.touch()  # an empty file is an empty SQLite database
    except OSError as error:
        raise DatabaseUnavailable(reason=f"cannot create {path}: {error.strerror}") from error


def _configure_sqlite(engine: Engine, read_only: bool) -> None:
    path = sqlite_file(engine)

    @event.listens_for(engine, "do_connect")
    def _open(dialect: Any, _record: Any, cargs: list[Any], cparams: dict[str, Any]) -> Any:
        if path is None:
            return None
        if not path.exists():
            parent = path.absolute().parent
            if not parent.is_dir():
                raise DatabaseUnavailable(reason=f"no directory {parent} for {path}")
            raise NoDatabase(path=path)
        if not read_only:
            return None  # SQLAlchemy connects as usual
        return dialect.loaded_dbapi.connect(
            _read_only_uri(Path(cargs[0])), **{**cparams, "uri": True}
        )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        if not read_only:  # a read-only connection keeps the journal mode it finds
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        write = connection.get_execution_options().get("jobtrail_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    event.listen(engine, "handle_error", confirm_sqlite_schema)


def _ask_for_keepalives(engine: Engine) -> None:
    """`SERVER_KEEPALIVES` on each new connection (a SET, not the startup packet's
    ``options``, which PgBouncer refuses)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        wanted = list(SERVER_KEEPALIVES.items())
        if dbapi_connection.info.server_version < 120000:  # no tcp_user_timeout before 12
            wanted = [(name, v) for name, v in wanted if name != "tcp_user_timeout"]
        settings = ", ".join(f"set_config('{name}', '{v}', false)" for name, v in wanted)
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True  # a session setting, outside any transaction
        try:
            dbapi_connection.execute(f"SELECT {settings}")
        finally:
            dbapi_connection.autocommit = autocommit


def _read_only_uri(path: Path) -> str:
    """``file:PATH?mode=ro``, and ``immutable=1`` where SQLite could not read otherwise.

    A WAL database opened read-only still needs its ``-shm`` file, which SQLite cannot make
    in a directory the reader may not write. There, with no ``-wal`` or ``-journal`` file
    present, nobody is writing the database (a writer needs both the directory and those
    files), so reading it as immutable is safe.
    """
    uri = f"file:{urllib.parse.quote(str(path))}?mode=ro"
    directory_writable = os.access(path.parent, os.W_OK)
    busy = any(Path(f"{path}{suffix}").exists() for suffix in ("-wal", "-journal"))
    if not directory_writable and not busy:
        uri += "&immutable=1"
    return uri


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
