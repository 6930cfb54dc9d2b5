"""Configuration from the environment (the CLI's options override it).

Kafka's TLS and SASL settings come from the environment (or files it names) only, never from
the command line, where other users of the machine could read them in the process list.
`Settings` keeps them as the raw strings; `jobtrail.adapters.kafka.security.KafkaSecurity`
checks them and reads the password file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DEFAULT_DATABASE_URL = "sqlite:///jobtrail.db"
DEFAULT_KAFKA_BOOTSTRAP = "localhost:9092"
DEFAULT_KAFKA_TOPIC = "job-events"
DEFAULT_KAFKA_SECURITY_PROTOCOL = "PLAINTEXT"

DATABASE_URL_VAR = "JOBTRAIL_DATABASE_URL"
KAFKA_BOOTSTRAP_VAR = "JOBTRAIL_KAFKA_BOOTSTRAP"
KAFKA_TOPIC_VAR = "JOBTRAIL_KAFKA_TOPIC"
APP_VAR = "JOBTRAIL_APP"
KAFKA_SECURITY_PROTOCOL_VAR = "JOBTRAIL_KAFKA_SECURITY_PROTOCOL"
KAFKA_SSL_CAFILE_VAR = "JOBTRAIL_KAFKA_SSL_CAFILE"
KAFKA_SSL_CERTFILE_VAR = "JOBTRAIL_KAFKA_SSL_CERTFILE"
KAFKA_SSL_KEYFILE_VAR = "JOBTRAIL_KAFKA_SSL_KEYFILE"
KAFKA_SASL_MECHANISM_VAR = "JOBTRAIL_KAFKA_SASL_MECHANISM"
KAFKA_SASL_USERNAME_VAR = "JOBTRAIL_KAFKA_SASL_USERNAME"
KAFKA_SASL_PASSWORD_VAR = "JOBTRAIL_KAFKA_SASL_PASSWORD"
KAFKA_SASL_PASSWORD_FILE_VAR = "JOBTRAIL_KAFKA_SASL_PASSWORD_FILE"
KAFKA_SECURITY_VARIABLES = (
    KAFKA_SECURITY_PROTOCOL_VAR,
    KAFKA_SSL_CAFILE_VAR,
    KAFKA_SSL_CERTFILE_VAR,
    KAFKA_SSL_KEYFILE_VAR,
    KAFKA_SASL_MECHANISM_VAR,
    KAFKA_SASL_USERNAME_VAR,
    KAFKA_SASL_PASSWORD_VAR,
    KAFKA_SASL_PASSWORD_FILE_VAR,
)
VARIABLES = (
    DATABASE_URL_VAR,
    KAFKA_BOOTSTRAP_VAR,
    KAFKA_TOPIC_VAR,
    APP_VAR,
    *KAFKA_SECURITY_VARIABLES,
)
"""Every environment variable jobtrail reads (deployment files are checked against it)."""


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    kafka_bootstrap: str = DEFAULT_KAFKA_BOOTSTRAP
    kafka_topic: str = DEFAULT_KAFKA_TOPIC
    app: str | None = None
    """The worker's processors, ``module.path:attribute`` (None: the sample processors)."""
    kafka_security_protocol: str = DEFAULT_KAFKA_SECURITY_PROTOCOL
    kafka_ssl_cafile: str | None = None
    kafka_ssl_certfile: str | None = None
    kafka_ssl_keyfile: str | None = None
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = field(default=None, repr=False)
    """A secret: kept out of the repr (and so out of logs and tracebacks that print it)."""
    kafka_sasl_password_file: str | None = None

    @classmethod
    def from_env(cls) -> Settings:
        """The settings in the environment; an empty variable counts as unset."""
        env = os.environ
        return cls(
            database_url=env.get(DATABASE_URL_VAR, DEFAULT_DATABASE_URL),
            kafka_bootstrap=env.get(KAFKA_BOOTSTRAP_VAR, DEFAULT_KAFKA_BOOTSTRAP),
            kafka_topic=env.get(KAFKA_TOPIC_VAR, DEFAULT_KAFKA_TOPIC),
            app=env.get(APP_VAR) or None,
            kafka_security_protocol=(
                env.get(KAFKA_SECURITY_PROTOCOL_VAR) or DEFAULT_KAFKA_SECURITY_PROTOCOL
            ),
            kafka_ssl_cafile=env.get(KAFKA_SSL_CAFILE_VAR) or None,
            kafka_ssl_certfile=env.get(KAFKA_SSL_CERTFILE_VAR) or None,
            kafka_ssl_keyfile=env.get(KAFKA_SSL_KEYFILE_VAR) or None,
            kafka_sasl_mechanism=env.get(KAFKA_SASL_MECHANISM_VAR) or None,
            kafka_sasl_username=env.get(KAFKA_SASL_USERNAME_VAR) or None,
            kafka_sasl_password=env.get(KAFKA_SASL_PASSWORD_VAR) or None,
            kafka_sasl_password_file=env.get(KAFKA_SASL_PASSWORD_FILE_VAR) or None,
        )
