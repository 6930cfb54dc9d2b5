"""What a processor hands back, made safe to record: the same on every backend.

Everything here runs in the processor's thread, before anything reaches the main loop, and
never raises: whatever a processor raised or returned becomes a result that can be stored
or a `Failure` that can.

- **Any** `BaseException` is a failure: `SystemExit`, `KeyboardInterrupt`, `MemoryError`,
  `GeneratorExit` included. In a processor thread none of them can be the worker's own
  shutdown (signals reach the main thread only; the worker stops its threads with a
  sentinel, never an exception), so a processor's `SystemExit` — code that tried to end the
  process, often a library's ``sys.exit()`` — is a system failure like any unexpected
  exception: ``unexpected_error``, type ``SystemExit``, message ``SystemExit: 3`` (its code),
  not retried.
- Describing an exception calls only what cannot fail, or has a fallback: its ``str()``,
  else its ``repr()``, else a fixed text; the type's ``__name__`` else a fixed name. A typed
  error's fields are each read once, checked and copied: ``code`` must fit the `job` table
  (a string of 1 to 100 characters, or the failure is recorded as a ``system_error`` that
  quotes it), ``retry_after`` must be a number of seconds (NaN or not a number: the retry
  policy's backoff; beyond `MAX_RETRY_AFTER`: cut to it).
- Texts are cut and escaped (`bounded`): an error's type name to `MAX_TYPE_NAME` characters
  (the column's size), its message to `MAX_MESSAGE`, a progress message to
  `MAX_PROGRESS_MESSAGE`; U+0000 and lone surrogates are written as escapes.
- A result must be strict JSON (`jobtrail.domain.json_values`) of at most `MAX_RESULT_BYTES`
  bytes as compact UTF-8 JSON, or its job fails as ``invalid_result``. What is recorded is a
  copy in plain JSON types, so a processor that keeps changing the object it returned (from
  a thread of its own) cannot change what the main loop writes.
"""

from __future__ import annotations

import json
import math
from typing import Any

from jobtrail.domain.errors import (
    ErrorCategory,
    InternalError,
    InvalidJsonValue,
    InvalidResult,
    JobError,
    StorageError,
    UnexpectedError,
)
from jobtrail.domain.json_values import check_json, storable_text
from jobtrail.processors.engine.outcomes import Finished

MAX_TYPE_NAME = 200
"""`job.error_type` is VARCHAR(200)."""
MAX_CODE = 100
"""`job.error_code` is VARCHAR(100)."""
MAX_MESSAGE = 10_000
"""`job.error_message` is TEXT; a message is for a person, and it travels in every copy of
the event (the log, Kafka, exports)."""
MAX_PROGRESS_MESSAGE = 1_000
MAX_RESULT_BYTES = 512 * 1024
"""Half of Kafka's default largest message (1 MiB), leaving room for the event around it."""
MAX_RETRY_AFTER = 7 * 86_400.0

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
"""Compact UTF-8 JSON, as the Kafka codec writes events (made once: `json.dumps` with
arguments builds an encoder on every call)."""
UNNAMED = "UnnamedException"
"""The type name recorded when an exception's type will not say its name."""


class Failure(JobError):
    """A processor's failure as it is recorded: every field read once, checked, copied."""

    def __init__(
        self,
        type_name: str,
        code: str,
        message: str,
        category: ErrorCategory = ErrorCategory.SYSTEM,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self._type_name = type_name
        vars(self).update(code=code, category=category, retryable=retryable)

    @property
    def type_name(self) -> str:
        return self._type_name


LOST = Failure(
    "InternalError",
    InternalError.code,
    "the worker could not describe how the processor ended",
)
"""The failure of last resort, made in advance: recording it allocates nothing new."""
THREAD_DIED = Failure(
    "InternalError", InternalError.code, "the worker thread running the processor died"
)


def failure_of(error: BaseException) -> JobError:
    """The failure to record for what a processor raised. Never raises."""
    try:
        if isinstance(error, JobError):
            return _settled(error)
        name = type_name_of(error)
        said = text_of(error)
        message = f"{name}: {said}" if said else name
        return Failure(name, UnexpectedError.code, bounded(message, MAX_MESSAGE))
    except BaseException:  # noqa: BLE001 - the last line: a fixed failure
        return LOST


def checked_result(result: Any) -> Any:
    """``result`` as plain JSON values; `InvalidResult` if it cannot be stored."""
    try:
        check_json(result, "result")
    except InvalidJsonValue as error:
        raise InvalidResult(f"{error.where}: {error.reason}") from None
    if result is None or type(result) in (bool, int, float):
        return result
    text = _ENCODER.encode(result)
    size = len(text) if len(text) * 4 <= MAX_RESULT_BYTES else len(text.encode())
    if size > MAX_RESULT_BYTES:
        raise InvalidResult(
            f"result: {size:,} bytes of JSON, more than the {MAX_RESULT_BYTES:,} a result may "
            "take (store the data elsewhere and return where it is)"
        )
    return result if type(result) is str else json.loads(text)


def unstorable(item: Finished, error: StorageError) -> JobError:
    """The failure recorded instead of an outcome the database refused on its own."""
    reason = bounded(text_of(error) or type_name_of(error), 1000)
    if item.error is None:
        return InvalidResult(f"the result could not be stored: {reason}")
    original = item.error
    said = f"{original.type_name} ({original.code}): {original.message}"
    return _could_not_store(reason, said)


def bounded(text: str, limit: int) -> str:
    """``text`` with U+0000 and lone surrogates escaped, cut to ``limit`` characters."""
    length = len(text)
    if length > limit:
        text = _cut(text, limit, length)
    escaped = storable_text(text)
    return escaped if len(escaped) <= limit else _cut(escaped, limit, length)


def safe_text(value: object, limit: int) -> str:
    """Any object as a bounded, storable text (a progress message that is not a str)."""
    if type(value) is str:
        return bounded(value, limit)
    return bounded(text_of(value) or type_name_of(value), limit)


def type_name_of(value: object) -> str:
    try:
        name = type(value).__name__
        if isinstance(name, str) and name:
            return bounded(str.__str__(name), MAX_TYPE_NAME)
    except BaseException:  # noqa: BLE001 - a metaclass may make __name__ anything
        pass
    return UNNAMED


def text_of(value: object) -> str | None:
    """``str(value)``, else ``repr(value)``, else None: never raises."""
    for show in (str, repr):
        try:
            return str.__str__(show(value))  # a str subclass becomes a plain str
        except BaseException:  # noqa: BLE001 - code of the processor's: anything goes
            continue
    return None


# ------------------------------------------------------------------ typed errors


def _settled(error: JobError) -> JobError:
    type_name = _read(error, "type_name")
    type_name = (
        bounded(str.__str__(type_name), MAX_TYPE_NAME)
        if isinstance(type_name, str) and type_name
        else type_name_of(error)
    )
    message = _message_of(error)
    code = _read(error, "code")
    problem = _code_problem(code)
    if problem is not None:
        shown = str.__str__(code) if isinstance(code, str) else f"a {type_name_of(code)}"
        return _could_not_store(f"its code {problem}", f"{type_name} ({shown}): {message}")
    category = _read(error, "category")
    if not isinstance(category, ErrorCategory):
        user = isinstance(category, str) and str.__str__(category) == "user"
        category = ErrorCategory.USER if user else ErrorCategory.SYSTEM
    return Failure(
        type_name,
        str.__str__(code),
        message,
        category,
        _truth(_read(error, "retryable")),
        _retry_after(_read(error, "retry_after")),
    )


def _read(error: JobError, name: str) -> Any:
    try:
        return getattr(error, name)
    except BaseException:  # noqa: BLE001 - a property of the processor's own
        return None


def _message_of(error: JobError) -> str:
    message = _read(error, "message")
    said = str.__str__(message) if isinstance(message, str) else text_of(error)
    return bounded(said or f"{type_name_of(error)} (its message could not be read)", MAX_MESSAGE)


def _code_problem(code: Any) -> str | None:
    if not isinstance(code, str) or not code:
        return "is not a non-empty str"
    if len(code) > MAX_CODE:
        return f"is longer than {MAX_CODE} characters"
    if storable_text(code) != code:
        return "contains U+0000 or a lone surrogate"
    return None


def _could_not_store(reason: str, said: str) -> JobError:
    return InternalError(
        f"the failure could not be stored ({reason}); it was {bounded(said, MAX_MESSAGE // 2)}"
    )


def _truth(value: Any) -> bool:
    try:
        return bool(value)
    except BaseException:  # noqa: BLE001
        return False


def _retry_after(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        seconds = float(value)
    except OverflowError:  # an int too large for a float
        return MAX_RETRY_AFTER if int(value) > 0 else 0.0
    except BaseException:  # noqa: BLE001 - a number type of the processor's own
        return None
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _cut(text: str, limit: int, length: int) -> str:
    tail = f"… ({length:,} characters in all)"
    return text[: max(limit - len(tail), 0)] + tail


MAX_LOGGED_MESSAGE = 1_000
"""An error message in a log line's ``error_message`` (the event keeps it whole)."""


def log_fields(
    job_id: str,
    event: str,
    *,
    job_type: str | None = None,
    attempt: int | None = None,
    error: JobError | None = None,
    error_code: str | None = None,
    error_category: str | None = None,
    error_message: str | None = None,
) -> dict[str, Any]:
    """The ``extra=`` of a log line about one job: the fields `--log-format json` writes
    (`jobtrail.adapters.cli.logs.JOB_FIELDS`). ``event`` is the event type recorded
    (``JobFailed``) or what happened (``attempt_started``); an ``error`` gives the error
    fields. Fields left None are not written."""
    if error is not None:
        error_code, error_category = error.code, error.category.value
        error_message = error.message
    fields = {
        "job_id": job_id,
        "event": event,
        "job_type": job_type,
        "attempt": attempt,
        "error_code": error_code,
        "error_category": error_category,
        "error_message": None
        if error_message is None
        else bounded(error_message, MAX_LOGGED_MESSAGE),
    }
    return {name: value for name, value in fields.items() if value is not None}
