"""What the benchmarks share: throwaway databases, timing, waiting, memory, statistics, output."""

from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import psycopg
from psycopg import sql

if TYPE_CHECKING:
    from jobtrail.adapters.bootstrap import Jobtrail

# jobtrail and SQLAlchemy are imported where they are used, so that a benchmark's
# subprocess running only a peer (bench.worker's Procrastinate worker, whose memory is
# measured) does not carry them.

ADMIN_URL_ENV = "JOBTRAIL_BENCH_POSTGRES_URL"
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

T = TypeVar("T")

Probe = Callable[[], float]
"""Performs one operation and returns the seconds its measured part took."""


@dataclass(frozen=True)
class PostgresDatabase:
    """A throwaway database: its libpq conninfo (for raw psycopg) and SQLAlchemy URL."""

    name: str
    conninfo: str

    @property
    def url(self) -> str:
        """The URL jobtrail's `connect` takes."""
        from sqlalchemy import URL

        params = {k: str(v) for k, v in psycopg.conninfo.conninfo_to_dict(self.conninfo).items()}
        return URL.create(
            "postgresql",
            username=params.get("user", "postgres"),
            password=params.get("password"),
            host=params.get("host", "127.0.0.1"),
            port=int(params["port"]) if "port" in params else None,
            database=self.name,
        ).render_as_string(hide_password=False)


def admin_url() -> str:
    return os.environ.get(ADMIN_URL_ENV, DEFAULT_ADMIN_URL)


def _admin_execute(statement: sql.Composed) -> None:
    with psycopg.connect(admin_url(), autocommit=True, connect_timeout=5) as admin:
        admin.execute(statement)


@contextlib.contextmanager
def temp_postgres() -> Iterator[PostgresDatabase]:
    """A new PostgreSQL database ``jobtrail_bench_<random>``, dropped (FORCE) on exit."""
    name = f"jobtrail_bench_{uuid.uuid4().hex[:12]}"
    _admin_execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield PostgresDatabase(name, psycopg.conninfo.make_conninfo(admin_url(), dbname=name))
    finally:
        _admin_execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@contextlib.contextmanager
def temp_sqlite() -> Iterator[Path]:
    """The path of a SQLite file in a temporary directory, removed (with WAL files) on exit."""
    with tempfile.TemporaryDirectory(prefix="jobtrail_bench_") as directory:
        yield Path(directory) / "jobtrail.db"


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


@contextlib.contextmanager
def open_trail(url: str) -> Iterator[Jobtrail]:
    """jobtrail connected to ``url`` with its schema created; closed on exit."""
    from jobtrail.adapters.bootstrap import connect

    trail = connect(url)
    try:
        trail.init_db()
        yield trail
    finally:
        trail.close()


# ---------------------------------------------------------------------- timing


def measure(operation: Callable[[], T]) -> tuple[T, float]:
    """What ``operation()`` returned, and the seconds it took."""
    start = time.perf_counter()
    result = operation()
    return result, time.perf_counter() - start


def timed(operation: Callable[[], object]) -> float:
    """Seconds ``operation()`` took."""
    return measure(operation)[1]


def wait_until(
    probe: Callable[[], T | None], *, timeout: float, interval: float = 0.005, what: str = "it"
) -> T:
    """The first truthy value ``probe()`` returns, polling every ``interval`` seconds.

    Raises `TimeoutError` naming ``what`` if none came within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"waited {timeout:g} s for {what}")
        time.sleep(interval)


def run_interleaved(
    probes: Sequence[Probe], count: int, *, block: int = 100, warmup: int = 0
) -> list[list[float]]:
    """``count`` samples of each probe, alternating blocks of ``block`` calls.

    Alternating spreads background noise (other processes on a 2-core machine, WAL
    checkpoints) evenly over the runs being compared. ``warmup`` calls of each probe
    run first and are not recorded.
    """
    for probe in probes:
        for _ in range(warmup):
            probe()
    samples: list[list[float]] = [[] for _ in probes]
    done = 0
    while done < count:
        size = min(block, count - done)
        for probe, recorded in zip(probes, samples, strict=True):
            recorded.extend(probe() for _ in range(size))
        done += size
    return samples


# ---------------------------------------------------------------------- memory


def rss_kib() -> int:
    """This process's resident set size now, in KiB (``VmRSS`` of /proc/self/status)."""
    return _proc_status_kib("VmRSS")


def peak_rss_kib() -> int:
    """This process's peak resident set size so far, in KiB (``VmHWM``).

    Not ``getrusage(RUSAGE_SELF).ru_maxrss``: Linux carries that figure over ``execve``,
    so in a subprocess it is at least the peak of the process that started it.
    """
    return _proc_status_kib("VmHWM")


def _proc_status_kib(key: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
    raise RuntimeError(f"no {key} in /proc/self/status")


def mib(kib: float) -> str:
    return f"{kib / 1024:,.1f} MiB"


# ---------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) by linear interpolation between closest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ratio(value: float, reference: float) -> str:
    """``value / reference`` as ``"1.23x"``."""
    return f"{value / reference:.2f}x" if reference else "n/a"


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else math.inf


# ---------------------------------------------------------------------- output


def heading(title: str) -> None:
    print()
    print(title)
    print("-" * len(title))


def row(label: str, value: str, note: str = "") -> None:
    print(f"  {label:<50} {value:>17}  {note}".rstrip())


def machine_load(when: str) -> None:
    """Cores and load average: other work on the machine skews every figure printed."""
    one, five, _ = os.getloadavg()
    print(f"[{when}: {os.cpu_count()} cores, load average {one:.2f} (1 min), {five:.2f} (5 min)]")


# ---------------------------------------------------------------------- worker runs


def count_rows(conninfo: str, query: str) -> int:
    """The single integer ``query`` returns, on a connection of its own."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        found = conn.execute(query).fetchone()
    assert found is not None
    return int(found[0])


def vacuum_analyze(conninfo: str, tables: Sequence[str]) -> None:
    """What autovacuum would soon do to freshly queued rows: statistics, visibility map.

    A table the schema no longer has is passed over (one list serves the schema's versions).
    """
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for table in tables:
            found = conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()
            if found is not None and found[0] is not None:
                conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(table)))


@dataclass(frozen=True)
class Drain:
    """One worker run through jobs queued beforehand: from its start to all jobs terminal."""

    system: str
    setting: str
    """What was varied, as printed: ``concurrency 4``, ``batch 10``."""
    jobs: int
    enqueue_seconds: float
    seconds: float
    terminal: int
    """Jobs in a terminal state after the run (or completed, where a part counts those)."""
    note: str = ""

    @property
    def rate(self) -> float:
        return rate(self.jobs, self.seconds)

    @property
    def complete(self) -> bool:
        return self.terminal == self.jobs


def drain_row(run: Drain, ended: str = "terminal") -> None:
    """A run's rate, with its time, how many jobs ended (``ended``: how the run counted
    them) and how fast they were queued."""
    row(
        f"  {run.system}, {run.setting}",
        f"{run.rate:,.0f} jobs/s",
        f"{run.seconds:.2f} s; {run.terminal:,}/{run.jobs:,} {ended};"
        f" queued at {rate(run.jobs, run.enqueue_seconds):,.0f} jobs/s{run.note}",
    )
    if not run.complete:
        print(f"    WARNING: {run.jobs - run.terminal} jobs not {ended} after the run")


def target(value: float, reference: float, at_least: float) -> str:
    """Whether ``value / reference`` reaches ``at_least``: ``"target >= 1.5x: met"``."""
    met = bool(reference) and value / reference >= at_least
    return f"target >= {at_least:g}x: {'met' if met else 'NOT met'}"


# ---------------------------------------------------------------------- subprocesses

REPO = Path(__file__).resolve().parents[1]
"""The repository root: the working directory of the subprocesses the benchmarks start."""


def jobtrail_cli(*args: str) -> list[str]:
    """The ``jobtrail`` command of this interpreter's environment, with ``args``."""
    script = Path(sys.executable).with_name("jobtrail")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "jobtrail", *args]
