"""Diagnostics of bench.worker's throughput runs (``--profile``): where the worker's main
loop spends its time, and the plan of its first claim."""

from __future__ import annotations

import cProfile
import io
import pstats
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg

from bench.common import heading

if TYPE_CHECKING:
    from jobtrail.adapters.bootstrap import Jobtrail


@contextmanager
def profiling(enabled: bool, title: str, top: int = 25) -> Iterator[None]:
    """cProfile of the calling thread (the worker's main loop: claims, flushes, SQL)."""
    if not enabled:
        yield
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).strip_dirs()
        stats.sort_stats("tottime").print_stats(top)
        stats.sort_stats("cumulative").print_stats(top)
        heading(f"profile of {title} (main thread only; the rate is slowed by profiling)")
        print(out.getvalue())


@contextmanager
def explaining_claim(trail: Jobtrail, conninfo: str, enabled: bool, title: str) -> Iterator[None]:
    """EXPLAIN ANALYZE of the worker's first claim query (the queue still full).

    Run on a side connection just before the worker sends it, then rolled back, so the
    worker's own claim finds the rows unlocked.
    """
    if not enabled:
        yield
        return
    from sqlalchemy import event

    plan: list[str] = []

    def explain(*hook: Any) -> None:
        statement, parameters = hook[2], hook[3]
        if plan or "SKIP LOCKED" not in statement:
            return
        with psycopg.connect(conninfo) as side:
            plan.extend(str(r[0]) for r in side.execute(f"EXPLAIN ANALYZE {statement}", parameters))
            side.rollback()

    event.listen(trail.engine, "before_cursor_execute", explain)
    try:
        yield
    finally:
        event.remove(trail.engine, "before_cursor_execute", explain)
        heading(f"plan of the first claim query of the {title}")
        print("\n".join(f"  {line}" for line in plan))
