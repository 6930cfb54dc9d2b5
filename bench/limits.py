"""What a concurrency limit costs a worker, on PostgreSQL.

The same N no-op jobs, run by one worker from "worker starts" to "all terminal", each run in
its own database, in the same run:

1. plain: no limit (`bench.worker`'s throughput figure);
2. a type limit in force that never binds (at most 100,000 running): every claim takes the
   limited path (the limit rows locked, the jobs processing counted, the queue ranked);
3. a per-key limit of 1 with 1,000 distinct concurrency keys (N / 1,000 jobs each): every
   claim ranks the queue by key and admits at most one job per key.

Ratios are against the plain run (the issue's target: a limit costs at most 20 %).

    python -m bench.limits [--jobs 10000] [--concurrency 4 16]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from jobtrail.adapters.bootstrap import Jobtrail
from jobtrail.domain.services import JobSpec

from bench.common import heading, machine_load, measure, open_trail, rate, ratio, row, temp_postgres
from bench.worker import JOBTRAIL_TABLES, NOOP, noop_registry, noop_settings, vacuum_analyze

KEYS = 1000
BATCH = 1000


def plain(trail: Jobtrail, jobs: int) -> None:
    _submit(trail, jobs, lambda i: JobSpec(NOOP))


def type_limit(trail: Jobtrail, jobs: int) -> None:
    trail.flow().set_limit(NOOP, 100_000)
    _submit(trail, jobs, lambda i: JobSpec(NOOP))


def per_key_limit(trail: Jobtrail, jobs: int) -> None:
    trail.flow().set_limit(NOOP, 1, per_key=True)
    _submit(trail, jobs, lambda i: JobSpec(NOOP, concurrency_key=f"customer-{i % KEYS}"))


def _submit(trail: Jobtrail, jobs: int, spec: Callable[[int], JobSpec]) -> None:
    for first in range(0, jobs, BATCH):
        trail.submit_many([spec(i) for i in range(first, min(first + BATCH, jobs))])


SETUPS: dict[str, Callable[[Jobtrail, int], None]] = {
    "no limit": plain,
    "type limit (not binding)": type_limit,
    f"per-key limit 1, {KEYS:,} keys": per_key_limit,
}


def throughput(setup: Callable[[Jobtrail, int], None], jobs: int, concurrency: int) -> float:
    with temp_postgres() as database, open_trail(database.url) as trail:
        setup(trail, jobs)
        vacuum_analyze(database.conninfo, JOBTRAIL_TABLES)
        worker = trail.worker(noop_settings(concurrency), registry=noop_registry())
        _, seconds = measure(worker.run)
        completed = sum(1 for r in trail.jobs("completed", limit=jobs))
        if completed != jobs:
            print(f"    WARNING: {jobs - completed} jobs not completed after the run")
    return rate(jobs, seconds)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[4, 16])
    args = parser.parse_args(argv)
    print("bench.limits: worker throughput under concurrency limits, PostgreSQL")
    machine_load("start")
    for concurrency in args.concurrency:
        heading(f"{args.jobs:,} no-op jobs, one worker, concurrency {concurrency}")
        rates: dict[str, Any] = {}
        for name, setup in SETUPS.items():
            rates[name] = throughput(setup, args.jobs, concurrency)
            row(name, f"{rates[name]:,.0f} jobs/s")
        for name in list(SETUPS)[1:]:
            shown = ratio(rates[name], rates["no limit"])
            row(f"ratio {name} / no limit", shown, "(target >= 0.8x)")
    machine_load("end")


if __name__ == "__main__":
    main()
