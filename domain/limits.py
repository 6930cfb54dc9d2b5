"""The limits of what a command carries: one set of rules for the API, the CLI and both backends.

Every field a caller gives jobtrail is checked here before anything is read or written, so
SQLite (which stores nearly anything) and PostgreSQL (which refuses what its column types do
not hold) accept exactly the same values. Each limit is either a business rule or the
narrowest column that stores the value (adapters/sql/schema.py; tests/integration/
test_bad_input.py stores the largest accepted value on both backends):

=====================  ==================================================  ===================
field                  accepted                                            stored in
=====================  ==================================================  ===================
job type               1-200 characters, printable (no control, format     ``job.job_type``
                       or separator characters except the space), no       VARCHAR(200)
                       space at either end
idempotency key        None, or 1-200 characters without U+0000 or lone    ``job.idempotency_
                       surrogates                                          key`` VARCHAR(200)
queue                  like a job type (default ``default``)               ``job.queue``
concurrency key        like an idempotency key                             ``job.concurrency_
                                                                           key`` VARCHAR(200)
concurrency limit      an int from 1 to 1,000,000                          ``job_limit``
priority               an int from -2^31 to 2^31-1                         ``job.priority``
                                                                           INTEGER
max attempts           an int from 1 to 1000                               ``job.max_attempts``
delay                  a finite int or float of seconds, 0 to 10 years     ``job.available_at``
                       (315,360,000)
payload                a JSON object (`jobtrail.domain.json_values`), at   JSON / JSONB
                       most 512 KiB as compact UTF-8 JSON
actor, correlation id  1-200 characters without U+0000 or lone surrogates  event metadata
                       (the correlation id may be None)
cancel reason          None, or at most 1000 such characters               event data
list limit             an int from 1 to 1,000,000                          (LIMIT)
log position           an int from 0 to 2^63-1                             BIGINT
=====================  ==================================================  ===================

A refused value raises `InvalidField` (an `InvalidCommand`): one line naming the field and
the reason (``priority: must be a whole number from -2147483648 to 2147483647, not
18446744073709551616.``). The CLI's argument types (`jobtrail.adapters.cli.args`) parse
their text and apply these same rules. Standard library only, like the rest of `domain/`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from jobtrail.domain.errors import InvalidField

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
"""PostgreSQL's ``integer``."""
INT64_MAX = 2**63 - 1
"""PostgreSQL's ``bigint`` (and SQLite's integers)."""

SECONDS_PER_DAY = 86_400

_SHOWN = 40
"""Characters of a refused text shown in a message."""
_BAD_CHARACTER = re.compile("[\x00\ud800-\udfff]")


def shown(value: object) -> str:
    """A refused value as a message shows it: short, printable, never raising."""
    if isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        if value.bit_length() <= 200:
            return str(value)
        return f"an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        text = ascii(value[:_SHOWN])
        return text if len(value) <= _SHOWN else f"{text[:-1]}…' ({len(value):,} characters)"
    return f"a {type(value).__name__}"


def _type_name(value: object) -> str:
    return type(value).__name__


# ------------------------------------------------------------------------ numbers


@dataclass(frozen=True)
class Whole:
    """An int from ``low`` to ``high`` (bool is not an int here)."""

    low: int
    high: int

    def describe(self) -> str:
        return f"a whole number from {self.low} to {self.high}"

    def check(self, value: object, field: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidField(
                field=field, reason=f"must be {self.describe()}, not a {_type_name(value)}"
            )
        if not self.low <= value <= self.high:
            raise InvalidField(field=field, reason=f"must be {self.describe()}, not {shown(value)}")
        return int(value)


@dataclass(frozen=True)
class Seconds:
    """A finite number of seconds from ``low`` (excluded unless ``low_included``) to ``high``."""

    low: float
    high: float
    low_included: bool = True

    def describe(self) -> str:
        low = f"from {self.low:g}" if self.low_included else f"more than {self.low:g} and up"
        return f"a finite number of seconds {low} to {self.high:.0f}"

    def check(self, value: object, field: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidField(
                field=field, reason=f"must be {self.describe()}, not a {_type_name(value)}"
            )
        finite = isinstance(value, int) or math.isfinite(value)  # a huge int is no float
        above = value >= self.low if self.low_included else value > self.low
        if not (finite and above and value <= self.high):
            raise InvalidField(field=field, reason=f"must be {self.describe()}, not {shown(value)}")
        return float(value)


# ------------------------------------------------------------------------ texts


@dataclass(frozen=True)
class Text:
    """A str of 1 to ``max_length`` characters that both backends store as given.

    ``printable``: names people type and read (job types), so no control, format or
    separator characters other than the space (`str.isprintable`), and no space at either
    end (``worker --types`` strips them).
    """

    max_length: int
    printable: bool = False

    def describe(self) -> str:
        kind = "printable characters" if self.printable else "characters"
        return f"1 to {self.max_length} {kind}"

    def check(self, value: object, field: str) -> str:
        if not isinstance(value, str):
            raise InvalidField(
                field=field, reason=f"must be a str of {self.describe()}, not a {_type_name(value)}"
            )
        empty = not value.strip() if self.printable else not value
        if empty:
            raise InvalidField(field=field, reason="must not be empty")
        if len(value) > self.max_length:
            raise InvalidField(
                field=field,
                reason=f"is {len(value):,} characters long; the limit is {self.max_length}",
            )
        bad = _BAD_CHARACTER.search(value)
        if bad is not None:
            raise InvalidField(field=field, reason=_bad_character(bad.group()))
        if self.printable:
            _check_printable(value, field)
        return value


def _check_printable(value: str, field: str) -> None:
    if value != value.strip():
        raise InvalidField(field=field, reason=f"{shown(value)} starts or ends with a space")
    for index, character in enumerate(value):
        if not character.isprintable():
            raise InvalidField(
                field=field,
                reason=f"contains the unprintable character U+{ord(character):04X} "
                f"at index {index}",
            )


def _bad_character(character: str) -> str:
    if character == "\x00":
        return "contains U+0000, which PostgreSQL cannot store"
    return f"contains a lone surrogate \\u{ord(character):04x}, which is not Unicode"


# ------------------------------------------------------------------------ the limits

JOB_TYPE = Text(200, printable=True)
IDEMPOTENCY_KEY = Text(200)
QUEUE = Text(200, printable=True)
CONCURRENCY_KEY = Text(200)
MAX_RUNNING = Whole(1, 1_000_000)
"""A concurrency limit: at least one job may run (pause a queue or type to stop them)."""
JOB_TYPE_FILTER = Text(200)
"""``jobs --type``: any text both backends take (one no job has simply matches nothing)."""
PRIORITY = Whole(INT32_MIN, INT32_MAX)
MAX_ATTEMPTS = Whole(1, 1000)
DELAY = Seconds(0, 3650 * SECONDS_PER_DAY)
"""Ten years: a job delayed longer is a calendar entry, not a job."""
ACTOR = Text(200)
CORRELATION_ID = Text(200)
REASON = Text(1000)
LIST_LIMIT = Whole(1, 1_000_000)
POSITION = Whole(0, INT64_MAX)
MAX_PAYLOAD_BYTES = 512 * 1024
"""A payload's compact UTF-8 JSON; the event that carries it must fit a Kafka record (the
brokers' default limit is 1 MiB), and large data belongs in storage the payload points to."""

WAIT = Seconds(0, 7 * SECONDS_PER_DAY, low_included=False)
"""Leases, heartbeats, intervals and timeouts the CLI accepts: more than 0, at most a week
(far below what the clocks, ``threading`` and the timestamps of both backends hold)."""
GRACE = Seconds(0, 7 * SECONDS_PER_DAY)


def check_payload_size(payload: object, field: str) -> None:
    """``payload`` (already a checked JSON value) fits `MAX_PAYLOAD_BYTES`."""
    size = len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_PAYLOAD_BYTES:
        raise InvalidField(
            field=field,
            reason=f"is {size:,} bytes as JSON; the limit is {MAX_PAYLOAD_BYTES:,} "
            "(store large data elsewhere and send a reference)",
        )


def check_optional(rule: Text, value: object, field: str) -> str | None:
    """``None``, or a value ``rule`` accepts."""
    return None if value is None else rule.check(value, field)
