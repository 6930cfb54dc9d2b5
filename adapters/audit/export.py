"""`jobtrail export`: the log written as a file an auditor can keep and replay elsewhere.

The format is described in `export_format`; `file_source` reads it back.
"""

from __future__ import annotations

import json
import os
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
from jobtrail.domain.seals import RunningDigest
from sqlalchemy import Engine


@dataclass(frozen=True)
class Exported:
    """What was written: the manifest's figures, and the seals copied."""

    count: int
    last_position: int
    digest: str
    seals: int


def export(engine: Engine, out: Path) -> Exported:
    """Write the log up to the highest position visible now; the file appears complete or not
    at all (written beside it, then renamed)."""
    partial = out.with_name(out.name + ".partial")
    running = RunningDigest()
    with translated_errors(), engine.connect() as conn, partial.open("w", encoding="utf-8") as f:
        upto = last_position(conn, LIVE)
        _line(f, {HEADER: FORMAT_VERSION})
        for record in stream_in_position_order(conn, LIVE, upto):
            running.add(record.position, record.hash)
            _line(f, record.envelope())
        seals = [s for s in read_seals(conn, LIVE) if s.position <= upto]
        for seal in seals:
            _line(f, {"seal": seal.__dict__})
        manifest = {"count": running.count, "last_position": upto, "digest": running.digest}
        _line(f, {"manifest": manifest})
        f.flush()
        os.fsync(f.fileno())
        conn.rollback()
    partial.replace(out)
    return Exported(running.count, upto, running.digest, len(seals))


def _line(f: IO[str], value: dict[str, Any]) -> None:
    f.write(json.dumps(value, separators=(",", ":"), ensure_ascii=False))
    f.write("\n")
