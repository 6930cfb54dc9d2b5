"""The one definition of the job lifecycle: a single module-level `transitions.Machine`.

Jobs are not registered with the machine (that would keep every job alive in its model
list): an event is fired on a job by passing the job to the machine's event, which moves
the job's ``status`` attribute. Every part of jobtrail — commands, replay, verification,
the projection — asks this machine, so there is no second copy of the rules.
"""

from __future__ import annotations

import functools
from typing import Any, Final

from jobtrail.domain.errors import IllegalTransition
from jobtrail.domain.status import JobStatus
from transitions import Machine, MachineError

NEW: Final = "new"
"""The pseudo-state of a job that has not been submitted yet (never stored)."""

Q, P = JobStatus.QUEUED.value, JobStatus.PROCESSING.value
TRANSITIONS: Final[list[dict[str, Any]]] = [
    {"trigger": "submit", "source": NEW, "dest": Q},
    {"trigger": "start", "source": Q, "dest": P},
    {"trigger": "progress", "source": P, "dest": None},
    {"trigger": "complete", "source": P, "dest": JobStatus.COMPLETED.value},
    {"trigger": "schedule_retry", "source": P, "dest": Q},
    {"trigger": "fail", "source": [Q, P], "dest": JobStatus.FAILED.value},
    {"trigger": "cancel", "source": [Q, P], "dest": JobStatus.CANCELLED.value},
]

MACHINE: Final = Machine(
    model=None,
    states=[NEW, *(status.value for status in JobStatus)],
    transitions=TRANSITIONS,
    initial=NEW,
    auto_transitions=False,
    model_attribute="status",
)


def fire(job: Any, trigger: str) -> None:
    """Move ``job.status`` along ``trigger``, or raise `IllegalTransition`."""
    try:
        MACHINE.events[trigger].trigger(job)
    except MachineError as error:
        raise IllegalTransition(str(job.status), trigger) from error


def next_status(status: str, trigger: str) -> str:
    """Where ``trigger`` leads from ``status``, read off the Machine's transitions.

    Replaying a stored history uses this instead of `fire`: the same definition, without
    the cost of running the Machine's callbacks for every event of a large log.
    """
    transitions = MACHINE.events[trigger].transitions.get(status)
    if not transitions:
        raise IllegalTransition(status, trigger)
    (transition,) = transitions
    return status if transition.dest is None else str(transition.dest)


def allows(status: str, trigger: str) -> bool:
    """Whether the machine has a ``trigger`` transition out of ``status``."""
    return status in MACHINE.events[trigger].transitions


@functools.cache
def status_after(trigger: str) -> JobStatus | None:
    """The status a trigger leads to, or None for an internal transition (progress).

    Every trigger of the lifecycle has one destination whatever its source, so the
    projection can read it off the machine without firing it.
    """
    destinations = {t.dest for ts in MACHINE.events[trigger].transitions.values() for t in ts}
    (dest,) = destinations
    return None if dest is None else JobStatus(dest)
