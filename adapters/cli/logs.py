"""How the long-running commands log: `--log-format text` (the default) or `json`.

JSON is for log shippers: one object per line on stderr, with ``time`` (ISO 8601, UTC),
``level``, ``logger`` and ``message``, the job's fields when the call passed them with
``extra=`` (``job_id``, ``job_type``, ``attempt``, ``event``, ``error_code``,
``error_category``, ``error_message``: see `JOB_FIELDS`), and an exception as one
``error`` string, never a traceback spread over lines. Standard library only: the parser
(`add_log_format`) and `configure_logging` are what `main` (and any command added later,
such as ``web``) call.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JOB_FIELDS = (
    "job_id",
    "job_type",
    "attempt",
    "event",
    "error_code",
    "error_category",
    "error_message",
)
"""The fields of one job a log call may pass with ``extra={...}``; JSON lines carry them."""
CHATTY = ("transitions", "kafka")

_format = "text"
"""The format `configure_logging` chose: what `summary` writes in."""


def add_log_format(parser: argparse.ArgumentParser, *, root: bool = False) -> None:
    """``--log-format text|json`` on ``parser``. The root parser holds the default; a
    command's own option (given after the command's name) is left unset unless given, so it
    overrides the root's. Adding it twice to one parser is a no-op."""
    if "--log-format" in parser._option_string_actions:
        return
    parser.add_argument(
        "--log-format",
        choices=list(FORMATS),
        default="text" if root else argparse.SUPPRESS,
        help="text (default) or json: one JSON object per line on stderr",
    )


def configure_logging(args: argparse.Namespace, *, info: bool = False) -> None:
    """Log to stderr in ``args.log_format``: at DEBUG with ``args.verbose``, else at INFO
    for a long-running command (``info``), WARNING for the others."""
    global _format
    _format = getattr(args, "log_format", "text")
    quiet = logging.INFO if info else logging.WARNING
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if _format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else quiet, handlers=[handler]
    )
    for chatty in CHATTY:
        logging.getLogger(chatty).setLevel(logging.WARNING)


def summary(text: str, *, level: int = logging.INFO) -> None:
    """A command's closing line on stderr (``claimed 3, completed 2, …``, an error): as it
    is in text format, one JSON line in json format, so that every line parses."""
    if _format != "json":
        print(text, file=sys.stderr)
        return
    record = logging.LogRecord("jobtrail", level, __file__, 0, text, None, None)
    print(JsonFormatter().format(record), file=sys.stderr)


def failure(text: str) -> None:
    """The one line of a command that failed (``jobtrail: error: …``), as `summary` writes."""
    summary(text, level=logging.ERROR)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in a message are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": utc_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in JOB_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value
        if record.exc_info and record.exc_info[1] is not None:
            line["error"] = error_text(record.exc_info[1])
        elif record.exc_text:
            line["error"] = record.exc_text.strip().splitlines()[-1]
        return json.dumps(line, ensure_ascii=False, default=str)


def utc_time(created: float) -> str:
    """ISO 8601 in UTC with milliseconds: ``2026-11-29T13:41:09.852Z``."""
    moment = datetime.fromtimestamp(created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def error_text(error: BaseException) -> str:
    """``Type: message``, the way a traceback's last line names it."""
    message = str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
