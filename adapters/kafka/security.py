"""Kafka over TLS and SASL: one settings object, turned into kafka-python's arguments here only.

`KafkaSecurity` is what the relay (`KafkaSettings.security`), `JobEventConsumer(security=…)`,
`jobtrail consume` and `jobtrail replay --source kafka` connect with. The CLI reads it from the
environment (`KafkaSecurity.from_env()`, the ``JOBTRAIL_KAFKA_SECURITY_PROTOCOL``,
``JOBTRAIL_KAFKA_SSL_*`` and ``JOBTRAIL_KAFKA_SASL_*`` variables of docs/configuration.md):
secrets never go on a command line. The default is PLAINTEXT, so code that passes nothing keeps
connecting as before.

Everything is checked when the object is built, before any connection: an unknown protocol or
mechanism, SASL without a mechanism or credentials, SASL or TLS settings that the protocol
would ignore, a CA file, client certificate or key that cannot be read or loaded (the TLS
context is built here, so a key that does not match its certificate is found now). Each is one
`KafkaSecurityInvalid` naming the variable to fix.

Secrets stay out of reprs (the password is masked) and out of log lines: kafka-python logs its
whole configuration at DEBUG when a client starts, and the PLAIN exchange's bytes, so every
password handed to kafka-python is registered with `redact_in_logs`, which masks it in the
records of the ``kafka`` and ``jobtrail`` loggers before any handler sees them.

About 450 lines, one piece on purpose: the settings, their checks, the TLS context they
build (with its bounded handshake) and the log redaction of the secrets they hold change
together; split, a secret could reach a module that does not know to mask it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import ssl
import threading
import traceback
from dataclasses import dataclass, fields
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobtrail.adapters.config import (
    DEFAULT_KAFKA_SECURITY_PROTOCOL,
    KAFKA_SASL_MECHANISM_VAR,
    KAFKA_SASL_PASSWORD_FILE_VAR,
    KAFKA_SASL_PASSWORD_VAR,
    KAFKA_SASL_USERNAME_VAR,
    KAFKA_SECURITY_PROTOCOL_VAR,
    KAFKA_SSL_CAFILE_VAR,
    KAFKA_SSL_CERTFILE_VAR,
    KAFKA_SSL_KEYFILE_VAR,
    Settings,
)
from jobtrail.domain.errors import JobtrailError

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
MASK = "***"
_PASSWORD_VARS = f"{KAFKA_SASL_PASSWORD_VAR} or {KAFKA_SASL_PASSWORD_FILE_VAR}"


class KafkaSecurityInvalid(JobtrailError):
    """Invalid Kafka security settings: {reason}."""


@dataclass(frozen=True, repr=False)
class KafkaSecurity:
    """How to reach the broker: the security protocol, TLS files and SASL credentials.

    `protocol` is one of `PROTOCOLS` (case does not matter). TLS (``SSL``, ``SASL_SSL``)
    verifies the broker's certificate against `ca_file` (default: the system's CA
    certificates) and its host name; `cert_file` and `key_file` are the client's certificate
    and unencrypted key, for brokers that require mutual TLS (`key_file` may be left out when
    `cert_file` holds both). SASL (``SASL_PLAINTEXT``, ``SASL_SSL``) needs `mechanism` (one of
    `MECHANISMS`), `username` and `password`.
    """

    protocol: str = DEFAULT_KAFKA_SECURITY_PROTOCOL
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    mechanism: str | None = None
    username: str | None = None
    password: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "protocol", (self.protocol or "").strip().upper())
        if self.mechanism is not None:
            object.__setattr__(self, "mechanism", self.mechanism.strip().upper())
        self._check()
        if self.uses_tls:
            self.ssl_context  # noqa: B018 - built now: unreadable files fail before connecting
        if self.mechanism == "PLAIN" and not self.uses_tls:
            log.warning(
                "SASL PLAIN over SASL_PLAINTEXT sends the password unencrypted; "
                "use SASL_SSL outside a trusted network"
            )

    # ------------------------------------------------------------- from settings

    @classmethod
    def from_env(cls) -> KafkaSecurity:
        """The settings of the ``JOBTRAIL_KAFKA_*`` variables (PLAINTEXT when none is set)."""
        return cls.from_settings(Settings.from_env())

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaSecurity:
        password = settings.kafka_sasl_password
        if settings.kafka_sasl_password_file is not None:
            if password is not None:
                raise KafkaSecurityInvalid(
                    reason=f"set {KAFKA_SASL_PASSWORD_VAR} or {KAFKA_SASL_PASSWORD_FILE_VAR}, "
                    "not both"
                )
            password = read_secret_file(settings.kafka_sasl_password_file)
        return cls(
            protocol=settings.kafka_security_protocol,
            ca_file=settings.kafka_ssl_cafile,
            cert_file=settings.kafka_ssl_certfile,
            key_file=settings.kafka_ssl_keyfile,
            mechanism=settings.kafka_sasl_mechanism,
            username=settings.kafka_sasl_username,
            password=password,
        )

    # -------------------------------------------------------------------- reading

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    @property
    def ca_description(self) -> str:
        """Where the broker's certificate must chain to, for messages."""
        if self.ca_file is None:
            return f"the system's CA certificates (set {KAFKA_SSL_CAFILE_VAR} to the broker's CA)"
        return f"the CA file {self.ca_file} ({KAFKA_SSL_CAFILE_VAR})"

    @cached_property
    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context (None without TLS), with the default handshake timeout."""
        return self.ssl_context_for(DEFAULT_HANDSHAKE_TIMEOUT)

    def ssl_context_for(self, handshake_timeout: float) -> ssl.SSLContext | None:
        """A TLS context that verifies the broker's certificate and host name (TLS 1.2 or
        later, with the client certificate if any) and gives up on a TLS handshake after
        `handshake_timeout` seconds (None without TLS). One per timeout, shared by clients."""
        if not self.uses_tls:
            return None
        return _context(self, handshake_timeout)

    def client_config(self, timeout: float | None = None) -> dict[str, Any]:
        """kafka-python's keyword arguments (KafkaProducer, KafkaConsumer, KafkaAdminClient).

        The one place these settings become kafka-python's: ``security_protocol``, the
        ``ssl_context`` (which makes kafka-python ignore its own ``ssl_*`` options; its TLS
        handshakes give up after `timeout` seconds, default `DEFAULT_HANDSHAKE_TIMEOUT`), and
        the ``sasl_*`` credentials (the password is registered with `redact_in_logs` first).
        """
        config: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_tls:
            config["ssl_context"] = self.ssl_context_for(timeout or DEFAULT_HANDSHAKE_TIMEOUT)
        if self.uses_sasl:
            assert self.password is not None  # _check
            redact_in_logs(self.password)
            config["sasl_mechanism"] = self.mechanism
            config["sasl_plain_username"] = self.username
            config["sasl_plain_password"] = self.password
        return config

    def _build_context(self, handshake_timeout: float) -> ssl.SSLContext:
        context = _BoundedContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies certificate and host name
        context.handshake_timeout = handshake_timeout
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.ca_file is None:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        else:
            _readable(self.ca_file, KAFKA_SSL_CAFILE_VAR, "CA file")
            try:
                context.load_verify_locations(cafile=self.ca_file)
            except ssl.SSLError as error:
                raise KafkaSecurityInvalid(
                    reason=f"the CA file {self.ca_file} ({KAFKA_SSL_CAFILE_VAR}) holds no PEM "
                    f"certificate ({_ssl_reason(error)})"
                ) from None
        if self.cert_file is not None:
            self._load_client_certificate(context, self.cert_file)
        return context

    def __repr__(self) -> str:
        shown = []
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name == "password" and value is not None:
                shown.append(f"password={MASK!r}")
            else:
                shown.append(f"{field.name}={value!r}")
        return f"KafkaSecurity({', '.join(shown)})"

    __str__ = __repr__

    # ------------------------------------------------------------------- checking

    def _check(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise KafkaSecurityInvalid(
                reason=f"the security protocol {self.protocol!r} is not one of "
                f"{', '.join(PROTOCOLS)} ({KAFKA_SECURITY_PROTOCOL_VAR})"
            )
        if self.mechanism is not None and self.mechanism not in MECHANISMS:
            raise KafkaSecurityInvalid(
                reason=f"the SASL mechanism {self.mechanism!r} is not one of "
                f"{', '.join(MECHANISMS)} ({KAFKA_SASL_MECHANISM_VAR})"
            )
        sasl_set = [
            variable
            for variable, value in (
                (KAFKA_SASL_MECHANISM_VAR, self.mechanism),
                (KAFKA_SASL_USERNAME_VAR, self.username),
                (f"{KAFKA_SASL_PASSWORD_VAR}(_FILE)", self.password),
            )
            if value is not None
        ]
        if sasl_set and not self.uses_sasl:
            raise KafkaSecurityInvalid(
                reason=f"SASL is configured ({', '.join(sasl_set)}) but the security protocol "
                f"{self.protocol} does not use it: set {KAFKA_SECURITY_PROTOCOL_VAR} to "
                "SASL_SSL or SASL_PLAINTEXT"
            )
        tls_set = [
            variable
            for variable, value in (
                (KAFKA_SSL_CAFILE_VAR, self.ca_file),
                (KAFKA_SSL_CERTFILE_VAR, self.cert_file),
                (KAFKA_SSL_KEYFILE_VAR, self.key_file),
            )
            if value is not None
        ]
        if tls_set and not self.uses_tls:
            raise KafkaSecurityInvalid(
                reason=f"TLS files are set ({', '.join(tls_set)}) but the security protocol "
                f"{self.protocol} does not use TLS: set {KAFKA_SECURITY_PROTOCOL_VAR} to "
                "SSL or SASL_SSL"
            )
        if self.key_file is not None and self.cert_file is None:
            raise KafkaSecurityInvalid(
                reason=f"a client key ({KAFKA_SSL_KEYFILE_VAR}) needs its certificate "
                f"({KAFKA_SSL_CERTFILE_VAR})"
            )
        if self.uses_sasl:
            if self.mechanism is None:
                raise KafkaSecurityInvalid(
                    reason=f"{self.protocol} needs a SASL mechanism, one of "
                    f"{', '.join(MECHANISMS)} ({KAFKA_SASL_MECHANISM_VAR})"
                )
            if not self.username:
                raise KafkaSecurityInvalid(
                    reason=f"SASL {self.mechanism} needs a username ({KAFKA_SASL_USERNAME_VAR})"
                )
            if not self.password:
                raise KafkaSecurityInvalid(
                    reason=f"SASL {self.mechanism} needs a password ({_PASSWORD_VARS})"
                )

    def _load_client_certificate(self, context: ssl.SSLContext, cert_file: str) -> None:
        _readable(cert_file, KAFKA_SSL_CERTFILE_VAR, "client certificate")
        if self.key_file is not None:
            _readable(self.key_file, KAFKA_SSL_KEYFILE_VAR, "client key")
        key = self.key_file or cert_file

        def encrypted() -> str:  # OpenSSL would otherwise prompt on the terminal
            raise KafkaSecurityInvalid(
                reason=f"the client key {key} is encrypted: give jobtrail an unencrypted key "
                f"(e.g. openssl pkey -in {key} -out plain.key) readable by its user only"
            )

        try:
            context.load_cert_chain(cert_file, self.key_file, password=encrypted)
        except ssl.SSLError as error:
            if "KEY_VALUES_MISMATCH" in str(error):
                reason = f"the client key {key} does not belong to the certificate {cert_file}"
            else:
                reason = (
                    f"cannot load the client certificate {cert_file} ({KAFKA_SSL_CERTFILE_VAR}) "
                    f"with the key {key}: {_ssl_reason(error)}"
                )
            raise KafkaSecurityInvalid(reason=reason) from None


DEFAULT_HANDSHAKE_TIMEOUT = 10.0
"""Seconds a TLS handshake may take when the client gives no timeout of its own."""


class _BoundedSocket(ssl.SSLSocket):
    """An SSLSocket whose handshake gives up after its context's `handshake_timeout`.

    kafka-python 3.0.12 waits for a TLS handshake's answer forever (measured: a TLS client
    against a plaintext Tansu listener, which waits for more bytes of what it takes for a
    request, hung `KafkaConsumer()` past its ``bootstrap_timeout_ms``: the bootstrap deadline
    is only checked between attempts). When the time is up the TCP connection is shut down
    underneath the TLS layer, so the handshake fails with an EOF, kafka-python counts the
    attempt as failed, and its bootstrap ends in its usual timeout, which `errors.translated`
    diagnoses. (`SSLContext.sslsocket_class` is the documented way to return a subclass.)
    """

    _give_up_timer: threading.Timer | None = None

    def do_handshake(self, block: bool = False) -> None:
        if self._give_up_timer is None:
            timeout = getattr(self.context, "handshake_timeout", DEFAULT_HANDSHAKE_TIMEOUT)
            self._give_up_timer = threading.Timer(timeout, self._give_up)
            self._give_up_timer.daemon = True
            self._give_up_timer.start()
        try:
            super().do_handshake(block)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise  # in progress (a non-blocking socket): kafka-python calls again
        except BaseException:
            self._give_up_timer.cancel()
            raise
        self._give_up_timer.cancel()

    def _give_up(self) -> None:
        with contextlib.suppress(OSError):  # already closed: nothing to give up
            socket.socket.shutdown(self, socket.SHUT_RDWR)


class _BoundedContext(ssl.SSLContext):
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT
    sslsocket_class = _BoundedSocket


@lru_cache(maxsize=32)
def _context(security: KafkaSecurity, handshake_timeout: float) -> ssl.SSLContext:
    return security._build_context(handshake_timeout)


def read_secret_file(path: str) -> str:
    """A secret kept in a file (a Docker or Kubernetes secret): its text, less one final newline.

    Errors name the file, never its content.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise KafkaSecurityInvalid(
            reason=f"cannot read the SASL password file {path} ({KAFKA_SASL_PASSWORD_FILE_VAR}): "
            f"{error.strerror or type(error).__name__}"
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise KafkaSecurityInvalid(
            reason=f"the SASL password file {path} ({KAFKA_SASL_PASSWORD_FILE_VAR}) is not "
            "UTF-8 text"
        ) from None
    text = text.removesuffix("\n").removesuffix("\r")
    if not text:
        raise KafkaSecurityInvalid(
            reason=f"the SASL password file {path} ({KAFKA_SASL_PASSWORD_FILE_VAR}) is empty"
        )
    return text


def _readable(path: str, variable: str, what: str) -> None:
    if os.path.isdir(path):
        raise KafkaSecurityInvalid(reason=f"the {what} {path} ({variable}) is a directory")
    try:
        with open(path, "rb"):
            pass
    except OSError as error:
        raise KafkaSecurityInvalid(
            reason=f"cannot read the {what} {path} ({variable}): "
            f"{error.strerror or type(error).__name__}"
        ) from None


def _ssl_reason(error: ssl.SSLError) -> str:
    return str(error.reason or error.strerror or error).strip()


# ----------------------------------------------------------------- log redaction

_secret_forms: tuple[str, ...] = ()
"""Every registered secret as itself and as escaped in a repr, longest first. Replaced,
never changed in place: logging threads read it without the lock."""
_secrets_lock = threading.Lock()
_REDACTED_LOGGERS = ("kafka", "jobtrail")


def redact_in_logs(secret: str) -> None:
    """Mask `secret` in every later record of the ``kafka`` and ``jobtrail`` loggers.

    Installed once per process as a LogRecord factory (records are redacted when they are
    made, before any handler or formatter sees them), because kafka-python logs its
    configuration, passwords included, at DEBUG from dozens of loggers.
    """
    global _secret_forms
    with _secrets_lock:
        if not _secret_forms:
            _install_factory()
        forms = {secret, repr(secret)[1:-1], repr(secret.encode("utf-8"))[2:-1]}
        _secret_forms = tuple(sorted(set(_secret_forms) | forms, key=len, reverse=True))


def redacted(text: str) -> str:
    """`text` with every registered secret (as itself, or escaped as in a repr) masked."""
    for form in _secret_forms:
        text = text.replace(form, MASK)
    return text


def _install_factory() -> None:
    previous: Callable[..., logging.LogRecord] = logging.getLogRecordFactory()

    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if _secret_forms and record.name.startswith(_REDACTED_LOGGERS):
            try:
                _redact(record)
            except Exception:  # never break the caller's logging; never let a secret out
                record.msg, record.args = "(a log line withheld: it could not be redacted)", ()
                record.exc_info = record.exc_text = None
        return record

    logging.setLogRecordFactory(make_record)


def _redact(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a malformed record: logging reports it when it is handled
        return
    clean = redacted(message)
    if clean != message:
        record.msg, record.args = clean, ()
    if record.exc_info and record.exc_info[1] is not None:
        text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        clean = redacted(text)
        if clean != text:
            record.exc_info, record.exc_text = None, clean
