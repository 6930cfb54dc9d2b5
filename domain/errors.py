"""Errors of jobtrail itself, and the typed errors processors raise.

Two families:

- `JobtrailError`: something the caller asked for cannot be done (illegal command,
  concurrency conflict, unknown job, unreachable database). Each is a one-line
  subclass whose docstring is its default message.
- `JobError`: why a job failed. Processors raise them; every other exception is wrapped
  in `UnexpectedError`. Each has a stable ``code``, a ``category`` (``user``: the
  requester can fix it; ``system``: ours or upstream's) and ``retryable``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar


class JobtrailError(Exception):
    """A jobtrail operation failed."""

    def __init__(self, message: str | None = None, **context: Any) -> None:
        self.context = context
        template = (self.__doc__ or "").strip()
        try:
            default = template.format(**context)
        except (KeyError, IndexError):  # built without its context: keep the template
            default = template
        super().__init__(message or default)


class CommandRejected(JobtrailError):
    """The command does not apply to the job in its current state."""


class IllegalTransition(CommandRejected):
    """Cannot {command} a job that is {status}."""

    def __init__(self, status: str, command: str) -> None:
        super().__init__(status=status, command=command)
        self.status, self.command = status, command


class StaleAttempt(CommandRejected):
    """Attempt {given} of job {job_id} is over (the job is {status}, on attempt {current})."""


class InvalidCommand(CommandRejected):
    """Invalid command: {reason}."""


class InvalidJsonValue(InvalidCommand):
    """{where}: {reason}."""

    def __init__(self, *, where: str, reason: str) -> None:
        super().__init__(where=where, reason=reason)
        self.where, self.reason = where, reason


class InvalidField(InvalidCommand):
    """{field}: {reason}."""

    def __init__(self, *, field: str, reason: str) -> None:
        super().__init__(field=field, reason=reason)
        self.field, self.reason = field, reason


class ConcurrencyConflict(JobtrailError):
    """Job {job_id} changed concurrently: expected version {expected}."""


class DuplicateIdempotencyKey(JobtrailError):
    """Idempotency key {key!r} is already used by another job."""


class JobNotFound(JobtrailError):
    """No job with id {job_id}."""


class InvalidJobId(JobtrailError):
    """{job_id!r} is not a job id (expected a UUID such as 0b6c1a8e-…)."""


class StorageError(JobtrailError):
    """The event store failed: {reason}."""


class DatabaseUnavailable(StorageError):
    """Cannot reach the database: {reason}."""


class SchemaMissing(StorageError):
    """The database has no jobtrail schema; run `jobtrail db init` first."""


class NoDatabase(SchemaMissing):
    """No database at {path}; run `jobtrail db init` first."""


class InvalidDatabaseUrl(StorageError):
    """{url} is not a database URL jobtrail can use: {reason}."""


class DataRejected(StorageError):
    """The database refused {what}: {reason}."""

    def __init__(self, *, column: str | None, reason: str) -> None:
        what = f"the value of {column}" if column else "a value"
        super().__init__(what=what, reason=reason)
        self.column, self.reason = column, reason


class AppendOnlyViolation(StorageError):
    """The event log is append-only: {reason}."""


class ArchiveRefused(StorageError):
    """The archive was refused: {reason}."""


class CannotWrite(JobtrailError):
    """Cannot write {path}: {reason}."""


class CorruptHistory(JobtrailError):
    """The stored history of job {job_id} is not valid: {reason}."""


class UnknownQueue(JobtrailError):
    """Unknown {kind} {name!r}: no job was ever queued with it, so there is nothing to pause (check the name)."""  # noqa: E501


class NotPaused(JobtrailError):
    """The {kind} {name!r} is not paused."""


class UnknownLimit(JobtrailError):
    """There is no limit on {job_type!r} {scope}."""


# --------------------------------------------------------------------------- job errors


class ErrorCategory(StrEnum):
    """Who can fix a failure: the requester (``user``) or us and our upstreams (``system``)."""

    USER = "user"
    SYSTEM = "system"


class JobError(Exception):
    """The job failed."""

    code: ClassVar[str] = "job_error"
    category: ClassVar[ErrorCategory] = ErrorCategory.SYSTEM
    retryable: ClassVar[bool] = False

    def __init__(self, message: str | None = None, *, retry_after: float | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())
        self.retry_after = retry_after

    @property
    def type_name(self) -> str:
        return type(self).__name__

    @property
    def message(self) -> str:
        return str(self)


class UserError(JobError):
    """The request cannot be processed as it is."""

    code = "user_error"
    category = ErrorCategory.USER


class InsufficientCredits(UserError):
    """insufficient credits"""

    code = "insufficient_credits"


class InvalidInput(UserError):
    """invalid input"""

    code = "invalid_input"


class InternalError(JobError):
    """An internal error."""

    code = "system_error"


class UnknownJobType(InternalError):
    """unknown job type"""

    code = "unknown_job_type"


class InvalidResult(InternalError):
    """the processor's result is not JSON that jobtrail can store"""

    code = "invalid_result"


class UnexpectedError(InternalError):
    """An exception a processor did not expect; keeps the original type and message."""

    code = "unexpected_error"

    def __init__(self, original: BaseException) -> None:
        super().__init__(f"{type(original).__name__}: {original}")
        self.original_type = type(original).__name__

    @property
    def type_name(self) -> str:
        return self.original_type


class TransientError(InternalError):
    """A failure expected to go away on its own; retried with backoff."""

    code = "transient_error"
    retryable = True


class UpstreamTimeout(TransientError):
    """upstream timed out"""

    code = "upstream_timeout"


class UpstreamUnavailable(TransientError):
    """upstream unavailable"""

    code = "upstream_unavailable"


class RateLimited(TransientError):
    """rate limited by upstream"""

    code = "rate_limited"


class LeaseExpired(TransientError):
    """the worker's lease expired (worker died or hung)"""

    code = "lease_expired"


class WorkerShutdown(TransientError):
    """the worker shut down before the job finished"""

    code = "worker_shutdown"


def as_job_error(error: BaseException) -> JobError:
    """A `JobError` as is; anything else wrapped as an `UnexpectedError`."""
    return error if isinstance(error, JobError) else UnexpectedError(error)


class WaitTimedOut(JobtrailError):
    """job {job_id} did not finish within {seconds:g} seconds"""


# --------------------------------------------------------------------------- schedules


class UnknownSchedule(JobtrailError):
    """No schedule named {name!r}."""


class InvalidSchedule(InvalidField):
    """{field}: {reason}."""
