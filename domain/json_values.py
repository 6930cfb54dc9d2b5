"""The JSON values jobtrail accepts in payloads and results: one domain for every backend.

A value is accepted when it is:

- ``None``, ``bool``;
- an ``int`` within ±(2^53-1), or a bigger one written exactly as a double's shortest
  decimal (``10000000000000000``: how PostgreSQL gives back the float ``1e16``). RFC 8785
  (the hash) and JavaScript read numbers as doubles, so any other integer
  (``12345678901234567890``) would change on the way: it is refused (send it as a string,
  as RFC 8785 advises);
- a finite ``float`` (no NaN, no ±Infinity: they are not JSON);
- a ``str`` without U+0000 (PostgreSQL cannot store it, so neither backend takes it) and
  without lone surrogates (U+D800-U+DFFF on their own are not Unicode text);
- a ``list`` or ``tuple`` of accepted values;
- a ``dict`` whose keys are such strings and whose values are accepted values;

nested at most `MAX_DEPTH` lists and dicts deep. Subclasses of these types count as them
(an ``IntEnum`` member is an int). Anything else is refused: sets, bytes, datetimes,
``Decimal``, other objects, keys that are not strings (``{1: "a"}``).

`check_json` raises `InvalidJsonValue`, whose one-line message names the path to the first
bad value and says why (``payload.items[2].ratio: NaN is not JSON (use null or a string)``).
It is what `JobService.submit` checks payloads with, and what the worker checks results with
(in the processor's thread: a bad result fails its job as `InvalidResult`). Property tests
generate their values from this domain. Standard library only, like the rest of `domain/`.
"""

from __future__ import annotations

import datetime
import decimal
import json
import math
import re
from collections.abc import Iterable
from typing import Any

from jobtrail.domain.errors import InvalidJsonValue

MAX_SAFE_INTEGER = 2**53 - 1
"""The biggest integer an IEEE-754 double holds exactly (JavaScript's
``Number.MAX_SAFE_INTEGER``); the accepted integers are ``-MAX_SAFE_INTEGER`` to it."""
MAX_DEPTH = 100
"""Lists and dicts nested deeper than this are refused (a clear line instead of a
``RecursionError`` somewhere in an encoder, a database or a consumer)."""

_BAD_CHARACTER = re.compile("[\x00\ud800-\udfff]")
"""U+0000 and the surrogate code points: a str holding one cannot be stored."""
_SHOWN_KEY = 40
_SHOWN_PATH = 200


class _Refused(Exception):
    """A bad value, raised from the depth it was found at; the path is added on the way up."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path: list[str | int] = []
        """Keys and indexes, innermost first."""


def check_json(value: object, where: str) -> None:
    """Raise `InvalidJsonValue` unless ``value`` is in the accepted JSON domain.

    ``where`` names the value in the message (``"payload"``, ``"result"``); the path to the
    bad part is appended to it.
    """
    try:
        _check(value, MAX_DEPTH)
    except _Refused as refused:
        raise InvalidJsonValue(
            where=_where(where, reversed(refused.path)), reason=refused.reason
        ) from None


def is_json(value: object) -> bool:
    """Whether ``value`` is in the accepted JSON domain."""
    try:
        _check(value, MAX_DEPTH)
    except _Refused:
        return False
    return True


def storable_text(text: str) -> str:
    """``text`` with U+0000 and lone surrogates written as escapes (``\\u0000``, ``\\ud800``).

    For texts jobtrail writes itself rather than refuses (an error message, a progress
    message): what a processor says must reach the log, whatever its characters.
    """
    if _BAD_CHARACTER.search(text) is None:
        return text
    return _BAD_CHARACTER.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


# ------------------------------------------------------------------------ the walk


def _check(value: object, room: int) -> None:
    """Raise `_Refused` for the first bad part of ``value``; ``room``: containers allowed.

    ``isinstance``, so subclasses count as their base: an ``IntEnum`` member is an int, a
    ``StrEnum`` member a str, an ``OrderedDict`` a dict (encoders write them as such).
    """
    if isinstance(value, str):
        _check_str(value)
    elif isinstance(value, dict):
        _check_dict(value, room)
    elif isinstance(value, (list, tuple)):
        _check_list(value, room)
    elif value is None or isinstance(value, bool):
        return
    elif isinstance(value, int):
        _check_int(int(value))
    elif isinstance(value, float):
        _check_float(float(value))
    else:
        raise _Refused(_unsupported(value))


def _check_str(text: str) -> None:
    found = _BAD_CHARACTER.search(text)
    if found is not None:
        raise _Refused(_bad_character(found.group()))


def _check_int(number: int) -> None:
    if -MAX_SAFE_INTEGER <= number <= MAX_SAFE_INTEGER or _is_a_double(number):
        return
    raise _Refused(
        f"{_show_int(number)} is beyond ±(2^53-1), which JSON readers such as JavaScript "
        "cannot hold exactly; send it as a string"
    )


def _is_a_double(number: int) -> bool:
    """Whether ``number`` is written exactly as a double's shortest decimal: what PostgreSQL
    gives back for a float such as ``1e16``, which a processor may return as it read it."""
    try:
        shortest = float(number)
    except OverflowError:
        return False
    return shortest == number and int(decimal.Decimal(repr(shortest))) == number


def _check_float(number: float) -> None:
    if not math.isfinite(number):
        shown = "NaN" if math.isnan(number) else ("Infinity" if number > 0 else "-Infinity")
        raise _Refused(f"{shown} is not JSON (use null or a string)")


def _check_dict(mapping: dict[Any, Any], room: int) -> None:
    if room <= 0:
        raise _Refused(_TOO_DEEP)
    for key, item in mapping.items():
        if not isinstance(key, str):
            raise _Refused(f"key {_show_object(key)} is not a string")
        found = _BAD_CHARACTER.search(key)
        if found is not None:
            raise _Refused(f"key {_show_key(key)} {_bad_character(found.group())}")
        try:
            _check(item, room - 1)
        except _Refused as refused:
            refused.path.append(key)
            raise


def _check_list(items: list[Any] | tuple[Any, ...], room: int) -> None:
    if room <= 0:
        raise _Refused(_TOO_DEEP)
    for index, item in enumerate(items):
        try:
            _check(item, room - 1)
        except _Refused as refused:
            refused.path.append(index)
            raise


# ------------------------------------------------------------------------ messages

_TOO_DEEP = f"nested more than {MAX_DEPTH} levels deep (flatten it, or send it as a string)"

_HINTS: tuple[tuple[type | tuple[type, ...], str], ...] = (
    ((set, frozenset), "use a list"),
    ((bytes, bytearray, memoryview), "decode it to a str, or send it as base64 text"),
    ((datetime.date, datetime.time), "send it as an ISO 8601 string"),
    (datetime.timedelta, "send it as a number of seconds"),
    (decimal.Decimal, "use a float, or a string to keep every digit"),
)


def _unsupported(value: object) -> str:
    hint = next(
        (text for kinds, text in _HINTS if isinstance(value, kinds)),
        "use None, a bool, an int, a float, a str, a list or a dict",
    )
    return f"a value of type {_type_name(value)} is not JSON ({hint})"


def _bad_character(character: str) -> str:
    if character == "\x00":
        return "contains U+0000, which PostgreSQL cannot store"
    return f"contains a lone surrogate \\u{ord(character):04x}, which is not Unicode"


def _show_int(number: int) -> str:
    if number.bit_length() <= 200:  # up to 61 digits: shown in full
        return str(number)
    try:
        return f"an integer of {len(str(abs(number)))} digits"
    except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
        return f"an integer of about {int(number.bit_length() * math.log10(2)) + 1} digits"


def _show_key(key: str, *, ascii_only: bool = True) -> str:
    """A key as a JSON string (escapes and all), cut if long."""
    shown = json.dumps(key[:_SHOWN_KEY], ensure_ascii=ascii_only)
    return shown if len(key) <= _SHOWN_KEY else f'{shown[:-1]}…"'


def _show_object(value: object) -> str:
    """A short, printable, storable text for any object (its repr may raise or be huge)."""
    try:
        shown = ascii(value)
    except Exception:  # noqa: BLE001 - any repr may fail; its type still says enough
        return f"of type {_type_name(value)}"
    return shown if len(shown) <= _SHOWN_KEY else f"{shown[:_SHOWN_KEY]}…"


def _type_name(value: object) -> str:
    kind = type(value)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    return storable_text(name)


def _where(where: str, path: Iterable[str | int]) -> str:
    text = where
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part.isidentifier() and len(part) <= _SHOWN_KEY:
            text += f".{part}"
        else:
            text += f"[{_show_key(part, ascii_only=False)}]"
    if len(text) > _SHOWN_PATH:
        text = f"{text[: _SHOWN_PATH // 2]}…{text[-_SHOWN_PATH // 2 :]}"
    return text
