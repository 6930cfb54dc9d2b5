"""The hash's canonical form: RFC 8785 (JCS), checked against the RFC's own examples and against
the PyPI package `rfc8785` (Trail of Bits) as a reference; the rule chosen by an event's
``metadata.hash_form``; and the test vectors published beside the event schema.

The vectors are made here: ``python -m tests.unit.test_canonical`` rewrites
``adapters/kafka/schemas/hash-vectors.json``, and
`test_the_published_vectors_are_what_the_code_makes` fails when the file and the code differ.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import jobtrail.adapters.kafka
import pytest
import rfc8785
from hypothesis import example, given, settings
from hypothesis import strategies as st
from jobtrail.domain.canonical import (
    HASH_FORM,
    UnknownHashForm,
    canonical_text,
    covered_hash,
    es_number,
    exact_jcs_text,
    jcs_covered_text,
    jcs_text,
    legacy_text,
)
from jobtrail.domain.events import (
    Event,
    JobCompleted,
    JobFailed,
    JobProgressed,
    JobQueued,
    JobStarted,
    event_from_envelope,
)
from jobtrail.domain.job import Job, Meta
from jsonschema import Draft202012Validator

SCHEMAS = Path(jobtrail.adapters.kafka.__file__).parent / "schemas"
VECTORS = SCHEMAS / "hash-vectors.json"
MAX_SAFE = 2**53 - 1


def reference(value: Any) -> str:
    """`rfc8785`'s text of a value as a JSON parser reads it (every number a double; the
    package refuses Python ints beyond 2^53 - 1, which a parser would read as doubles)."""
    return rfc8785.dumps(as_doubles(value)).decode()


def as_doubles(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: as_doubles(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_doubles(v) for v in value]
    if type(value) is int and abs(value) > MAX_SAFE:
        return float(value)
    return value


def double(bits: str) -> float:
    value: float = struct.unpack(">d", bytes.fromhex(bits))[0]
    return value


# ---------------------------------------------------------------------- RFC 8785's examples

APPENDIX_B = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]
"""RFC 8785, Appendix B: IEEE-754 doubles (hex) and their canonical text."""


@pytest.mark.parametrize(("bits", "text"), APPENDIX_B)
def test_rfc_8785_appendix_b_numbers(bits: str, text: str) -> None:
    value = double(bits)
    assert es_number(value) == text
    assert jcs_text([value]) == exact_jcs_text([value]) == f"[{text}]"
    assert jcs_text({"n": value}) == f'{{"n":{text}}}'


@pytest.mark.parametrize("bits", ["7fffffffffffffff", "7ff0000000000000", "fff0000000000000"])
def test_nan_and_the_infinities_are_refused(bits: str) -> None:
    for encode in (jcs_text, exact_jcs_text):
        with pytest.raises(ValueError):
            encode({"n": double(bits)})


def test_rfc_8785_section_3_2_2_example() -> None:
    """The RFC's input text, parsed as JSON, canonicalizes to its output text and bytes."""
    source = (
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    utf8 = bytes.fromhex(  # the RFC's hex dump of the output
        "7b 22 6c 69 74 65 72 61 6c 73 22 3a 5b 6e 75 6c 6c 2c 74 72"
        "75 65 2c 66 61 6c 73 65 5d 2c 22 6e 75 6d 62 65 72 73 22 3a"
        "5b 33 33 33 33 33 33 33 33 33 2e 33 33 33 33 33 33 33 2c 31"
        "65 2b 33 30 2c 34 2e 35 2c 30 2e 30 30 32 2c 31 65 2d 32 37"
        "5d 2c 22 73 74 72 69 6e 67 22 3a 22 e2 82 ac 24 5c 75 30 30"
        "30 66 5c 6e 41 27 42 5c 22 5c 5c 5c 5c 5c 22 2f 22 7d"
    )
    value = json.loads(source)
    assert jcs_text(value) == exact_jcs_text(value) == expected
    assert expected.encode() == utf8


def test_rfc_8785_section_3_2_3_sorting_example() -> None:
    """Keys sort by UTF-16 code units: the emoji (a surrogate pair) before U+FB33."""
    value = json.loads(
        '{"\\u20ac": "Euro Sign", "\\r": "Carriage Return", "\\ufb33": "Hebrew Letter Dalet With '
        'Dagesh", "1": "One", "\\ud83d\\ude00": "Emoji: Grinning Face", "\\u0080": "Control", '
        '"\\u00f6": "Latin Small Letter O With Diaeresis"}'
    )
    order = [json.loads(f"[{key}]")[0] for key in ['"\\r"', '"1"', '"\\u0080"', '"\\u00f6"']]
    order += ["\u20ac", "\U0001f600", "\ufb33"]
    assert list(json.loads(jcs_text(value))) == order
    assert jcs_text(value) == reference(value)
    assert list(json.loads(legacy_text(value)))[-2:] == ["\ufb33", "\U0001f600"]  # code points


# ---------------------------------------------------------------------- against the reference

ESCAPES = [chr(c) for c in range(0x20)] + ['"', "\\", "/", "\x7f", "\u2028", "\u2029"]
NOTABLE = ["é", "€", "\u0080", "\ud7ff", "\ue000", "\uf8ff", "\ufb33", "\uffff"]
NOTABLE += ["\U0001f600", "\U00010000", "\U0010ffff", "\U000f0000"]
characters = st.one_of(
    st.characters(blacklist_categories=("Cs",)),  # no lone surrogates; private use, non-BMP
    st.sampled_from(ESCAPES + NOTABLE),
)
strings = st.text(characters, max_size=6)
from_bits = (
    st.integers(0, 2**64 - 1)
    .map(lambda bits: struct.unpack(">d", bits.to_bytes(8, "big"))[0])
    .filter(math.isfinite)
)
round_numbers = st.builds(
    lambda mantissa, exponent: mantissa * 10.0**exponent,
    st.integers(-999, 999),
    st.integers(-30, 30),
).filter(math.isfinite)
floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    from_bits,
    round_numbers,
    st.sampled_from([1.0, -0.0, 0.0, 1e16, 1e21, 1e-7, 1e-5, 1e-6, 1e20, 1e23, 0.1, 5e-324]),
)
ints = st.integers(-MAX_SAFE, MAX_SAFE)
scalars = st.one_of(st.none(), st.booleans(), ints, floats, strings)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(strings, children, max_size=5)
    ),
    max_leaves=24,
)
"""JSON values in the domain the boundary accepts (plus U+0000, which JCS writes too)."""


@settings(max_examples=600)
@given(json_values)
@example({"\ue000": 1, "\U0001f600": 2, "a": [1.0, -0.0, 1e16, 1e21, 1e-7, 0.00001]})
@example({"s": "".join(ESCAPES)})
def test_jcs_text_is_the_reference_text(value: Any) -> None:
    expected = reference(value)
    assert jcs_text(value) == expected
    assert exact_jcs_text(value) == expected


@settings(max_examples=300)
@given(st.dictionaries(strings, json_values, max_size=6))
def test_the_fast_path_and_the_exact_encoder_agree(value: dict[str, Any]) -> None:
    assert jcs_text(value) == exact_jcs_text(value)


COVERED_KEYS = ["data", "event_id", "job_id", "metadata", "occurred_at", "prev_hash"]
COVERED_KEYS += ["schema_version", "type", "version"]


@settings(max_examples=300)
@given(
    st.fixed_dictionaries({key: json_values for key in COVERED_KEYS}),
    st.dictionaries(strings, json_values, max_size=2),
)
def test_an_envelope_is_written_as_jcs_text_writes_it(
    covered: dict[str, Any], extra: dict[str, Any]
) -> None:
    """`jcs_covered_text` writes the envelope's fields one by one: the same text, whatever
    the fields hold (a tampered store may hold anything), and for any other set of keys."""
    assert jcs_covered_text(covered) == jcs_text(covered) == reference(covered)
    other = {**covered, **extra}
    assert jcs_covered_text(other) == reference(other)


@settings(max_examples=300)
@given(
    st.fixed_dictionaries(
        {
            "data": json_values,
            "metadata": json_values,
            "event_id": strings,
            "job_id": strings,
            "occurred_at": strings,
            "prev_hash": strings,
            "type": strings,
            "schema_version": st.integers(-(2**60), 2**60),
            "version": st.integers(-(2**60), 2**60),
        }
    )
)
def test_an_envelope_of_the_usual_types_takes_the_inline_path_to_the_same_text(
    covered: dict[str, Any],
) -> None:
    """Ids, time and hashes as str, versions as ints (beyond 2^53 too): the inline writing
    of `jcs_envelope_text` gives JCS's text."""
    assert jcs_covered_text(covered) == reference(covered)


@given(st.integers(MAX_SAFE + 1, 10**300) | st.integers(-(10**300), -MAX_SAFE - 1))
@example(10**16)
@example(10**21)
@example(12345678901234567890)
@example(2**53 + 1)
def test_an_integer_beyond_2_53_is_written_as_the_double_it_reads_as(number: int) -> None:
    """A store that rewrote the float 1e16 as 10000000000000000 keeps the hash."""
    text = rfc8785.dumps(float(number)).decode()
    assert es_number(number) == text
    assert jcs_text({"n": number}) == exact_jcs_text({"n": number}) == f'{{"n":{text}}}'
    assert jcs_text({"n": number}) == jcs_text({"n": float(number)})


def test_an_integer_no_double_can_hold_is_refused() -> None:
    with pytest.raises(ValueError, match="beyond the range of a double"):
        jcs_text({"n": 10**400})


def test_a_lone_surrogate_cannot_be_hashed() -> None:
    with pytest.raises(UnicodeEncodeError):
        covered_hash({"metadata": {"hash_form": HASH_FORM}, "data": {"s": "\ud800"}})


@pytest.mark.parametrize(
    ("value", "fast"),
    [
        ({"t": "2026-03-01T12:00:00.123456+00:00", "n": 1.5, "i": 42, "b": [True, None]}, True),
        ({"s": "a,1.0], 1e+16, 12345678901234567"}, True),  # numbers in strings: no matter
        ({"n": 2**53 - 1, "m": -(2**53 - 1), "f": 1.5e-4, "g": 9.5e14 + 0.5}, True),
        ({"k\ud7ff": 1, "é": {"€": [0.5]}}, True),
        ({"n": 1.0, "m": [[-0.0, 0.0]], "d": {"ms": 2000.0}, "big": 9.5e15}, True),  # as ints
        ({"n": 1e16}, False),
        ({"n": 9.5e-5}, False),
        ({"n": 2**53}, False),
        ({"k\ue000": 1}, False),
        ({"\U0001f600": 1}, False),
        ({"t": (1, 2)}, False),
        ({1: "a"}, False),
    ],
)
def test_what_takes_the_fast_path(value: dict[Any, Any], fast: bool) -> None:
    from jobtrail.domain import canonical

    ready = canonical._for_c(value)
    assert (ready is not None) is fast
    if fast:
        assert canonical._COMPACT(ready) == jcs_text(value) == reference(value)
        assert (ready is value) == (canonical._COMPACT(value) == jcs_text(value))
    elif all(type(key) is str for key in value):
        assert jcs_text(value) == exact_jcs_text(value) == reference(value)
    assert canonical._for_c({"n": float("nan")}) is None  # the exact encoder refuses it


fractional = st.floats(min_value=1e-4, max_value=1e16, exclude_max=True).filter(
    lambda x: not x.is_integer()
)
plain_values = st.recursive(
    st.none() | st.booleans() | ints | strings | fractional | fractional.map(lambda x: -x),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(strings, children, max_size=5)
    ),
    max_leaves=24,
)
"""Values the C encoder writes (mostly): fractional floats in fixed notation, no key from
U+E000 on (most of the time)."""


@settings(max_examples=300)
@given(st.dictionaries(strings, plain_values, max_size=6))
def test_the_fast_path_writes_the_reference_text(value: dict[str, Any]) -> None:
    assert jcs_text(value) == exact_jcs_text(value) == reference(value)


# ---------------------------------------------------------------------- the rule of each event

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_new_events_say_they_are_hashed_by_rfc_8785() -> None:
    job = Job.submit("j1", "video", {"n": 1.0, "é": -0.0}, now=T0, meta=Meta("cli", "c-1"))
    (event,) = job.pending
    assert event.metadata() == {"actor": "cli", "correlation_id": "c-1", "hash_form": "jcs"}
    assert event.envelope()["metadata"]["hash_form"] == "jcs"
    covered = {k: v for k, v in event.envelope().items() if k not in ("position", "hash")}
    assert event.canonical() == jcs_text(covered) == reference(covered)
    assert event.hash == hashlib.sha256(reference(covered).encode()).hexdigest()


def legacy_event() -> Event:
    """An event as the previous release made it: no hash_form, hashed by `legacy_text`."""
    event = JobQueued(
        job_id="j1",
        version=1,
        occurred_at=T0,
        hash_form=None,
        job_type="video",
        payload={"n": 1.0, "big": 1e16, "é": "x", "\U0001f600": 1, "\ue000": 2},
        max_attempts=3,
        priority=0,
        available_at=T0,
    )
    covered = {k: v for k, v in event.envelope().items() if k not in ("position", "hash")}
    text = json.dumps(covered, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return replace(event, hash=hashlib.sha256(text.encode()).hexdigest())


def test_an_event_without_hash_form_is_checked_by_the_legacy_rule() -> None:
    event = legacy_event()
    envelope = json.loads(json.dumps(event.envelope()))
    assert "hash_form" not in envelope["metadata"]
    decoded = event_from_envelope(envelope)
    assert decoded.hash_form is None
    assert decoded.metadata() == envelope["metadata"]
    assert decoded.compute_hash() == event.hash
    covered = {k: v for k, v in envelope.items() if k not in ("position", "hash")}
    assert covered_hash(covered) == event.hash
    assert canonical_text(covered) != jcs_text(covered)  # 1.0, 1e+16 and the key order differ


def test_the_rule_is_covered_by_the_hash_and_an_unknown_one_is_refused() -> None:
    job = Job.submit("j1", "video", {"n": 1.5}, now=T0)
    envelope = job.pending[0].envelope()
    covered = {k: v for k, v in envelope.items() if k not in ("position", "hash")}
    stripped = {**covered, "metadata": {**covered["metadata"]}}
    del stripped["metadata"]["hash_form"]
    assert covered_hash(stripped) != envelope["hash"]
    with pytest.raises(UnknownHashForm):
        covered_hash({**covered, "metadata": {**covered["metadata"], "hash_form": "jcs2"}})


# ---------------------------------------------------------------------- the published vectors

VECTOR_JOB = "6f1c2a9e-3b4d-4e5f-8a7b-1c2d3e4f5a6b"
FLOATS = {
    "one": 1.0,
    "negative_zero": -0.0,
    "e16": 1e16,
    "e20": 1e20,
    "e21": 1e21,
    "e23": 1e23,
    "two_pow_68": 2.0**68,
    "just_below_e23": 9.999999999999997e22,
    "max": 1.7976931348623157e308,
    "min_subnormal": 5e-324,
    "e_minus_5": 0.00001,
    "e_minus_6": 0.000001,
    "e_minus_7": 1e-7,
    "just_below_e_minus_6": 9.999999999999997e-7,
    "tenth": 0.1,
    "third": 1 / 3,
    "negative_tiny": -1.5e-10,
    "fraction": 123456789.125,
    "nested": [[1.0, 2.5], {"z": -0.0, "a": 1e16}],
}


def _vector_events() -> list[tuple[str, str, Event]]:
    """(name, what it covers, event): real events, made by the domain's own classes."""

    def made(cls: type[Event], n: int, version: int = 1, prev: str = "", **fields: Any) -> Event:
        return cls.new(
            job_id=VECTOR_JOB,
            version=version,
            event_id=f"00000000-0000-4000-8000-{n:012d}",
            occurred_at=T0 + timedelta(seconds=n, microseconds=n * 1111),
            actor="cli",
            correlation_id=None if n % 2 else f"request-{n}",
            prev_hash=prev,
            **fields,
        )

    def queued(n: int, payload: dict[str, Any]) -> Event:
        return made(
            JobQueued,
            n,
            job_type="shot_video_generation",
            payload=payload,
            max_attempts=3,
            priority=0,
            available_at=T0 + timedelta(seconds=n),
        )

    first = queued(1, {"prompt": "a cat", "seconds": 4, "ratio": 1.5})
    started = made(
        JobStarted,
        2,
        version=2,
        prev=first.hash,
        attempt=1,
        worker_id="worker:host-1",
        lease_expires_at=T0 + timedelta(seconds=32),
    )
    return [
        ("typical-job-queued", "a small payload: the fast path", first),
        ("typical-job-started", "the next event of the same job (prev_hash)", started),
        (
            "nested-keys",
            "keys sorted at every level, arrays of objects kept in order",
            queued(
                3,
                {
                    "shot": {"z_index": 2, "camera": {"zoom": 2, "pan": [{"y": 1, "x": 0}]}},
                    "B": "upper case sorts before lower case",
                    "b": True,
                    "_": None,
                    "a": [],
                    "": {},
                },
            ),
        ),
        (
            "unicode-keys",
            "non-ASCII, non-BMP and private-use keys, sorted by UTF-16 code units: the "
            "non-BMP ones (surrogate pairs, D800-DBFF) before U+E000-U+FFFF",
            queued(
                4,
                {
                    "a": 0,
                    "é": "latin",
                    "€": "euro",
                    "日本語": "cjk",
                    "\U0001f600": "emoji, non-BMP",
                    "\U0010ffff": "last code point",
                    "\ue000": "private use",
                    "\uffff": "last of the BMP",
                    "\u0080": "a C1 control, not escaped",
                },
            ),
        ),
        (
            "floats",
            "numbers as doubles, written as ECMAScript does: 1.0 -> 1, -0.0 -> 0, "
            "1e16 -> 10000000000000000, 1e21 -> 1e+21, 1e-7 -> 1e-7, 0.00001 -> 0.00001",
            made(
                JobCompleted,
                5,
                version=3,
                prev="c" * 64,
                attempt=1,
                result=FLOATS,
                duration_ms=1234.5,
            ),
        ),
        (
            "whole-floats",
            "floats without an exponent that Python writes with '.0': 4.0 -> 4, -0.0 -> 0 "
            "(a duration in whole milliseconds is one)",
            made(
                JobCompleted,
                10,
                version=3,
                prev="f" * 64,
                attempt=1,
                result={"seconds": 4.0, "offset": -0.0, "score": 0.5},
                duration_ms=1500.0,
            ),
        ),
        (
            "integers",
            "integers up to 2^53 - 1 in magnitude, exact (larger ones are refused at submit)",
            queued(
                6,
                {
                    "max_safe": MAX_SAFE,
                    "min_safe": -MAX_SAFE,
                    "zero": 0,
                    "negative": -42,
                    "e15": 10**15,
                },
            ),
        ),
        (
            "escapes",
            "every escape: quote, backslash, \\b \\t \\n \\f \\r, other controls as "
            "lowercase \\u00xx; '/', DEL, U+2028 and U+2029 as they are",
            made(
                JobProgressed,
                7,
                version=2,
                prev="d" * 64,
                attempt=1,
                percent=50,
                message='quote " backslash \\ slash / \b\t\n\f\r \x01\x1f\x7f \u2028\u2029 é 😀',
            ),
        ),
        (
            "escapes-in-keys",
            "escaped characters in keys sort by the character, not its escape",
            queued(8, {"tab\tkey": 1, 'quote"key': 2, "new\nline": 3, "\x01": 4, "\\": 5}),
        ),
        (
            "typical-job-failed",
            "a failure with a correlation id",
            made(
                JobFailed,
                9,
                version=3,
                prev="e" * 64,
                attempt=1,
                error_type="InsufficientCredits",
                error_code="insufficient_credits",
                error_message="insufficient credits",
                error_category="user",
                retryable=False,
            ),
        ),
    ]


def as_jsonb_returns(value: Any) -> Any:
    """A value as PostgreSQL's jsonb gives it back: floats of 1e16 and more as integers, -0.0
    as 0.0."""
    if isinstance(value, dict):
        return {k: as_jsonb_returns(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_jsonb_returns(v) for v in value]
    if type(value) is float and abs(value) >= 1e16:
        return int(Decimal(repr(value)))  # the decimal of Python's text, as numeric keeps it
    if type(value) is float and value == 0:
        return 0.0
    return value


def build_vectors() -> dict[str, Any]:
    vectors = []
    for name, covers, event in _vector_events():
        covered = {k: v for k, v in event.envelope().items() if k not in ("position", "hash")}
        vectors.append(vector(name, covers, covered, event.canonical(), event.hash))
        if name == "floats":
            stored = as_jsonb_returns(covered)
            vectors.append(
                vector(
                    "floats-as-postgresql-returns-them",
                    "the floats vector as PostgreSQL's jsonb gives it back (1e16 as the "
                    "integer 10000000000000000, -0.0 as 0.0): the same canonical text and hash",
                    stored,
                    jcs_text(stored),
                    covered_hash(stored),
                )
            )
    return {
        "description": (
            "Test vectors of jobtrail's event hash. An event's hash is the lowercase hex "
            "sha-256 of the UTF-8 bytes of the RFC 8785 (JSON Canonicalization Scheme) form "
            "of its envelope without `position` and `hash` (with `prev_hash`), for every "
            "event whose metadata.hash_form is 'jcs'. Each vector gives that covered envelope "
            "(`envelope`), its canonical text and its hash. Parse `envelope` as JSON (numbers "
            "as IEEE-754 doubles), canonicalize it with any RFC 8785 implementation, and "
            "compare. Made by tests/unit/test_canonical.py."
        ),
        "vectors": vectors,
    }


def vector(name: str, covers: str, envelope: Any, canonical: str, hashed: str) -> dict[str, Any]:
    return {
        "name": name,
        "covers": covers,
        "envelope": envelope,
        "canonical": canonical,
        "sha256": hashed,
    }


def render(vectors: dict[str, Any]) -> str:
    return json.dumps(vectors, indent=2, ensure_ascii=True) + "\n"


def test_the_published_vectors_are_what_the_code_makes() -> None:
    assert VECTORS.read_text(encoding="utf-8") == render(build_vectors()), (
        "hash-vectors.json is stale: python -m tests.unit.test_canonical"
    )


def published() -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = json.loads(VECTORS.read_text(encoding="utf-8"))["vectors"]
    return vectors


def test_each_published_vector_is_rfc_8785() -> None:
    """Read back from the file as a consumer would: the reference gives the same text."""
    for vector in published():
        envelope = vector["envelope"]
        assert reference(envelope) == vector["canonical"] == jcs_text(envelope), vector["name"]
        assert hashlib.sha256(vector["canonical"].encode()).hexdigest() == vector["sha256"]
        assert covered_hash(envelope) == vector["sha256"], vector["name"]
        assert envelope["metadata"]["hash_form"] == "jcs"


def test_the_vectors_cover_what_they_say() -> None:
    by_name = {v["name"]: v for v in published()}
    floats = by_name["floats"]
    for text in ("1e+21", "1e-7", ":0,", "10000000000000000", "0.00001", '"one":1,'):
        assert text in floats["canonical"], text
    assert by_name["floats-as-postgresql-returns-them"]["sha256"] == floats["sha256"]
    keys = list(json.loads(by_name["unicode-keys"]["canonical"])["data"]["payload"])
    assert keys.index("\U0010ffff") < keys.index("\ue000")
    assert "\\u001f" in by_name["escapes"]["canonical"]
    assert "\u2028" in by_name["escapes"]["canonical"]
    assert (
        by_name["typical-job-started"]["envelope"]["prev_hash"]
        == (by_name["typical-job-queued"]["sha256"])
    )


def test_the_vectors_are_events_the_schema_accepts() -> None:
    schema = json.loads((SCHEMAS / "job-event.schema.json").read_text())
    validator = Draft202012Validator(schema)
    for position, vector in enumerate(published(), start=1):
        envelope = {**vector["envelope"], "position": position, "hash": vector["sha256"]}
        errors = [e.message for e in validator.iter_errors(envelope)]
        assert errors == [], vector["name"]


if __name__ == "__main__":
    VECTORS.write_text(render(build_vectors()), encoding="utf-8")
    sys.exit(0)
