"""The pure checks of replay, on histories built by the domain itself."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import replace

import pytest
from jobtrail.adapters.audit.checks.history import verify_job
from jobtrail.adapters.audit.checks.legacy import MAX_CANDIDATES
from jobtrail.adapters.audit.checks.records import Problem, StoredEvent
from jobtrail.adapters.audit.checks.report import Report
from jobtrail.adapters.audit.checks.seal_check import check_seals
from jobtrail.domain.canonical import GENESIS_HASH
from jobtrail.domain.events import Event
from jobtrail.domain.job import Job
from jobtrail.domain.seals import EMPTY_DIGEST, Seal, next_digest
from jobtrail.projections.job_table import fold

from tests.unit.histories import ALL_HISTORIES, T0, at
from tests.unit.test_canonical import as_jsonb_returns


def stored(events: list[Event], first_position: int = 1) -> list[StoredEvent]:
    """The events as a database returns them (data through JSON, positions assigned)."""
    return [
        StoredEvent(
            position=first_position + i,
            event_id=e.event_id,
            job_id=e.job_id,
            version=e.version,
            type=e.type,
            schema_version=e.schema_version,
            data=json.loads(json.dumps(e.data())),
            metadata=e.metadata(),
            occurred_at=e.occurred_at,
            prev_hash=e.prev_hash,
            hash=e.hash,
        )
        for i, e in enumerate(events)
    ]


@pytest.mark.parametrize("name", sorted(ALL_HISTORIES))
def test_every_history_the_domain_makes_verifies_and_folds_like_the_projection(name: str) -> None:
    events = ALL_HISTORIES[name]().pending
    result = verify_job(stored(events))
    assert result.problems == []
    assert result.row == fold(events)


def a_history() -> list[StoredEvent]:
    longest = max((build().pending for build in ALL_HISTORIES.values()), key=len)
    return stored(longest)


def kinds(records: list[StoredEvent]) -> list[tuple[str, int | None]]:
    return [(p.kind, p.version) for p in verify_job(records).problems]


def test_an_extra_key_in_stored_data_breaks_the_hash() -> None:
    records = a_history()
    records[1] = records[1]._replace(data={**records[1].data, "note": "added later"})
    assert kinds(records) == [("hash_mismatch", 2)]


def test_a_resent_event_is_skipped_and_a_different_one_is_not() -> None:
    records = a_history()
    resent = [*records[:2], records[1], *records[2:]]
    result = verify_job(resent)
    assert (result.problems, result.duplicates) == ([], 1)
    forged = records[1]._replace(event_id="other", hash="0" * 64)
    assert kinds([*records[:2], forged, *records[2:]]) == [("duplicate_version", 2)]


def test_a_wrong_attempt_is_reported() -> None:
    records = a_history()
    started = next(i for i, r in enumerate(records) if r.type == "JobStarted")
    record = records[started]
    records[started] = record._replace(data={**record.data, "attempt": 5})
    assert ("attempt_mismatch", record.version) in kinds(records)


def test_as_of_folds_the_prefix_of_a_history() -> None:
    records = a_history()
    moment = records[1].occurred_at
    assert verify_job(records, as_of=moment).row == verify_job(records[:2]).row
    assert verify_job(records, as_of=records[0].occurred_at.replace(year=2000)).row is None


def entries(count: int) -> list[tuple[int, str]]:
    return [(position, f"{position:064x}") for position in range(1, count + 1)]


def seal_after(log: list[tuple[int, str]], seal_id: int = 1) -> Seal:
    digest = EMPTY_DIGEST
    for position, event_hash in log:
        digest = next_digest(digest, position, event_hash)
    return Seal(seal_id, log[-1][0], len(log), digest)


def test_seals_catch_deleted_inserted_and_reordered_events() -> None:
    log = entries(10)
    seal = seal_after(log)
    assert check_seals(log, [seal]).problems == []
    cut = check_seals(log[:-1], [seal])  # the last sealed event deleted
    assert "1 event(s) fewer" in cut.problems[0].reason
    swapped = [log[1], log[0], *log[2:]]
    assert "changed or reordered" in check_seals(swapped, [seal]).problems[0].reason
    renumbered = [(p + 100 if p == 5 else p, h) for p, h in log]
    assert check_seals(sorted(renumbered), [seal]).problems
    grown = check_seals([*log[:5], (5, "f" * 64), *log[5:]], [seal])
    assert "1 event(s) more" in grown.problems[0].reason


def test_a_replay_can_start_from_a_trusted_seal() -> None:
    log = entries(10)
    first, second = seal_after(log[:4]), seal_after(log, seal_id=2)
    check = check_seals(log[4:], [first, second], start=first)
    assert (check.problems, check.seals, check.events) == ([], 1, 10)


def test_parts_merged_in_order_give_the_report_of_one_pass() -> None:
    """Each part lists its first problems and counts all; the merge keeps the global first."""
    problems = [Problem("version_gap" if i % 3 else "chain_broken", f"p{i}") for i in range(10)]
    whole = Report(source="db", scope={}, max_problems=4)
    whole.add(problems)
    merged = Report(source="db", scope={}, max_problems=4)
    for part_problems in (problems[:1], problems[1:7], problems[7:]):
        part = Report(source="db", scope={}, max_problems=4, events=5, jobs=2)
        part.add(part_problems)
        merged.merge(part)
    assert merged.as_dict() == {**whole.as_dict(), "events": 15, "jobs": 6}


# ---------------------------------------------------------------------- hash rules


def legacy(events: list[Event]) -> list[Event]:
    """The events as the previous release made them: no hash_form, chained by its rule."""
    made: list[Event] = []
    previous = GENESIS_HASH
    for event in events:
        old = replace(event, hash_form=None, prev_hash=previous).sealed()
        made.append(old)
        previous = old.hash
    return made


def as_postgres_returns(records: list[StoredEvent]) -> list[StoredEvent]:
    """The records as read back from PostgreSQL's jsonb (1e16 an integer, -0.0 as 0.0)."""
    return [r._replace(data=as_jsonb_returns(r.data)) for r in records]


def floats_history() -> list[Event]:
    payload = {"big": 1e16, "e21": 1e21, "negative_zero": -0.0, "one": 1.0, "tiny": 1e-7}
    job = Job.submit("job-floats", "video", payload, now=T0)
    job.start("w1", 30, now=at(1))
    job.complete(1, {"zero": 0.0, "values": [1e16, 10**16 + 1], "ratio": 0.5}, now=at(2))
    return job.pending


def verified(records: list[StoredEvent]) -> tuple[list[tuple[str, int | None]], dict[str, int]]:
    result = verify_job(records)
    return [(p.kind, p.version) for p in result.problems], dict(result.hash_forms)


def test_events_of_the_previous_release_verify_by_its_rule() -> None:
    longest = max((build().pending for build in ALL_HISTORIES.values()), key=len)
    records = stored(legacy(longest))
    assert verified(records) == ([], {"legacy": len(records)})


def test_new_events_read_back_from_jsonb_verify_as_they_are() -> None:
    """RFC 8785 reads numbers as doubles: jsonb's rewrites change nothing."""
    records = as_postgres_returns(stored(floats_history()))
    assert records[0].data["payload"]["big"] == 10**16  # an int now
    assert verified(records) == ([], {"jcs": 3})


def test_legacy_numbers_jsonb_rewrote_are_put_back_and_verify() -> None:
    records = as_postgres_returns(stored(legacy(floats_history())))
    assert verified(records) == ([], {"legacy": 3, "legacy_restored": 2})


def test_a_change_beside_rewritten_numbers_is_still_tampering() -> None:
    records = as_postgres_returns(stored(legacy(floats_history())))
    payload = {**records[0].data["payload"], "one": 2.0}
    records[0] = records[0]._replace(data={**records[0].data, "payload": payload})
    result = verify_job(records)
    assert [(p.kind, p.version) for p in result.problems] == [("hash_mismatch", 1)]
    assert "put back" in result.problems[0].reason
    # a rewritten number changed to another value is a change too
    records = as_postgres_returns(stored(legacy(floats_history())))
    payload = {**records[0].data["payload"], "big": 10**16 + 2}
    records[0] = records[0]._replace(data={**records[0].data, "payload": payload})
    assert verified(records)[0] == [("hash_mismatch", 1)]


def test_too_many_rewritten_numbers_are_unverifiable_not_tampering() -> None:
    """Six floats and six real integers, all given back as integers: 2^12 combinations."""
    mixed = {f"float_{i}": 1e16 * (i + 1) for i in range(6)}
    mixed |= {f"int_{i}": 10**17 * (i + 1) for i in range(6)}
    assert len(mixed) > MAX_CANDIDATES
    records = as_postgres_returns(stored(legacy(Job.submit("j", "t", mixed, now=T0).pending)))
    result = verify_job(records)
    assert [(p.kind, p.version) for p in result.problems] == [("legacy_hash_unverifiable", 1)]
    assert "cannot be recomputed exactly" in result.problems[0].reason
    report = Report(source="file", scope={})
    report.add_job(result)
    assert not report.clean  # not verified: replay exits 1
    # all floats: "all put back" is tried first, whatever their number
    floats = {f"float_{i}": 1e16 * (i + 1) for i in range(12)}
    records = as_postgres_returns(stored(legacy(Job.submit("j", "t", floats, now=T0).pending)))
    assert verified(records) == ([], {"legacy": 1, "legacy_restored": 1})


def test_a_job_begun_before_the_upgrade_verifies_across_both_rules() -> None:
    old = legacy(floats_history()[:2])
    job = Job.from_history("job-floats", old)
    job.complete(1, {"n": 1.0}, now=at(3))
    records = as_postgres_returns(stored([*old, *job.pending]))
    assert records[2].prev_hash == old[-1].hash
    assert verified(records) == ([], {"legacy": 2, "legacy_restored": 1, "jcs": 1})


def test_the_rule_cannot_be_switched_without_breaking_the_hash() -> None:
    records = stored(floats_history())
    stripped = {k: v for k, v in records[1].metadata.items() if k != "hash_form"}
    records[1] = records[1]._replace(metadata=stripped)  # now claims the legacy rule
    assert verified(records)[0] == [("hash_mismatch", 2)]


def test_an_unknown_rule_and_content_jcs_cannot_write_are_reported() -> None:
    records = stored(floats_history())
    records[0] = records[0]._replace(metadata={**records[0].metadata, "hash_form": "jcs2"})
    nan = {**records[2].data, "result": {"x": float("nan")}}
    records[2] = records[2]._replace(data=nan)
    problems = verify_job(records).problems
    assert [(p.kind, p.version) for p in problems] == [
        ("unknown_hash_form", 1),
        ("hash_mismatch", 3),
    ]
    assert "jcs2" in problems[0].reason and "cannot be canonicalized" in problems[1].reason


def test_the_audit_modules_load_no_broker_and_the_commands_no_library() -> None:
    """Kafka loads when a topic is read, never on import; the parser (`jobtrail --help`) of
    the audit commands loads neither SQLAlchemy, rich nor Kafka (a fresh interpreter: this
    one has them all)."""
    script = textwrap.dedent(
        """
        import argparse, pkgutil, sys
        import jobtrail.adapters.cli.audit as commands
        commands.add_commands(argparse.ArgumentParser().add_subparsers())
        heavy = ("sqlalchemy", "rich", "kafka", "alembic", "psycopg")
        print(sorted({m.split(".")[0] for m in sys.modules} & set(heavy)))
        import jobtrail.adapters.audit as audit
        for module in pkgutil.walk_packages(audit.__path__, "jobtrail.adapters.audit."):
            __import__(module.name)
        print("kafka" in sys.modules)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    ).stdout
    assert out.split("\n")[:2] == ["[]", "False"]
