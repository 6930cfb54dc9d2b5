"""Strict JSON at the boundary, the same on SQLite and PostgreSQL (issue 10 point 3; issue 11
points 1 and 2).

A payload outside the accepted domain (`jobtrail.domain.json_values`) is refused by `submit`,
through the CLI (one line, exit 1) and the API (`InvalidJsonValue`), before anything is
written. A processor result outside it fails its job once, through the one `fail` path, as
`invalid_result`; the worker keeps running (on PostgreSQL a NaN once stalled its every turn,
and `{1: "a", "b": 2}` crashed it), and a normal job beside the bad one completes in the same
run. Texts the worker writes itself (error and progress messages) are escaped instead, and an
outcome the database refuses for another reason fails its job alone.
"""

from __future__ import annotations

import datetime
import decimal
import json
import os
import subprocess
import sys
import threading
from typing import Any

import pytest
from jobtrail.adapters.bootstrap import Jobtrail, connect
from jobtrail.adapters.cli.main import main
from jobtrail.adapters.sql.schema import job
from jobtrail.domain.errors import InvalidJsonValue, JobError, StorageError, UpstreamTimeout
from jobtrail.domain.events import TERMINAL_EVENT_TYPES
from jobtrail.domain.services import JobSpec
from jobtrail.processors.base import JobContext, JobView
from jobtrail.processors.engine.worker import WorkerSettings, WorkerStats
from jobtrail.processors.registry import Registry
from sqlalchemy import func, select

from tests.helpers import check_history, check_projection, event_count

FAST = WorkerSettings(until_empty=True, poll_seconds=0.01, concurrency=1, prefetch=1)
STALL_SECONDS = 60
"""A worker that has not finished its few jobs by then has stalled (they take milliseconds)."""


def written(trail: Jobtrail) -> tuple[int, int]:
    """Events in the log and rows in the `job` table."""
    with trail.engine.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(job)).scalar_one()
    return event_count(trail), rows


def written_at(url: str) -> tuple[int, int]:
    trail = connect(url)
    try:
        return written(trail)
    finally:
        trail.close()


# ------------------------------------------------------------------ submit: the CLI

BAD_PAYLOADS = [
    ('{"x": NaN}', "payload.x: NaN is not JSON (use null or a string)."),
    ('{"x": Infinity}', "payload.x: Infinity is not JSON (use null or a string)."),
    ('{"x": -Infinity}', "payload.x: -Infinity is not JSON (use null or a string)."),
    ('{"items": [{"ratio": 1}, {}, {"ratio": NaN}]}', "payload.items[2].ratio: NaN is not JSON"),
    ('{"name": "a\\u0000b"}', "payload.name: contains U+0000, which PostgreSQL cannot store."),
    (
        '{"name": "\\ud800"}',
        "payload.name: contains a lone surrogate \\ud800, which is not Unicode.",
    ),
    ('{"name": "x\\udfffy"}', "payload.name: contains a lone surrogate \\udfff"),
    ('{"\\u0000": 1}', 'payload: key "\\u0000" contains U+0000'),
    (
        '{"big": 12345678901234567890}',
        "payload.big: 12345678901234567890 is beyond ±(2^53-1), which JSON readers such as "
        "JavaScript cannot hold exactly; send it as a string.",
    ),
    ('{"big": -9007199254740993}', "payload.big: -9007199254740993 is beyond ±(2^53-1)"),
    ('{"a": {"b c": [0, [NaN]]}}', 'payload.a["b c"][1][0]: NaN is not JSON'),
    ('{"x": 1e400}', "--payload: the number 1e400 is beyond the range of a double"),
    ('{"x": ' + "7" * 5000 + "}", "--payload: an integer of 5000 digits is beyond ±(2^53-1)"),
    ('{"x": ' + "[" * 101 + "]" * 101 + "}", "payload.x" + "[0]" * 30),
    ("[" * 100_000 + "]" * 100_000, "--payload is nested more than 100 levels deep"),
    ("[1, 2]", "--payload must be a JSON object"),
    ('"text"', "--payload must be a JSON object"),
    ("null", "--payload must be a JSON object"),
    ("NaN", "--payload must be a JSON object"),
    ("{'x': 1}", "--payload is not valid JSON"),
]


def cli(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> tuple[int, str, str]:
    code = main(["--db", url, *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(("payload", "message"), BAD_PAYLOADS, ids=[m for _, m in BAD_PAYLOADS])
def test_submit_refuses_a_bad_payload_in_one_line_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], backend_url: str, payload: str, message: str
) -> None:
    assert cli(capsys, backend_url, "submit", "t")[0] == 0
    before = written_at(backend_url)

    code, out, err = cli(capsys, backend_url, "submit", "t", "--payload", payload)

    assert (code, out) == (1, "")
    assert err.startswith("jobtrail: error: ") and err.count("\n") == 1, err
    assert message in err
    assert written_at(backend_url) == before


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b'{"x": NaN}', "payload.x: NaN is not JSON"),
        (b'{"s": "\\ud800"}', "payload.s: contains a lone surrogate \\ud800"),
        (b'{"s": "\xff"}', "payload.s: contains a lone surrogate \\udcff"),  # not UTF-8
        (b'{"n": 12345678901234567890}', "send it as a string"),
    ],
)
def test_the_console_script_says_one_line_without_a_traceback(
    backend_url: str, payload: bytes, message: str
) -> None:
    env = {**os.environ, "JOBTRAIL_DATABASE_URL": backend_url}
    before = written_at(backend_url)
    done = subprocess.run(
        [sys.executable.encode(), b"-m", b"jobtrail", b"submit", b"t", b"--payload", payload],
        env=env,
        capture_output=True,
        timeout=120,
    )
    err = done.stderr.decode("utf-8", "backslashreplace")
    assert (done.returncode, done.stdout) == (1, b"")
    assert err.startswith("jobtrail: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and message in err
    assert written_at(backend_url) == before


# ------------------------------------------------------------------ submit: the API


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"x": float("nan")}, "payload.x: NaN is not JSON (use null or a string)."),
        ({"x": [float("inf")]}, "payload.x[0]: Infinity is not JSON"),
        ({1: "a", "b": 2}, "payload: key 1 is not a string."),
        ({"b": 2, 1: "a"}, "payload: key 1 is not a string."),
        ({"tags": {"a", "b"}}, "payload.tags: a value of type set is not JSON (use a list)."),
        ({"raw": b"\x00"}, "payload.raw: a value of type bytes is not JSON"),
        (
            {"at": datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)},
            "payload.at: a value of type datetime.datetime is not JSON "
            "(send it as an ISO 8601 string).",
        ),
        ({"price": decimal.Decimal("1.10")}, "payload.price: a value of type decimal.Decimal"),
        ({"n": 2**53 + 1}, "payload.n: 9007199254740993 is beyond ±(2^53-1)"),
        ({"s": "a\x00b"}, "payload.s: contains U+0000, which PostgreSQL cannot store."),
        (
            {"s": "\udcff.mp4"},
            "payload.s: contains a lone surrogate \\udcff, which is not Unicode.",
        ),
        ([1, 2], "payload: must be a JSON object (a dict), not list."),
    ],
)
def test_the_api_refuses_a_bad_payload_before_writing(
    trail: Jobtrail, payload: Any, message: str
) -> None:
    trail.submit("t")
    before = written(trail)
    with pytest.raises(InvalidJsonValue) as raised:
        trail.service.submit(JobSpec("t", payload))
    assert message in str(raised.value)
    with pytest.raises(InvalidJsonValue):
        trail.submit_many([JobSpec("t", {"fine": 1}), JobSpec("t", payload)])
    assert written(trail) == before


def test_a_batch_names_the_spec_that_is_bad(trail: Jobtrail) -> None:
    with pytest.raises(InvalidJsonValue) as raised:
        trail.submit_many([JobSpec("t"), JobSpec("t", {"x": {"y": float("nan")}})])
    assert str(raised.value) == "specs[1].payload.x.y: NaN is not JSON (use null or a string)."
    assert written(trail) == (0, 0)


def test_values_at_the_edges_of_the_domain_are_accepted(trail: Jobtrail) -> None:
    """Accepted, and the texts read back as they were. (How PostgreSQL's jsonb writes floats
    such as 1.7976931348623157e308 back is issue 10 point 2, the hashing work's, not here.)"""
    texts = {
        "emoji": "\U0001f600",
        "escapes": '"\\/\b\f\n\r\t\x01\x1f\u2028',
        "": "an empty key",
        "nested": [[[[{"deep": [None, True, False, "x"]}]]]],
        "max": 2**53 - 1,
        "min": -(2**53 - 1),
    }
    numbers = {"huge": 1.7976931348623157e308, "tiny": 5e-324, "neg0": -0.0}
    job_id = trail.submit("t", {**texts, **numbers})
    stored = trail.get(job_id)["payload"]
    assert {key: stored[key] for key in texts} == texts
    assert {key: float(stored[key]) for key in numbers} == numbers
    check_history(job_id, trail.history(job_id))


# ---------------------------------------------------------------- processor results

HOSTILE: dict[str, tuple[Any, str]] = {
    "nan": (float("nan"), "result: NaN is not JSON (use null or a string)"),
    "infinity": ({"x": float("inf")}, "result.x: Infinity is not JSON"),
    "-infinity": ([1, float("-inf")], "result[1]: -Infinity is not JSON"),
    "mixed keys": ({1: "a", "b": 2}, "result: key 1 is not a string"),
    "int key": ({"a": {2: "b"}}, "result.a: key 2 is not a string"),
    "set": ({"s": {1, 2}}, "result.s: a value of type set is not JSON (use a list)"),
    "bytes": (b"\x89PNG", "result: a value of type bytes is not JSON"),
    "datetime": (
        {"at": datetime.datetime(2024, 5, 1, tzinfo=datetime.UTC)},
        "result.at: a value of type datetime.datetime is not JSON",
    ),
    "big int": ({"n": 2**64}, "result.n: 18446744073709551616 is beyond ±(2^53-1)"),
    "U+0000": ({"log": "a\x00b"}, "result.log: contains U+0000, which PostgreSQL cannot store"),
    "surrogate": ("\udcff", "result: contains a lone surrogate \\udcff, which is not Unicode"),
    "too deep": (
        {"x": json.loads("[" * 100 + "]" * 100)},
        "result.x" + "[0]" * 20,  # the path, cut in the middle if long
    ),
    "decimal": ([decimal.Decimal("0.1")], "result[0]: a value of type decimal.Decimal"),
}


def hostile_registry() -> Registry:
    registry = Registry()

    @registry.processor("hostile")
    def hostile(job: JobView, ctx: JobContext) -> Any:
        return HOSTILE[job.payload["kind"]][0]

    @registry.processor("normal")
    def normal(job: JobView, ctx: JobContext) -> Any:
        return {"n": job.payload.get("n", 0), "ok": True}

    return registry


def run_to_the_end(trail: Jobtrail, registry: Registry, settings: WorkerSettings = FAST) -> Any:
    """Run a worker until it runs out of work; fail (and stop it) if it stalls instead."""
    worker = trail.worker(settings, registry=registry)
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["stats"] = worker.run()
        except BaseException as error:  # noqa: BLE001 - reported by the test below
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=STALL_SECONDS)
    if thread.is_alive():
        worker.stop()
        thread.join(timeout=30)
        pytest.fail(f"the worker stalled: it had not run out of work after {STALL_SECONDS} s")
    assert "error" not in outcome, f"the worker died: {outcome.get('error')!r}"
    stats: WorkerStats = outcome["stats"]
    return stats


def replay_is_clean(capsys: pytest.CaptureFixture[str], url: str) -> None:
    capsys.readouterr()
    code = main(["--db", url, "replay", "--json", "--workers", "1"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["clean"], report["problems"]


def failed_once(trail: Jobtrail, job_id: str) -> dict[str, Any]:
    events = trail.history(job_id)
    check_history(job_id, events)
    check_projection(trail, job_id)
    assert [e.type for e in events if e.type in TERMINAL_EVENT_TYPES] == ["JobFailed"]
    row = trail.get(job_id)
    assert row["status"] == "failed"
    return row


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_a_result_that_is_not_json_fails_its_job_and_the_worker_goes_on(
    capsys: pytest.CaptureFixture[str], trail: Jobtrail, backend_url: str, kind: str
) -> None:
    bad = trail.submit("hostile", {"kind": kind})
    good = trail.submit("normal", {"n": 1})  # after it: runs once the bad one is written

    stats = run_to_the_end(trail, hostile_registry())

    row = failed_once(trail, bad)
    assert (row["error_type"], row["error_code"], row["error_category"]) == (
        "InvalidResult",
        "invalid_result",
        "system",
    )
    assert HOSTILE[kind][1] in row["error_message"]
    assert row["attempt"] == 1, "a processor returning a bad result returns it again: no retry"
    assert trail.get(good)["status"] == "completed"
    assert trail.get(good)["result"] == {"n": 1, "ok": True}
    assert (stats.completed, stats.failed, stats.retried) == (1, 1, 0)
    replay_is_clean(capsys, backend_url)


def test_bad_results_among_many_jobs_in_the_same_turns(
    capsys: pytest.CaptureFixture[str], trail: Jobtrail, backend_url: str
) -> None:
    specs = [JobSpec("hostile", {"kind": kind}, max_attempts=3) for kind in HOSTILE]
    specs += [JobSpec("normal", {"n": n}) for n in range(20)]
    ids = trail.submit_many(specs)

    stats = run_to_the_end(trail, hostile_registry(), WorkerSettings(until_empty=True))

    for job_id in ids[: len(HOSTILE)]:
        assert failed_once(trail, job_id)["error_code"] == "invalid_result"
    assert {trail.get(job_id)["status"] for job_id in ids[len(HOSTILE) :]} == {"completed"}
    assert (stats.completed, stats.failed, stats.retried) == (20, len(HOSTILE), 0)
    replay_is_clean(capsys, backend_url)


# ------------------------------------------------- texts the worker writes: escaped


def test_error_and_progress_messages_with_nul_or_lone_surrogates_are_escaped(
    capsys: pytest.CaptureFixture[str], trail: Jobtrail, backend_url: str
) -> None:
    registry = Registry()

    @registry.processor("open_file")
    def open_file(job: JobView, ctx: JobContext) -> Any:
        ctx.progress(10, "reading \udcff.mp4\x00")
        raise FileNotFoundError(2, "No such file or directory", "/media/\udcff.mp4")

    @registry.processor("c_library")
    def c_library(job: JobView, ctx: JobContext) -> Any:
        raise ValueError("codec said: bad\x00frame")

    @registry.processor("upstream")
    def upstream(job: JobView, ctx: JobContext) -> Any:
        raise UpstreamTimeout("the provider said: \x00\udcff")

    @registry.processor("normal")
    def normal(job: JobView, ctx: JobContext) -> Any:
        return "fine"

    a, b, good = (trail.submit(t) for t in ("open_file", "c_library", "normal"))
    c = trail.submit("upstream", max_attempts=1)
    stats = run_to_the_end(trail, registry, WorkerSettings(until_empty=True, progress_seconds=0))

    row = failed_once(trail, a)
    assert (row["error_type"], row["error_code"], row["error_message"]) == (
        "FileNotFoundError",
        "unexpected_error",
        "FileNotFoundError: [Errno 2] No such file or directory: '/media/\\udcff.mp4'",
    )
    assert failed_once(trail, b)["error_message"] == "ValueError: codec said: bad\\u0000frame"
    row = failed_once(trail, c)  # escaped, and otherwise the same error
    assert (row["error_type"], row["error_code"], row["error_message"]) == (
        "UpstreamTimeout",
        "upstream_timeout",
        "the provider said: \\u0000\\udcff",
    )
    assert trail.history(c)[-1].data()["retryable"] is True
    progressed = [e for e in trail.history(a) if e.type == "JobProgressed"]
    assert [e.data()["message"] for e in progressed] == ["reading \\udcff.mp4\\u0000"]
    assert trail.get(good)["status"] == "completed"
    assert (stats.completed, stats.failed) == (1, 3)
    replay_is_clean(capsys, backend_url)


# ------------------------------------- an outcome the database refuses for another reason


class OddlyLongCode(JobError):
    """a team's error whose code is longer than the `job` table's error_code column"""

    code = "a_code_of_" + "x" * 140


@pytest.mark.postgres
def test_an_outcome_postgres_refuses_fails_its_job_alone_and_holds_no_other_hostage(
    capsys: pytest.CaptureFixture[str], pg_trail: Jobtrail, postgres_url: str
) -> None:
    """PostgreSQL refuses the failure (error_code is VARCHAR(100)); the turn's other outcomes
    are written one job at a time, and the refused one becomes a failure that can be stored.
    (SQLite does not enforce VARCHAR lengths: there the code is stored as it is.)"""
    registry = Registry()

    @registry.processor("odd")
    def odd(job: JobView, ctx: JobContext) -> Any:
        raise OddlyLongCode()

    @registry.processor("normal")
    def normal(job: JobView, ctx: JobContext) -> Any:
        return {"n": job.payload["n"]}

    odd_id = pg_trail.submit("odd")
    normal_ids = pg_trail.submit_many([JobSpec("normal", {"n": n}) for n in range(8)])

    stats = run_to_the_end(pg_trail, registry, WorkerSettings(until_empty=True, concurrency=3))

    row = failed_once(pg_trail, odd_id)
    assert (row["error_type"], row["error_code"]) == ("InternalError", "system_error")
    assert row["error_message"].startswith("the failure could not be stored (")
    assert f"it was OddlyLongCode ({OddlyLongCode.code})" in row["error_message"]
    assert {pg_trail.get(i)["status"] for i in normal_ids} == {"completed"}
    assert (stats.completed, stats.failed, stats.absorbed) == (8, 1, 0)
    replay_is_clean(capsys, postgres_url)


def test_a_database_refusing_every_write_keeps_the_outcomes_for_later(sqlite_url: str) -> None:
    """Every write refused for a while, as a plain `StorageError` (a read-only database):
    nothing is turned into a failure or dropped; the outcomes are written once it takes them."""
    trail = connect(sqlite_url)
    refusals = [0]
    ids = trail.submit_many([JobSpec("normal", {"n": n}) for n in range(3)])
    registry = hostile_registry()
    worker = trail.worker(WorkerSettings(until_empty=True, poll_seconds=0.01), registry=registry)
    real_claim, real_append = trail.queue.claim, trail.store.append
    budget = [0]

    def claim(*args: Any, **kwargs: Any) -> Any:
        outcomes = args[3] if len(args) > 3 else kwargs.get("also_append", ())
        if outcomes:  # a turn that writes outcomes
            budget[0] += 1
            if budget[0] <= 3:
                refusals[0] += 1
                raise StorageError(reason="cannot execute INSERT in a read-only transaction")
        return real_claim(*args, **kwargs)

    def append(*args: Any, **kwargs: Any) -> Any:
        if budget[0] <= 3:
            refusals[0] += 1
            raise StorageError(reason="cannot execute INSERT in a read-only transaction")
        return real_append(*args, **kwargs)

    trail.queue.claim = claim  # type: ignore[method-assign]
    trail.store.append = append  # type: ignore[method-assign]
    stats: list[WorkerStats] = []
    thread = threading.Thread(target=lambda: stats.append(worker.run()), daemon=True)
    thread.start()
    thread.join(timeout=STALL_SECONDS)
    assert not thread.is_alive(), "the worker did not recover once writes were taken again"

    assert refusals[0] >= 3
    assert [trail.get(i)["status"] for i in ids] == ["completed"] * 3
    assert [trail.get(i)["result"] for i in ids] == [{"n": n, "ok": True} for n in range(3)]
    assert (stats[0].completed, stats[0].failed, stats[0].absorbed) == (3, 0, 0)
    trail.close()
