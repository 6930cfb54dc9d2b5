"""W3C Trace Context: the ``traceparent`` a submitter hands over, checked before it is kept.

A job's trace context is written in its events' metadata (covered by the hash) and in the
Kafka records' headers, so it must be well formed when it is accepted: a value the tracing
libraries of other services would reject later is refused at submit instead, one line
naming the field. Standard library only (this is `domain/`).

Format (https://www.w3.org/TR/trace-context/#traceparent-header), version ``00``:
``00-<trace id: 32 hex>-<parent id: 16 hex>-<flags: 2 hex>``, lowercase; neither id may be
all zeros, and version ``ff`` is forbidden. A later version may carry more fields after
the flags (``-…``); those are accepted and kept as given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from jobtrail.domain.errors import InvalidField

PATTERN = r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-.*)?$"
"""What the JSON schema of the envelope says a ``traceparent`` looks like."""

_TRACEPARENT = re.compile(
    r"(?P<version>[0-9a-f]{2})-(?P<trace_id>[0-9a-f]{32})-"
    r"(?P<span_id>[0-9a-f]{16})-(?P<flags>[0-9a-f]{2})(?P<rest>-.*)?",
    re.ASCII | re.DOTALL,
)
MAX_LENGTH = 512
"""Longer is refused: metadata is stored in every event of the job."""


@dataclass(frozen=True)
class TraceParent:
    """The parts of a ``traceparent``: whose trace, which span is the parent, sampled or not."""

    version: str
    trace_id: str
    span_id: str
    flags: str

    @property
    def sampled(self) -> bool:
        return bool(int(self.flags, 16) & 1)

    def header(self) -> str:
        return f"{self.version}-{self.trace_id}-{self.span_id}-{self.flags}"


def parse(value: object, field: str = "traceparent") -> TraceParent:
    """The parts of a ``traceparent``, or `InvalidField` naming ``field`` and what is wrong."""
    if not isinstance(value, str):
        raise InvalidField(field=field, reason=f"must be a string, not a {type(value).__name__}")
    if len(value) > MAX_LENGTH:
        raise InvalidField(field=field, reason=f"is longer than {MAX_LENGTH} characters")
    match = _TRACEPARENT.fullmatch(value)
    if match is None:
        raise InvalidField(
            field=field,
            reason="must be a W3C traceparent, 00-<32 lowercase hex>-<16 lowercase hex>-<2 hex>, "
            f"not {value[:80]!r}",
        )
    parts = TraceParent(match["version"], match["trace_id"], match["span_id"], match["flags"])
    _check(parts, match["rest"], field)
    return parts


def _check(parts: TraceParent, rest: str | None, field: str) -> None:
    """The rules the pattern cannot say: forbidden version, all-zero ids, version 00's length."""
    if parts.version == "ff":
        raise InvalidField(field=field, reason="version ff is forbidden")
    if parts.version == "00" and rest is not None:
        raise InvalidField(field=field, reason="version 00 has exactly four fields")
    if rest is not None and not rest.isprintable():
        raise InvalidField(field=field, reason="must hold printable characters only")
    if parts.trace_id == "0" * 32:
        raise InvalidField(field=field, reason="the trace id is all zeros")
    if parts.span_id == "0" * 16:
        raise InvalidField(field=field, reason="the parent span id is all zeros")


def check_optional(value: object, field: str = "traceparent") -> None:
    """None, or a well-formed ``traceparent`` (`parse`)."""
    if value is not None:
        parse(value, field)
