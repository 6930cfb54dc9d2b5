"""The log outside the database: export files, and reading the Kafka topic for replay.

An export is JSON lines: a header line ``{"jobtrail_export": 1}``, one event envelope per
line in position order (the same JSON the topic carries), one ``{"seal": …}`` line per
seal, and a last ``{"manifest": {"count", "last_position", "digest"}}`` line. A file cut
short has no manifest, and replay says so.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from jobtrail.adapters.audit.reads import (
    LIVE,
    LogTables,
    Staging,
    last_position,
    read_seals,
    staged_events,
    stream_in_position_order,
)
from jobtrail.adapters.audit.replay import Manifest
from jobtrail.adapters.audit.verify import Problem, StoredEvent
from jobtrail.adapters.kafka.codec import read_envelope
from jobtrail.adapters.kafka.errors import BrokerUnavailable, UndecodableMessage
from jobtrail.adapters.sql.engine import translated_errors
from jobtrail.domain.errors import JobtrailError
from jobtrail.domain.events import parse_time
from jobtrail.domain.seals import RunningDigest, Seal
from sqlalchemy import Engine

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


class ExportUnreadable(JobtrailError):
    """{path} is not a jobtrail export: {reason}."""


@dataclass(frozen=True)
class Exported:
    count: int
    last_position: int
    digest: str
    seals: int


# ------------------------------------------------------------------------ export


def export(engine: Engine, out: Path) -> Exported:
    """Write the log up to the highest position visible now; the file appears complete or not
    at all (written beside it, then renamed)."""
    partial = out.with_name(out.name + ".partial")
    running = RunningDigest()
    with translated_errors(), engine.connect() as conn, partial.open("w", encoding="utf-8") as f:
        upto = last_position(conn, LIVE)
        _line(f, {"jobtrail_export": FORMAT_VERSION})
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


# ------------------------------------------------------------------------ reading a file


@dataclass
class Loaded:
    """A source loaded into staging: where, and what was wrong with the source itself."""

    staging: Staging
    tables: LogTables
    problems: list[Problem]
    manifest: Manifest | None = None


def load_file(path: Path) -> Loaded:
    staging = Staging()
    loaded = Loaded(staging, staging.tables, [])
    seals: list[Seal] = []
    try:
        with path.open(encoding="utf-8") as f:
            _check_header(path, f.readline())
            staging.add_events(_file_events(f, loaded, seals))
    except (OSError, UnicodeDecodeError) as error:
        staging.close()
        raise ExportUnreadable(path=path, reason=str(error)) from error
    staging.add_seals(seals)
    if loaded.manifest is None:
        loaded.problems.append(
            Problem("manifest_missing", "the file has no manifest line: it was cut short")
        )
    return loaded


def _check_header(path: Path, line: str) -> None:
    try:
        header = json.loads(line)
    except json.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or header.get("jobtrail_export") != FORMAT_VERSION:
        raise ExportUnreadable(path=path, reason="its first line is not the export header")


def _file_events(f: IO[str], loaded: Loaded, seals: list[Seal]) -> Iterator[StoredEvent]:
    for number, line in enumerate(f, start=2):
        if loaded.manifest is not None:
            loaded.problems.append(Problem("after_manifest", f"line {number} follows the manifest"))
            continue
        try:
            value = json.loads(line)
            if "manifest" in value:
                loaded.manifest = Manifest(**value["manifest"])
            elif "seal" in value:
                seals.append(Seal(**value["seal"]))
            else:
                yield stored_event(line.encode())
        except (json.JSONDecodeError, TypeError, UndecodableMessage) as error:
            loaded.problems.append(
                Problem("undecodable", f"line {number} is not an event, seal or manifest: {error}")
            )


def stored_event(value: bytes | None) -> StoredEvent:
    """The stored form of one published envelope; `UndecodableMessage` for anything else.

    The codec checks the envelope's fields; they are then taken as they are (not re-encoded
    from a typed event) so that the hash is checked against exactly what was published, and
    data a typed event cannot be built from is replay's `bad_data`, naming job and version.
    """
    envelope = read_envelope(value)
    position = envelope.get("position")
    if not isinstance(position, int):
        raise UndecodableMessage(
            reason=f"event {envelope['job_id']} v{envelope['version']} has no position"
        )
    return StoredEvent(
        position=position,
        event_id=envelope["event_id"],
        job_id=envelope["job_id"],
        version=envelope["version"],
        type=envelope["type"],
        schema_version=envelope["schema_version"],
        data=envelope["data"],
        metadata=envelope.get("metadata") or {},
        occurred_at=parse_time(envelope["occurred_at"]),
        prev_hash=envelope["prev_hash"],
        hash=envelope["hash"],
    )


# ------------------------------------------------------------------------ reading the topic


def load_topic(bootstrap: str, topic: str, idle_seconds: float = 2.0) -> Loaded:
    """Every record of ``topic``, read from the beginning of each partition without a group,
    until none arrives for ``idle_seconds`` (end offsets are not trusted: see
    docs/kafka-notes.md). Records of different partitions interleave; replay orders them."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    staging = Staging()
    loaded = Loaded(staging, LogTables(staged_events, None), [])
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            bootstrap_timeout_ms=10_000,
        )
    except KafkaError as error:
        staging.close()
        raise BrokerUnavailable(bootstrap=bootstrap, reason=str(error)) from error
    try:
        partitions = sorted(consumer.partitions_for_topic(topic))
        if not partitions:
            raise BrokerUnavailable(bootstrap=bootstrap, reason=f"no topic {topic!r}")
        assigned = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        staging.add_events(_topic_events(consumer, loaded, idle_seconds))
    except KafkaError as error:
        staging.close()
        raise BrokerUnavailable(bootstrap=bootstrap, reason=str(error)) from error
    finally:
        consumer.close()
    return loaded


def _topic_events(consumer: Any, loaded: Loaded, idle_seconds: float) -> Iterator[StoredEvent]:
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < idle_seconds:
        batches = consumer.poll(timeout_ms=200, max_records=5000)
        if batches:
            quiet_since = time.monotonic()
        for records in batches.values():
            for record in records:
                try:
                    yield stored_event(record.value)
                except UndecodableMessage as error:
                    loaded.problems.append(
                        Problem(
                            "undecodable",
                            f"partition {record.partition} offset {record.offset}: {error}",
                        )
                    )
