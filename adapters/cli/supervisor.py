"""`jobtrail worker --processes N`: one supervisor and N worker processes (docs/processes.md).

Each worker process is a whole `jobtrail worker`: a fresh interpreter (multiprocessing's
spawn context, so nothing of the supervisor, no connection above all, is shared) that gets
the parsed options, with its own worker id and metrics port, and runs `cmd_worker` as the
command line would. Passing the parsed options rather than a command line means every
worker option reaches the processes unchanged, including options added later.

- **Signals.** SIGTERM or SIGINT to the supervisor: it sends SIGTERM to every process, each
  stops as one worker does (no new claims, ``--grace`` for running jobs, the rest handed
  back) and the supervisor exits with the worst exit status, 0 when all stopped cleanly. A
  second signal sends SIGTERM again: the processes exit at once, as one worker does on a
  second signal. The processes leave the terminal's process group, so a Ctrl-C reaches the
  supervisor alone (it would otherwise count twice in each process: the terminal's and the
  forwarded one); a process whose supervisor is gone stops as if it had been signalled.
- **Restarts.** A process that dies while the supervisor is not stopping is logged with its
  exit status and started again (a new worker id, ``-rK``) after a backoff; the jobs it held
  are failed by the reaper when their leases end, as a dead worker's always are. A process
  that exits with an error within `QUICK_SECONDS` of starting, twice in a row, has a problem
  a restart cannot fix: the supervisor stops the others and exits 1 with one line.
- **Finite runs.** With ``--until-empty`` or ``--max-jobs`` a process that exits by itself
  has finished (with its status); one killed by a signal is started again.

One module of about 380 lines, on purpose: the supervisor's side and the worker process's
side (the blocked SIGINT, the process group, the parent's sentinel) are two halves of one
signal protocol, and are read together.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import TYPE_CHECKING

from jobtrail.adapters.cli.app import AppNotLoaded
from jobtrail.adapters.cli.logs import failure, summary
from jobtrail.domain.errors import DatabaseUnavailable, JobtrailError
from jobtrail.processors.engine.settings import (
    MAX_WORKER_ID,
    InvalidWorkerSettings,
    check_worker_id,
)

if TYPE_CHECKING:
    from jobtrail.adapters.bootstrap import Jobtrail

log = logging.getLogger("jobtrail.supervisor")

QUICK_SECONDS = 10.0
"""An error exit this soon after starting is a startup failure (twice in a row: give up)."""
RESTART_FIRST, RESTART_MOST = 1.0, 30.0
"""Seconds before a dead process is started again, doubling while it keeps dying."""
STABLE_SECONDS = 60.0
"""A process that ran this long before it died is started again after the least wait."""
SUFFIX_ROOM = len("-p64-r") + 10
"""What a process adds to the worker id: ``-pI``, and ``-rK`` after its K-th restart."""
SIGTERM, SIGINT = signal.SIGTERM, signal.SIGINT


class WorkerProcessesFailing(JobtrailError):
    """Worker process {number} exited with status {status} within {seconds:g} s of starting, twice in a row (its error is above); stopped all {count} processes."""  # noqa: E501


@dataclass
class Slot:
    """One of the N processes, across its restarts."""

    number: int
    process: BaseProcess | None = None
    started: float = 0.0
    restarts: int = 0
    signalled: int = 0
    """SIGTERMs sent to the current process."""
    deaths: int = 0
    """Unexpected exits in a row, each within `STABLE_SECONDS` of its start (the backoff)."""
    quick_errors: int = 0
    """Error exits in a row, each within `QUICK_SECONDS` of its start."""
    due: float | None = None
    """When a dead process is to be started again."""
    status: int | None = None
    """The last exit status."""


def supervise(trail: Jobtrail, args: argparse.Namespace) -> int:
    """Check what would make every process fail the same way, then run them."""
    base_id = worker_id_base(args.worker_id, args.processes)
    check_metrics_ports(args.metrics_port, args.processes)
    check_app_module(args.app)
    check_database(trail)
    return Supervisor(args, base_id).run()


def worker_id_base(given: str | None, processes: int) -> str:
    if given is None:  # the form of `Worker`'s own default
        return f"{socket.gethostname()[:100]}:{uuid.uuid4().hex[:8]}"
    check_worker_id(given)
    if len(given) > MAX_WORKER_ID - SUFFIX_ROOM:
        reason = (
            f"with --processes {processes}, at most {MAX_WORKER_ID - SUFFIX_ROOM} characters "
            "(each process adds -pI)"
        )
        raise InvalidWorkerSettings(name="--worker-id", reason=reason)
    return given


def check_metrics_ports(first: int | None, processes: int) -> None:
    """Process I serves on ``--metrics-port`` + I - 1: the last one must be a port."""
    if first is not None and first + processes - 1 > 65_535:
        reason = f"{processes} processes need ports {first} to {first + processes - 1}"
        raise InvalidWorkerSettings(name="--metrics-port", reason=reason)


def check_app_module(app: str | None) -> None:
    """A mistyped ``--app`` module: one line here, rather than one from each process.

    The module is only looked for, not imported (a team's module may be heavy to import, and
    the supervisor runs no processor); what importing it finds, each process reports."""
    if app is None:
        return
    name = app.partition(":")[0]
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)  # where `load_registry` looks too
    try:
        found = importlib.util.find_spec(name) is not None
    except ModuleNotFoundError as error:  # a parent package is missing
        found, name = False, error.name or name
    except Exception:  # importing a parent package raised: the processes report it
        return
    if not found:
        raise AppNotLoaded(app=app, reason=f"no module named {name!r} (searched from {cwd})")


def check_database(trail: Jobtrail) -> None:
    """A missing schema or SQLite file is one line; an unreachable database is waited for
    by the processes, as one worker waits for it."""
    try:
        trail.queue.next_available_at(None)
    except DatabaseUnavailable as error:
        log.warning("%s The worker processes will wait for it.", error)
    finally:
        trail.engine.dispose()  # the supervisor holds no connection while the processes run


class Supervisor:
    def __init__(self, args: argparse.Namespace, base_id: str) -> None:
        self.args = args
        self.base_id = base_id
        self.slots = [Slot(number) for number in range(1, args.processes + 1)]
        self.finite = bool(args.until_empty or args.max_jobs is not None)
        self.context = multiprocessing.get_context("spawn")
        self.received = 0
        """Signals received (written by the signal handler only)."""
        self.last_signal: int = SIGTERM
        self.gave_up: WorkerProcessesFailing | None = None
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)

    @property
    def stopping(self) -> bool:
        return self.received > 0 or self.gave_up is not None

    @property
    def wanted(self) -> int:
        """SIGTERMs every live process should have had: one per signal, one for giving up."""
        return self.received + (self.gave_up is not None)

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (SIGTERM, SIGINT)}
        try:
            for slot in self.slots:
                if not self.stopping:
                    self.start(slot)
            self.loop()
        finally:
            self.stop_and_wait()  # after an error of the supervisor itself too
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            os.close(self._wake_read)
            os.close(self._wake_write)
        statuses = [slot.status or 0 for slot in self.slots]
        restarts = sum(slot.restarts for slot in self.slots)
        summary(
            f"{len(self.slots)} worker processes stopped (exit status "
            f"{', '.join(map(str, statuses))}; {restarts} restart(s))"
        )
        if self.gave_up is not None:
            raise self.gave_up
        return max(statuses)

    def loop(self) -> None:
        told = 0
        while any(slot.process is not None or slot.due is not None for slot in self.slots):
            live = [slot.process.sentinel for slot in self.slots if slot.process is not None]
            wait([*live, self._wake_read], timeout=self.next_due())
            self._drain_wake()
            if self.received > told:
                told = self.received
                log.warning(
                    "%s: %s %d worker process(es)",
                    signal.Signals(self.last_signal).name,
                    "stopping" if told == 1 else "again: stopping at once",
                    sum(slot.process is not None for slot in self.slots),
                )
            self.forward()
            for slot in self.slots:
                if slot.process is not None and slot.process.exitcode is not None:
                    self.exited(slot)
            self.start_due()

    # ------------------------------------------------------------ processes

    def start(self, slot: Slot) -> None:
        worker_id = f"{self.base_id}-p{slot.number}"
        if slot.restarts:
            worker_id += f"-r{slot.restarts}"
        port = self.args.metrics_port
        options = {
            **vars(self.args),
            "processes": 1,
            "worker_id": worker_id,
            "metrics_port": None if port is None else port + slot.number - 1,
        }
        process = self.context.Process(
            target=run_process, args=(argparse.Namespace(**options),), name=worker_id
        )
        # The child inherits a blocked SIGINT until it has left the terminal's process
        # group (`run_process`); here it is held, not lost.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {SIGINT})
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        slot.process, slot.started, slot.signalled, slot.due = process, time.monotonic(), 0, None
        log.info(
            "worker process %d started: pid %s, worker id %s", slot.number, process.pid, worker_id
        )

    def exited(self, slot: Slot) -> None:
        process, slot.process = slot.process, None
        assert process is not None and process.exitcode is not None
        code, lived = process.exitcode, time.monotonic() - slot.started
        if self.stopping and code == -SIGTERM:  # it had no handler yet, so it claimed nothing
            code, how = 0, "stopped before it started work"
        elif code < 0:
            how = f"was killed by {signal.Signals(-code).name}"
        else:
            how = f"exited with status {code}"
        slot.status = 128 - code if code < 0 else code
        where = f"worker process {slot.number} (pid {process.pid})"
        if self.stopping or (self.finite and code >= 0):
            level = logging.INFO if code == 0 else logging.WARNING
            log.log(level, "%s %s", where, how)
            return
        slot.quick_errors = slot.quick_errors + 1 if code > 0 and lived < QUICK_SECONDS else 0
        if slot.quick_errors >= 2:
            log.error("%s %s after %.1f s, again", where, how, lived)
            self.gave_up = WorkerProcessesFailing(
                number=slot.number, status=code, seconds=QUICK_SECONDS, count=len(self.slots)
            )
            self.forward()
            return
        slot.deaths = 1 if lived >= STABLE_SECONDS else slot.deaths + 1
        delay = min(RESTART_FIRST * 2 ** (slot.deaths - 1), RESTART_MOST)
        slot.due = time.monotonic() + delay
        log.warning("%s %s after %.1f s; starting it again in %g s", where, how, lived, delay)

    def start_due(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            if slot.due is not None and slot.due <= now and not self.stopping:
                slot.restarts += 1
                self.start(slot)

    def next_due(self) -> float | None:
        dues = [slot.due for slot in self.slots if slot.due is not None]
        return max(0.0, min(dues) - time.monotonic()) if dues else None

    # ------------------------------------------------------------ stopping

    def forward(self) -> None:
        """Send each live process the SIGTERMs it is owed (`wanted`); nothing restarts."""
        if not self.stopping:
            return
        for slot in self.slots:
            slot.due = None
            while slot.process is not None and slot.signalled < self.wanted:
                slot.signalled += 1
                pid = slot.process.pid
                assert pid is not None  # started
                try:
                    os.kill(pid, SIGTERM)
                except ProcessLookupError:
                    break  # it has just exited: the loop reads its status

    def stop_and_wait(self) -> None:
        """On the way out, with processes still running (the supervisor failed): stop them
        as one signal does, and wait for them."""
        live = [slot for slot in self.slots if slot.process is not None]
        if not live:
            return
        self.received += 1
        self.forward()
        for slot in live:
            if slot.process is not None:
                slot.process.join()
                self.exited(slot)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        """Only count and wake the loop: the loop forwards (a handler may run mid-start)."""
        self.received += 1
        self.last_signal = signum
        with contextlib.suppress(BlockingIOError):  # the loop was woken already
            os.write(self._wake_write, b"\0")

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_read, 512):
                pass


# ------------------------------------------------------------------ in a worker process


def run_process(args: argparse.Namespace) -> None:
    """The body of a worker process: what `jobtrail worker` does, with ``--processes 1``."""
    leave_the_terminal_group()
    stop_when_orphaned()
    from jobtrail.adapters.cli.main import configure_logging, run

    configure_logging(args)
    try:
        code = run(args)
    except JobtrailError as error:
        failure(f"jobtrail: error: {error}")  # as `main` does
        code = 1
    sys.exit(code)


def leave_the_terminal_group() -> None:
    """Signals come from the supervisor: a terminal's Ctrl-C reaches it alone.

    SIGINT is blocked from the start of this process (`Supervisor.start`); one sent to the
    terminal's group meanwhile is dropped (ignoring a pending signal discards it)."""
    try:
        os.setpgid(0, 0)
    except OSError as error:  # not expected; the worker works the same, only Ctrl-C differs
        log.debug("cannot leave the process group: %s", error)
    signal.signal(SIGINT, signal.SIG_IGN)
    signal.signal(SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {SIGINT})


def stop_when_orphaned() -> None:
    """A supervisor killed outright leaves its processes behind: they stop, gracefully."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        log.warning("the supervisor (pid %s) is gone", parent.pid)
        os.kill(os.getpid(), SIGTERM)

    threading.Thread(target=watch, name="supervisor-watch", daemon=True).start()
