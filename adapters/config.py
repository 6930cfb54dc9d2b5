"""Configuration from the environment (the CLI's options override it)."""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_DATABASE_URL = "sqlite:///jobtrail.db"
DEFAULT_KAFKA_BOOTSTRAP = "localhost:9092"
DEFAULT_KAFKA_TOPIC = "job-events"

DATABASE_URL_VAR = "JOBTRAIL_DATABASE_URL"
KAFKA_BOOTSTRAP_VAR = "JOBTRAIL_KAFKA_BOOTSTRAP"
KAFKA_TOPIC_VAR = "JOBTRAIL_KAFKA_TOPIC"
APP_VAR = "JOBTRAIL_APP"
VARIABLES = (DATABASE_URL_VAR, KAFKA_BOOTSTRAP_VAR, KAFKA_TOPIC_VAR, APP_VAR)
"""Every environment variable jobtrail reads (deployment files are checked against it)."""


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    kafka_bootstrap: str = DEFAULT_KAFKA_BOOTSTRAP
    kafka_topic: str = DEFAULT_KAFKA_TOPIC
    app: str | None = None
    """The worker's processors, ``module.path:attribute`` (None: the sample processors)."""

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            database_url=os.environ.get(DATABASE_URL_VAR, DEFAULT_DATABASE_URL),
            kafka_bootstrap=os.environ.get(KAFKA_BOOTSTRAP_VAR, DEFAULT_KAFKA_BOOTSTRAP),
            kafka_topic=os.environ.get(KAFKA_TOPIC_VAR, DEFAULT_KAFKA_TOPIC),
            app=os.environ.get(APP_VAR) or None,
        )
