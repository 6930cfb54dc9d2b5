"""Configuration from the environment (the CLI's options override it)."""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_DATABASE_URL = "sqlite:///jobtrail.db"


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL

    @classmethod
    def from_env(cls) -> Settings:
        return cls(database_url=os.environ.get("JOBTRAIL_DATABASE_URL", DEFAULT_DATABASE_URL))
