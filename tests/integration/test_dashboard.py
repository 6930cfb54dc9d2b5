"""The dashboard (`jobtrail.adapters.web`) with Starlette's TestClient, on both backends.

A mixed batch is run by a worker first: completed jobs, a user failure (no credits), a system
failure (a crash), a job that fails once and then completes, and a queued job a test cancels.
What the pages show is checked against the log read through the API.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from jobtrail.adapters.bootstrap import Jobtrail
from jobtrail.adapters.cli.main import main
from jobtrail.adapters.web.app import create_app
from jobtrail.adapters.web.queries import percentile
from jobtrail.domain.events import TERMINAL_EVENT_TYPES, JobFailed
from jobtrail.domain.retry import RetryPolicy
from jobtrail.processors.engine.worker import WorkerSettings
from sqlalchemy import text

with warnings.catch_warnings():  # Starlette 1.x asks for httpx2; httpx works the same
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

TOKEN = "s3cret-token"
FAST = WorkerSettings(until_empty=True, poll_seconds=0.01, progress_seconds=0.05)


@dataclass
class Batch:
    trail: Jobtrail
    ids: dict[str, str]
    started: datetime
    finished: datetime


@pytest.fixture
def batch(trail: Jobtrail) -> Batch:
    trail.service.policy = RetryPolicy(base_delay=0)
    started = datetime.now(UTC)
    ids = {
        "ok": trail.submit("shot_video_generation", {"duration_ms": 5}),
        "ok_image": trail.submit("asset_image_generation", {"duration_ms": 5}, queue="images"),
        "no_credits": trail.submit("shot_video_generation", {"credits": 0}),
        "crash": trail.submit("asset_image_generation", {"crash": True}, queue="images"),
        "flaky": trail.submit("shot_video_generation", {"fail_times": 1, "duration_ms": 5}),
    }
    trail.worker(FAST).run()
    ids["waiting"] = trail.submit("shot_video_generation", {}, delay=3600)
    return Batch(trail, ids, started, datetime.now(UTC) + timedelta(seconds=1))


@pytest.fixture
def client(batch: Batch) -> Iterator[TestClient]:
    with TestClient(create_app(batch.trail), raise_server_exceptions=False) as c:
        yield c


def acting(trail: Jobtrail) -> TestClient:
    return TestClient(create_app(trail, allow_actions=True, token=TOKEN))


def job_ids(html: str) -> list[str]:
    return re.findall(r'<tr data-job="([0-9a-f-]{36})"', html)


def error_line(html: str) -> str:
    found = re.search(r'<p class="error"[^>]*>(.*?)</p>', html, re.S)
    assert found, html
    return found[1]


def test_the_jobs_table_newest_first_with_each_filter(client: TestClient, batch: Batch) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert job_ids(page.text) == list(reversed(batch.ids.values()))
    failed = job_ids(client.get("/jobs", params={"status": "failed"}).text)
    assert set(failed) == {batch.ids["no_credits"], batch.ids["crash"]}
    by_type = job_ids(client.get("/jobs", params={"type": "asset_image_generation"}).text)
    assert set(by_type) == {batch.ids["ok_image"], batch.ids["crash"]}
    assert job_ids(client.get("/jobs", params={"queue": "images", "status": "failed"}).text) == [
        batch.ids["crash"]
    ]
    by_code = client.get("/jobs", params={"code": "insufficient_credits"}).text
    assert job_ids(by_code) == [batch.ids["no_credits"]]
    before = {"until": (batch.started - timedelta(hours=1)).isoformat()}
    assert job_ids(client.get("/jobs", params=before).text) == []
    assert len(job_ids(client.get("/jobs", params={"since": batch.started.isoformat()}).text)) == 6
    assert f'href="/jobs/{batch.ids["ok"]}"' in page.text


def test_pages_follow_each_other_without_gaps_or_repeats(client: TestClient, batch: Batch) -> None:
    seen: list[str] = []
    url: str | None = "/jobs?limit=2"
    while url:
        html = client.get(url).text
        seen += job_ids(html)
        found = re.search(r'id="next" href="([^"]+)"', html)
        url = found[1].replace("&amp;", "&") if found else None
    assert seen == list(reversed(batch.ids.values()))


def test_header_shows_live_counts_and_relay_lag(client: TestClient, batch: Batch) -> None:
    with batch.trail.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO relay_position (name, position, updated_at) "
                "VALUES ('job-events', 3, CURRENT_TIMESTAMP)"
            )
        )
        last = conn.execute(text("SELECT MAX(position) FROM job_events")).scalar_one()
    html = client.get("/jobs").text
    assert '<b data-count="failed">2</b>' in html
    assert '<b data-count="completed">3</b>' in html
    assert '<b data-count="queued">1</b>' in html
    assert f'<b data-lag="job-events">{last - 3}</b>' in html
    assert client.get("/api/counts").json() == {
        "counts": {"completed": 3, "failed": 2, "queued": 1},
        "lag": [{"topic": "job-events", "behind": last - 3}],
    }


@pytest.mark.parametrize(
    ("path", "names"),
    [
        ("/jobs?status=bogus", "status"),
        ("/jobs?since=yesterday", "since"),
        ("/jobs?until=2026-13-01", "until"),
        ("/jobs?limit=0", "limit"),
        ("/jobs?limit=501", "limit"),
        ("/jobs?limit=ten", "limit"),
        ("/jobs?since=2026-01-02&until=2026-01-01", "until"),
        ("/jobs?type=" + "x" * 201, "type"),
        ("/jobs?before=2026-01-01T00:00:00Z&before_id=nope", "job id"),
        ("/jobs/not-a-job-id", "job id"),
        ("/charts/failures?bucket=0", "bucket"),
        ("/charts/failures?bucket=soon", "bucket"),
        ("/charts/failures?since=2000-01-01&bucket=1", "bucket"),
        ("/charts/latency?since=noon", "since"),
    ],
)
def test_bad_input_is_a_400_page_of_one_line(client: TestClient, path: str, names: str) -> None:
    response = client.get(path)
    assert response.status_code == 400
    line = error_line(response.text)
    assert line.startswith(f"400: {names}")
    assert "\n" not in line and "Traceback" not in response.text


def test_unknown_job_and_page_are_404_pages(client: TestClient) -> None:
    missing = client.get("/jobs/00000000-0000-4000-8000-000000000000")
    assert missing.status_code == 404
    assert "No job with id 00000000-0000-4000-8000-000000000000" in error_line(missing.text)
    assert client.get("/nowhere").status_code == 404
    assert "404" in error_line(client.get("/nowhere").text)


def test_a_job_page_shows_timeline_error_attempts_and_a_verified_chain(
    client: TestClient, batch: Batch
) -> None:
    job_id = batch.ids["no_credits"]
    html = client.get(f"/jobs/{job_id}").text
    events = batch.trail.history(job_id)
    timeline = re.findall(r'<tr data-version="(\d+)" data-type="(\w+)">', html)
    assert timeline == [(str(e.version), e.type) for e in events]
    assert '<span id="error-code">insufficient_credits</span>' in html
    assert "insufficient credits: 0 left, 1 needed" in html
    assert 'id="chain" class="verified" data-verified="true"' in html
    assert '<td class="actor">system</td>' in html
    flaky = client.get(f"/jobs/{batch.ids['flaky']}").text
    assert flaky.count('data-type="JobRetryScheduled"') == 1
    assert flaky.count('data-type="JobStarted"') == 2
    assert re.search(r"<td class=\"num\">2</td>.*?<td>JobCompleted</td>", flaky, re.S)
    assert '<pre id="result">' in flaky


def test_retry_links_point_both_ways(client: TestClient, batch: Batch) -> None:
    original = batch.ids["crash"]
    again = batch.trail.retry(original, reason="fixed")
    assert f'<a class="retry" href="/jobs/{again}">' in client.get(f"/jobs/{original}").text
    assert f'<a id="retry-of" href="/jobs/{original}">' in client.get(f"/jobs/{again}").text


def tamper(trail: Jobtrail, statement: str, **params: str) -> None:
    """Edit the log past its append-only triggers, as a superuser could
    (tests/integration/test_replay.py does the same)."""
    with trail.engine.begin() as conn:
        if trail.engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        else:
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS job_events_no_update")
        conn.execute(text(statement), params)
    trail.engine.dispose()


def test_a_tampered_job_shows_its_chain_broken(client: TestClient, batch: Batch) -> None:
    job_id = batch.ids["no_credits"]
    tamper(
        batch.trail,
        "UPDATE job_events SET metadata = :m WHERE job_id = :j AND version = 3",
        m='{"actor": "someone-else", "correlation_id": null, "hash_form": "jcs"}',
        j=job_id,
    )
    html = client.get(f"/jobs/{job_id}").text
    assert 'id="chain" class="broken" data-verified="false"' in html
    assert '<li data-kind="hash_mismatch">hash_mismatch at version 3' in html
    untouched = client.get(f"/jobs/{batch.ids['ok']}").text
    assert 'data-verified="true"' in untouched


def test_actions_are_refused_without_the_token(client: TestClient, batch: Batch) -> None:
    job_id = batch.ids["waiting"]
    read_only = client.post(f"/jobs/{job_id}/cancel", data={"token": TOKEN})
    assert read_only.status_code == 403
    assert "actions are off" in error_line(read_only.text)
    with acting(batch.trail) as c:
        assert c.post(f"/jobs/{job_id}/cancel").status_code == 403
        assert c.post(f"/jobs/{job_id}/cancel", data={"token": "wrong"}).status_code == 403
        bearer = {"Authorization": "Bearer wrong"}
        assert c.post(f"/jobs/{job_id}/retry", headers=bearer).status_code == 403
        assert c.get(f"/jobs/{job_id}/cancel").status_code == 405
    assert batch.trail.get(job_id)["status"] == "queued"
    assert "cancel-form" not in client.get(f"/jobs/{job_id}").text


def test_cancel_and_retry_with_the_token(batch: Batch) -> None:
    job_id = batch.ids["waiting"]
    with acting(batch.trail) as c:
        assert 'id="cancel-form"' in c.get(f"/jobs/{job_id}").text
        form = {"token": TOKEN, "actor": "ops-alice", "reason": "not needed"}
        done = c.post(f"/jobs/{job_id}/cancel", data=form, follow_redirects=False)
        assert (done.status_code, done.headers["location"]) == (303, f"/jobs/{job_id}")
        cancelled = batch.trail.history(job_id)[-1]
        assert (cancelled.type, cancelled.actor) == ("JobCancelled", "ops-alice")
        retried = c.post(
            f"/jobs/{batch.ids['crash']}/retry",
            headers={"Authorization": f"Bearer {TOKEN}"},
            follow_redirects=False,
        )
        assert retried.status_code == 303
        new_id = retried.headers["location"].rsplit("/", 1)[1]
        assert batch.trail.get(new_id)["retry_of"] == batch.ids["crash"]
        unfinished = c.post(f"/jobs/{new_id}/retry", data={"token": TOKEN})
        assert unfinished.status_code == 409


def bar_numbers(html: str) -> dict[str, int]:
    """The totals the SVG bars carry, summed over the buckets."""
    totals: Counter[str] = Counter()
    for bar in re.findall(r'<g class="bar" ([^>]*)>', html):
        attrs = dict(re.findall(r'data-(\w+)="([^"]*)"', bar))
        for key in ("finished", "failed", "user", "system"):
            totals[key] += int(attrs[key])
    return dict(totals)


def log_failures(trail: Jobtrail, ids: list[str]) -> dict[str, int]:
    """The same numbers read from the log through the API."""
    counts: Counter[str] = Counter()
    for job_id in ids:
        for event in trail.history(job_id):
            if event.type in TERMINAL_EVENT_TYPES:
                counts["finished"] += 1
            if isinstance(event, JobFailed):
                counts["failed"] += 1
                counts[str(event.error_category)] += 1
    return dict(counts)


def test_the_failure_chart_draws_the_log(client: TestClient, batch: Batch) -> None:
    window = {"since": batch.started.isoformat(), "until": batch.finished.isoformat()}
    html = client.get("/charts/failures", params={**window, "bucket": "1s"}).text
    expected = log_failures(batch.trail, list(batch.ids.values()))
    assert expected == {"finished": 5, "failed": 2, "user": 1, "system": 1}
    assert bar_numbers(html) == expected
    rows = re.findall(
        r'<tr data-bucket="\d+"><td>[^<]*</td>((?:<td class="num">[^<]*</td>){7})</tr>', html
    )
    cells = [re.findall(r'<td class="num">([^<]*)</td>', r) for r in rows]
    assert sum(int(c[0]) for c in cells) == 5  # finished
    assert sum(int(c[2]) for c in cells) == 2  # failed
    by_type = re.findall(r'<tr data-type="([^"]+)" data-bucket="\d+"><td>', html)
    assert set(by_type) == {"shot_video_generation", "asset_image_generation"}
    empty = client.get("/charts/failures", params={"until": batch.started.isoformat()}).text
    assert bar_numbers(empty) == {"finished": 0, "failed": 0, "user": 0, "system": 0}


def test_the_latency_chart_counts_every_start_and_outcome(client: TestClient, batch: Batch) -> None:
    window = {"since": batch.started.isoformat(), "until": batch.finished.isoformat()}
    html = client.get("/charts/latency", params=window).text
    events = [e for job_id in batch.ids.values() for e in batch.trail.history(job_id)]
    starts = sum(e.type == "JobStarted" for e in events)
    for kind, expected in (("wait", starts), ("run", starts)):
        table = html.split(f'<table id="latency-{kind}">')[1].split("</table>")[0]
        counts = re.findall(r'<tr data-bucket="\d+"><td>[^<]*</td><td class="num">(\d+)', table)
        assert sum(map(int, counts)) == expected
        values = [float(v) for v in re.findall(r'<td class="num">([\d.]+)</td>', table)]
        assert values and all(v >= 0 for v in values)
    assert 'data-series="p99"' in html


def test_percentile_is_postgresqls_percentile_cont() -> None:
    assert percentile([1.0], 0.99) == 1.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([0.0, 10.0], 0.95) == pytest.approx(9.5)


def test_actions_need_a_token(trail: Jobtrail, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="token"):
        create_app(trail, allow_actions=True)
    url = str(trail.engine.url.render_as_string(hide_password=False))
    url = url.replace("postgresql+psycopg://", "postgresql://")
    assert main(["--db", url, "web", "--allow-actions"]) == 2
    assert "--allow-actions needs --token" in capsys.readouterr().err
