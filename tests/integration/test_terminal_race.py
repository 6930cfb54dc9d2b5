"""Sixteen threads finish the same 200 jobs at once: each ends with one terminal event."""

from __future__ import annotations

import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from jobtrail.adapters.bootstrap import Jobtrail
from jobtrail.domain.errors import InsufficientCredits
from jobtrail.domain.events import TERMINAL_EVENT_TYPES
from jobtrail.domain.job import Outcome
from jobtrail.domain.services import JobSpec

from tests.helpers import check_history, check_projection

pytestmark = pytest.mark.postgres
THREADS, JOBS = 16, 200


def test_racing_fail_complete_and_cancel_record_one_terminal_event(pg_trail: Jobtrail) -> None:
    ids = pg_trail.submit_many([JobSpec("race", {"n": n}, max_attempts=1) for n in range(JOBS)])
    for job_id in ids:
        pg_trail.service.start(job_id, "w0", 60)
    service = pg_trail.service

    def finish_all(seed: int) -> list[tuple[str, str, Outcome]]:
        rng = random.Random(seed)
        order = ids[:]
        rng.shuffle(order)
        results = []
        for job_id in order:
            command = rng.choice(("fail", "complete", "cancel"))
            if command == "fail":
                outcome = service.fail(job_id, InsufficientCredits(), 1)
            elif command == "complete":
                outcome = service.complete(job_id, 1, {"by": seed})
            else:
                outcome = service.cancel(job_id, f"thread {seed}")
            results.append((job_id, command, outcome))
        return results

    with ThreadPoolExecutor(THREADS) as pool:
        results = [r for batch in pool.map(finish_all, range(THREADS)) for r in batch]

    recorded = Counter(job_id for job_id, _, outcome in results if outcome is Outcome.RECORDED)
    assert recorded == Counter(dict.fromkeys(ids, 1))
    winners = Counter(command for _, command, o in results if o is Outcome.RECORDED)
    assert len(winners) == 3, f"every command should win some races: {winners}"
    for job_id in ids:
        events = pg_trail.store.load(job_id)
        assert sum(e.type in TERMINAL_EVENT_TYPES for e in events) == 1
        check_history(job_id, events)
        check_projection(pg_trail, job_id)
