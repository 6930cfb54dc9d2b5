"""Random processor outcomes, two workers and the reaper, interleaved by Hypothesis.

The workers' own steps (claim, run one processor, heartbeat, write outcomes) are driven
one at a time instead of by their threads, on a clock the test moves, so leases expire
exactly when Hypothesis decides. After every step the log keeps the core invariants, and
a job is `processing` exactly when it has a lease for its current attempt.
"""

from __future__ import annotations

import queue
from datetime import UTC, datetime, timedelta
from random import Random

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)
from jobtrail.adapters.bootstrap import Jobtrail, connect
from jobtrail.adapters.sql.schema import LEASE_COLUMN, job
from jobtrail.domain.ports import Clock
from jobtrail.domain.retry import RetryPolicy
from jobtrail.processors.engine.worker import Worker, WorkerSettings
from sqlalchemy import select

from tests.helpers import check_history, check_projection

LEASE = 5.0


class ManualClock(Clock):
    def __init__(self) -> None:
        self.moment = datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self.moment

    def advance(self, seconds: float) -> None:
        self.moment += timedelta(seconds=seconds)


payloads = st.fixed_dictionaries(
    {},
    optional={
        "credits": st.sampled_from([0, 10]),
        "fail_times": st.integers(0, 3),
        "crash": st.booleans(),
    },
).map(lambda p: {**p, "duration_ms": 0})


def make_machine(url: str) -> type[RuleBasedStateMachine]:
    clock = ManualClock()
    trail: Jobtrail = connect(url, clock=clock, policy=RetryPolicy(base_delay=1.0, max_delay=1.0))
    workers = {
        name: trail.worker(
            WorkerSettings(concurrency=1, prefetch=2, lease_seconds=LEASE), worker_id=name
        )
        for name in ("worker-a", "worker-b")
    }
    names = st.sampled_from(sorted(workers))

    class WorkersAndReaper(RuleBasedStateMachine):
        jobs = Bundle("jobs")

        def __init__(self) -> None:
            super().__init__()
            self.known: list[str] = []
            # Every example starts alone: earlier examples' unfinished jobs are cancelled,
            # the workers forget them, and retry delays repeat.
            for row in trail.jobs(limit=100_000):
                if row["status"] in ("queued", "processing"):
                    trail.cancel(row["id"], "end of an earlier example")
            for worker in workers.values():
                reset(worker)
            trail.service.policy = RetryPolicy(base_delay=1.0, max_delay=1.0, rng=Random(0))

        @rule(
            target=jobs, payload=payloads, max_attempts=st.integers(1, 3), known_type=st.booleans()
        )
        def submit(self, payload: dict[str, object], max_attempts: int, known_type: bool) -> str:
            job_type = "shot_video_generation" if known_type else "storyboard_export"
            clock.advance(0.001)  # jobs become available in the order they were submitted
            job_id = trail.submit(job_type, payload, max_attempts=max_attempts)
            self.known.append(job_id)
            return job_id

        @rule(name=names)
        def claim(self, name: str) -> None:
            workers[name]._exchange()

        @rule(name=names)
        def run_one_processor(self, name: str) -> None:
            worker = workers[name]
            try:
                running = worker._todo.get_nowait()
            except queue.Empty:
                return
            if running is not None:
                worker._done.put(worker._process(running))

        @rule(name=names)
        def write_outcomes(self, name: str) -> None:
            workers[name]._exchange(claiming=False)

        @rule(name=names)
        def heartbeat(self, name: str) -> None:
            workers[name]._heartbeat()

        @rule(seconds=st.sampled_from([0.5, 2.0, LEASE + 1]))
        def time_passes(self, seconds: float) -> None:
            clock.advance(seconds)

        @rule()
        def reap(self) -> None:
            trail.reaper().reap_once()

        @rule(job_id=jobs)
        def cancel(self, job_id: str) -> None:
            trail.cancel(job_id, "changed my mind")

        @invariant()
        def the_log_holds(self) -> None:
            with trail.engine.connect() as conn:
                held = select(job.c.id, job.c.attempt).where(job.c[LEASE_COLUMN].is_not(None))
                leases = dict(conn.execute(held).all())
            for job_id in self.known:
                check_history(job_id, trail.history(job_id))
                check_projection(trail, job_id)
                row = trail.get(job_id)
                if row["status"] == "processing":
                    assert leases.get(job_id) == row["attempt"], "a running job without lease"
                else:
                    assert job_id not in leases, f"a {row['status']} job kept its lease"

    return WorkersAndReaper


def reset(worker: Worker) -> None:
    """Forget what a previous example left in the worker's hands."""
    worker._running.clear()
    worker._drain_todo()
    while not worker._done.empty():
        worker._done.get_nowait()


def test_workers_and_the_reaper_keep_the_invariants(backend_url: str) -> None:
    run_state_machine_as_test(
        make_machine(backend_url),
        settings=settings(
            max_examples=30,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
