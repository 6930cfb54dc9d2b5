"""The position-ordered pass: does the log still fold into the digest each seal recorded?

A seal (`jobtrail seal`) is the running digest of every event up to a position. Folding
the ``(position, hash)`` pairs again and comparing catches events deleted, inserted or
reordered since, which the per-job hash chain alone cannot (a whole job can be deleted).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from jobtrail.adapters.audit.checks.records import Problem
from jobtrail.domain.seals import RunningDigest, Seal


@dataclass
class SealCheck:
    """What the position-ordered pass found."""

    events: int = 0
    last_position: int = 0
    digest: str = ""
    seals: int = 0
    problems: list[Problem] = field(default_factory=list)


def check_seals(
    entries: Iterable[tuple[int, str]], seals: Sequence[Seal], start: Seal | None = None
) -> SealCheck:
    """Fold ``(position, hash)`` pairs, in position order, and compare every seal after ``start``.

    ``start`` (a seal taken as already verified) lets a replay begin part-way; without it
    the fold begins at the empty log. A seal is compared once every event up to its
    position has been folded in, so one whose last events were deleted is caught too.
    """
    running = RunningDigest.after(start)
    first = start.position if start else 0
    pending = sorted(
        (s for s in seals if s.position > first), key=lambda s: (s.position, s.seal_id)
    )
    check = SealCheck(seals=len(pending))
    good: Seal | None = start
    index = 0
    for position, event_hash in entries:
        while index < len(pending) and pending[index].position < position:
            good = _compare(pending[index], running, good, check.problems)
            index += 1
        running.add(position, event_hash)
    for seal in pending[index:]:
        good = _compare(seal, running, good, check.problems)
    check.events = running.count
    check.last_position = running.position
    check.digest = running.digest
    return check


def _compare(seal: Seal, running: RunningDigest, good: Seal | None, out: list[Problem]) -> Seal:
    """Compare ``seal`` with the fold so far; the last seal that matched (to name in a problem)."""
    if running.matches(seal):
        return seal
    since = f"position {good.position}" if good else "the start of the log"
    out.append(
        Problem(
            "seal_mismatch",
            f"seal {seal.seal_id} (position {seal.position}, {seal.event_count} events): the log "
            f"up to position {seal.position} now has {_what_changed(seal, running)}, "
            f"after {since}",
            position=seal.position,
            details={
                "seal_id": seal.seal_id,
                "sealed_events": seal.event_count,
                "events_now": running.count,
            },
        )
    )
    return good if good is not None else seal


def _what_changed(seal: Seal, running: RunningDigest) -> str:
    if running.count < seal.event_count:
        return f"{seal.event_count - running.count} event(s) fewer: events were deleted"
    if running.count > seal.event_count:
        return f"{running.count - seal.event_count} event(s) more: events were inserted"
    return "the same number of events but another digest: events were changed or reordered"
