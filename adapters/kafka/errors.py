"""The errors of talking to Kafka, and the one place kafka-python's errors become them.

Every Kafka call of jobtrail runs inside `translated(bootstrap)`, which maps kafka-python's
errors by class: connection-level failures become `BrokerUnavailable`, anything else the
broker answered becomes `BrokerRefused`.
"""

from __future__ import annotations

from jobtrail.domain.errors import JobtrailError


class UndecodableMessage(JobtrailError):
    """The message is not a jobtrail event envelope: {reason}."""


class BrokerUnavailable(JobtrailError):
    """The Kafka broker at {bootstrap} is unreachable: {reason}."""


class BrokerRefused(JobtrailError):
    """The Kafka broker at {bootstrap} refused the request: {reason}."""


class EventHandlerFailed(JobtrailError):
    """The event handler failed on {record} (job {job_id}, version {version}): {reason}."""
