"""kafka-python's errors become jobtrail's in one place (`adapters/kafka/errors.translated`)."""

from __future__ import annotations

import logging
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from jobtrail.adapters import config
from jobtrail.adapters.config import Settings
from jobtrail.adapters.kafka import diagnosis
from jobtrail.adapters.kafka.codec import Record
from jobtrail.adapters.kafka.diagnosis import Finding, _scram_server_error
from jobtrail.adapters.kafka.errors import (
    BrokerAuthenticationFailed,
    BrokerError,
    BrokerRefused,
    BrokerSecurityError,
    BrokerUnavailable,
    broker_error,
    translated,
)
from jobtrail.adapters.kafka.publisher import KafkaPublisher, KafkaSettings
from jobtrail.adapters.kafka.security import (
    KafkaSecurity,
    KafkaSecurityInvalid,
    read_secret_file,
    redacted,
)
from kafka import errors as kafka_errors


@pytest.mark.parametrize(
    "error",
    [
        kafka_errors.KafkaConnectionError("connection refused"),
        kafka_errors.KafkaTimeoutError("Failed to update metadata after 10.0 secs."),
        kafka_errors.NodeNotReadyError(1),
        kafka_errors.RequestTimedOutError(),
        kafka_errors.LeaderNotAvailableError(),
        kafka_errors.NotEnoughReplicasError(),
        kafka_errors.BrokerNotAvailableError(),
    ],
)
def test_connection_level_errors_mean_the_broker_is_unavailable(error: Exception) -> None:
    with (
        pytest.raises(BrokerUnavailable, match="at b:9092 is unreachable") as raised,
        translated("b:9092"),
    ):
        raise error
    assert raised.value.__cause__ is error
    assert type(error).__name__ in str(raised.value)


@pytest.mark.parametrize(
    "error",
    [
        kafka_errors.TopicAuthorizationFailedError(),
        kafka_errors.MessageSizeTooLargeError(),
        kafka_errors.InvalidTopicError(),
        kafka_errors.CommitFailedError(),
        kafka_errors.IllegalStateError("producer closed"),
    ],
)
def test_other_kafka_errors_mean_the_broker_refused(error: Exception) -> None:
    with pytest.raises(BrokerRefused, match="at b:9092 refused the request"), translated("b:9092"):
        raise error


def test_errors_that_are_not_kafka_s_pass_through() -> None:
    with pytest.raises(ValueError, match="mine"), translated("b:9092"):
        raise ValueError("mine")


def test_importing_the_errors_does_not_load_kafka() -> None:
    code = (
        "import sys, jobtrail.adapters.kafka.errors as e; "
        "assert not [m for m in sys.modules if m == 'kafka' or m.startswith('kafka.')], "
        "sorted(m for m in sys.modules if m.startswith('kafka'))"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


class _Producer:
    """A producer whose sends fail as kafka-python's do."""

    def __init__(self, error: Exception | None = None, on_get: Exception | None = None) -> None:
        self.error, self.on_get, self.closed = error, on_get, False

    def send(self, topic: str, **record: Any) -> Any:
        if self.error is not None:
            raise self.error
        on_get = self.on_get

        class Future:
            def get(self, timeout: float) -> None:
                if on_get is not None:
                    raise on_get

        return Future()

    def close(self, timeout: float = 0.0) -> None:
        self.closed = True


def _publisher(producer: _Producer) -> KafkaPublisher:
    publisher = KafkaPublisher(KafkaSettings(bootstrap="b:9092", topic="t", timeout=0.1))
    publisher._topic_ready = True
    publisher._producer = producer  # type: ignore[assignment]
    return publisher


RECORDS = [Record(b"job", b"{}", [])]


def test_a_failed_send_throws_the_producer_away() -> None:
    producer = _Producer(error=kafka_errors.KafkaTimeoutError("no metadata"))
    publisher = _publisher(producer)
    with pytest.raises(BrokerUnavailable):
        publisher.send(RECORDS)
    assert producer.closed and publisher._producer is None


def test_a_refused_acknowledgement_is_a_broker_error_and_throws_the_producer_away() -> None:
    producer = _Producer(on_get=kafka_errors.MessageSizeTooLargeError())
    publisher = _publisher(producer)
    acknowledgement = publisher.send(RECORDS)
    with pytest.raises(BrokerError) as raised:
        acknowledgement.wait()
    assert isinstance(raised.value, BrokerRefused)
    assert producer.closed and publisher._producer is None


# ------------------------------------------------------ TLS and SASL settings and errors


def test_sasl_failures_mean_the_credentials_were_refused() -> None:
    for error in (
        kafka_errors.SaslAuthenticationFailedError("Authentication failed: invalid credentials"),
        kafka_errors.UnsupportedSaslMechanismError("Kafka broker does not support PLAIN"),
        kafka_errors.IllegalSaslStateError(),
    ):
        with pytest.raises(BrokerAuthenticationFailed) as raised, translated("b:9092"):
            raise error
        assert isinstance(raised.value, BrokerSecurityError | BrokerRefused)
        assert str(raised.value).startswith("The Kafka broker at b:9092 refused the credentials")


def _never(*args: Any) -> None:
    raise AssertionError("diagnosed a PLAINTEXT client")


def test_a_bootstrap_timeout_is_diagnosed_only_with_tls_or_sasl(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    timeout = kafka_errors.KafkaTimeoutError("Unable to bootstrap from b:9092")
    monkeypatch.setattr(diagnosis, "diagnose", _never)
    assert isinstance(broker_error(timeout, "b:9092", KafkaSecurity()), BrokerUnavailable)
    assert isinstance(broker_error(timeout, "b:9092"), BrokerUnavailable)

    sasl = KafkaSecurity("SASL_PLAINTEXT", mechanism="PLAIN", username="u", password="p")
    calls: list[tuple[str, float]] = []

    def diagnose(bootstrap: str, security: KafkaSecurity, seconds: float) -> Finding | None:
        calls.append((bootstrap, seconds))
        return Finding("credentials", "no such user") if len(calls) == 1 else None

    monkeypatch.setattr(diagnosis, "diagnose", diagnose)
    found = broker_error(timeout, "b:9092", sasl, timeout=30)
    assert isinstance(found, BrokerAuthenticationFailed)
    assert str(found) == "The Kafka broker at b:9092 refused the credentials: no such user."
    assert isinstance(broker_error(timeout, "b:9092", sasl, timeout=2), BrokerUnavailable)
    assert calls == [("b:9092", 5.0), ("b:9092", 2)]  # at most DIAGNOSIS_TIMEOUT


SECRET = "s3cr\u00e9t-\x07-pw"


def test_the_password_is_masked_in_reprs_and_settings() -> None:
    security = KafkaSecurity(
        "sasl_plaintext", mechanism="scram-sha-512", username="relay", password=SECRET
    )
    assert (security.protocol, security.mechanism) == ("SASL_PLAINTEXT", "SCRAM-SHA-512")
    for text in (repr(security), str(security), f"{security}"):
        assert SECRET not in text and "password='***'" in text and "username='relay'" in text
    settings = Settings(kafka_sasl_password=SECRET)
    assert SECRET not in repr(settings)


def test_client_config_is_the_one_translation_to_kafka_python() -> None:
    assert KafkaSecurity().client_config() == {"security_protocol": "PLAINTEXT"}
    # (passwords given to client_config are masked in every later log line of the process:
    # no one-letter ones here)
    password = "pw-of-the-config-test"
    sasl = KafkaSecurity(
        "SASL_PLAINTEXT", mechanism="SCRAM-SHA-256", username="u", password=password
    )
    assert sasl.client_config() == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "u",
        "sasl_plain_password": password,
    }
    tls = KafkaSecurity("SASL_SSL", mechanism="PLAIN", username="u", password=password)
    config = tls.client_config(timeout=3)
    context = config.pop("ssl_context")
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert tls.client_config(timeout=3)["ssl_context"] is context  # shared per timeout
    assert config["security_protocol"] == "SASL_SSL"


def test_secrets_are_masked_in_kafka_and_jobtrail_log_records(
    caplog: pytest.LogCaptureFixture,
) -> None:
    security = KafkaSecurity("SASL_PLAINTEXT", mechanism="PLAIN", username="u", password=SECRET)
    config = security.client_config()  # registers the password
    with caplog.at_level(logging.DEBUG, "kafka"), caplog.at_level(logging.DEBUG, "jobtrail"):
        logging.getLogger("kafka.admin.client").debug("Starting with configuration: %s", config)
        logging.getLogger("kafka.protocol.parser").debug("Send: %r", SECRET.encode())
        logging.getLogger("jobtrail.x").warning("a %s in a message", SECRET)
        try:
            raise ValueError(f"bad {SECRET}")
        except ValueError:
            logging.getLogger("kafka.net").exception("failed")
    text = caplog.text
    assert SECRET not in text
    assert repr(SECRET)[1:-1] not in text and repr(SECRET.encode())[2:-1] not in text
    assert "'sasl_plain_password': '***'" in text and "Send: b'***'" in text
    assert "ValueError: bad ***" in text
    assert redacted(f"x{SECRET}y") == "x***y"


@pytest.mark.parametrize(
    ("content", "password"),
    [(b"pw\n", "pw"), (b"pw\r\n", "pw"), (b"p w \n\n", "p w \n"), (b"\xc3\xa9", "\u00e9")],
)
def test_a_password_file_is_read_less_its_last_newline(
    tmp_path: Path, content: bytes, password: str
) -> None:
    path = tmp_path / "password"
    path.write_bytes(content)
    assert read_secret_file(str(path)) == password


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\n", "is empty"),
        (b"\xffsecret-bytes", "is not UTF-8 text"),
        (None, "cannot read the SASL password file"),
    ],
)
def test_an_unusable_password_file_is_named_never_shown(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "password"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(KafkaSecurityInvalid) as raised:
        read_secret_file(str(path))
    assert message in str(raised.value) and str(path) in str(raised.value)
    assert "secret-bytes" not in str(raised.value) and "\\xff" not in str(raised.value)


def test_empty_variables_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in config.KAFKA_SECURITY_VARIABLES:
        monkeypatch.setenv(variable, "")
    assert KafkaSecurity.from_env() == KafkaSecurity()
    assert Settings.from_env().kafka_security_protocol == "PLAINTEXT"


def test_scram_server_errors_are_read() -> None:
    assert _scram_server_error(b"e=unknown-user") == "no such user (SCRAM: unknown-user)"
    assert _scram_server_error(b"e=invalid-proof") == "wrong password (SCRAM: invalid-proof)"
    assert _scram_server_error(b"e=other-error,x=1") == "SCRAM: other-error"
    assert _scram_server_error(b"v=c2lnbmF0dXJl") is None


def test_a_tls_handshake_gives_up_after_its_timeout() -> None:
    """kafka-python waits for a handshake's answer forever; the context's sockets do not."""
    context = KafkaSecurity("SSL").ssl_context_for(0.3)
    assert context is not None
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())  # accepted, never answered
        started = time.monotonic()
        with pytest.raises(OSError), client:
            context.wrap_socket(client, server_hostname="127.0.0.1")
    assert time.monotonic() - started < 5
