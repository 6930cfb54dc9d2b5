"""Reading the `job-events` topic in another service: `JobEventConsumer`.

It decodes each record with `jobtrail.adapters.kafka.codec.decode` (typed events; `RawEvent` for a
type or schema version newer than this code) and calls the handler once per
`(job_id, version)`:

- **Duplicates are dropped, gaps reported** (`version_window`): a record whose version is
  not above the highest one handled for its job is skipped (counted in `stats.duplicates`);
  a version more than one above it calls `on_gap(Gap)` (default: a warning in the log),
  counts in `stats.gaps`, and the event is still handed on. Handlers with side effects that
  must never repeat should also key them on `(job_id, version)`.
- **Chains are checked** (`check_chains`, on by default): an event whose `prev_hash` is not
  the `hash` of the job's previous event as handled (or, for a version 1, not empty) calls
  `on_chain_break(ChainBreak)` (default: a warning in the log), counts in
  `stats.chain_breaks`, and is still handed on, like a gap. Only links whose both ends this
  consumer handled are checked (not across a gap, nor for a job first seen mid-history or
  forgotten by the window); stored hashes are compared, none recomputed, so an intact
  topic never reports one.
- **Offsets are committed only after the handler returned.** `enable_auto_commit` is off;
  each poll's handled records are committed together. A handler that raises stops the
  consumer with `EventHandlerFailed`: the records handled before it are committed, the
  failed one and everything after it are not, and the consumer seeks back to them, so
  calling `run()` again (a retry) or starting another consumer of the group delivers the
  failed record again. Whether to retry is the caller's decision.
- **Undecodable records go to a dead-letter topic** (`<topic>.dead-letter` by default), with
  the original key, value and headers plus headers saying why and where the record came
  from; the consumer then commits past it and keeps going.
- **TLS and SASL** come from `security` (a `KafkaSecurity`; default PLAINTEXT), used by the
  consumer and by the dead-letter producer alike.
- Broker errors become `BrokerUnavailable` / `BrokerRefused` (`errors.translated`; wrong
  credentials or an untrusted broker certificate: `BrokerAuthenticationFailed` /
  `BrokerUntrusted`, both `BrokerSecurityError`s, which are `BrokerRefused`). A
  commit or dead-letter send that times out is retried on the next poll (the records are
  re-delivered and dropped as duplicates) rather than stopping the consumer.
- **Lag** (`lag()`): the records after the consumer's position in each partition it is
  assigned — the log-end offsets (one `ListOffsets` round trip) minus its positions. Meant
  for the metrics endpoint, which calls it from its own thread at scrape time and caches
  it (`adapters/metrics/consumer.py`); kafka-python's consumer is not thread-safe, so every
  call on it here holds one lock (a scrape waits for at most one poll or commit, never for
  a handler).

About 390 lines, one piece: the poll loop, the commits after the handler and the
dead-letter path share the consumer's position and must agree on it; the dedupe and chain
bookkeeping are apart, in `version_window`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from jobtrail.adapters.kafka.codec import RawEvent, decode
from jobtrail.adapters.kafka.errors import (
    BrokerUnavailable,
    EventHandlerFailed,
    UndecodableMessage,
    translated,
)
from jobtrail.adapters.kafka.security import KafkaSecurity
from jobtrail.adapters.kafka.version_window import (
    DEFAULT_WINDOW,
    ChainBreak,
    Gap,
    Verdict,
    VersionWindow,
    warn_chain_break,
    warn_gap,
)
from jobtrail.domain.errors import JobtrailError
from jobtrail.domain.events import Event

__all__ = [
    "DEAD_LETTER_SUFFIX",
    "ChainBreak",
    "ConsumerStats",
    "Gap",
    "Handler",
    "JobEventConsumer",
    "Verdict",
    "VersionWindow",
]

log = logging.getLogger(__name__)

DEAD_LETTER_SUFFIX = ".dead-letter"
HEADER_DL_REASON = "dead_letter_reason"
HEADER_DL_TOPIC = "original_topic"
HEADER_DL_PARTITION = "original_partition"
HEADER_DL_OFFSET = "original_offset"
Handler = Callable[[Event | RawEvent], None]
_NOT_COMMITTED = "offsets not committed (records will be delivered again): %s"


@dataclass
class ConsumerStats:
    handled: int = 0
    duplicates: int = 0
    gaps: int = 0
    chain_breaks: int = 0
    dead_lettered: int = 0

    def summary(self) -> str:
        return (
            f"handled {self.handled} event(s), dropped {self.duplicates} duplicate(s), "
            f"{self.gaps} gap(s), {self.chain_breaks} broken chain(s), "
            f"{self.dead_lettered} dead-lettered"
        )


class _Retry(Exception):
    """The broker did not answer in time: re-read from this record on the next poll."""


class JobEventConsumer:
    """Calls `handler` once per new `(job_id, version)` on `topic`, in order per job.

    `group=None` reads every partition without a consumer group and commits nothing
    (a read-only look, as `jobtrail consume` does without `--group`). `from_beginning`
    applies when the group has no committed offsets (Kafka's `auto_offset_reset`).
    `security` is how to connect (TLS, SASL; default PLAINTEXT; `KafkaSecurity.from_env()`
    reads the CLI's ``JOBTRAIL_KAFKA_*`` variables). `settings` are passed on to
    `KafkaConsumer` (e.g. session timeouts) and win over both.
    `check_chains=False` turns the per-job `prev_hash` check off (then the window keeps
    no hashes).
    """

    def __init__(
        self,
        handler: Handler,
        *,
        bootstrap: str,
        topic: str,
        group: str | None = None,
        from_beginning: bool = False,
        dead_letter_topic: str | None = None,
        window: int = DEFAULT_WINDOW,
        on_gap: Callable[[Gap], None] = warn_gap,
        check_chains: bool = True,
        on_chain_break: Callable[[ChainBreak], None] = warn_chain_break,
        connect_timeout: float = 10.0,
        settings: Mapping[str, Any] | None = None,
        security: KafkaSecurity | None = None,
    ) -> None:
        from kafka import KafkaConsumer

        self.handler = handler
        self.bootstrap = bootstrap
        self.topic = topic
        self.group = group
        self.dead_letter_topic = dead_letter_topic or topic + DEAD_LETTER_SUFFIX
        self.window = VersionWindow(window)
        self.on_gap = on_gap
        self.check_chains = check_chains
        self.on_chain_break = on_chain_break
        self.stats = ConsumerStats()
        self.security = security or KafkaSecurity()
        self._timeout_ms = max(int(connect_timeout * 1000), 100)
        self._producer: Any = None
        self._lock = threading.RLock()  # kafka-python's consumer: one thread at a time
        self._closed = False
        with self._translated():
            self._consumer: Any = KafkaConsumer(
                topic,
                bootstrap_servers=bootstrap,
                group_id=group,
                client_id="jobtrail-consumer",
                enable_auto_commit=False,
                **{
                    **self.security.client_config(self._timeout_ms / 1000),
                    "auto_offset_reset": "earliest" if from_beginning else "latest",
                    "bootstrap_timeout_ms": self._timeout_ms,
                    # an empty fetch returns after this long; on a broker that holds a fetch
                    # to its end even when records arrive (Tansu), half of it is added to
                    # every event's latency: 10 ms keeps append -> handler near 10 ms, for
                    # at most 100 empty fetches a second while idle (settings override it)
                    "fetch_max_wait_ms": 10,
                    **dict(settings or {}),
                },
            )

    # ------------------------------------------------------------------ loop

    def run(
        self, until_idle: float | None = None, stop: threading.Event | None = None
    ) -> ConsumerStats:
        """Consume until `stop` is set, or no record came for `until_idle` seconds."""
        stop = stop or threading.Event()
        last_record = time.monotonic()
        while not stop.is_set():
            if self.poll(0.2 if until_idle is not None else 0.5):
                last_record = time.monotonic()
            elif until_idle is not None and time.monotonic() - last_record >= until_idle:
                break
        return self.stats

    def poll(self, timeout: float = 0.5) -> int:
        """One fetch: handle its records and commit them; the number of records read."""
        with self._lock, self._translated():
            batch: dict[Any, list[Any]] = self._consumer.poll(timeout_ms=int(timeout * 1000))
        done: dict[Any, int] = {}  # partition -> next offset to commit
        pending = list(batch.items())
        try:
            for index, (partition, records) in enumerate(pending):
                for record in records:
                    try:
                        self._one(record)
                    except (_Retry, EventHandlerFailed):
                        self._rewind(partition, record.offset, pending[index + 1 :])
                        raise
                    done[partition] = record.offset + 1
        except _Retry:
            log.warning("the broker did not answer; reading again from the first record left")
        finally:
            self._commit(done)
        return sum(len(records) for _, records in pending)

    def _one(self, record: Any) -> None:
        try:
            event = decode(record.value)
        except UndecodableMessage as error:
            self._dead_letter(record, error)
            return
        prev_hash, event_hash = _links(event)
        verdict = self.window.check(
            event.job_id, event.version, prev_hash if self.check_chains else None
        )
        if verdict is Verdict.DUPLICATE:
            self.stats.duplicates += 1
            log.debug("duplicate: job %s version %d", event.job_id, event.version)
            return
        try:
            if verdict is Verdict.GAP:
                self.stats.gaps += 1
                last = self.window.last(event.job_id) or 0
                gap = Gap(
                    event.job_id,
                    last + 1,
                    event.version,
                    record.topic,
                    record.partition,
                    record.offset,
                )
                self.on_gap(gap)
            elif verdict is Verdict.CHAIN_BREAK:
                self.stats.chain_breaks += 1
                expected = self.window.expected_prev_hash(event.job_id, event.version)
                self.on_chain_break(
                    ChainBreak(
                        event.job_id,
                        event.version,
                        expected or "",
                        prev_hash,
                        record.topic,
                        record.partition,
                        record.offset,
                    )
                )
            self.handler(event)
        except Exception as error:
            where = f"{record.topic}[{record.partition}]@{record.offset}"
            raise EventHandlerFailed(
                record=where,
                job_id=event.job_id,
                version=event.version,
                reason=f"{type(error).__name__}: {error}",
            ) from error
        self.window.accept(event.job_id, event.version, event_hash if self.check_chains else "")
        self.stats.handled += 1

    def _rewind(self, partition: Any, offset: int, untouched: list[tuple[Any, list[Any]]]) -> None:
        """Seek back so nothing from `offset` on (nor any untouched partition) is skipped."""
        with self._lock:
            self._consumer.seek(partition, offset)
            for other, records in untouched:
                self._consumer.seek(other, records[0].offset)

    def _commit(self, done: dict[Any, int]) -> None:
        if not done or self.group is None:
            return
        from kafka import OffsetAndMetadata
        from kafka.errors import CommitFailedError

        offsets = {p: OffsetAndMetadata(offset, "", -1) for p, offset in done.items()}
        try:
            with self._lock, self._translated():
                try:
                    self._consumer.commit(offsets, timeout_ms=self._timeout_ms)
                except CommitFailedError as error:  # the group moved the partitions on
                    log.warning(_NOT_COMMITTED, error)
        except BrokerUnavailable as error:
            # Handled but not committed: they are delivered again and dropped as duplicates
            # in this window. A refused commit (BrokerRefused) stops the consumer.
            log.warning(_NOT_COMMITTED, error)

    # ------------------------------------------------------------ dead letters

    def _dead_letter(self, record: Any, error: UndecodableMessage) -> None:
        headers = [
            *(record.headers or []),
            (HEADER_DL_REASON, str(error).encode()),
            (HEADER_DL_TOPIC, record.topic.encode()),
            (HEADER_DL_PARTITION, str(record.partition).encode()),
            (HEADER_DL_OFFSET, str(record.offset).encode()),
        ]
        try:
            with self._translated():
                future = self._dead_letters().send(
                    self.dead_letter_topic, key=record.key, value=record.value, headers=headers
                )
                future.get(timeout=self._timeout_ms / 1000)
        except BrokerUnavailable as unavailable:
            raise _Retry() from unavailable
        self.stats.dead_lettered += 1
        log.warning(
            "%s[%d]@%d sent to %s: %s",
            record.topic,
            record.partition,
            record.offset,
            self.dead_letter_topic,
            error,
        )

    def _dead_letters(self) -> Any:
        if self._producer is None:
            from kafka import KafkaProducer

            self._producer = KafkaProducer(
                **self.security.client_config(self._timeout_ms / 1000),
                bootstrap_servers=self.bootstrap,
                client_id="jobtrail-dead-letters",
                acks="all",
                bootstrap_timeout_ms=self._timeout_ms,
            )
        return self._producer

    # ------------------------------------------------------------------ lag

    def lag(self) -> dict[int, int]:
        """Records after this consumer's position, by partition of `topic` it is assigned
        (none before the first poll's assignment, nor once closed).

        A broker round trip (`end_offsets`), so callers read it every few seconds, not per
        poll; safe from another thread. Broker errors leave as `BrokerError`s.
        """
        with self._lock, self._translated():
            if self._closed:
                return {}
            assigned = sorted(
                (tp for tp in self._consumer.assignment() or () if tp.topic == self.topic),
                key=lambda tp: tp.partition,
            )
            if not assigned:
                return {}
            # positions first: the end offsets read after them can only be further on
            positions = {
                tp: self._consumer.position(tp, timeout_ms=self._timeout_ms) for tp in assigned
            }
            ends: dict[Any, int] = self._consumer.end_offsets(assigned, timeout_ms=self._timeout_ms)
        lags: dict[int, int] = {}
        for tp, position in positions.items():
            end = ends.get(tp)
            if position is None or end is None:  # no position yet (being reset), or no answer
                log.debug(
                    "no lag for %s[%d]: position %s, end %s", tp.topic, tp.partition, position, end
                )
                continue
            lags[tp.partition] = max(end - position, 0)
        return lags

    # ------------------------------------------------------------------ close

    def close(self) -> None:
        """Leave the group (no commit: only handled records were ever committed)."""
        with self._lock, contextlib.suppress(JobtrailError), self._translated():
            self._closed = True
            if self._producer is not None:
                self._producer.close(timeout=self._timeout_ms / 1000)
            self._consumer.close(autocommit=False)

    def _translated(self) -> contextlib.AbstractContextManager[None]:
        return translated(self.bootstrap, self.security, self._timeout_ms / 1000)

    def __enter__(self) -> JobEventConsumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _links(event: Event | RawEvent) -> tuple[str, str]:
    """The event's `prev_hash` and `hash` (a raw event's from its envelope: `decode`
    checked both are strings)."""
    if isinstance(event, RawEvent):
        return event.envelope["prev_hash"], event.envelope["hash"]
    return event.prev_hash, event.hash
