"""The errors of talking to Kafka, and the one place kafka-python's errors become them.

Every Kafka call of jobtrail runs inside `translated(bootstrap, security)`, which maps
kafka-python's errors by class:

=====================================================  ===============================
kafka-python error                                     jobtrail error
=====================================================  ===============================
`SaslAuthenticationFailedError`,                       `BrokerAuthenticationFailed`
`UnsupportedSaslMechanismError`,
`IllegalSaslStateError`
`KafkaTimeoutError` "Unable to bootstrap", with TLS    what `diagnosis.diagnose` finds:
or SASL configured                                     `BrokerAuthenticationFailed`,
                                                       `BrokerUntrusted`,
                                                       `BrokerSecurityError`, or a
                                                       `BrokerUnavailable` that says why
a `RetriableError` (connection lost or refused,        `BrokerUnavailable`
timeouts, no leader or coordinator yet, not enough
replicas, …) and `BrokerNotAvailableError`
any other `KafkaError` (authorization, a record too    `BrokerRefused`
large, an invalid topic or configuration, …)
=====================================================  ===============================

All are `BrokerError`s. Code that must tell "try again later" from "this will not work as
asked" catches `BrokerUnavailable`; a long-running process that keeps trying either way
(the relay) catches `BrokerError`. `BrokerSecurityError` (a `BrokerRefused`) and its two
subclasses mean the TLS or SASL settings do not fit the broker: retrying will not help until
someone changes them, so the CLI stops with that one line.

kafka-python reports a failed TLS handshake or SASL exchange during a client's bootstrap only
as a timeout ("Unable to bootstrap from …", after `bootstrap_timeout_ms`; the cause goes to
its log). With TLS or SASL configured, `translated` then asks `diagnosis.diagnose`, which
connects once more step by step, for the reason.

kafka-python is imported inside `translated` only, when a Kafka call is about to run: the
modules that import these errors (the public API, the CLI) do not load Kafka for it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from jobtrail.domain.errors import JobtrailError

if TYPE_CHECKING:
    from jobtrail.adapters.kafka.security import KafkaSecurity

DIAGNOSIS_TIMEOUT = 5.0
"""Seconds the diagnosis of a failed TLS or SASL bootstrap may take, at most."""


class UndecodableMessage(JobtrailError):
    """The message is not a jobtrail event envelope: {reason}."""


class BrokerError(JobtrailError):
    """The Kafka broker at {bootstrap} failed: {reason}."""


class BrokerUnavailable(BrokerError):
    """The Kafka broker at {bootstrap} is unreachable: {reason}."""


class BrokerRefused(BrokerError):
    """The Kafka broker at {bootstrap} refused the request: {reason}."""


class BrokerSecurityError(BrokerRefused):
    """The Kafka broker at {bootstrap} refused the connection: {reason}."""


class BrokerAuthenticationFailed(BrokerSecurityError):
    """The Kafka broker at {bootstrap} refused the credentials: {reason}."""


class BrokerUntrusted(BrokerSecurityError):
    """The Kafka broker at {bootstrap} could not be verified: {reason}."""


class EventHandlerFailed(JobtrailError):
    """The event handler failed on {record} (job {job_id}, version {version}): {reason}."""


@contextlib.contextmanager
def translated(
    bootstrap: str,
    security: KafkaSecurity | None = None,
    timeout: float = DIAGNOSIS_TIMEOUT,
) -> Iterator[None]:
    """Run Kafka calls; kafka-python's errors leave as `BrokerError`s (see the table above).

    `security` is what the clients inside connect with; `timeout` bounds the diagnosis of a
    failed TLS or SASL bootstrap (at most `DIAGNOSIS_TIMEOUT`).
    """
    from kafka.errors import KafkaError

    try:
        yield
    except KafkaError as error:
        raise broker_error(error, bootstrap, security, timeout) from error


def broker_error(
    error: Exception,
    bootstrap: str,
    security: KafkaSecurity | None = None,
    timeout: float = DIAGNOSIS_TIMEOUT,
) -> BrokerError:
    """The jobtrail error for one of kafka-python's (see the table above)."""
    from kafka.errors import (
        BrokerNotAvailableError,
        IllegalSaslStateError,
        KafkaTimeoutError,
        RetriableError,
        SaslAuthenticationFailedError,
        UnsupportedSaslMechanismError,
    )

    reason = _reason(error)
    if isinstance(
        error, SaslAuthenticationFailedError | UnsupportedSaslMechanismError | IllegalSaslStateError
    ):
        return BrokerAuthenticationFailed(bootstrap=bootstrap, reason=reason)
    secured = security is not None and (security.uses_tls or security.uses_sasl)
    if secured and isinstance(error, KafkaTimeoutError) and "Unable to bootstrap" in str(error):
        from jobtrail.adapters.kafka.diagnosis import diagnose

        assert security is not None
        found = diagnose(bootstrap, security, min(timeout, DIAGNOSIS_TIMEOUT))
        if found is not None:
            return _FOUND[found.kind](bootstrap=bootstrap, reason=found.reason)
    unavailable = isinstance(error, RetriableError | BrokerNotAvailableError)
    kind = BrokerUnavailable if unavailable else BrokerRefused
    return kind(bootstrap=bootstrap, reason=reason)


_FOUND: dict[str, type[BrokerError]] = {
    "credentials": BrokerAuthenticationFailed,
    "untrusted": BrokerUntrusted,
    "refused": BrokerSecurityError,
    "unavailable": BrokerUnavailable,
}


def _reason(error: Exception) -> str:
    from jobtrail.adapters.kafka.security import redacted

    return redacted(str(error).strip() or type(error).__name__)
