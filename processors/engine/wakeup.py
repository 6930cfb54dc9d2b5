"""What ends an idle worker's wait: a result, a push wakeup, or a stop, whichever comes first.

The processor threads put their results on the done queue; a `WakeSource` (PostgreSQL's
LISTEN, given by the composition root, so the engine imports no database code) calls a
function when a job may have become claimable. `DoneQueue` lets both end the same wait:
it is the done queue, and its `wake` ends a `get_or_wake` without an item. A wake is kept
until a wait consumes it, so one that comes while the worker is busy (or before it waits)
ends its next wait at once, and the claim that follows sees the job.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TypeVar

T = TypeVar("T")

WakeSource = Callable[[Callable[[], None]], AbstractContextManager[object]]
"""Called with a function, a context in which that function is called whenever work may
have become claimable, and each time the source (re)starts listening."""


class DoneQueue(queue.Queue[T]):
    """The done queue, whose wait a push wakeup or a stop can end too."""

    def __init__(self) -> None:
        super().__init__()
        self._woken = False

    def wake(self) -> None:
        """End the current wait, or the next one if none is waiting (quick, never raises)."""
        with self.not_empty:
            self._woken = True
            self.not_empty.notify_all()

    def get_or_wake(self, timeout: float) -> T | None:
        """The next item; None once woken (consuming the wake) or after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self.not_empty:
            while not self._qsize() and not self._woken:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.not_empty.wait(min(left, threading.TIMEOUT_MAX))
            if not self._qsize():
                self._woken = False
                return None
            item = self._get()
            self.not_full.notify()
            return item


class StopFlag(threading.Event):
    """The worker's stop flag: setting it also wakes the wait, so an idle worker stops at once."""

    def __init__(self, wake: Callable[[], None]) -> None:
        super().__init__()
        self._wake = wake

    def set(self) -> None:
        super().set()
        self._wake()


DUE_MARGIN = 0.001
"""Seconds added to a due time, so the claim after the wait finds the job due."""


def idle_timeout(poll: float | None, reap_in: float, due: datetime | None, now: datetime) -> float:
    """How long an idle worker sleeps, unless woken: until its poll (None: never), its
    next reap, or, with push wakeups, the due time of the next delayed job it could claim
    (``due``), whichever is first.

    A due time already past is a job the last claim could not take (held back by a
    concurrency limit, or taken by another worker meanwhile): a wakeup or the poll brings
    it back, not a spin of claims."""
    bounds = [reap_in]
    if poll is not None:
        bounds.append(poll)
    if due is not None and due > now:
        bounds.append((due - now).total_seconds() + DUE_MARGIN)
    return max(0.0, min(bounds))
