"""Random processor outcomes, two workers and the reaper, interleaved by Hypothesis.

The workers' own steps (claim, run one processor, heartbeat, write outcomes) are driven
one at a time instead of by their threads, on a clock the test moves, so leases expire
exactly when Hypothesis decides. After every step the log keeps the core invariants, a
job is `processing` exactly when it has a lease for its current attempt, and no attempt
has put two outcomes on its worker's done queue.

The same machine runs async processors (`AsyncWorkersAndReaper`): their attempts are
handed to the worker's event loop and end on their own time, while Hypothesis goes on with
heartbeats, reaps, cancels and hand-backs; some run until they are cancelled, some ignore
``ctx.cancelled`` until their task is. When the example ends, every attempt handed to a
runner has put exactly one outcome on the done queue.
"""

from __future__ import annotations

import queue
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from random import Random
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from jobtrail.adapters.bootstrap import Jobtrail, connect
from jobtrail.adapters.sql.schema import LEASE_COLUMN, job
from jobtrail.domain.ports import Clock
from jobtrail.domain.retry import RetryPolicy
from jobtrail.processors.engine.outcomes import Finished, Reported
from jobtrail.processors.engine.worker import Worker, WorkerSettings
from jobtrail.processors.registry import Registry
from sqlalchemy import select

from tests.fixtures import async_processors
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
async_payloads = st.fixed_dictionaries(
    {},
    optional={
        "credits": st.sampled_from([0, 10]),
        "fail_times": st.integers(0, 3),
        "crash": st.booleans(),
        "duration_ms": st.sampled_from([0, 30]),
        "forever": st.booleans(),  # runs until cancelled
        "stubborn": st.booleans(),  # ignores ctx.cancelled: only a cancelled task stops
    },
)


def recording(worker: Worker) -> list[Finished]:
    """Every `Finished` put on the worker's done queue from now on, in order."""
    seen: list[Finished] = []
    base: type[Any] = type(worker._done)

    class Recording(base):  # type: ignore[misc, valid-type]
        def put(self, item: Reported, block: bool = True, timeout: float | None = None) -> None:
            if isinstance(item, Finished):
                seen.append(item)
            super().put(item, block, timeout)

    worker._done = worker._threads.done = Recording()
    return seen


def make_machine(
    url: str,
    registry: Registry | None = None,
    payloads: st.SearchStrategy[dict[str, object]] = payloads,
    grace_seconds: float = 10.0,
) -> type[RuleBasedStateMachine]:
    clock = ManualClock()
    trail: Jobtrail = connect(url, clock=clock, policy=RetryPolicy(base_delay=1.0, max_delay=1.0))
    settings_ = WorkerSettings(
        concurrency=1, prefetch=2, lease_seconds=LEASE, grace_seconds=grace_seconds
    )
    workers = {
        name: trail.worker(settings_, registry=registry, worker_id=name)
        for name in ("worker-a", "worker-b")
    }
    finished = {name: recording(worker) for name, worker in workers.items()}
    names = st.sampled_from(sorted(workers))

    class WorkersAndReaper(RuleBasedStateMachine):
        jobs = Bundle("jobs")
        the_workers = workers
        the_trail = trail
        the_clock = clock
        recorded = finished
        names_ = names

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
            for seen in finished.values():
                seen.clear()
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
        def one_outcome_per_attempt(self) -> None:
            for name, seen in finished.items():
                counts = Counter((f.job_id, f.attempt) for f in seen)
                twice = [attempt for attempt, n in counts.items() if n > 1]
                assert not twice, f"{name} reported attempts twice: {twice}"

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


def make_async_machine(url: str) -> type[RuleBasedStateMachine]:
    """The machine with async processors, cancelled at once when a lease is lost."""
    base: Any = make_machine(url, async_processors.registry, async_payloads, grace_seconds=0)
    workers: dict[str, Worker] = base.the_workers

    class AsyncWorkersAndReaper(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            self.handed: dict[str, list[tuple[str, int]]] = {name: [] for name in workers}

        @rule(target=base.jobs, payloads=st.lists(async_payloads, min_size=1, max_size=4))
        def submit_several(self, payloads: list[dict[str, object]]) -> MultipleResults[str]:
            """A batch of known jobs: attempts run side by side on the loop."""
            return multiple(*(self.submit(payload, 3, True) for payload in payloads))

        @rule(name=base.names_)
        def run_one_processor(self, name: str) -> None:
            """Hand the next job to the event loop, as a processor thread does."""
            worker = workers[name]
            try:
                running = worker._todo.get_nowait()
            except queue.Empty:
                return
            if running is not None:
                self.handed[name].append((running.job.id, running.job.attempt))
                worker._threads.start_async(running)

        @rule(name=base.names_)
        def claim_and_hand_over(self, name: str) -> None:
            """A turn, then every job claimed handed to the loop: attempts pile up there."""
            workers[name]._exchange()
            while not workers[name]._todo.empty():
                self.run_one_processor(name)

        @rule()
        def the_loops_run_a_while(self) -> None:
            time.sleep(0.02)

        @rule(name=base.names_)
        def leases_are_lost_while_attempts_run(self, name: str) -> None:
            """Their leases expire, the reaper fails them and the heartbeat notices: the
            tasks still running are cancelled (the grace period is 0 here)."""
            base.the_clock.advance(LEASE + 1)
            base.the_trail.reaper().reap_once()
            workers[name]._heartbeat()
            time.sleep(0.02)

        @rule(name=base.names_, pick=st.integers(0, 10))
        def hand_back_one(self, name: str, pick: int) -> None:
            """Give up a running attempt, as shutdown does after its grace period."""
            threads = workers[name]._threads
            running = sorted(threads.on_the_loop, key=lambda r: (r.job.id, r.job.attempt))
            if running:
                threads.hand_back(running[pick % len(running)])

        def teardown(self) -> None:
            for name, worker in workers.items():
                settle_the_loop(worker)
                seen = Counter((f.job_id, f.attempt) for f in base.recorded[name])
                for attempt in self.handed[name]:
                    assert seen[attempt] == 1, f"{name}: attempt {attempt} reported {seen[attempt]}"

    return AsyncWorkersAndReaper


def settle_the_loop(worker: Worker) -> None:
    """Hand back what runs on the worker's event loop, and wait until its tasks are done."""
    threads = worker._threads
    for running in threads.on_the_loop:
        threads.hand_back(running)
    deadline = time.monotonic() + 30
    while threads.on_the_loop:
        assert time.monotonic() < deadline, "tasks on the event loop never ended"
        time.sleep(0.01)


def reset(worker: Worker) -> None:
    """Forget what a previous example left in the worker's hands."""
    settle_the_loop(worker)
    worker._running.clear()
    worker._drain_todo()
    while not worker._done.empty():
        worker._done.get_nowait()


@pytest.mark.parametrize("kind", ["threads", "async"])
def test_workers_and_the_reaper_keep_the_invariants(backend_url: str, kind: str) -> None:
    machine = make_machine if kind == "threads" else make_async_machine
    run_state_machine_as_test(
        machine(backend_url),
        settings=settings(
            max_examples=30,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
