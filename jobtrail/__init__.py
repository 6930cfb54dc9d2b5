"""jobtrail: an event-sourced state machine for background jobs.

`__all__` is the public API; everything else under `jobtrail.` may change between
releases. Names are loaded on first use (PEP 562), so `import jobtrail` and the CLI stay
fast: SQLAlchemy and the Kafka client load only when a name that needs them is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> module that defines it
_PUBLIC: dict[str, str] = {
    # the client
    "connect": "jobtrail.adapters.bootstrap",
    "Jobtrail": "jobtrail.adapters.bootstrap",
    "JobSpec": "jobtrail.domain.services",
    "Meta": "jobtrail.domain.job",
    "Outcome": "jobtrail.domain.job",
    "JobStatus": "jobtrail.domain.status",
    "RetryPolicy": "jobtrail.domain.retry",
    # the events
    "Event": "jobtrail.domain.events",
    "JobQueued": "jobtrail.domain.events",
    "JobStarted": "jobtrail.domain.events",
    "JobProgressed": "jobtrail.domain.events",
    "JobCompleted": "jobtrail.domain.events",
    "JobRetryScheduled": "jobtrail.domain.events",
    "JobFailed": "jobtrail.domain.events",
    "JobCancelled": "jobtrail.domain.events",
    # errors a caller catches
    "JobtrailError": "jobtrail.domain.errors",
    "CommandRejected": "jobtrail.domain.errors",
    "IllegalTransition": "jobtrail.domain.errors",
    "StaleAttempt": "jobtrail.domain.errors",
    "InvalidCommand": "jobtrail.domain.errors",
    "InvalidJsonValue": "jobtrail.domain.errors",
    "InvalidField": "jobtrail.domain.errors",
    "ConcurrencyConflict": "jobtrail.domain.errors",
    "DuplicateIdempotencyKey": "jobtrail.domain.errors",
    "JobNotFound": "jobtrail.domain.errors",
    "InvalidJobId": "jobtrail.domain.errors",
    "StorageError": "jobtrail.domain.errors",
    "DatabaseUnavailable": "jobtrail.domain.errors",
    "SchemaMissing": "jobtrail.domain.errors",
    "NoDatabase": "jobtrail.domain.errors",
    "InvalidDatabaseUrl": "jobtrail.domain.errors",
    "DataRejected": "jobtrail.domain.errors",
    "CannotWrite": "jobtrail.domain.errors",
    "WaitTimedOut": "jobtrail.domain.errors",
    "UnknownQueue": "jobtrail.domain.errors",
    "NotPaused": "jobtrail.domain.errors",
    "UnknownLimit": "jobtrail.domain.errors",
    "UnknownSchedule": "jobtrail.domain.errors",
    "InvalidSchedule": "jobtrail.domain.errors",
    "BrokerUnavailable": "jobtrail.adapters.kafka.errors",
    "BrokerRefused": "jobtrail.adapters.kafka.errors",
    "UndecodableMessage": "jobtrail.adapters.kafka.errors",
    "EventHandlerFailed": "jobtrail.adapters.kafka.errors",
    "BrokerSecurityError": "jobtrail.adapters.kafka.errors",
    "BrokerAuthenticationFailed": "jobtrail.adapters.kafka.errors",
    "BrokerUntrusted": "jobtrail.adapters.kafka.errors",
    "KafkaSecurityInvalid": "jobtrail.adapters.kafka.security",
    # errors a processor raises
    "ErrorCategory": "jobtrail.domain.errors",
    "JobError": "jobtrail.domain.errors",
    "UserError": "jobtrail.domain.errors",
    "InsufficientCredits": "jobtrail.domain.errors",
    "InvalidInput": "jobtrail.domain.errors",
    "InternalError": "jobtrail.domain.errors",
    "InvalidResult": "jobtrail.domain.errors",
    "TransientError": "jobtrail.domain.errors",
    "UpstreamTimeout": "jobtrail.domain.errors",
    "UpstreamUnavailable": "jobtrail.domain.errors",
    "RateLimited": "jobtrail.domain.errors",
    # processors and workers
    "BaseProcessor": "jobtrail.processors.base",
    "JobContext": "jobtrail.processors.base",
    "JobView": "jobtrail.processors.base",
    "Registry": "jobtrail.processors.registry",
    "WorkerSettings": "jobtrail.processors.engine.worker",
    # day-to-day operations (trail.flow(), trail.schedules())
    "FlowSettings": "jobtrail.adapters.sql.flow_control",
    "Schedules": "jobtrail.adapters.schedules",
    # retention as scheduled jobs (jobtrail.prune, jobtrail.archive)
    "retention_processors": "jobtrail.adapters.retention",
    # consuming the topic
    "JobEventConsumer": "jobtrail.adapters.kafka.consumer",
    "RawEvent": "jobtrail.adapters.kafka.codec",
    "KafkaSecurity": "jobtrail.adapters.kafka.security",
    "Gap": "jobtrail.adapters.kafka.version_window",
    "ChainBreak": "jobtrail.adapters.kafka.version_window",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    try:
        module = _PUBLIC[name]
    except KeyError:
        raise AttributeError(f"module 'jobtrail' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:  # what type checkers and IDEs see; tests/unit/test_public_api.py keeps it whole
    from jobtrail.adapters.bootstrap import Jobtrail as Jobtrail
    from jobtrail.adapters.bootstrap import connect as connect
    from jobtrail.adapters.kafka.codec import RawEvent as RawEvent
    from jobtrail.adapters.kafka.consumer import JobEventConsumer as JobEventConsumer
    from jobtrail.adapters.kafka.errors import (
        BrokerAuthenticationFailed as BrokerAuthenticationFailed,
    )
    from jobtrail.adapters.kafka.errors import BrokerRefused as BrokerRefused
    from jobtrail.adapters.kafka.errors import BrokerSecurityError as BrokerSecurityError
    from jobtrail.adapters.kafka.errors import BrokerUnavailable as BrokerUnavailable
    from jobtrail.adapters.kafka.errors import BrokerUntrusted as BrokerUntrusted
    from jobtrail.adapters.kafka.errors import EventHandlerFailed as EventHandlerFailed
    from jobtrail.adapters.kafka.errors import UndecodableMessage as UndecodableMessage
    from jobtrail.adapters.kafka.security import KafkaSecurity as KafkaSecurity
    from jobtrail.adapters.kafka.security import KafkaSecurityInvalid as KafkaSecurityInvalid
    from jobtrail.adapters.kafka.version_window import ChainBreak as ChainBreak
    from jobtrail.adapters.kafka.version_window import Gap as Gap
    from jobtrail.adapters.retention import retention_processors as retention_processors
    from jobtrail.adapters.schedules import Schedules as Schedules
    from jobtrail.adapters.sql.flow_control import FlowSettings as FlowSettings
    from jobtrail.domain.errors import CannotWrite as CannotWrite
    from jobtrail.domain.errors import CommandRejected as CommandRejected
    from jobtrail.domain.errors import ConcurrencyConflict as ConcurrencyConflict
    from jobtrail.domain.errors import DatabaseUnavailable as DatabaseUnavailable
    from jobtrail.domain.errors import DataRejected as DataRejected
    from jobtrail.domain.errors import DuplicateIdempotencyKey as DuplicateIdempotencyKey
    from jobtrail.domain.errors import ErrorCategory as ErrorCategory
    from jobtrail.domain.errors import IllegalTransition as IllegalTransition
    from jobtrail.domain.errors import InsufficientCredits as InsufficientCredits
    from jobtrail.domain.errors import InternalError as InternalError
    from jobtrail.domain.errors import InvalidCommand as InvalidCommand
    from jobtrail.domain.errors import InvalidDatabaseUrl as InvalidDatabaseUrl
    from jobtrail.domain.errors import InvalidField as InvalidField
    from jobtrail.domain.errors import InvalidInput as InvalidInput
    from jobtrail.domain.errors import InvalidJobId as InvalidJobId
    from jobtrail.domain.errors import InvalidJsonValue as InvalidJsonValue
    from jobtrail.domain.errors import InvalidResult as InvalidResult
    from jobtrail.domain.errors import InvalidSchedule as InvalidSchedule
    from jobtrail.domain.errors import JobError as JobError
    from jobtrail.domain.errors import JobNotFound as JobNotFound
    from jobtrail.domain.errors import JobtrailError as JobtrailError
    from jobtrail.domain.errors import NoDatabase as NoDatabase
    from jobtrail.domain.errors import NotPaused as NotPaused
    from jobtrail.domain.errors import RateLimited as RateLimited
    from jobtrail.domain.errors import SchemaMissing as SchemaMissing
    from jobtrail.domain.errors import StaleAttempt as StaleAttempt
    from jobtrail.domain.errors import StorageError as StorageError
    from jobtrail.domain.errors import TransientError as TransientError
    from jobtrail.domain.errors import UnknownLimit as UnknownLimit
    from jobtrail.domain.errors import UnknownQueue as UnknownQueue
    from jobtrail.domain.errors import UnknownSchedule as UnknownSchedule
    from jobtrail.domain.errors import UpstreamTimeout as UpstreamTimeout
    from jobtrail.domain.errors import UpstreamUnavailable as UpstreamUnavailable
    from jobtrail.domain.errors import UserError as UserError
    from jobtrail.domain.errors import WaitTimedOut as WaitTimedOut
    from jobtrail.domain.events import Event as Event
    from jobtrail.domain.events import JobCancelled as JobCancelled
    from jobtrail.domain.events import JobCompleted as JobCompleted
    from jobtrail.domain.events import JobFailed as JobFailed
    from jobtrail.domain.events import JobProgressed as JobProgressed
    from jobtrail.domain.events import JobQueued as JobQueued
    from jobtrail.domain.events import JobRetryScheduled as JobRetryScheduled
    from jobtrail.domain.events import JobStarted as JobStarted
    from jobtrail.domain.job import Meta as Meta
    from jobtrail.domain.job import Outcome as Outcome
    from jobtrail.domain.retry import RetryPolicy as RetryPolicy
    from jobtrail.domain.services import JobSpec as JobSpec
    from jobtrail.domain.status import JobStatus as JobStatus
    from jobtrail.processors.base import BaseProcessor as BaseProcessor
    from jobtrail.processors.base import JobContext as JobContext
    from jobtrail.processors.base import JobView as JobView
    from jobtrail.processors.engine.worker import WorkerSettings as WorkerSettings
    from jobtrail.processors.registry import Registry as Registry
