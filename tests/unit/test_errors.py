"""Typed job errors, jobtrail's own errors and their messages, job id parsing."""

from __future__ import annotations

import uuid
from typing import Any, cast

import pytest
from jobtrail.domain import errors
from jobtrail.domain.errors import (
    CommandRejected,
    ErrorCategory,
    IllegalTransition,
    InsufficientCredits,
    InvalidJobId,
    JobError,
    JobtrailError,
    LeaseExpired,
    RateLimited,
    UnexpectedError,
    UnknownJobType,
    UpstreamTimeout,
    as_job_error,
)
from jobtrail.domain.ids import parse_job_id

# ------------------------------------------------------------------ as_job_error


@pytest.mark.parametrize(
    "error", [InsufficientCredits(), UpstreamTimeout("slow"), UnexpectedError(KeyError("k"))]
)
def test_as_job_error_keeps_job_errors(error: JobError) -> None:
    assert as_job_error(error) is error


@pytest.mark.parametrize(
    ("original", "type_name", "text"),
    [
        (ValueError("bad frame rate"), "ValueError", "bad frame rate"),
        (RuntimeError("gpu melted"), "RuntimeError", "gpu melted"),
        (ZeroDivisionError("division by zero"), "ZeroDivisionError", "division by zero"),
    ],
)
def test_as_job_error_wraps_other_exceptions(
    original: Exception, type_name: str, text: str
) -> None:
    wrapped = as_job_error(original)
    assert isinstance(wrapped, UnexpectedError)
    assert wrapped.type_name == type_name
    assert text in wrapped.message
    assert type_name in wrapped.message
    assert wrapped.code == "unexpected_error"
    assert wrapped.category is ErrorCategory.SYSTEM
    assert wrapped.retryable is False


def test_wrapping_a_custom_exception_keeps_its_class_name() -> None:
    class ProviderExploded(Exception):
        pass

    wrapped = as_job_error(ProviderExploded("boom"))
    assert wrapped.type_name == "ProviderExploded"
    assert wrapped.message == "ProviderExploded: boom"


# ------------------------------------------------------------ job error attributes


def test_insufficient_credits() -> None:
    error = InsufficientCredits()
    assert error.category is ErrorCategory.USER
    assert error.retryable is False
    assert error.code == "insufficient_credits"
    assert "insufficient credits" in error.message
    assert error.type_name == "InsufficientCredits"


@pytest.mark.parametrize(
    ("cls", "code"),
    [
        (UpstreamTimeout, "upstream_timeout"),
        (RateLimited, "rate_limited"),
        (LeaseExpired, "lease_expired"),
    ],
)
def test_transient_system_errors_are_retryable(cls: type[JobError], code: str) -> None:
    error = cls()
    assert error.category is ErrorCategory.SYSTEM
    assert error.retryable is True
    assert error.code == code
    assert error.message  # the docstring is the default message
    assert error.type_name == cls.__name__


def test_invalid_result_is_a_system_error_not_retried() -> None:
    """A processor that returned NaN returns it again: retrying would not help."""
    error = errors.InvalidResult("result.x: NaN is not JSON (use null or a string)")
    assert (error.code, error.category, error.retryable) == (
        "invalid_result",
        ErrorCategory.SYSTEM,
        False,
    )
    assert error.type_name == "InvalidResult"
    assert error.message == "result.x: NaN is not JSON (use null or a string)"
    assert "result" in errors.InvalidResult().message  # the docstring is the default


def test_unknown_job_type_is_a_system_error_not_retried() -> None:
    error = UnknownJobType()
    assert error.category is ErrorCategory.SYSTEM
    assert error.retryable is False
    assert error.code == "unknown_job_type"
    assert "unknown job type" in error.message


def test_explicit_message_and_retry_after() -> None:
    error = RateLimited("slow down", retry_after=12.5)
    assert error.message == "slow down"
    assert error.retry_after == 12.5
    assert RateLimited().retry_after is None


def test_job_error_codes_are_distinct() -> None:
    classes = [
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, JobError)
    ]
    codes = [cls.code for cls in classes]
    assert len(classes) >= 12
    assert len(codes) == len(set(codes))


# --------------------------------------------------------- jobtrail error messages


def test_illegal_transition_names_status_and_command() -> None:
    error = IllegalTransition("failed", "complete")
    assert isinstance(error, CommandRejected)
    assert "failed" in str(error)
    assert "complete" in str(error)
    assert (error.status, error.command) == ("failed", "complete")
    assert error.context == {"status": "failed", "command": "complete"}


@pytest.mark.parametrize(
    ("cls", "context", "fragments"),
    [
        (
            errors.StaleAttempt,
            {"job_id": "j-1", "given": 1, "current": 2, "status": "processing"},
            ["Attempt 1", "j-1", "attempt 2", "processing"],
        ),
        (errors.InvalidCommand, {"reason": "no type"}, ["no type"]),
        (errors.ConcurrencyConflict, {"job_id": "j-2", "expected": 7}, ["j-2", "7"]),
        (errors.DuplicateIdempotencyKey, {"key": "k-9"}, ["'k-9'"]),
        (errors.JobNotFound, {"job_id": "j-3"}, ["j-3"]),
        (errors.InvalidJobId, {"job_id": "zz"}, ["'zz'", "UUID"]),
        (errors.StorageError, {"reason": "disk full"}, ["disk full"]),
        (errors.DatabaseUnavailable, {"reason": "refused"}, ["refused"]),
        (errors.AppendOnlyViolation, {"reason": "UPDATE"}, ["UPDATE", "append-only"]),
        (errors.CorruptHistory, {"job_id": "j-4", "reason": "gap"}, ["j-4", "gap"]),
        (errors.SchemaMissing, {}, ["jobtrail db init"]),
        (
            errors.InvalidJsonValue,
            {"where": "payload.x", "reason": "NaN is not JSON"},
            ["payload.x: NaN is not JSON."],
        ),
    ],
)
def test_jobtrail_errors_format_their_docstring(
    cls: type[JobtrailError], context: dict[str, Any], fragments: list[str]
) -> None:
    error = cls(**context)
    message = str(error)
    for fragment in fragments:
        assert fragment in message
    assert "{" not in message
    assert error.context == context


def test_an_invalid_json_value_is_an_invalid_command_naming_where_and_why() -> None:
    error = errors.InvalidJsonValue(where="payload", reason="key 1 is not a string")
    assert isinstance(error, errors.InvalidCommand)
    assert str(error) == "payload: key 1 is not a string."
    assert (error.where, error.reason) == ("payload", "key 1 is not a string")


def test_explicit_message_wins_over_the_docstring() -> None:
    error = errors.JobNotFound("custom", job_id="j")
    assert str(error) == "custom"
    assert error.context == {"job_id": "j"}


# -------------------------------------------------------------------- job ids


def test_parse_job_id_normalises() -> None:
    job_id = uuid.uuid4()
    assert parse_job_id(f"  {str(job_id).upper()}\n") == str(job_id)
    assert parse_job_id(str(job_id)) == str(job_id)


@pytest.mark.parametrize("text", ["nope", "", "123", "   "])
def test_parse_job_id_rejects_non_uuids(text: str) -> None:
    with pytest.raises(InvalidJobId) as raised:
        parse_job_id(text)
    message = str(raised.value)
    assert repr(text) in message
    assert "is not a job id" in message
    assert "UUID" in message
    assert raised.value.__suppress_context__  # no ValueError traceback for the user


def test_parse_job_id_rejects_a_non_string() -> None:
    with pytest.raises(InvalidJobId):
        parse_job_id(cast(str, None))
