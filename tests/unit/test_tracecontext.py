"""W3C trace context: the parser, where a traceparent goes (metadata, hash, Kafka headers),
and the JSON log lines of `--log-format json` (issue 13, parts 2 and 4)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

import jobtrail.adapters.kafka
import pytest
import yaml
from jobtrail.adapters.cli.logs import JOB_FIELDS, JsonFormatter, add_log_format
from jobtrail.adapters.cli.main import parser
from jobtrail.adapters.kafka.codec import decode, encode
from jobtrail.domain import tracecontext
from jobtrail.domain.errors import InvalidField, UpstreamTimeout
from jobtrail.domain.events import JobQueued, event_from_envelope
from jobtrail.domain.job import Job, Meta
from jobtrail.domain.retry import RetryPolicy
from jobtrail.domain.services import check_meta
from jobtrail.processors.engine.failures import log_fields

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
GOOD = f"00-{TRACE_ID}-{SPAN_ID}-01"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
SCHEMAS = Path(jobtrail.adapters.kafka.__file__).parent / "schemas"

BAD = {
    "short trace id": f"00-{TRACE_ID[:-1]}-{SPAN_ID}-01",
    "long span id": f"00-{TRACE_ID}-{SPAN_ID}0-01",
    "non-hex": f"00-{TRACE_ID[:-1]}g-{SPAN_ID}-01",
    "uppercase": f"00-{TRACE_ID.upper()}-{SPAN_ID}-01",
    "all-zero trace id": f"00-{'0' * 32}-{SPAN_ID}-01",
    "all-zero span id": f"00-{TRACE_ID}-{'0' * 16}-01",
    "version ff": f"ff-{TRACE_ID}-{SPAN_ID}-01",
    "version 00 with more": f"00-{TRACE_ID}-{SPAN_ID}-01-extra",
    "empty": "",
    "newline": GOOD + "\n",
    "spaces": f" {GOOD}",
}


def test_a_well_formed_traceparent_is_read_into_its_parts() -> None:
    parts = tracecontext.parse(GOOD)
    assert (parts.version, parts.trace_id, parts.span_id, parts.flags) == (
        "00",
        TRACE_ID,
        SPAN_ID,
        "01",
    )
    assert parts.sampled and parts.header() == GOOD
    assert not tracecontext.parse(f"00-{TRACE_ID}-{SPAN_ID}-00").sampled
    later = tracecontext.parse(f"01-{TRACE_ID}-{SPAN_ID}-01-what-comes-later")
    assert later.version == "01"  # a later version may add fields: accepted


@pytest.mark.parametrize("value", BAD.values(), ids=BAD.keys())
def test_a_malformed_traceparent_is_refused_naming_the_field(value: str) -> None:
    with pytest.raises(InvalidField) as refused:
        tracecontext.parse(value, "meta.traceparent")
    message = str(refused.value)
    assert message.startswith("meta.traceparent: ") and "\n" not in message


def test_a_traceparent_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(InvalidField, match="must be a string, not a int"):
        check_meta(Meta(traceparent=5))  # type: ignore[arg-type]


def test_check_meta_checks_the_traceparent() -> None:
    check_meta(Meta(traceparent=GOOD))
    check_meta(Meta())
    with pytest.raises(InvalidField, match=r"^meta\.traceparent: version ff is forbidden"):
        check_meta(Meta(traceparent=BAD["version ff"]))


def test_the_schema_pattern_is_the_parser_s() -> None:
    schema = json.loads((SCHEMAS / "job-event.schema.json").read_text())
    metadata = schema["$defs"]["Envelope"]["properties"]["metadata"]["properties"]
    assert metadata["traceparent"]["pattern"] == tracecontext.PATTERN
    asyncapi = yaml.safe_load((SCHEMAS / "asyncapi.yaml").read_text())
    headers = asyncapi["components"]["messageTraits"]["jobEvent"]["headers"]
    assert headers["properties"]["traceparent"]["pattern"] == tracecontext.PATTERN
    assert "traceparent" not in headers["required"]


def submitted(meta: Meta) -> Job:
    return Job.submit("9b2c6b55-3a4d-4a8e-9e4c-0c1f6a0d9d11", "t", {}, now=NOW, meta=meta)


def test_the_traceparent_is_in_the_metadata_only_when_set() -> None:
    without = submitted(Meta()).pending[0]
    assert "traceparent" not in without.metadata()
    traced = submitted(Meta(traceparent=GOOD)).pending[0]
    assert traced.metadata()["traceparent"] == GOOD
    assert traced.hash != without.hash  # the metadata is covered by the hash
    assert traced.compute_hash() == traced.hash


def test_the_decoder_reads_the_traceparent_back_and_the_hash_still_holds() -> None:
    event = submitted(Meta(traceparent=GOOD)).pending[0]
    again = event_from_envelope(json.loads(json.dumps(event.envelope())))
    assert again.traceparent == GOOD
    assert again.compute_hash() == event.hash
    assert event_from_envelope(submitted(Meta()).pending[0].envelope()).traceparent is None


def test_every_later_event_of_the_job_carries_the_job_s_traceparent() -> None:
    job = submitted(Meta(traceparent=GOOD))
    replayed = Job.from_history(job.id, job.pending)
    assert replayed.traceparent == GOOD
    replayed.start("w", 30, now=NOW, meta=Meta(actor="w"))
    replayed.fail(UpstreamTimeout("slow"), 1, now=NOW, policy=RetryPolicy())
    assert [e.traceparent for e in replayed.pending] == [GOOD, GOOD]
    other = f"00-{TRACE_ID}-{'1' * 16}-01"  # a command that brings its own keeps it
    replayed.cancel("no", now=NOW, meta=Meta(traceparent=other))
    assert replayed.pending[-1].traceparent == other


def test_the_kafka_record_has_a_traceparent_header_only_when_the_event_has_one() -> None:
    traced = encode(submitted(Meta(traceparent=GOOD)).pending[0])
    assert ("traceparent", GOOD.encode()) in traced.headers
    decoded = decode(traced.value)
    assert isinstance(decoded, JobQueued) and decoded.traceparent == GOOD
    plain = encode(submitted(Meta()).pending[0])
    assert [name for name, _ in plain.headers] == ["event_type", "schema_version", "event_id"]


def test_submit_and_every_long_running_command_take_their_options() -> None:
    args = parser().parse_args(["submit", "t", "--traceparent", GOOD])
    assert args.traceparent == GOOD and args.log_format == "text"
    for argv in (
        ["--log-format", "json", "worker"],
        ["worker", "--log-format", "json"],
        ["relay", "--log-format", "json"],
        ["consume", "--log-format", "json"],
        ["scheduler", "--log-format", "json"],
        ["reap", "--log-format", "json"],
        ["--log-format", "json", "jobs"],
    ):
        assert parser().parse_args(argv).log_format == "json", argv
    with pytest.raises(SystemExit):
        parser().parse_args(["--log-format", "xml", "jobs"])


def test_add_log_format_can_be_called_twice_on_one_parser() -> None:
    import argparse

    command = argparse.ArgumentParser()
    add_log_format(command)
    add_log_format(command)
    assert command.parse_args(["--log-format", "json"]).log_format == "json"
    assert not hasattr(command.parse_args([]), "log_format")  # the root's default holds


def record(message: str, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("jobtrail.worker", logging.INFO, __file__, 1, message, None, None)
    made.__dict__.update(extra)
    return made


def test_a_json_log_line_has_the_time_level_logger_message_and_the_job_fields() -> None:
    fields = log_fields(
        "j1", "JobFailed", job_type="t", attempt=2, error=UpstreamTimeout("slow\nupstream")
    )
    line = JsonFormatter().format(record("job j1\nmarked failed", **fields))
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["time"].endswith("Z") and datetime.fromisoformat(parsed["time"])
    assert {k: parsed[k] for k in ("level", "logger", "message")} == {
        "level": "INFO",
        "logger": "jobtrail.worker",
        "message": "job j1\nmarked failed",
    }
    assert {k: parsed[k] for k in JOB_FIELDS} == {
        "job_id": "j1",
        "job_type": "t",
        "attempt": 2,
        "event": "JobFailed",
        "error_code": "upstream_timeout",
        "error_category": "system",
        "error_message": "slow\nupstream",
    }
    assert set(json.loads(JsonFormatter().format(record("plain")))) == {
        "time",
        "level",
        "logger",
        "message",
    }


def test_an_exception_is_one_error_string_not_a_traceback() -> None:
    try:
        raise ValueError("bad value")
    except ValueError:
        made = record("it broke")
        made.exc_info = sys.exc_info()
    parsed = json.loads(JsonFormatter().format(made))
    assert parsed["error"] == "ValueError: bad value"
    assert parsed["message"] == "it broke" and "Traceback" not in json.dumps(parsed)
