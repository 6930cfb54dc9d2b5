"""Logs written before RFC 8785 hashes still verify: exports made by the previous release.

tests/fixtures/legacy-sqlite.jsonl and legacy-postgresql.jsonl were exported by the release
before this change (tests/fixtures/make_legacy_exports.py says how): six jobs, sixteen events,
a seal; floats Python writes otherwise than RFC 8785 (1e16, 1e21, -0.0, 1.0, 1e-07),
non-ASCII, non-BMP and private-use keys, escapes. Their events carry no
``metadata.hash_form`` and are checked by the previous rule. The PostgreSQL export holds the
numbers as jsonb gave them back (10000000000000000, 0.0): replay puts them back and verifies,
except one event with twelve such numbers mixed with real integers, which it calls
``legacy_hash_unverifiable`` (not tampering, not clean either).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jobtrail.adapters.bootstrap import Jobtrail, connect
from jobtrail.adapters.cli.main import main
from jobtrail.adapters.sql.schema import job_events, job_log_seals
from jobtrail.domain.canonical import parse_time
from sqlalchemy import insert

FIXTURES = Path(__file__).parent.parent / "fixtures"
SQLITE_MADE = FIXTURES / "legacy-sqlite.jsonl"
POSTGRES_MADE = FIXTURES / "legacy-postgresql.jsonl"


def lines(path: Path) -> list[dict[str, Any]]:
    # "\n" only: a U+2028 inside a string is not a line end (str.splitlines would cut there)
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]


def events_of(path: Path) -> list[dict[str, Any]]:
    return [line for line in lines(path) if "event_id" in line]


def job_of(path: Path, payload_key: str) -> str:
    """The id of the job whose payload has ``payload_key``."""
    return next(
        e["job_id"]
        for e in events_of(path)
        if e["type"] == "JobQueued" and payload_key in e["data"]["payload"]
    )


def replay(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> tuple[int, dict[str, Any]]:
    code = main(["--db", url, "replay", "--json", *args])
    return code, json.loads(capsys.readouterr().out)


def kinds(report: dict[str, Any]) -> list[tuple[str, str | None, int | None]]:
    return [(p["kind"], p["job_id"], p["version"]) for p in report["problems"]]


def edited(tmp_path: Path, source: Path, change: Any) -> Path:
    """A copy of an export with ``change(events)`` applied to its event lines."""
    found = lines(source)
    change([line for line in found if "event_id" in line])
    out = tmp_path / source.name
    out.write_text(
        "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in found), encoding="utf-8"
    )
    return out


# ------------------------------------------------------------------------ the files


def test_the_fixtures_are_what_they_say() -> None:
    for path in (SQLITE_MADE, POSTGRES_MADE):
        events = events_of(path)
        assert len(events) == 16 and len({e["job_id"] for e in events}) == 6
        assert all("hash_form" not in e["metadata"] for e in events)
        assert {"seal"} <= {key for line in lines(path) for key in line}
    payloads = {e["job_id"]: e["data"] for e in events_of(POSTGRES_MADE) if e["version"] == 1}
    edge = payloads[job_of(POSTGRES_MADE, "negative_zero")]["payload"]
    assert (edge["big"], edge["e21"], edge["negative_zero"]) == (10**16, 10**21, 0.0)
    assert type(edge["big"]) is int  # as jsonb gave it back
    edge = next(
        e for e in events_of(SQLITE_MADE) if "negative_zero" in e["data"].get("payload", {})
    )
    assert type(edge["data"]["payload"]["big"]) is float


def test_the_sqlite_made_export_replays_clean(
    capsys: pytest.CaptureFixture[str], sqlite_url: str
) -> None:
    code, report = replay(capsys, sqlite_url, "--source", f"file:{SQLITE_MADE}")
    assert (code, report["problems"]) == (0, [])
    assert report["hashes"] == {"jcs": 0, "legacy": 16, "legacy_restored": 0}
    assert report["seals"]["checked"] and report["seals"]["mismatched"] == 0


def test_the_postgresql_made_export_verifies_once_numbers_are_put_back(
    capsys: pytest.CaptureFixture[str], sqlite_url: str
) -> None:
    """Every event with numbers jsonb rewrote verifies once they are put back, but the one
    with too many to try: that one is `legacy_hash_unverifiable`, and no event is
    `hash_mismatch`."""
    code, report = replay(capsys, sqlite_url, "--source", f"file:{POSTGRES_MADE}")
    mixed = job_of(POSTGRES_MADE, "int_0")
    assert code == 1  # one event is not verified: an auditor's script must not read "clean"
    assert kinds(report) == [("legacy_hash_unverifiable", mixed, 1)]
    rewritten = [e for e in events_of(POSTGRES_MADE) if _rewritten(e["data"])]
    assert len(rewritten) == 4  # the edge job's payload and result, the mixed job's two
    assert report["hashes"] == {"jcs": 0, "legacy": 16, "legacy_restored": len(rewritten) - 1}

    assert main(["--db", sqlite_url, "replay", "--source", f"file:{POSTGRES_MADE}"]) == 1
    out = capsys.readouterr().out
    assert "3 verified once the numbers PostgreSQL's jsonb rewrote" in out
    assert "legacy_hash_unverifiable: version 1 was hashed before RFC 8785" in out


def _rewritten(value: Any) -> bool:
    """Holds a number jsonb gives back otherwise than the previous release hashed it."""
    if isinstance(value, dict):
        return any(map(_rewritten, value.values()))
    if isinstance(value, list):
        return any(map(_rewritten, value))
    return (type(value) is int and abs(value) >= 10**16) or (type(value) is float and value == 0)


# ------------------------------------------------------------------------ tampered copies


def test_a_tampered_sqlite_made_export_is_reported(
    capsys: pytest.CaptureFixture[str], sqlite_url: str, tmp_path: Path
) -> None:
    failed = job_of(SQLITE_MADE, "credits")

    def change(events: list[dict[str, Any]]) -> None:
        queued = next(e for e in events if e["job_id"] == failed)
        queued["data"]["payload"]["credits"] = 100

    code, report = replay(
        capsys, sqlite_url, "--source", f"file:{edited(tmp_path, SQLITE_MADE, change)}"
    )
    assert code == 1 and kinds(report) == [("hash_mismatch", failed, 1)]


def test_a_tampered_postgresql_made_export_is_reported(
    capsys: pytest.CaptureFixture[str], sqlite_url: str, tmp_path: Path
) -> None:
    """A change beside rewritten numbers is tampering, and so is a rewritten number changed;
    a broken link is a broken chain. The event that cannot be verified stays so (its
    content is not vouched for either way)."""
    edge, mixed = job_of(POSTGRES_MADE, "negative_zero"), job_of(POSTGRES_MADE, "int_0")

    def change(events: list[dict[str, Any]]) -> None:
        by_place = {(e["job_id"], e["version"]): e for e in events}
        by_place[(edge, 1)]["data"]["payload"]["prompt"] = "a dog"
        by_place[(edge, 4)]["data"]["result"]["big"] = 10**16 + 2
        by_place[(edge, 3)]["prev_hash"] = "0" * 64
        by_place[(mixed, 1)]["data"]["payload"]["int_0"] = 7 * 10**17

    path = edited(tmp_path, POSTGRES_MADE, change)
    code, report = replay(capsys, sqlite_url, "--source", f"file:{path}")
    assert code == 1
    assert sorted(kinds(report)) == sorted(
        [
            ("hash_mismatch", edge, 1),
            ("chain_broken", edge, 3),
            ("hash_mismatch", edge, 3),
            ("hash_mismatch", edge, 4),
            ("legacy_hash_unverifiable", mixed, 1),
        ]
    )
    reasons = {(p["job_id"], p["version"], p["kind"]): p["reason"] for p in report["problems"]}
    assert "put back" in reasons[(edge, 1, "hash_mismatch")]


# ------------------------------------------------------------------------ an upgraded database


@pytest.fixture
def upgraded(backend_url: str) -> Iterator[Jobtrail]:
    """A database holding the SQLite-made log (as if the previous release had written it
    there), its job table rebuilt, opened by this release."""
    trail = connect(backend_url)
    exported = lines(SQLITE_MADE)
    with trail.engine.begin() as conn:
        for line in exported:
            if "event_id" in line:
                row = {k: v for k, v in line.items() if k != "position"}
                conn.execute(
                    insert(job_events), {**row, "occurred_at": parse_time(row["occurred_at"])}
                )
            elif "seal" in line:
                seal = line["seal"]
                conn.execute(insert(job_log_seals), {**seal, "actor": "cli"})
    trail.rebuild()
    yield trail
    trail.close()


def test_a_job_begun_before_the_upgrade_finishes_and_the_log_verifies(
    capsys: pytest.CaptureFixture[str], upgraded: Jobtrail, backend_url: str
) -> None:
    """This release continues a job of the previous one: its new events (RFC 8785) chain onto
    the old hashes, and replay checks each event by its own rule. On PostgreSQL the old
    events' numbers went through jsonb, as in the PostgreSQL-made export."""
    retried = job_of(SQLITE_MADE, "shots")
    assert upgraded.get(retried)["status"] == "queued"
    upgraded.service.start(retried, "worker:new", 30)
    upgraded.service.complete(retried, 2, {"url": "s3://x", "seconds": 4.0, "big": 1e16})
    history = upgraded.history(retried)
    assert [e.hash_form for e in history][-2:] == ["jcs", "jcs"]
    assert history[-2].prev_hash == history[-3].hash and history[-3].hash_form is None

    code, report = replay(capsys, backend_url, "--workers", "1")
    assert report["hashes"]["jcs"] == 2 and report["hashes"]["legacy"] == 16
    assert report["seals"]["checked"] and report["seals"]["mismatched"] == 0
    assert report["rows_compared"] == 6
    if backend_url.startswith("postgresql"):
        mixed = job_of(SQLITE_MADE, "int_0")
        assert (code, kinds(report)) == (1, [("legacy_hash_unverifiable", mixed, 1)])
        assert report["hashes"]["legacy_restored"] == 3
    else:
        assert (code, report["problems"]) == (0, [])
        assert report["hashes"]["legacy_restored"] == 0
