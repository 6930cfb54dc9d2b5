"""Several actors on the same jobs, in any order Hypothesis can think of.

Two workers holding different leases, a reaper failing expired leases, a canceller, a
worker that sends its `fail` twice, and rebuilds in between. After every step, on SQLite
and on PostgreSQL: at most one terminal event per job and it is the last; versions are
1..n without gaps; the one Machine accepts every stored sequence; the hash chain holds;
the live `job` row equals the row a rebuild makes from the log.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)
from jobtrail.adapters.bootstrap import Jobtrail
from jobtrail.domain.errors import (
    CommandRejected,
    InsufficientCredits,
    JobError,
    LeaseExpired,
    UpstreamTimeout,
)
from jobtrail.domain.events import TERMINAL_EVENT_TYPES
from jobtrail.domain.job import Meta, Outcome
from jobtrail.domain.retry import RetryPolicy

from tests.helpers import check_history, check_projection, table_fingerprint

WORKERS = ("worker-1", "worker-2")
ERRORS: dict[str, JobError] = {
    "user": InsufficientCredits(),
    "transient": UpstreamTimeout(),
    "unexpected": LeaseExpired(),
}


def make_machine(trail: Jobtrail) -> type[RuleBasedStateMachine]:
    trail.service.policy = RetryPolicy(base_delay=0)  # retries are available at once
    service = trail.service

    class Actors(RuleBasedStateMachine):
        jobs = Bundle("jobs")

        def __init__(self) -> None:
            super().__init__()
            self.leases: dict[tuple[str, str], int] = {}
            self.known: list[str] = []

        def finished(self, job_id: str) -> bool:
            return trail.get(job_id)["status"] in ("completed", "failed", "cancelled")

        def issue(self, job_id: str, command: str, *args: object) -> Outcome | None:
            """Run a command; a finished job must answer ALREADY_FINISHED."""
            was_finished = self.finished(job_id)
            try:
                outcome: Outcome = getattr(service, command)(job_id, *args)
            except CommandRejected:
                assert not was_finished, "a finished job must not reject, only absorb"
                return None
            if was_finished:
                assert outcome is Outcome.ALREADY_FINISHED
            return outcome

        @rule(target=jobs, max_attempts=st.integers(1, 3))
        def submit(self, max_attempts: int) -> str:
            job_id = trail.submit("shot_video_generation", {}, max_attempts=max_attempts)
            self.known.append(job_id)
            return job_id

        @rule(job_id=jobs, worker=st.sampled_from(WORKERS))
        def start(self, job_id: str, worker: str) -> None:
            if self.issue(job_id, "start", worker, 30, Meta(actor=worker)) is Outcome.RECORDED:
                self.leases[(worker, job_id)] = trail.get(job_id)["attempt"]

        @rule(job_id=jobs, worker=st.sampled_from(WORKERS), percent=st.integers(0, 100))
        def progress(self, job_id: str, worker: str, percent: int) -> None:
            if (worker, job_id) in self.leases:
                self.issue(job_id, "report_progress", self.leases[(worker, job_id)], percent)

        @rule(job_id=jobs, worker=st.sampled_from(WORKERS))
        def complete(self, job_id: str, worker: str) -> None:
            if (worker, job_id) in self.leases:
                self.issue(job_id, "complete", self.leases[(worker, job_id)], {"by": worker})

        @rule(
            job_id=jobs,
            worker=st.sampled_from(WORKERS),
            error=st.sampled_from(sorted(ERRORS)),
            twice=st.booleans(),
        )
        def fail(self, job_id: str, worker: str, error: str, twice: bool) -> None:
            if (worker, job_id) not in self.leases:
                return
            attempt = self.leases[(worker, job_id)]
            first = self.issue(job_id, "fail", ERRORS[error], attempt)
            if twice:
                second = self.issue(job_id, "fail", ERRORS[error], attempt)
                assert not (first is Outcome.RECORDED and second is Outcome.RECORDED), (
                    "one attempt failed twice"
                )

        @rule(job_id=jobs)
        def reap(self, job_id: str) -> None:
            row = trail.get(job_id)
            if row["status"] == "processing":
                self.issue(job_id, "fail", LeaseExpired(), row["attempt"], Meta(actor="reaper"))

        @rule(job_id=jobs)
        def fail_unknown_type(self, job_id: str) -> None:
            self.issue(job_id, "fail", InsufficientCredits(), None)

        @rule(job_id=jobs)
        def cancel(self, job_id: str) -> None:
            self.issue(job_id, "cancel", "no longer needed", Meta(actor="canceller"))

        @rule()
        def rebuild(self) -> None:
            before = table_fingerprint(trail)
            trail.rebuild()
            assert table_fingerprint(trail) == before

        @invariant()
        def histories_are_valid(self) -> None:
            for job_id in self.known:
                events = trail.store.load(job_id)
                check_history(job_id, events)
                terminal = sum(e.type in TERMINAL_EVENT_TYPES for e in events)
                assert terminal <= 1
                check_projection(trail, job_id)

    return Actors


def test_jobs_keep_their_invariants_under_any_interleaving(trail: Jobtrail) -> None:
    run_state_machine_as_test(
        make_machine(trail),
        settings=settings(
            max_examples=40,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
