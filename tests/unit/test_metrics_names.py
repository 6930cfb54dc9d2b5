"""Metric names and labels follow Prometheus conventions, label sets stay bounded, and the
Prometheus configuration of docker-compose names what the compose file runs."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from jobtrail.adapters.metrics.exporter import Snapshot, bounded_types, families
from jobtrail.adapters.metrics.worker import MAX_LABEL_SETS, OTHER, WorkerMetrics
from jobtrail.domain.errors import InsufficientCredits, UpstreamTimeout
from jobtrail.domain.job import Job
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
SNAKE = re.compile(r"jobtrail_[a-z][a-z0-9_]*")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def feed(metrics: WorkerMetrics, jobs: int, job_type: str | None = None) -> None:
    """``jobs`` synthetic jobs, each with its own id, through every observer call."""
    for n in range(jobs):
        kind = job_type or f"type-{n}"
        job = Job(
            str(uuid.uuid4()),
            job_type=kind,
            available_at=T0,
            started_at=T0 + timedelta(milliseconds=n % 50),
        )
        metrics.started(job)
        if n % 3 == 0:
            metrics.completed(kind, 0.01)
        elif n % 3 == 1:
            metrics.failed(
                kind, UpstreamTimeout("x"), retried=True, run_seconds=0.01, committed_after=0.002
            )
        else:
            metrics.failed(
                kind,
                InsufficientCredits("x"),
                retried=False,
                run_seconds=0.01,
                committed_after=0.002,
            )
        refused = Job(str(uuid.uuid4()), job_type=kind)
        refused.error_code, refused.error_category = "unknown_job_type", "system"
        metrics.refused(refused)


def label_sets(metrics: WorkerMetrics) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    return {
        (sample.name, tuple(sorted(sample.labels.items())))
        for family in metrics.registry.collect()
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def test_ten_thousand_job_ids_add_no_label_set() -> None:
    few, many = WorkerMetrics(), WorkerMetrics()
    feed(few, 10, "render")
    feed(many, 10_000, "render")
    assert label_sets(many) == label_sets(few)
    for _, labels in label_sets(many):
        assert "job_id" not in dict(labels)


def test_ten_thousand_job_types_are_capped() -> None:
    metrics = WorkerMetrics(limit=100)
    feed(metrics, 10_000)
    started = [labels for name, labels in label_sets(metrics) if name.startswith("jobtrail_jobs_s")]
    assert len(started) == 100 + 1  # 100 types, then `other`
    assert (("job_type", OTHER),) in started
    text = generate_latest(metrics.registry).decode()
    total = {
        s.name: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.labels.get("job_type") == OTHER
    }
    assert total["jobtrail_jobs_started_total"] == 10_000 - 100  # nothing is lost
    assert MAX_LABEL_SETS >= 100


def test_the_exporter_folds_job_types_beyond_the_limit() -> None:
    jobs = {("queued", f"t{n}"): n + 1 for n in range(10)}
    folded = bounded_types(jobs, 4)
    assert {job_type for _, job_type in folded} == {"t9", "t8", "t7", OTHER}
    assert sum(folded.values()) == sum(jobs.values())


def all_families() -> list[Any]:
    metrics = WorkerMetrics()
    feed(metrics, 3, "render")
    snapshot = Snapshot(jobs={("queued", "render"): 2}, head=5, relays={"job-events": 4})
    return [*metrics.registry.collect(), *families(snapshot)]


@pytest.mark.parametrize("family", all_families(), ids=lambda f: f.name)
def test_names_and_labels_follow_prometheus_conventions(family: Any) -> None:
    assert SNAKE.fullmatch(family.name), family.name
    assert family.documentation
    if family.type == "counter":
        assert {s.name for s in family.samples} <= {
            f"{family.name}_total",
            f"{family.name}_created",
        }
    if family.type == "histogram":
        assert family.name.endswith("_seconds")
    for sample in family.samples:
        for label in sample.labels:
            assert re.fullmatch(r"[a-z][a-z_]*", label) and label != "job_id", label


def test_the_counters_are_the_issues_names() -> None:
    names = {family.name for family in WorkerMetrics().registry.collect()}
    assert {
        "jobtrail_jobs_started",
        "jobtrail_jobs_completed",
        "jobtrail_jobs_failed",
        "jobtrail_jobs_retried",
        "jobtrail_job_run_seconds",
        "jobtrail_job_queue_wait_seconds",
        "jobtrail_job_failure_latency_seconds",
    } == names


# ---------------------------------------------------------------------- deployment


def test_prometheus_scrapes_the_services_that_serve_metrics() -> None:
    yaml = pytest.importorskip("yaml")
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    services = compose["services"]
    mounted = services["prometheus"]["volumes"][0].split(":")[0]
    assert (ROOT / mounted).resolve() == (ROOT / "deploy" / "prometheus.yml").resolve()
    for job in config["scrape_configs"]:
        for target in scrape_targets(job):
            host, port = target.rsplit(":", 1)
            command = services[host]["command"]
            assert port_of(command) == int(port), f"{host} serves no metrics on {port}"
            assert command[command.index("--metrics-host" if host != "metrics" else "--host") + 1]
    scraped = {t.rsplit(":", 1)[0] for j in config["scrape_configs"] for t in scrape_targets(j)}
    assert {"worker", "relay", "metrics"} <= scraped


def scrape_targets(job: dict[str, Any]) -> list[str]:
    targets = [t for static in job.get("static_configs", []) for t in static["targets"]]
    for dns in job.get("dns_sd_configs", []):
        targets += [f"{name}:{dns['port']}" for name in dns["names"]]
    return targets


def port_of(command: list[str]) -> int:
    option = "--port" if command[0] == "metrics" else "--metrics-port"
    return int(command[command.index(option) + 1])
