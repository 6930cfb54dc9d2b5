"""A job's history as a timeline: one line per event, for `history`, `show` and the demo.

Each line is version, time, type, actor and the fields of that event that a person looks
for (the payload when queued, the error when failed); the line is cut with ``…`` at the
terminal's edge. ``history --json`` gives every field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from jobtrail.adapters.cli.render import as_json
from jobtrail.domain.canonical import parse_time
from rich.console import Console
from rich.text import Text

Envelope = Mapping[str, Any]
Data = Mapping[str, Any]

TYPE_STYLES = {
    "JobCompleted": "green",
    "JobFailed": "red",
    "JobRetryScheduled": "yellow",
    "JobCancelled": "yellow",
}
ACTOR_WIDTH = 16
"""Longer actors (worker ids with a host name) are cut to this."""


def print_timeline(out: Console, job_id: str, envelopes: Sequence[Envelope]) -> None:
    """A heading naming the job (and the day, when every event is on one), then the lines."""
    times = [parse_time(e["occurred_at"]) for e in envelopes]
    one_day = len({t.date() for t in times}) <= 1
    day = f", {times[0]:%Y-%m-%d}" if one_day and times else ""
    out.print(Text(f"history of job {job_id} (UTC{day})", style="bold"), overflow="ellipsis")
    for line in timeline(envelopes, out.width, with_date=not one_day):
        out.print(line, no_wrap=True, overflow="ellipsis", crop=True)


def timeline(envelopes: Sequence[Envelope], width: int, *, with_date: bool) -> list[Text]:
    """One line of at most ``width`` cells per event, the columns aligned."""
    version_width = max((len(str(e["version"])) for e in envelopes), default=1) + 1
    type_width = max((len(e["type"]) for e in envelopes), default=0)
    actor_width = min(ACTOR_WIDTH, max((len(actor(e)) for e in envelopes), default=0))
    lines = []
    for envelope in envelopes:
        line = Text("  ")
        line.append(f"v{envelope['version']}".rjust(version_width) + "  ")
        line.append(clock(parse_time(envelope["occurred_at"]), with_date) + "  ", style="dim")
        kind = envelope["type"]
        line.append(kind.ljust(type_width), style=TYPE_STYLES.get(kind, "bold"))
        line.append("  " + cut(actor(envelope), actor_width).ljust(actor_width) + "  ")
        line.append(" ".join(summary(envelope).split()))  # a message's newlines too
        line.truncate(width, overflow="ellipsis")
        lines.append(line)
    return lines


def actor(envelope: Envelope) -> str:
    return str((envelope.get("metadata") or {}).get("actor") or "-")


def clock(moment: datetime, with_date: bool) -> str:
    text = moment.strftime("%Y-%m-%d %H:%M:%S.%f" if with_date else "%H:%M:%S.%f")
    return text[:-3]  # milliseconds


def cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def seconds(value: float) -> str:
    return f"{value:.2f} s" if value < 10 else f"{value:.0f} s"


# ------------------------------------------------------------------------ what matters


def summary(envelope: Envelope) -> str:
    """The fields of one event that matter to a person, most important first."""
    data: Data = envelope.get("data") or {}
    describe = SUMMARIES.get(envelope["type"])
    return describe(data, envelope) if describe else as_json(data)


def _queued(data: Data, envelope: Envelope) -> str:
    lineage = f" retry of {data['retry_of']}," if data.get("retry_of") else ""
    parts = [f"{data['job_type']}{lineage} {as_json(data.get('payload', {}))}"]
    parts.append(f"max {data.get('max_attempts')} attempts")
    if data.get("priority"):
        parts.append(f"priority {data['priority']}")
    delay = _after(envelope, data.get("available_at"))
    if delay > 0:
        parts.append(f"due in {seconds(delay)}")
    if data.get("idempotency_key") and not lineage:  # a retry's key follows from retry_of
        parts.append(f"key {data['idempotency_key']}")
    if data.get("reason"):
        parts.append(f"reason: {data['reason']}")
    return ", ".join(parts)


def _started(data: Data, envelope: Envelope) -> str:
    worker = data.get("worker_id")
    where = "" if worker == actor(envelope) else f" on {worker}"
    lease = seconds(_after(envelope, data.get("lease_expires_at")))
    return f"attempt {data.get('attempt')}{where}, lease {lease}"


def _progressed(data: Data, _envelope: Envelope) -> str:
    message = f" {data['message']}" if data.get("message") else ""
    return f"attempt {data.get('attempt')}: {data.get('percent')}%{message}"


def _completed(data: Data, _envelope: Envelope) -> str:
    took = seconds(float(data.get("duration_ms") or 0) / 1000)
    return f"attempt {data.get('attempt')} in {took}: {as_json(data.get('result'))}"


def _error(data: Data) -> str:
    """The message people read first; the code and category that programs match after it."""
    code, category = data.get("error_code"), data.get("error_category")
    return f"{data.get('error_message')} ({code}, {category})"


def _retry(data: Data, _envelope: Envelope) -> str:
    delay = seconds(float(data.get("delay_seconds") or 0))
    return f"attempt {data.get('attempt')}: retry in {delay} after {_error(data)}"


def _failed(data: Data, _envelope: Envelope) -> str:
    return f"attempt {data.get('attempt')}: {_error(data)}"


def _cancelled(data: Data, _envelope: Envelope) -> str:
    reason = f": {data['reason']}" if data.get("reason") else ""
    return f"by {data.get('by')}{reason}"


def _after(envelope: Envelope, end: Any) -> float:
    """Seconds from the event to the time ``end`` (0 when there is none)."""
    if not isinstance(end, str):
        return 0.0
    return (parse_time(end) - parse_time(envelope["occurred_at"])).total_seconds()


SUMMARIES: dict[str, Callable[[Data, Envelope], str]] = {
    "JobQueued": _queued,
    "JobStarted": _started,
    "JobProgressed": _progressed,
    "JobCompleted": _completed,
    "JobRetryScheduled": _retry,
    "JobFailed": _failed,
    "JobCancelled": _cancelled,
}
"""Event types this version knows; any other shows its data as JSON."""
