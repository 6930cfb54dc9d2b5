"""`jobtrail worker` and `jobtrail reap`: the processes that run jobs and fail abandoned ones."""

from __future__ import annotations

import argparse
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from jobtrail.adapters.bootstrap import Jobtrail
from jobtrail.adapters.cli.app import load_registry
from jobtrail.adapters.cli.args import stop_on_signals
from jobtrail.adapters.cli.logs import summary
from jobtrail.adapters.cli.metrics import worker_metrics
from jobtrail.domain import limits
from jobtrail.processors.engine.worker import WorkerSettings
from jobtrail.processors.registry import Registry, default_registry

if TYPE_CHECKING:
    from jobtrail.adapters.kafka.relay import Relay

log = logging.getLogger("jobtrail.worker")


def cmd_worker(trail: Jobtrail, args: argparse.Namespace) -> int:
    for job_type in sorted(args.types or ()):  # the rule of a submitted job type
        limits.JOB_TYPE.check(job_type, "--types")
    for queue in sorted(args.queues or ()):
        limits.QUEUE.check(queue, "--queues")
    if args.processes > 1:  # a supervisor of N worker processes (docs/processes.md)
        from jobtrail.adapters.cli.supervisor import supervise

        return supervise(trail, args)
    registry = processors(args.app)  # before anything is claimed: a bad --app claims nothing
    observer, endpoint = worker_metrics(trail, args)  # a port in use: one line, nothing claimed
    worker = trail.worker(
        settings_from(args), registry, observer=observer, worker_id=args.worker_id
    )
    stop_on_signals(worker.stop)
    beside = start_relay(trail, args, on_exit=worker.stop) if args.relay else None
    scheduler = trail.schedules().loop().start() if args.scheduler else None  # cron ticks
    try:
        stats = worker.run()
    finally:
        if scheduler:
            scheduler.stop()
        if beside:
            relay, thread = beside
            relay.stop(drain=args.until_empty)
            thread.join()
        if endpoint:
            endpoint.stop()
    if beside and beside[0].failure is not None:  # a relay that never worked: one line, exit 1
        raise beside[0].failure
    summary(
        f"claimed {stats.claimed}, completed {stats.completed}, failed {stats.failed}, "
        f"retries scheduled {stats.retried}, reaped {stats.reaped}"
    )
    return 0


def start_relay(
    trail: Jobtrail, args: argparse.Namespace, on_exit: Callable[[], None]
) -> tuple[Relay, threading.Thread]:
    """`--relay`: the Kafka relay in a thread of this process (Kafka is loaded only then);
    a relay that stops on an error stops the worker too (`on_exit`)."""
    from jobtrail.adapters.cli.relay import relay_from_args
    from jobtrail.adapters.kafka.relay import run_in_thread

    relay = relay_from_args(trail, args)
    return relay, run_in_thread(relay, on_exit=on_exit)


def processors(app: str | None) -> Registry:
    """The app's registry, or the samples; the worker's first log line says which."""
    if app is None:
        registry = default_registry()
        log.info(
            "no --app (or JOBTRAIL_APP): running the sample processors (%s)",
            ", ".join(registry.job_types),
        )
        return registry
    registry = load_registry(app)
    log.info("running the processors of %s: %s", app, ", ".join(registry.job_types) or "none")
    return registry


def settings_from(args: argparse.Namespace) -> WorkerSettings:
    return WorkerSettings(
        concurrency=args.concurrency,
        prefetch=args.prefetch,
        lease_seconds=args.lease,
        heartbeat_seconds=min(args.heartbeat, args.lease / 2),
        job_types=args.types,
        queues=args.queues,
        until_empty=args.until_empty,
        max_jobs=args.max_jobs,
        grace_seconds=args.grace,
    )


def cmd_reap(trail: Jobtrail, args: argparse.Namespace) -> int:
    reaper = trail.reaper()
    stopping = threading.Event()
    stop_on_signals(stopping.set)
    total = reaper.reap_once()
    while not args.once and not stopping.wait(args.interval):
        total += reaper.reap_once()
    summary(f"reaped {total} job(s)")
    return 0
