"""Why a TLS or SASL connection to the broker failed: one probe, step by step.

kafka-python 3.0.12 does not say. A client whose TLS handshake or SASL exchange fails during
its bootstrap retries until ``bootstrap_timeout_ms`` and raises ``KafkaTimeoutError("Unable to
bootstrap from …")``; the cause goes to its log only. Measured:

- an untrusted certificate: ``KafkaConnectionError("Handshake failed: [SSL:
  CERTIFICATE_VERIFY_FAILED] …")``, retried;
- SCRAM against Tansu 0.6.0 with an unknown user or a wrong password: Tansu answers the final
  step with ``e=unknown-user`` / ``e=invalid-proof`` (RFC 5802's server-error) and error code
  0, which kafka-python's SCRAM client does not read (``KeyError: 'v'``), retried;
- a mechanism Tansu does not offer (PLAIN): Tansu closes the connection, retried;
- Apache Kafka answers wrong credentials with ``SASL_AUTHENTICATION_FAILED``, which
  kafka-python raises during the bootstrap too, retried the same way.

So after such a timeout, with TLS or SASL configured, `errors.translated` calls `diagnose`:
one connection to the first bootstrap address that accepts one, with the client's own TLS
context and kafka-python's own SASL mechanisms and request classes, checked step by step
(TCP, TLS handshake, SASL handshake, SASL exchange, then one request). The first step that
fails is the answer. A broker that cannot be reached, or a probe that finds nothing wrong,
gives None: the caller's `BrokerUnavailable` stands.

It answers with a `Finding` (`errors.broker_error` makes the error of it, so this module
needs no import of `errors`): rejected credentials (``credentials``: a
`BrokerAuthenticationFailed`), an untrusted certificate (``untrusted``: `BrokerUntrusted`), a
TLS handshake or SASL mechanism the broker refuses (``refused``: `BrokerSecurityError`) -
none of which retrying can fix - or a broker that accepts the connection but never answers
the handshake (``unavailable``: a `BrokerUnavailable` that says so; a paused broker looks the
same as a listener that does not speak TLS).
"""

from __future__ import annotations

import socket
import ssl
import struct
from dataclasses import dataclass
from typing import Any, Literal

from jobtrail.adapters.config import (
    KAFKA_SASL_MECHANISM_VAR,
    KAFKA_SECURITY_PROTOCOL_VAR,
    KAFKA_SSL_CERTFILE_VAR,
)
from jobtrail.adapters.kafka.security import KafkaSecurity, redacted

CLIENT_ID = "jobtrail-diagnosis"
_REJECTED_CLIENT_CERTIFICATE = (
    "CERTIFICATE_REQUIRED",
    "BAD_CERTIFICATE",
    "UNKNOWN_CA",
    "CERTIFICATE_UNKNOWN",
    "CERTIFICATE_EXPIRED",
    "CERTIFICATE_REVOKED",
    "UNSUPPORTED_CERTIFICATE",
    "ACCESS_DENIED",
)


@dataclass(frozen=True)
class Finding:
    """What went wrong: `kind` says which error it is (see the module docstring)."""

    kind: Literal["credentials", "untrusted", "refused", "unavailable"]
    reason: str


class _Closed(Exception):
    """The broker closed the connection."""


def diagnose(bootstrap: str, security: KafkaSecurity, timeout: float) -> Finding | None:
    """Why `security` does not get a connection to `bootstrap`, or None if that is not it."""
    for address in bootstrap.split(","):
        host, _, port = address.strip().rpartition(":")
        host = host.strip("[]")
        try:
            sock = socket.create_connection((host, int(port)), timeout=timeout)
        except (OSError, ValueError):
            continue  # unreachable: the caller's BrokerUnavailable says so
        with sock:
            return _Probe(host, security, timeout).run(sock)
    return None


class _Probe:
    def __init__(self, host: str, security: KafkaSecurity, timeout: float):
        self.host, self.security, self.timeout = host, security, timeout
        self._correlation_id = 0

    def run(self, sock: socket.socket) -> Finding | None:
        if not self.security.uses_tls:
            return self._after_tls(sock)
        found = self._tls(sock)
        if isinstance(found, Finding):
            return found
        with found:
            return self._after_tls(found)

    def _after_tls(self, stream: socket.socket) -> Finding | None:
        try:
            if self.security.uses_sasl:
                failed = self._sasl(stream)
                if failed is not None:
                    return failed
            return self._serves(stream)
        except ssl.SSLEOFError:
            return self._closed_after_handshake()
        except ssl.SSLError as error:  # after the handshake: TLS 1.3 rejects client certs late
            return self._tls_refused(error)
        except (TimeoutError, _Closed, OSError):
            return None  # nothing definite: the caller's BrokerUnavailable stands

    # --------------------------------------------------------------------- TLS

    def _tls(self, sock: socket.socket) -> ssl.SSLSocket | Finding:
        context = self.security.ssl_context
        assert context is not None
        try:
            return context.wrap_socket(sock, server_hostname=self.host)
        except ssl.SSLCertVerificationError as error:
            return self._untrusted(error)
        except ssl.SSLEOFError:
            return self._refused(
                "it closed the connection during the TLS handshake: is it a TLS listener? "
                f"({KAFKA_SECURITY_PROTOCOL_VAR} is {self.security.protocol})"
            )
        except ssl.SSLError as error:
            return self._tls_refused(error)
        except TimeoutError:
            return Finding(
                "unavailable",
                f"no answer to the TLS handshake within {self.timeout:g} s (a listener that "
                f"does not speak TLS, or a broker that does not answer; "
                f"{KAFKA_SECURITY_PROTOCOL_VAR} is {self.security.protocol})",
            )
        except OSError as error:
            return self._refused(
                f"the connection failed during the TLS handshake ({_os_reason(error)}): is it "
                f"a TLS listener? ({KAFKA_SECURITY_PROTOCOL_VAR} is {self.security.protocol})"
            )

    def _untrusted(self, error: ssl.SSLCertVerificationError) -> Finding:
        detail = (error.verify_message or _ssl_reason(error)).rstrip(".")
        if "mismatch" in detail.lower():
            reason = f"its certificate is not valid for the host name {self.host}: {detail}"
        else:
            reason = (
                f"the broker's certificate is not trusted by {self.security.ca_description}: "
                f"{detail}"
            )
        return Finding("untrusted", reason)

    def _tls_refused(self, error: ssl.SSLError) -> Finding:
        detail = _ssl_reason(error)
        if any(alert in detail.upper() for alert in _REJECTED_CLIENT_CERTIFICATE):
            if self.security.cert_file is None:
                hint = f"it requires a client certificate ({KAFKA_SSL_CERTFILE_VAR})"
            else:
                hint = f"it does not accept the client certificate {self.security.cert_file}"
            return self._refused(f"{hint} (TLS alert: {detail})")
        return self._refused(f"the TLS handshake failed: {detail}")

    # -------------------------------------------------------------------- SASL

    def _sasl(self, stream: socket.socket) -> Finding | None:
        from kafka.errors import for_code
        from kafka.net.sasl import get_sasl_mechanism
        from kafka.protocol.sasl import (
            SaslAuthenticateRequest,
            SaslAuthenticateResponse,
            SaslHandshakeRequest,
            SaslHandshakeResponse,
        )

        security = self.security
        mechanism_name = security.mechanism
        try:
            handshake: Any = self._exchange(
                stream,
                SaslHandshakeRequest(mechanism=mechanism_name, version=1),
                SaslHandshakeResponse,
                1,
            )
        except _Closed:
            return self._refused(
                f"it closed the connection when asked for SASL {mechanism_name}: the broker "
                f"does not offer that mechanism, or this listener does not use SASL "
                f"({KAFKA_SASL_MECHANISM_VAR}, {KAFKA_SECURITY_PROTOCOL_VAR})"
            )
        if handshake.error_code != 0:
            offered = ", ".join(handshake.mechanisms or []) or "none"
            return self._refused(
                f"it does not offer SASL {mechanism_name} (it offers: {offered}; "
                f"{KAFKA_SASL_MECHANISM_VAR}) - {for_code(handshake.error_code).__name__}"
            )
        mechanism = get_sasl_mechanism(mechanism_name)(host=self.host, **security.client_config())
        who = f"user {security.username!r} (SASL {mechanism_name})"
        while not mechanism.is_done():
            try:
                answer: Any = self._exchange(
                    stream,
                    SaslAuthenticateRequest(auth_bytes=mechanism.auth_bytes(), version=1),
                    SaslAuthenticateResponse,
                    1,
                )
            except _Closed:
                return self._rejected(f"{who}: the broker closed the connection")
            if answer.error_code != 0:
                message = answer.error_message or for_code(answer.error_code).__name__
                return self._rejected(f"{who}: {message}")
            server_error = _scram_server_error(answer.auth_bytes)
            if server_error is not None:
                return self._rejected(f"{who}: {server_error}")
            try:
                mechanism.receive(answer.auth_bytes)
            except Exception as error:
                return self._rejected(f"{who}: {type(error).__name__}: {error}")
        if not mechanism.is_authenticated():
            return self._rejected(f"{who}: not authenticated")
        return None

    def _rejected(self, reason: str) -> Finding:
        return Finding("credentials", redacted(reason))

    # ---------------------------------------------------------- after security

    def _serves(self, stream: socket.socket) -> Finding | None:
        """One metadata request: a broker that closes the connection here wants SASL."""
        from kafka.protocol.metadata import MetadataRequest

        try:
            self._request(stream, MetadataRequest(topics=[], version=1))
        except _Closed:
            return None if self.security.uses_sasl else self._closed_after_handshake()
        return None

    def _closed_after_handshake(self) -> Finding:
        return self._refused(
            "it closed the connection at the first request after the TLS handshake: it may "
            f"require SASL ({KAFKA_SECURITY_PROTOCOL_VAR}=SASL_SSL) or a client "
            f"certificate ({KAFKA_SSL_CERTFILE_VAR})"
        )

    # ---------------------------------------------------------------- protocol

    def _refused(self, reason: str) -> Finding:
        return Finding("refused", redacted(reason))

    def _exchange(self, stream: socket.socket, request: Any, response: Any, version: int) -> Any:
        payload = self._request(stream, request)
        return response.decode(payload, version=version, header=True)

    def _request(self, stream: socket.socket, request: Any) -> bytes:
        self._correlation_id += 1
        request.with_header(correlation_id=self._correlation_id, client_id=CLIENT_ID)
        stream.sendall(bytes(request.encode(header=True, framed=True)))
        (size,) = struct.unpack(">i", _read(stream, 4))
        return _read(stream, size)


def _read(stream: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left > 0:
        chunk = stream.recv(min(left, 65536))
        if not chunk:
            raise _Closed()
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _scram_server_error(auth_bytes: bytes | None) -> str | None:
    """RFC 5802's server-error (``e=…``) in a SCRAM server message, as a reason."""
    if not auth_bytes or not auth_bytes.startswith(b"e="):
        return None
    value = auth_bytes[2:].split(b",", 1)[0].decode("utf-8", "replace")
    meaning = {
        "unknown-user": "no such user",
        "invalid-proof": "wrong password",
        "invalid-encoding": "credentials the broker cannot decode",
    }.get(value)
    return f"{meaning} (SCRAM: {value})" if meaning else f"SCRAM: {value}"


def _ssl_reason(error: ssl.SSLError) -> str:
    return str(error.reason or error.strerror or error).strip()


def _os_reason(error: OSError) -> str:
    return error.strerror or type(error).__name__
