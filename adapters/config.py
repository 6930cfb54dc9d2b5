"""Configuration from the environment (the CLI's options override it)."""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_DATABASE_URL = "sqlite:///jobtrail.db"
DEFAULT_KAFKA_BOOTSTRAP = "localhost:9092"
DEFAULT_KAFKA_TOPIC = "job-events"


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    kafka_bootstrap: str = DEFAULT_KAFKA_BOOTSTRAP
    kafka_topic: str = DEFAULT_KAFKA_TOPIC

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            database_url=os.environ.get("JOBTRAIL_DATABASE_URL", DEFAULT_DATABASE_URL),
            kafka_bootstrap=os.environ.get("JOBTRAIL_KAFKA_BOOTSTRAP", DEFAULT_KAFKA_BOOTSTRAP),
            kafka_topic=os.environ.get("JOBTRAIL_KAFKA_TOPIC", DEFAULT_KAFKA_TOPIC),
        )
