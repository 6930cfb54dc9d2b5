"""The accepted JSON domain (`jobtrail.domain.json_values`): what passes, what is refused, and
the path and reason each refusal names.

`json_values()` is the Hypothesis strategy of the accepted domain; other property tests (the
hash, the round trips through each backend) can import it from here.
"""

from __future__ import annotations

import collections
import datetime
import decimal
import enum
import json
import math
import sys
from decimal import Decimal
from typing import Any, NamedTuple

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from jobtrail.domain.errors import InvalidCommand, InvalidJsonValue
from jobtrail.domain.json_values import (
    MAX_DEPTH,
    MAX_SAFE_INTEGER,
    check_json,
    is_json,
    storable_text,
)

# ------------------------------------------------------------------ the strategies

TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"))
"""Any str of the domain: every code point but U+0000 and the surrogates."""
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
)


def json_values(max_leaves: int = 30) -> st.SearchStrategy[Any]:
    """Values of the accepted domain (lists, tuples and dicts of them, a few levels deep)."""
    return st.recursive(
        SCALARS,
        lambda inner: (
            st.lists(inner, max_size=5)
            | st.lists(inner, max_size=3).map(tuple)
            | st.dictionaries(TEXT, inner, max_size=5)
        ),
        max_leaves=max_leaves,
    )


ANY_TEXT = st.text(
    st.characters(exclude_categories=()) | st.characters(categories=["Cs"]) | st.just("\x00")
)
"""Any str at all, lone surrogates and U+0000 included."""
ANYTHING = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**52, max_value=2**54).flatmap(lambda n: st.sampled_from([n, -n]))
    | st.floats()
    | ANY_TEXT
    | st.binary(max_size=3)
    | st.sampled_from([decimal.Decimal("1.5"), datetime.date(2024, 1, 1), 1j, object]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.frozensets(st.integers(), max_size=2)
        | st.dictionaries(ANY_TEXT | st.integers() | st.booleans() | st.none(), inner, max_size=4)
    ),
    max_leaves=20,
)
"""Values in the domain and out of it."""


def shortest_decimal_of_a_double(number: int) -> bool:
    """The integer a double's shortest decimal spells (PostgreSQL's text of 1e16 or 1e21)."""
    try:
        shortest = Decimal(repr(float(number)))  # the digits Python, JavaScript and JCS write
        return shortest == shortest.to_integral_value() and int(shortest) == number
    except OverflowError:
        return False


def oracle(value: Any, depth: int = 0) -> bool:
    """The domain, written down again from the documentation, with no shared code."""
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return abs(value) <= 2**53 - 1 or shortest_decimal_of_a_double(value)
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return "\x00" not in value and not any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, list | tuple):
        return depth < 100 and all(oracle(item, depth + 1) for item in value)
    if isinstance(value, dict):
        return depth < 100 and all(
            isinstance(k, str) and oracle(k) and oracle(v, depth + 1) for k, v in value.items()
        )
    return False


# ------------------------------------------------------------------ properties


@given(json_values())
def test_every_value_of_the_domain_passes_and_survives_strict_json(value: Any) -> None:
    check_json(value, "payload")
    assert is_json(value)
    text = json.dumps(value, allow_nan=False, ensure_ascii=False)
    text.encode("utf-8")  # no lone surrogate anywhere
    assert "\\u0000" not in text
    assert json.loads(text) == json.loads(json.dumps(value))


@given(json_values())
def test_every_value_of_the_domain_has_a_canonical_form(value: Any) -> None:
    """RFC 8785 (what the hash is computed over) takes every value the domain accepts."""
    rfc8785 = pytest.importorskip("rfc8785")
    assert rfc8785.dumps(value)


@given(ANYTHING)
def test_the_check_agrees_with_the_documented_domain(value: Any) -> None:
    assert is_json(value) == oracle(value)
    if is_json(value):
        json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")
    else:
        with pytest.raises(InvalidJsonValue) as raised:
            check_json(value, "result")
        message = str(raised.value)
        assert message.startswith("result") and "\n" not in message
        assert is_json(message), "the message itself must be storable (it may be a failure's)"


KEYS = st.text(st.sampled_from('ab _-.é"0'), max_size=4)
PATHS = st.lists(st.integers(0, 3) | KEYS, max_size=12)
BAD_VALUES = [
    (float("nan"), "NaN is not JSON (use null or a string)"),
    (float("inf"), "Infinity is not JSON (use null or a string)"),
    (float("-inf"), "-Infinity is not JSON (use null or a string)"),
    (2**53 + 1, "9007199254740993 is beyond ±(2^53-1)"),
    (-(2**53 + 1), "-9007199254740993 is beyond ±(2^53-1)"),
    (2**64, "18446744073709551616 is beyond ±(2^53-1)"),
    ("a\x00b", "contains U+0000, which PostgreSQL cannot store"),
    ("\ud800", "contains a lone surrogate \\ud800, which is not Unicode"),
    ("x\udc80", "contains a lone surrogate \\udc80, which is not Unicode"),
    ({1: "a", "b": 2}, "key 1 is not a string"),
    ({"b": 2, 1: "a"}, "key 1 is not a string"),
    ({None: 1}, "key None is not a string"),
    ({(1, 2): 1}, "key (1, 2) is not a string"),
    ({"k\x00": 1}, 'key "k\\u0000" contains U+0000'),
    ({1, 2}, "a value of type set is not JSON (use a list)"),
    (frozenset(), "a value of type frozenset is not JSON (use a list)"),
    (b"\x89PNG", "a value of type bytes is not JSON"),
    (bytearray(b"x"), "a value of type bytearray is not JSON"),
    (datetime.datetime(2024, 1, 1), "a value of type datetime.datetime is not JSON"),
    (datetime.date(2024, 1, 1), "a value of type datetime.date is not JSON"),
    (decimal.Decimal("0.1"), "a value of type decimal.Decimal is not JSON"),
    (1 + 2j, "a value of type complex is not JSON"),
    (object(), "a value of type object is not JSON"),
]
"""Each kind of bad value, alone, and the reason the message gives."""
BAD = st.sampled_from(BAD_VALUES)


def expected_path(where: str, path: list[int | str]) -> str:
    """The path as the messages write it, written down again."""
    for part in path:
        if isinstance(part, int):
            where += f"[{part}]"
        elif part.isidentifier():
            where += "." + part
        else:
            where += "[" + json.dumps(part, ensure_ascii=False) + "]"
    return where


def planted(bad: Any, path: list[int | str], filler: Any) -> Any:
    """``bad`` at ``path``, with good siblings around it."""
    value = bad
    for part in reversed(path):
        if isinstance(part, int):
            value = [filler] * part + [value] + [filler]
        else:
            value = {"~before": filler, part: value, "~after": filler}
    return value


@given(BAD, PATHS, json_values(max_leaves=3))
def test_a_bad_value_anywhere_is_refused_with_its_path_and_reason(
    bad: tuple[Any, str], path: list[int | str], filler: Any
) -> None:
    assume(not any(part in ("~before", "~after") for part in path))
    value, reason = bad
    with pytest.raises(InvalidJsonValue) as raised:
        check_json(planted(value, path, filler), "payload")
    assert raised.value.where == expected_path("payload", path)
    assert reason in raised.value.reason
    assert str(raised.value) == f"{raised.value.where}: {raised.value.reason}."


@pytest.mark.parametrize(("bad", "reason"), BAD_VALUES, ids=[r for _, r in BAD_VALUES])
@pytest.mark.parametrize("path", [[], ["items", 2, "ratio"], [0, "a b", 1]])
def test_each_kind_of_bad_value_is_refused_on_its_own(
    bad: Any, reason: str, path: list[int | str]
) -> None:
    value = planted(bad, path, filler={"fine": [1, 2.5, "x", None]})
    assert not oracle(value)
    with pytest.raises(InvalidJsonValue) as raised:
        check_json(value, "result")
    assert raised.value.where == expected_path("result", path)
    assert reason in raised.value.reason


@given(ANY_TEXT)
def test_storable_text_escapes_only_what_cannot_be_stored(text: str) -> None:
    escaped = storable_text(text)
    assert is_json(escaped)
    if is_json(text):
        assert escaped == text
    else:
        assert escaped == "".join(
            f"\\u{ord(c):04x}" if c == "\x00" or 0xD800 <= ord(c) <= 0xDFFF else c for c in text
        )


# ------------------------------------------------------------------ the messages


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            {"items": [{}, {}, {"ratio": float("nan")}]},
            "payload.items[2].ratio: NaN is not JSON (use null or a string).",
        ),
        ({1: "a", "b": 2}, "payload: key 1 is not a string."),
        (
            {"big": 12345678901234567890},
            "payload.big: 12345678901234567890 is beyond ±(2^53-1), which JSON readers such as "
            "JavaScript cannot hold exactly; send it as a string.",
        ),
        ({"name": "a\x00"}, "payload.name: contains U+0000, which PostgreSQL cannot store."),
        (
            {"name": "\ud800"},
            "payload.name: contains a lone surrogate \\ud800, which is not Unicode.",
        ),
        (
            {"a b": {"größe": [float("-inf")]}},
            'payload["a b"].größe[0]: -Infinity is not JSON (use null or a string).',
        ),
        (
            {"\ud800x": 1},
            'payload: key "\\ud800x" contains a lone surrogate \\ud800, which is not Unicode.',
        ),
        (
            {"at": datetime.time(12, 0)},
            "payload.at: a value of type datetime.time is not JSON "
            "(send it as an ISO 8601 string).",
        ),
        (
            {"wait": datetime.timedelta(seconds=3)},
            "payload.wait: a value of type datetime.timedelta is not JSON "
            "(send it as a number of seconds).",
        ),
        (
            {"x": object()},
            "payload.x: a value of type object is not JSON "
            "(use None, a bool, an int, a float, a str, a list or a dict).",
        ),
    ],
)
def test_the_messages(value: Any, message: str) -> None:
    with pytest.raises(InvalidJsonValue) as raised:
        check_json(value, "payload")
    assert str(raised.value) == message
    assert isinstance(raised.value, InvalidCommand)  # a bad submit, like an empty job type


def test_integers_at_the_edge_of_a_double() -> None:
    for good in (MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER, 0, True):
        check_json({"n": good}, "payload")
    for bad in (MAX_SAFE_INTEGER + 2, -MAX_SAFE_INTEGER - 2, 12345678901234567890, 2**64):
        assert not is_json({"n": bad})
    # what PostgreSQL gives back for the floats 1e16 and 2.0**53: a double's own decimal
    for stored_float in (10**16, 2**53, -(10**20), 10**21):
        check_json({"n": stored_float}, "result")


def test_a_huge_integer_is_described_not_printed() -> None:
    with pytest.raises(InvalidJsonValue) as raised:
        check_json({"n": 10**100}, "payload")
    assert str(raised.value).startswith("payload.n: an integer of 101 digits is beyond")
    beyond_str = 10 ** (sys.get_int_max_str_digits() + 10)  # str() of it raises ValueError
    with pytest.raises(InvalidJsonValue) as raised:
        check_json([beyond_str], "result")
    assert str(raised.value).startswith("result[0]: an integer of about 4311 digits is beyond")


def test_floats_at_the_edges_are_accepted() -> None:
    check_json([sys.float_info.max, -sys.float_info.max, 5e-324, -0.0, 1e21, 1e-7], "p")


def test_a_surrogate_pair_is_one_character_and_two_code_points_are_not() -> None:
    check_json("\U0001f600", "p")
    assert json.loads('"\\ud83d\\ude00"') == "\U0001f600"
    assert not is_json("\ud83d\ude00")  # two lone surrogates in a Python str


def nested(levels: int) -> Any:
    value: Any = {}
    for _ in range(levels - 1):
        value = [value]
    return value


def test_nesting_up_to_the_limit_is_accepted_and_deeper_is_refused() -> None:
    check_json(nested(MAX_DEPTH), "payload")
    with pytest.raises(InvalidJsonValue) as raised:
        check_json(nested(MAX_DEPTH + 1), "payload")
    assert raised.value.reason == (
        "nested more than 100 levels deep (flatten it, or send it as a string)"
    )
    assert len(raised.value.where) < 220 and "…" in raised.value.where


def test_a_cycle_is_refused_as_too_deep_not_a_recursion_error() -> None:
    loop: list[Any] = []
    loop.append(loop)
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    for value in (loop, cyclic):
        with pytest.raises(InvalidJsonValue, match="nested more than 100 levels deep"):
            check_json(value, "result")


def test_subclasses_count_as_their_base_type() -> None:
    class Color(enum.StrEnum):
        RED = "red"

    class Size(enum.IntEnum):
        BIG = 3

    class Point(NamedTuple):
        x: float
        y: float

    check_json(
        collections.OrderedDict(
            color=Color.RED, size=Size.BIG, point=Point(1.0, 2.0), counts=collections.Counter()
        ),
        "payload",
    )
    check_json({Color.RED: 1}, "payload")


def test_a_key_whose_repr_fails_is_still_named_by_its_type() -> None:
    class Weird:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

        def __hash__(self) -> int:
            return 1

    with pytest.raises(InvalidJsonValue) as raised:
        check_json({Weird(): 1}, "payload")
    assert "key of type" in str(raised.value) and "Weird" in str(raised.value)


def test_long_keys_and_paths_are_cut() -> None:
    key = "k" * 500
    with pytest.raises(InvalidJsonValue) as raised:
        check_json({key: float("nan")}, "payload")
    assert raised.value.where == f'payload["{"k" * 40}…"]'
    with pytest.raises(InvalidJsonValue) as raised:
        check_json({"\x00" + key: 1}, "payload")
    assert len(str(raised.value)) < 150
