"""The relay: the event log, in position order, onto the Kafka topic.

The log is the outbox. The relay reads everything after its stored position (gap-free:
positions become visible in commit order), publishes it, and stores the new position only
after the broker acknowledged it. A crash between the two re-sends a batch, never loses
one; consumers drop the duplicates by ``(job_id, version)``.

One relay publishes at a time: it holds a lease on its row of ``relay_position`` and
renews it with every save; others stand by and take over once the lease expires (or at
once, when the holder stops cleanly and releases it).

Broker errors are retried with a backoff, refused requests too (an operator can fix an ACL
while the relay waits), with one exception: a `BrokerSecurityError` (wrong credentials, an
untrusted broker certificate, a TLS handshake or SASL mechanism the broker refuses) before
this relay's first acknowledged batch ends `run()` with that error. Its settings have never
worked, and retrying them would only hide the mistake in the log; once a batch went
through, the same error (credentials rotated under a running relay) is retried like the rest.

Once it has caught up, the relay waits for the log to grow: on PostgreSQL a notification of
appended events wakes it (a `WakeSource`, given by `Jobtrail.relay`), and it reads the log
anyway every `FALLBACK_POLL_SECONDS`; on SQLite it polls every `POLL_SECONDS`
(docs/wakeup.md).

One module: the loop, its lease and its waits share one relay's state; reading the log,
storing the position and publishing are the modules beside it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from jobtrail.adapters.kafka.codec import Record
from jobtrail.adapters.kafka.errors import BrokerError, BrokerRefused, BrokerSecurityError
from jobtrail.adapters.kafka.relay_position import LostRelayLease, SqlRelayPosition
from jobtrail.adapters.kafka.relay_source import LogBatch
from jobtrail.domain.errors import DatabaseUnavailable, JobtrailError
from jobtrail.domain.ports import Clock

log = logging.getLogger(__name__)

POLL_SECONDS = 0.05
"""How often a relay without push wakeups (SQLite) reads the log when it has caught up."""
FALLBACK_POLL_SECONDS = 1.0
"""How often a relay woken by notifications (PostgreSQL) reads the log anyway."""

WakeSource = Callable[[Callable[[], None]], AbstractContextManager[object]]
"""Called with a function, a context in which that function is called whenever events may
have been appended (`jobtrail.adapters.sql.wakeup.events_wakeup`)."""


class RecordSource(Protocol):
    def records_after(self, position: int, limit: int) -> LogBatch:
        """Up to `limit` records of the log after `position`, in position order."""

    def close(self) -> None: ...


class Acknowledgement(Protocol):
    def wait(self) -> None:
        """Return once the broker acknowledged every record sent; raise a BrokerError if not."""


class Publisher(Protocol):
    def send(self, records: Sequence[Record]) -> Acknowledgement:
        """Start sending `records`; the acknowledgement tells when the broker has them all."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class InFlight:
    """A batch sent but not yet acknowledged: the position is stored once it is."""

    acknowledgement: Acknowledgement
    last_position: int
    count: int


@dataclass(frozen=True)
class RelaySettings:
    batch: int = 5000
    lease: float = 10.0
    """Seconds a silent relay keeps the right to publish; a standby takes over after it."""
    poll: float | None = None
    """Seconds between reads of the log when there was nothing new (an indexed range read).
    None: `POLL_SECONDS` without push wakeups (SQLite), `FALLBACK_POLL_SECONDS` with them
    (PostgreSQL, where a notification wakes the relay first). A standby relay, which waits
    for the lease and not for events, reads its lease this often."""
    max_backoff: float = 10.0


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Relay:
    def __init__(
        self,
        source: RecordSource,
        positions: SqlRelayPosition,
        publisher: Publisher,
        clock: Clock,
        settings: RelaySettings | None = None,
        owner: str | None = None,
        wakeup: WakeSource | None = None,
    ) -> None:
        self.source = source
        self.positions = positions
        self.publisher = publisher
        self.clock = clock
        self.settings = settings or RelaySettings()
        self.owner = owner or default_owner()
        self.position: int | None = None
        """The acknowledged position while this relay holds the lease; None on standby."""
        self.caught_up = False
        """Whether the last read, made while holding the lease, found nothing new."""
        self._renew_at = 0.0
        self._in_flight: InFlight | None = None
        self._stop = threading.Event()
        self._draining = threading.Event()
        self._wakeup = wakeup
        self._woken = threading.Event()
        """Set by a notification, a stop or a drain: the wait for new events ends."""
        self._stopping = threading.Event()
        """Set by a stop or a drain: a standby's wait ends."""
        pushed_poll = FALLBACK_POLL_SECONDS if wakeup is not None else POLL_SECONDS
        self._poll = pushed_poll if self.settings.poll is None else self.settings.poll
        self._backoff = 0.0
        self._acknowledged = False
        """Whether the broker ever acknowledged a batch of this relay."""
        self.failure: BaseException | None = None
        """What ended `run()` with an error, for `run_in_thread`'s caller."""

    # ----------------------------------------------------------------- running

    def run(self, until_caught_up: bool = False) -> None:
        """Publish until stopped (or, with `until_caught_up`, until nothing is left)."""
        log.info("relay %s starting", self.owner)
        wakeups = contextlib.ExitStack()
        try:
            if self._wakeup is not None:  # before the first read: what is appended after wakes
                wakeups.enter_context(self._wakeup(self._woken.set))
            while not self._stop.is_set():
                self._woken.clear()  # before the read: an append (or a drain) after it wakes
                draining = self._draining.is_set()  # before the read that must see it all
                if self.step() > 0:
                    continue
                if self._finished(until_caught_up, draining):
                    return
                self._wait_for_events()
        finally:
            wakeups.close()
            self._release()
            self.publisher.close()
            self.source.close()

    def stop(self, drain: bool = False) -> None:
        """Stop now, or (`drain`) once everything already in the log is published."""
        if drain:
            self._draining.set()
        else:
            self._stop.set()
        self._stopping.set()
        self._woken.set()

    def _wait_for_events(self) -> None:
        """Until events are appended (or a stop, a drain), the poll, or the lease's renewal.

        A standby waits for the lease, not for events: it reads it every poll, however busy
        the log is."""
        if self.position is None:
            self._stopping.wait(self._poll)
            return
        renew_in = self._renew_at - time.monotonic()
        self._woken.wait(max(0.0, min(self._poll, renew_in)))

    def _finished(self, until_caught_up: bool, draining: bool) -> bool:
        if draining and self.position is None:
            return True  # on standby: the lease holder publishes the rest
        return (until_caught_up or draining) and self.caught_up

    def step(self) -> int:
        """One round: make sure of the lease, publish one batch. Returns events published."""
        try:
            published = self._step()
        except (BrokerError, DatabaseUnavailable) as error:
            if isinstance(error, BrokerSecurityError) and not self._acknowledged:
                self._in_flight = None
                raise  # settings that never worked: stop with the one line that says why
            # A refused request is retried too: the operator can fix it (an ACL, the topic's
            # record size) while the relay waits; stopping would silently end publishing.
            self._in_flight = None  # sent again from the stored position
            self._wait_after(error)
            return 0
        except LostRelayLease as error:
            log.warning("%s Standing by.", error)
            self._in_flight = None
            self.position = None
            return 0
        self._backoff = 0.0
        return published

    def _step(self) -> int:
        """Read the next batch while the previous one is in flight, then store that one.

        Reading, encoding and sending overlap the broker's acknowledgement of the batch
        before; a failure drops both and the next step sends again from the stored position.
        """
        self.caught_up = False
        if not self._hold_lease():
            return 0
        assert self.position is not None
        in_flight = self._in_flight
        read_from = in_flight.last_position if in_flight else self.position
        batch = self.source.records_after(read_from, self.settings.batch)
        events = batch.records
        if events:
            acknowledgement = self.publisher.send(events)
            self._in_flight = InFlight(acknowledgement, batch.last_position, len(events))
        else:
            self._in_flight = None
        if in_flight is None:
            self.caught_up = not events
            return 0 if not events else self._step()
        in_flight.acknowledgement.wait()
        self._acknowledged = True
        self.positions.save(self.owner, in_flight.last_position, self.clock.now(), self._lease())
        self._renewed()
        self.position = in_flight.last_position
        log.debug("published %d events up to position %d", in_flight.count, self.position)
        return in_flight.count

    def _hold_lease(self) -> bool:
        """Whether this relay may publish; renews the lease once a third of it has passed."""
        if self.position is not None and time.monotonic() < self._renew_at:
            return True
        position = self.positions.acquire(self.owner, self.clock.now(), self._lease())
        if position is None:
            if self.position is not None:
                log.warning("relay %s lost its lease; standing by", self.owner)
            self.position = None
            return False
        if self.position is None:
            log.info("relay %s publishing from position %d", self.owner, position)
        self.position = position
        self._renewed()
        return True

    def _renewed(self) -> None:
        self._renew_at = time.monotonic() + self.settings.lease / 3

    def _wait_after(self, error: Exception) -> None:
        self._backoff = min(max(self._backoff * 2, 0.5), self.settings.max_backoff)
        level = logging.ERROR if isinstance(error, BrokerRefused) else logging.WARNING
        log.log(level, "%s Retrying in %.1f s.", error, self._backoff)
        deadline = self._backoff
        while deadline > 0 and not self._stop.is_set():
            # keep the lease while waiting for the broker, so no standby starts duplicating
            self._renew_quietly()
            slice_ = min(deadline, self.settings.lease / 3)
            self._stop.wait(slice_)
            deadline -= slice_

    def _renew_quietly(self) -> None:
        if self.position is None:
            return
        with contextlib.suppress(DatabaseUnavailable):
            self._hold_lease()  # renews once a third of the lease has passed

    def _release(self) -> None:
        if self.position is None:
            return
        try:
            self.positions.release(self.owner, self.clock.now())
        except DatabaseUnavailable as error:
            log.warning("%s The relay lease expires by itself.", error)
        self.position = None

    def _lease(self) -> timedelta:
        return timedelta(seconds=self.settings.lease)


def run_in_thread(relay: Relay, on_exit: Callable[[], None] | None = None) -> threading.Thread:
    """Run the relay beside a worker (`jobtrail worker --relay`); stop it with `relay.stop()`.

    A jobtrail error that ends the relay (a `BrokerSecurityError` before its first batch) is
    logged in one line and kept in `relay.failure` for the caller to report once the thread
    is joined; `on_exit` runs either way (e.g. to stop the worker beside it).
    """

    def target() -> None:
        try:
            relay.run()
        except JobtrailError as error:
            relay.failure = error
            log.error("the relay stopped: %s", error)
        finally:
            if on_exit is not None:
                on_exit()

    thread = threading.Thread(target=target, name="jobtrail-relay", daemon=True)
    thread.start()
    return thread
