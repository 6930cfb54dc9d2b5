"""Prometheus metrics against the log and the tables, on SQLite and PostgreSQL.

The worker's counters are checked against the events a mixed run wrote (scraped over HTTP
and parsed with prometheus_client's own parser), the exporter's gauges against the `job`
table and its running jobs' leases, the relay's lag against `relay_position`; and the CLI
refuses a bad or busy metrics port in one line, before anything is done.
"""

from __future__ import annotations

import socket
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from jobtrail.adapters.bootstrap import Jobtrail, connect
from jobtrail.adapters.cli.main import main
from jobtrail.adapters.kafka.relay_position import SqlRelayPosition
from jobtrail.adapters.metrics.exporter import QueueCollector
from jobtrail.adapters.metrics.relay import RelayLagCollector
from jobtrail.adapters.metrics.server import serve
from jobtrail.adapters.metrics.worker import WorkerMetrics
from jobtrail.domain.retry import RetryPolicy
from jobtrail.processors.engine.worker import WorkerSettings
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

FAST = WorkerSettings(until_empty=True, poll_seconds=0.01, progress_seconds=0.05)
SHOT = "shot_video_generation"
ASSET = "asset_image_generation"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Every sample of an exposition, by name and sorted labels."""
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def by(found: Samples, name: str, *labels: str) -> Counter[tuple[str, ...]]:
    """The samples called ``name`` (non-zero), keyed by the values of ``labels``."""
    counts: Counter[tuple[str, ...]] = Counter()
    for (sample_name, pairs), value in found.items():
        if sample_name == name and value:
            values = dict(pairs)
            counts[tuple(values[label] for label in labels)] += int(value)
    return counts


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        body: bytes = response.read()
    return body.decode()


def from_the_log(trail: Jobtrail) -> dict[str, Counter[tuple[str, ...]]]:
    """What the counters and histogram counts must be, counted from the events."""
    job_type: dict[str, str] = {}
    expected: dict[str, Counter[tuple[str, ...]]] = {
        name: Counter() for name in ("started", "completed", "failed", "retried", "ran", "failure")
    }
    for event in trail.store.read_all():
        data = event.__dict__
        if event.type == "JobQueued":
            job_type[event.job_id] = data["job_type"]
            continue
        kind = job_type[event.job_id]
        if event.type == "JobStarted":
            expected["started"][(kind,)] += 1
        elif event.type == "JobCompleted":
            expected["completed"][(kind,)] += 1
            expected["ran"][(kind,)] += 1
        elif event.type in ("JobFailed", "JobRetryScheduled"):
            name = "failed" if event.type == "JobFailed" else "retried"
            expected[name][(kind, data["error_code"], data["error_category"])] += 1
            if data["attempt"] > 0:  # a processor ran (not an unknown type failed at claim)
                expected["ran"][(kind,)] += 1
                expected["failure"][(kind,)] += 1
    return expected


@pytest.fixture
def metrics_port() -> Iterator[tuple[WorkerMetrics, int]]:
    metrics = WorkerMetrics()
    server = serve(metrics.registry, 0)
    yield metrics, server.port
    server.stop()


def test_a_mixed_runs_counters_and_histograms_agree_with_the_log(
    trail: Jobtrail, metrics_port: tuple[WorkerMetrics, int]
) -> None:
    metrics, port = metrics_port
    trail.service.policy = RetryPolicy(base_delay=0.01, max_delay=0.01)
    for n in range(5):
        trail.submit(SHOT, {"duration_ms": 0, "n": n})
    trail.submit(ASSET, {"duration_ms": 0})
    trail.submit(SHOT, {"credits": 0})  # insufficient_credits, user, at once
    trail.submit(ASSET, {"crash": True})  # unexpected_error, system
    trail.submit(SHOT, {"fail_times": 1, "duration_ms": 0}, max_attempts=3)  # a retry, then done
    trail.submit(ASSET, {"fail_times": 5}, max_attempts=2)  # a retry, then failed for good
    trail.submit("no_such_type")  # unknown_job_type, failed at claim, never started

    stats = trail.worker(FAST, observer=metrics).run()
    found = samples(scrape(port))
    expected = from_the_log(trail)

    assert by(found, "jobtrail_jobs_started_total", "job_type") == expected["started"]
    assert by(found, "jobtrail_jobs_completed_total", "job_type") == expected["completed"]
    error_labels = ("job_type", "error_code", "category")
    assert by(found, "jobtrail_jobs_failed_total", *error_labels) == expected["failed"]
    assert by(found, "jobtrail_jobs_retried_total", *error_labels) == expected["retried"]
    assert by(found, "jobtrail_job_run_seconds_count", "job_type") == expected["ran"]
    assert by(found, "jobtrail_job_queue_wait_seconds_count", "job_type") == expected["started"]
    assert (
        by(found, "jobtrail_job_failure_latency_seconds_count", "job_type") == expected["failure"]
    )
    # the run was what it meant to be, and agrees with the worker's own stats
    assert expected["retried"] == {
        (SHOT, "upstream_timeout", "system"): 1,
        (ASSET, "upstream_timeout", "system"): 1,
    }
    assert expected["failed"] == {
        (SHOT, "insufficient_credits", "user"): 1,
        (ASSET, "unexpected_error", "system"): 1,
        (ASSET, "upstream_timeout", "system"): 1,
        ("no_such_type", "unknown_job_type", "system"): 1,
    }
    assert sum(expected["failed"].values()) == stats.failed
    assert sum(expected["retried"].values()) == stats.retried
    assert sum(expected["completed"].values()) == stats.completed == 7
    failure_sum = sum(by(found, "jobtrail_job_failure_latency_seconds_sum", "job_type").values())
    assert 0 <= failure_sum <= sum(stats.failure_latencies) + 1


def test_the_exporters_gauges_agree_with_the_tables(trail: Jobtrail) -> None:
    ids = [trail.submit(SHOT) for _ in range(4)] + [trail.submit(ASSET) for _ in range(3)]
    trail.submit(ASSET, delay=3600)  # queued but not due: not in the oldest age
    trail.service.start(ids[0], "w1", 5)  # expired at `now` below
    trail.service.start(ids[1], "w1", 30)  # expiring within the window
    trail.service.start(ids[4], "w2", 3600)  # neither
    trail.service.complete(ids[4], 1, {"ok": True})  # … and gone with its lease
    trail.service.start(ids[5], "w2", 3600)  # neither
    trail.cancel(ids[6])
    now = datetime.now(UTC) + timedelta(seconds=10)
    collector = QueueCollector(trail.engine, interval=0, lease_window=30, now=lambda: now)
    registry = CollectorRegistry()
    registry.register(collector)
    found = samples(generate_latest(registry).decode())

    rows = trail.jobs(limit=1000)
    table = Counter((row["status"], row["job_type"]) for row in rows)
    gauges = {
        (dict(labels)["status"], dict(labels)["job_type"]): value
        for (name, labels), value in found.items()
        if name == "jobtrail_jobs"
    }
    assert {key: value for key, value in gauges.items() if value} == table
    assert len(gauges) == 2 * 5  # every status of each type, zeros too
    due = [row["available_at"] for row in rows if row["status"] == "queued"]
    due = [at for at in due if at <= now]
    oldest = (now - min(due)).total_seconds()
    assert found[("jobtrail_oldest_queued_job_age_seconds", ())] == pytest.approx(oldest, abs=1e-3)
    assert found[("jobtrail_leases_expiring", ())] == 2
    assert found[("jobtrail_leases_expired", ())] == 1
    assert found[("jobtrail_exporter_up", ())] == 1


def test_the_relay_lag_is_the_log_after_the_acknowledged_position(trail: Jobtrail) -> None:
    for _ in range(5):
        trail.submit(SHOT)
    head = max(event.position or 0 for event in trail.store.read_all())
    positions = SqlRelayPosition(trail.engine, name="job-events")
    now = datetime.now(UTC)
    assert positions.acquire("relay-1", now, timedelta(seconds=10)) == 0
    positions.save("relay-1", head - 3, now, timedelta(seconds=10))
    for collector in (
        RelayLagCollector(trail.engine, "job-events"),
        QueueCollector(trail.engine, interval=0),
    ):
        registry = CollectorRegistry()
        registry.register(collector)
        found = samples(generate_latest(registry).decode())
        assert found[("jobtrail_relay_lag_events", (("relay", "job-events"),))] == 3
    positions.save("relay-1", head, now, timedelta(seconds=10))
    registry = CollectorRegistry()
    registry.register(RelayLagCollector(trail.engine, "job-events"))
    found = samples(generate_latest(registry).decode())
    assert found[("jobtrail_relay_lag_events", (("relay", "job-events"),))] == 0


def test_the_exporter_says_down_when_the_database_cannot_be_read(sqlite_url: str) -> None:
    trail = connect(sqlite_url)
    try:
        collector = QueueCollector(trail.engine, interval=0)
        registry = CollectorRegistry()
        registry.register(collector)
        assert samples(generate_latest(registry).decode())[("jobtrail_exporter_up", ())] == 1
        with trail.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE job")
        found = samples(generate_latest(registry).decode())
    finally:
        trail.close()
    assert found == {("jobtrail_exporter_up", ()): 0}


# ---------------------------------------------------------------------- the command line


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port something else listens on."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield int(taken.getsockname()[1])


def run(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> tuple[int, str, str]:
    try:
        code = main(["--db", url, *args])
    except SystemExit as exit:  # usage errors
        code = int(exit.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("port", ["0", "65536", "-1", "http", "9.5"])
@pytest.mark.parametrize("command", [["worker"], ["relay"], ["metrics", "--once"]])
def test_a_metrics_port_out_of_range_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], sqlite_url: str, command: list[str], port: str
) -> None:
    option = "--port" if command[0] == "metrics" else "--metrics-port"
    code, out, err = run(capsys, sqlite_url, *command, f"{option}={port}")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "must be a whole number from 1 to 65535" in err


def test_a_worker_whose_metrics_port_is_taken_claims_nothing(
    capsys: pytest.CaptureFixture[str], trail: Jobtrail, busy_port: int
) -> None:
    job_id = trail.submit(SHOT, {"duration_ms": 0})
    url = trail.engine.url.render_as_string(hide_password=False)
    code, out, err = run(capsys, url, "worker", "--until-empty", "--metrics-port", str(busy_port))
    assert code == 1 and out == ""
    assert err.strip().splitlines() == [
        f"jobtrail: error: Cannot serve metrics on 127.0.0.1:{busy_port}: Address already in use."
    ]
    assert trail.get(job_id)["status"] == "queued"
    assert [event.type for event in trail.history(job_id)] == ["JobQueued"]


def test_a_relay_whose_metrics_port_is_taken_publishes_nothing(
    capsys: pytest.CaptureFixture[str], sqlite_url: str, busy_port: int
) -> None:
    args = ["relay", "--kafka", "127.0.0.1:1", "--metrics-port", str(busy_port)]
    code, out, err = run(capsys, sqlite_url, *args)
    assert code == 1 and out == ""
    assert err.strip().splitlines() == [
        f"jobtrail: error: Cannot serve metrics on 127.0.0.1:{busy_port}: Address already in use."
    ]
    trail = connect(sqlite_url)
    try:
        with trail.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM relay_position").scalar_one() == 0
    finally:
        trail.close()


def test_the_exporter_on_a_taken_port_is_one_line(
    capsys: pytest.CaptureFixture[str], sqlite_url: str, busy_port: int
) -> None:
    code, out, err = run(capsys, sqlite_url, "metrics", "--port", str(busy_port))
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and f"127.0.0.1:{busy_port}" in err


def test_the_exporter_prints_its_gauges_once(
    capsys: pytest.CaptureFixture[str], sqlite_url: str
) -> None:
    trail = connect(sqlite_url)
    try:
        trail.submit(SHOT)
    finally:
        trail.close()
    code, out, _ = run(capsys, sqlite_url, "metrics", "--once")
    assert code == 0
    found = samples(out)
    assert found[("jobtrail_jobs", (("job_type", SHOT), ("status", "queued")))] == 1
    assert found[("jobtrail_exporter_up", ())] == 1
