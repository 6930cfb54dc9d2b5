"""Events hashed by the previous release's rule, whose numbers a store rewrote since.

Before RFC 8785, an event's hash covered Python's text of its values (``json.dumps``, floats
by ``repr``). PostgreSQL's ``jsonb`` keeps a number's decimal value, not its text, and reads
back a different Python value for two kinds of float: one of 1e16 or more (``1e+16``, always
integral) comes back as the integer ``10000000000000000``, and ``-0.0`` as ``0.0``. The
legacy text of such an event is then not the one that was hashed. Nothing else the previous
release wrote changes value that way (every other float reads back as the same double, and
strings and integers as they were).

So replay restores: each integer of 1e16 or more that is the exact decimal of a double's
shortest text may have been that double, each ``0.0`` may have been ``-0.0``. It tries the
combinations (all restored first, the likeliest) and the event is verified when one gives
the stored hash: its content is then, number for number, the value that was hashed, which is
what RFC 8785's hashes guarantee for new events too. When none does, the content was changed
(`hash_mismatch`). With more candidates than `MAX_CANDIDATES`, only "all restored" is tried;
if it fails the event cannot be verified either way (`legacy_hash_unverifiable`).
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Iterator
from decimal import Decimal
from enum import Enum
from typing import Any

from jobtrail.domain.canonical import legacy_text, sha256_hex

MAX_CANDIDATES = 10
"""Numbers per event whose every combination is tried (2^10 hashes at most)."""

_REWRITTEN_FROM = 10**16
"""Python writes floats from 1e16 on with an exponent; jsonb gives them back as integers."""


class Restoration(Enum):
    """What restoring a legacy event's rewritten numbers gave."""

    RESTORED = "restored"
    """A combination of the numbers as they were gives the stored hash: verified."""
    NO_MATCH = "no_match"
    """No combination does (or there was nothing to restore): the content was changed."""
    TOO_MANY = "too_many"
    """Too many candidates to try every combination, and "all restored" does not match."""


def _slots(value: Any) -> Iterator[tuple[Any, Any, Any, Any]]:
    """``(container, key, stored, original)`` for each number a store may have rewritten."""
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        if isinstance(item, dict | list):
            yield from _slots(item)
        elif type(item) is float and item == 0.0 and math.copysign(1.0, item) > 0:
            yield value, key, item, -0.0
        elif type(item) is int and abs(item) >= _REWRITTEN_FROM:
            original = _double_of(item)
            if original is not None:
                yield value, key, item, original


def _double_of(number: int) -> float | None:
    """The double whose shortest text has this exact decimal value, if there is one."""
    try:
        double = float(number)
    except OverflowError:
        return None
    return double if Decimal(repr(double)) == number else None


def restore(covered: dict[str, Any], stored_hash: str) -> tuple[Restoration, int]:
    """Whether the legacy hash of ``covered`` matches ``stored_hash`` once the numbers a store
    may have rewritten are put back as they were; and how many such numbers there are."""
    restored = copy.deepcopy(covered)
    data = restored.get("data")
    slots = list(_slots(data)) if isinstance(data, dict | list) else []
    if not slots:
        return Restoration.NO_MATCH, 0

    def matches(choice: tuple[bool, ...]) -> bool:
        for (container, key, stored, original), put_back in zip(slots, choice, strict=True):
            container[key] = original if put_back else stored
        return sha256_hex(legacy_text(restored)) == stored_hash

    everything = (True,) * len(slots)
    if matches(everything):
        return Restoration.RESTORED, len(slots)
    if len(slots) > MAX_CANDIDATES:
        return Restoration.TOO_MANY, len(slots)
    for choice in itertools.product((False, True), repeat=len(slots)):
        if any(choice) and choice != everything and matches(choice):
            return Restoration.RESTORED, len(slots)
    return Restoration.NO_MATCH, len(slots)
