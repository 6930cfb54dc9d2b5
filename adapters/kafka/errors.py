"""The errors of talking to Kafka, and the one place kafka-python's errors become them.

Every Kafka call of jobtrail runs inside `translated(bootstrap)`, which maps kafka-python's
errors by class:

=====================================================  =====================
kafka-python error                                     jobtrail error
=====================================================  =====================
a `RetriableError` (connection lost or refused,        `BrokerUnavailable`
timeouts, no leader or coordinator yet, not enough
replicas, …) and `BrokerNotAvailableError`
any other `KafkaError` (authorization, a record too    `BrokerRefused`
large, an invalid topic or configuration, …)
=====================================================  =====================

Both are `BrokerError`s. Code that must tell "try again later" from "this will not work as
asked" catches `BrokerUnavailable`; a long-running process that keeps trying either way
(the relay) catches `BrokerError`.

kafka-python is imported inside `translated` only, when a Kafka call is about to run: the
modules that import these errors (the public API, the CLI) do not load Kafka for it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from jobtrail.domain.errors import JobtrailError


class UndecodableMessage(JobtrailError):
    """The message is not a jobtrail event envelope: {reason}."""


class BrokerError(JobtrailError):
    """The Kafka broker at {bootstrap} failed: {reason}."""


class BrokerUnavailable(BrokerError):
    """The Kafka broker at {bootstrap} is unreachable: {reason}."""


class BrokerRefused(BrokerError):
    """The Kafka broker at {bootstrap} refused the request: {reason}."""


class EventHandlerFailed(JobtrailError):
    """The event handler failed on {record} (job {job_id}, version {version}): {reason}."""


@contextlib.contextmanager
def translated(bootstrap: str) -> Iterator[None]:
    """Run Kafka calls; kafka-python's errors leave as `BrokerUnavailable`/`BrokerRefused`."""
    from kafka.errors import KafkaError

    try:
        yield
    except KafkaError as error:
        raise broker_error(error, bootstrap) from error


def broker_error(error: Exception, bootstrap: str) -> BrokerError:
    """The jobtrail error for one of kafka-python's (see the table above)."""
    from kafka.errors import BrokerNotAvailableError, RetriableError

    unavailable = isinstance(error, RetriableError | BrokerNotAvailableError)
    kind = BrokerUnavailable if unavailable else BrokerRefused
    return kind(bootstrap=bootstrap, reason=str(error).strip() or type(error).__name__)
