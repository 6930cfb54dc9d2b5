"""The one text form of an event, and its hash: what the tamper-evident chain is built on.

An event's hash is the sha-256 of the UTF-8 bytes of the RFC 8785 (JSON Canonicalization
Scheme, JCS) form of its envelope without position and hash (`covered_fields`; ``prev_hash``
included). JCS reads every number as an IEEE-754 double and writes it as ECMAScript's
``Number.prototype.toString`` does (``1.0`` → ``1``, ``-0.0`` → ``0``, ``1e16`` →
``10000000000000000``, ``1e21`` → ``1e+21``, ``1e-7`` → ``1e-7``); escapes only ``"``, ``\\``
and the controls below U+0020 (``\\b \\t \\n \\f \\r``, the others ``\\u00xx``); sorts object
keys by their UTF-16 code units; writes no whitespace. Because numbers are read as doubles,
a store that keeps a number's value keeps the hash (PostgreSQL's ``jsonb`` writes ``1e21`` as
``1000000000000000000000`` and ``-0.0`` as ``0.0``).

Which rule an event's hash follows is written in the event: ``metadata.hash_form`` is
``"jcs"`` for every event this version writes; an event without it was hashed by the
previous release's rule (`legacy_text`: Python's ``json.dumps`` with sorted keys, compact,
``ensure_ascii=False``), and `covered_hash` checks it by that rule.

JCS is written by the C ``json`` encoder whenever the value holds nothing it writes
otherwise (`_for_c`: no float below 1e-4 or from 1e16 on, no integer of 2^53 or more, no key
with a character from U+E000 on; integral floats are handed over as ints), and by an exact
encoder otherwise (`jcs_text`).
Times are written one way only (`utc_iso`). Standard library only, like the rest of
`domain/`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from datetime import UTC, datetime
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

GENESIS_HASH = ""
"""The ``prev_hash`` of a job's first event."""

HASH_FORM = "jcs"
"""``metadata.hash_form`` of an event hashed by RFC 8785 (every event this version writes)."""

HASH_FORMS = (HASH_FORM, None)
"""The rules this version can check: RFC 8785, and None for events written before it."""


class UnknownHashForm(ValueError):
    """An event says its hash follows a rule this version of jobtrail does not know."""


def _compact(*, allow_nan: bool) -> Callable[[Any], str]:
    """``json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``, the
    C encoder made once and called directly: `json.JSONEncoder.encode` builds it on every
    call (a fifth of the time of a small event; replay hashes every event)."""
    encoder = json.JSONEncoder(
        sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=allow_nan
    )
    if c_make_encoder is None:  # an interpreter without the C accelerator
        return encoder.encode
    chunks = c_make_encoder(
        None, encoder.default, encode_basestring, None, ":", ",", True, False, allow_nan
    )  # no check for circular references: JSON read from a store or the boundary has none

    def encode(value: Any) -> str:
        return "".join(chunks(value, 0))

    return encode


_LEGACY = _compact(allow_nan=True)
"""The previous release's canonical form, kept to check the events it hashed."""

_COMPACT = _compact(allow_nan=False)
"""JCS's layout, for the values it writes exactly as JCS does (see `_for_c`)."""

_EXACT_INT = 2**53
"""Integers below this in magnitude are exact doubles, and JCS writes them as Python does."""

_HIGH = "\ue000"
"""Keys with a character from here on may sort otherwise by UTF-16 code units (JCS) than by
code points (Python): a non-BMP character is a surrogate pair, D800-DBFF, below U+E000."""


def utc_iso(moment: datetime) -> str:
    """ISO 8601 in UTC with microseconds, the one text form of a time in the log."""
    if moment.tzinfo is not UTC:  # times read back from the stores are in UTC already
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="microseconds")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


# ---------------------------------------------------------------------- RFC 8785


def jcs_text(value: Any) -> str:
    """The RFC 8785 text of a JSON value (dicts with str keys, lists, str, int, float, bool,
    None). `ValueError` for what JCS cannot write: NaN, infinities, an integer beyond the
    doubles; a lone surrogate fails when the text is encoded to UTF-8 (`sha256_hex`).

    The C encoder writes it whenever `_for_c` finds nothing it would write otherwise than
    JCS, or only integral floats it can hand over as the integers JCS writes them as (most
    events); the exact encoder (`exact_jcs_text`) writes the rest.
    """
    kind = type(value)
    if kind is dict or kind is list:
        ready = _for_c(value)
        if ready is not None:
            return _COMPACT(ready)
    return exact_jcs_text(value)


def _for_c(container: Any) -> Any:
    """``container`` if the C encoder (`_COMPACT`) writes it exactly as JCS does; a copy with
    its integral floats as ints if that is all it takes; None if the exact encoder must.

    The C encoder writes as JCS does: strings (both escape only ``"``, ``\\`` and the
    controls, the same way), None, booleans, integers below 2^53 in magnitude, floats Python
    writes in fixed notation (from 1e-4 to 1e16) that are not integral (the same shortest
    digits, written the same way), and dicts whose keys are strings without a character from
    U+E000 on (code point order is then UTF-16 order). An integral float of that range, or
    ±0.0, is written by JCS as the integer it equals (``4.0`` → ``4``, ``-0.0`` → ``0``): it is
    handed over as that int. Anything else (a float below 1e-4 or from 1e16 on, an integer of
    2^53 or more, such a key, a tuple, a subclass) goes to the exact encoder. Checking the
    value costs less than searching the text, and no number inside a string can mislead it.
    """
    if type(container) is dict:
        try:
            keys = "".join(container)  # one call for all keys: a key that is no str raises
        except TypeError:
            return None
        if not keys.isascii() and max(keys) >= _HIGH:
            return None
        items: Any = container.items()
    else:
        items = enumerate(container)
    copy = None
    for place, item in items:
        kind = type(item)
        if kind is str:
            continue
        if kind is dict or kind is list:
            ready = _for_c(item)
            if ready is None:
                return None
            if ready is item:
                continue
            item = ready
        elif kind is int:
            if -_EXACT_INT < item < _EXACT_INT:
                continue
            return None
        elif kind is float:
            if 1e-4 <= abs(item) < 1e16:
                if not item.is_integer():
                    continue
                item = int(item)  # below 1e16 an integral double's digits are JCS's
            elif item == 0:
                item = 0  # -0.0 too
            else:
                return None  # NaN and the infinities too: the exact encoder refuses them
        elif item is None or kind is bool:
            continue
        else:
            return None
        if copy is None:
            copy = dict(container) if type(container) is dict else list(container)
        copy[place] = item
    return container if copy is None else copy


def exact_jcs_text(value: Any) -> str:
    """`jcs_text` by the exact encoder alone, without the C encoder's fast path (the tests
    and the benchmark compare the two)."""
    kind = type(value)
    if kind is str:
        text: str = encode_basestring(value)
        return text
    if kind is dict:
        return (
            "{"
            + ",".join(
                [f"{encode_basestring(k)}:{exact_jcs_text(value[k])}" for k in _sorted_keys(value)]
            )
            + "}"
        )
    if kind is list:
        return "[" + ",".join([exact_jcs_text(item) for item in value]) + "]"
    if kind is float or kind is int:
        return es_number(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    return _exact_subclass(value)


def _exact_subclass(value: Any) -> str:
    """The exact encoder for subclasses (an ``IntEnum``, a str subclass) and tuples."""
    if isinstance(value, str):
        return exact_jcs_text(str(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return es_number(int(value))
    if isinstance(value, float):
        return es_number(float(value))
    if isinstance(value, dict):
        return exact_jcs_text(dict(value))
    if isinstance(value, list | tuple):
        return exact_jcs_text(list(value))
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def _sorted_keys(value: dict[Any, Any]) -> list[str]:
    """The keys in UTF-16 code unit order (code point order when no key reaches U+E000)."""
    keys = list(value)
    for key in keys:
        if type(key) is not str and not isinstance(key, str):
            raise TypeError(f"object keys must be strings, not {type(key).__name__}")
    if all(key.isascii() or max(key) < _HIGH for key in keys):
        keys.sort()
    else:
        keys.sort(key=_utf16)
    return keys


def _utf16(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def es_number(value: int | float) -> str:
    """A number as JCS writes it: the double it equals, as ECMAScript's ``Number#toString``.

    An integer is read as the double nearest to it (as a JSON parser reads its digits), so
    ``10000000000000000`` read back from a store writes like the float ``1e16`` it was.
    """
    if type(value) is not float:
        if -_EXACT_INT < value < _EXACT_INT:
            return str(int(value))
        try:
            value = float(value)
        except OverflowError:
            raise ValueError(f"the integer {value} is beyond the range of a double") from None
    magnitude = abs(value)
    if 1e-4 <= magnitude < 1e16:  # Python's fixed notation: the same text but for ".0"
        return str(int(value)) if value.is_integer() else repr(value)
    if value == 0:
        return "0"  # -0.0 too
    if not math.isfinite(value):
        raise ValueError(f"{value} is not a JSON number")
    # Python writes an exponent here: "1e-07", "1.5e+16", with the shortest digits, which
    # are ECMAScript's too (the digits of the double's shortest round-trip text)
    mantissa, _, exponent = repr(value).partition("e")
    digits = mantissa.lstrip("-").replace(".", "")
    e = int(exponent)  # the value is d.ddd × 10^e
    sign = "-" if value < 0 else ""
    if 16 <= e < 21:  # ECMAScript: the digits, then zeros
        return sign + digits + "0" * (e + 1 - len(digits))
    if -7 < e < -4:  # ECMAScript: 0.0000ddd
        return sign + "0." + "0" * (-e - 1) + digits
    return f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"


# ---------------------------------------------------------------------- the rules


def legacy_text(value: Any) -> str:
    """The previous release's canonical form (Python's float repr, code-point key order),
    kept to check the events hashed by it (those whose metadata has no ``hash_form``)."""
    return _LEGACY(value)


def hash_form(covered: dict[str, Any]) -> str | None:
    """The rule an envelope's hash follows: ``"jcs"``, or None (legacy) when its metadata
    does not say. `UnknownHashForm` for a rule this version does not know."""
    return metadata_hash_form(covered.get("metadata"))


def metadata_hash_form(metadata: Any) -> str | None:
    """`hash_form` from an envelope's metadata alone."""
    form = metadata.get("hash_form") if isinstance(metadata, dict) else None
    if form not in HASH_FORMS:
        raise UnknownHashForm(form)
    return form


def canonical_text(covered: dict[str, Any]) -> str:
    """The text an envelope's hash covers, by the rule its metadata names."""
    if hash_form(covered) == HASH_FORM:
        return jcs_covered_text(covered)
    return legacy_text(covered)


_COVERED_KEYS = frozenset(
    ("data", "event_id", "job_id", "metadata", "occurred_at", "prev_hash")
    + ("schema_version", "type", "version")
)


def jcs_covered_text(covered: dict[str, Any]) -> str:
    """`jcs_text` of an envelope as `covered_fields` makes it, its keys written in their
    known order and each value on its own (``data`` and ``metadata`` by `jcs_text`, the ids,
    times and small integers directly): the same text, about a tenth faster than the whole
    envelope through `jcs_text` (replay hashes every event). Any other dict goes to
    `jcs_text`."""
    if covered.keys() != _COVERED_KEYS:
        return jcs_text(covered)
    return jcs_envelope_text(
        covered["event_id"],
        covered["job_id"],
        covered["version"],
        covered["type"],
        covered["schema_version"],
        covered["occurred_at"],
        covered["data"],
        covered["metadata"],
        covered["prev_hash"],
    )


def jcs_envelope_text(
    event_id: Any,
    job_id: Any,
    version: Any,
    event_type: Any,
    schema_version: Any,
    occurred_at: Any,
    data: Any,
    metadata: Any,
    prev_hash: Any,
) -> str:
    """`jcs_covered_text` of the envelope these fields make (``occurred_at`` as its text),
    without building the dict: replay checks every stored event this way. The ids, the
    type, the time and the hashes are almost always str and the versions small ints: those
    are written inline, anything else by `_jcs_part`."""
    if (
        type(event_id) is str
        and type(job_id) is str
        and type(event_type) is str
        and type(occurred_at) is str
        and type(prev_hash) is str
        and type(version) is int
        and type(schema_version) is int
        and -_EXACT_INT < version < _EXACT_INT
        and -_EXACT_INT < schema_version < _EXACT_INT
    ):
        quote = encode_basestring
        return (
            f'{{"data":{jcs_text(data)},"event_id":{quote(event_id)},'
            f'"job_id":{quote(job_id)},"metadata":{jcs_text(metadata)},'
            f'"occurred_at":{quote(occurred_at)},"prev_hash":{quote(prev_hash)},'
            f'"schema_version":{schema_version},"type":{quote(event_type)},'
            f'"version":{version}}}'
        )
    part = _jcs_part
    return (
        f'{{"data":{part(data)},"event_id":{part(event_id)},'
        f'"job_id":{part(job_id)},"metadata":{part(metadata)},'
        f'"occurred_at":{part(occurred_at)},"prev_hash":{part(prev_hash)},'
        f'"schema_version":{part(schema_version)},"type":{part(event_type)},'
        f'"version":{part(version)}}}'
    )


def _jcs_part(value: Any) -> str:
    kind = type(value)
    if kind is str:
        text: str = encode_basestring(value)
        return text
    if kind is int and -_EXACT_INT < value < _EXACT_INT:
        return str(value)
    return jcs_text(value)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def covered_fields(
    *,
    event_id: str,
    job_id: str,
    version: int,
    type: str,
    schema_version: int,
    occurred_at: datetime,
    data: Any,
    metadata: Any,
    prev_hash: str,
) -> dict[str, Any]:
    """What an event's hash covers: its envelope without position and hash.

    One definition for new events and for stored ones that replay re-checks.
    """
    return {
        "event_id": event_id,
        "job_id": job_id,
        "version": version,
        "type": type,
        "schema_version": schema_version,
        "occurred_at": utc_iso(occurred_at),
        "data": data,
        "metadata": metadata,
        "prev_hash": prev_hash,
    }


def covered_hash(covered: dict[str, Any]) -> str:
    """The hash of an envelope given without its position and hash, by its own rule.

    One definition for writing events (`Event.new`) and for auditing stored ones: replay
    hashes the stored envelope as it is, so a field added to stored data is caught too.
    """
    return sha256_hex(canonical_text(covered))
