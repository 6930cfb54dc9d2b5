"""`jobtrail export`: the log written as a file an auditor can keep and replay elsewhere.

The format is described in `export_format`; `file_source` reads it back.

The file is written beside its destination under a name of its own
(``.FILE.<random>.partial``), synced, and moved into place only when complete; on any
failure (the database, a full disk, an interrupt) the partial file is removed. An existing
file is never replaced unless asked (``force``, the CLI's ``--force``): an audit trail must
not be overwritten by a typo. A destination that cannot be written (a missing directory, a
directory, no permission) is one `CannotWrite`, before the database is read.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from jobtrail.adapters.audit.export_format import FORMAT_VERSION, HEADER
from jobtrail.adapters.audit.reads import (
    LIVE,
    last_position,
    read_seals,
    stream_in_position_order,
)
from jobtrail.adapters.sql.engine import translated_errors
from jobtrail.domain.errors import CannotWrite
from jobtrail.domain.seals import RunningDigest
from sqlalchemy import Engine


@dataclass(frozen=True)
class Exported:
    """What was written: the manifest's figures, and the seals copied."""

    count: int
    last_position: int
    digest: str
    seals: int


def export(engine: Engine, out: Path, *, force: bool = False) -> Exported:
    """Write the log up to the highest position visible now; the file appears complete or not
    at all (written beside it, then renamed). `CannotWrite` if ``out`` exists (unless
    ``force``) or cannot be written."""
    check_destination(out, force=force)
    running = RunningDigest()
    with (
        partial_beside(out) as (partial, f),
        translated_errors(),
        engine.connect() as conn,
    ):
        upto = last_position(conn, LIVE)
        write_line(f, {HEADER: FORMAT_VERSION})
        for record in stream_in_position_order(conn, LIVE, upto):
            running.add(record.position, record.hash)
            write_line(f, record.envelope())
        seals = [s for s in read_seals(conn, LIVE) if s.position <= upto]
        for seal in seals:
            write_line(f, {"seal": seal.__dict__})
        manifest = {"count": running.count, "last_position": upto, "digest": running.digest}
        write_line(f, {"manifest": manifest})
        f.flush()
        os.fsync(f.fileno())
        conn.rollback()
        move_into_place(partial, out, force=force)
    return Exported(running.count, upto, running.digest, len(seals))


def check_destination(out: Path, *, force: bool = False) -> None:
    """`CannotWrite` unless ``out`` can be created (or, with ``force``, replaced)."""
    directory = out.absolute().parent
    if not directory.is_dir():
        raise CannotWrite(path=out, reason=f"there is no directory {directory}")
    if out.is_dir():
        raise CannotWrite(path=out, reason="it is a directory; name a file in it")
    if out.exists() or out.is_symlink():
        if not force:
            raise CannotWrite(path=out, reason="it exists (--force replaces it)")
        if not out.is_file():
            raise CannotWrite(path=out, reason="it is not a regular file")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise CannotWrite(path=out, reason=f"no permission to create files in {directory}")


@contextlib.contextmanager
def partial_beside(out: Path) -> Iterator[tuple[Path, IO[str]]]:
    """A new file in ``out``'s directory, removed unless it was moved into place."""
    partial = out.with_name(f".{out.name}.{secrets.token_hex(4)}.partial")
    try:  # O_EXCL: a name of its own; 0o666 less the umask, as a plain open would give
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as error:
        raise CannotWrite(path=out, reason=error.strerror or str(error)) from error
    try:
        with open(fd, "w", encoding="utf-8") as f:
            yield partial, f
    except OSError as error:
        raise CannotWrite(path=out, reason=error.strerror or str(error)) from error
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


def move_into_place(partial: Path, out: Path, *, force: bool) -> None:
    if force:
        partial.replace(out)
        return
    try:
        os.link(partial, out)  # fails if out appeared meanwhile: never replaced
    except FileExistsError:
        raise CannotWrite(path=out, reason="it exists (--force replaces it)") from None
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        if out.exists():  # a file system without hard links: check, then rename
            raise CannotWrite(path=out, reason="it exists (--force replaces it)") from None
        partial.replace(out)


def write_line(f: IO[str], value: dict[str, Any]) -> None:
    f.write(json.dumps(value, separators=(",", ":"), ensure_ascii=False))
    f.write("\n")
