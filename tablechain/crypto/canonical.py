"""Canonical JSON: the one byte encoding that is signed and hashed.

Sorted keys, no whitespace, UTF-8, integers only (no floats, NaN or Infinity), no duplicate keys.
Encoding and decoding are strict so that two nodes can never disagree about what was signed.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from tablechain.errors import TablechainError

__all__ = [
    "CanonicalJSONError",
    "canonical_json",
    "parse_json",
    "parse_canonical",
    "parse_relayed",
    "too_deep",
    "MAX_DEPTH",
]

MAX_DEPTH = 64


class CanonicalJSONError(TablechainError):
    """The value cannot be encoded or decoded canonically."""

    code = "temMALFORMED"


def _check(value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise CanonicalJSONError(f"JSON nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, (bool, str)):
        return
    if isinstance(value, int):
        return
    if isinstance(value, float):
        raise CanonicalJSONError(
            "floats are not allowed in canonical JSON; use integers or decimal strings"
        )
    if isinstance(value, (list, tuple)):
        for item in value:
            _check(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise CanonicalJSONError(f"object keys must be strings, got {type(key).__name__}")
            _check(item, depth + 1)
        return
    raise CanonicalJSONError(f"type {type(value).__name__} cannot be encoded as canonical JSON")


_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def canonical_json(value: Any, trusted: bool = False) -> bytes:
    """Encode ``value`` as canonical JSON bytes.

    ``trusted=True`` skips the walk that refuses floats and odd types, for values that were
    already checked (decoded by ``parse_json``, or built by the ledger from checked parts).
    """
    try:
        # orjson's output is byte-identical to the encoder below for JSON values (sorted keys,
        # compact, UTF-8, the same escapes; tested); integers beyond 64 bits and anything it
        # does not know take the standard encoder.
        data = orjson.dumps(value, option=_ORJSON_SORTED)
    except (TypeError, orjson.JSONEncodeError):
        try:
            data = _ENCODER.encode(value).encode("utf-8")
        except (TypeError, ValueError, RecursionError, UnicodeEncodeError) as exc:
            raise CanonicalJSONError(f"cannot encode as canonical JSON: {exc}") from None
    if not trusted and not _plain(value, 0) and not _is_float_free(value, data):
        _check(value, 0)  # raises with a precise message
    return data


def _plain(value: Any, depth: int) -> bool:
    """The fastest sufficient test: ``value`` is made of plain dicts with string keys, lists,
    strings, integers, booleans and None only (exact types, as decoders make them), nested at
    most ``MAX_DEPTH`` deep. False means "look closer" (a subclass, a float, ...)."""
    kind = type(value)
    if kind is dict:
        if any(type(key) is not str for key in value):
            return False
        items: Any = value.values()
    elif kind is list:
        items = value
    else:
        return kind is str or kind is int or kind is bool or value is None
    if depth >= MAX_DEPTH:
        return False
    for item in items:
        t = type(item)
        if not (t is str or t is int or t is bool or item is None or _plain(item, depth + 1)):
            return False
    return True


_ORJSON_SORTED = orjson.OPT_SORT_KEYS


def _is_float_free(value: Any, text: bytes) -> bool:
    """Whether ``value`` (encoded as ``text``) holds no float, no non-string key, no tuple.

    Decoding the text again in C finds floats far faster than walking the value in Python;
    re-encoding the decoded value must give the same text, which catches keys and containers
    that JSON would have silently converted.
    """
    try:
        again = json.loads(text, parse_float=_no_float)
    except CanonicalJSONError:
        return False
    return bool(again == value)


def _no_float(text: str) -> Any:
    raise CanonicalJSONError(f"floats are not allowed: {text[:40]}")


def _no_constant(text: str) -> Any:
    raise CanonicalJSONError(f"{text} is not allowed")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise CanonicalJSONError(f"duplicate key {key!r}")
        out[key] = value
    return out


_DECODER = json.JSONDecoder(parse_float=_no_float, parse_constant=_no_constant)
_UNIQUE_KEYS_DECODER = json.JSONDecoder(
    parse_float=_no_float, parse_constant=_no_constant, object_pairs_hook=_no_duplicates
)


def parse_json(data: bytes | str, max_bytes: int | None = None) -> Any:
    """Decode JSON strictly: no floats, NaN, duplicate keys or excessive nesting."""
    if max_bytes is not None and len(data) > max_bytes:
        raise CanonicalJSONError(f"JSON document of {len(data)} bytes exceeds {max_bytes}")
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CanonicalJSONError(f"not UTF-8: {exc}") from None
    return _decode(data, None, nesting=True, duplicates=False)


def parse_canonical(data: bytes, max_bytes: int | None = None) -> Any:
    """Decode bytes that must already be canonical JSON (what nodes send each other).

    Faster than ``parse_json`` on large documents: the C decoder without a per-object hook,
    then the proof that the bytes are canonical (re-encoding gives them back exactly, which
    also rules out duplicate keys and whitespace), no floats and bounded nesting.
    """
    value = _decode(data, max_bytes, nesting=True, duplicates=True)
    if canonical_json(value, trusted=True) != data:
        raise CanonicalJSONError("the document is not in canonical form")
    return value


def parse_relayed(data: bytes, max_bytes: int | None = None) -> Any:
    """Decode JSON a peer relays (gossiped transactions): JSON types only, no float, integers
    exact; unlike ``parse_canonical`` the text need not be canonical (whoever uses a value
    re-encodes it), and nesting is left to the caller (``too_deep``): a validator checks only
    the transactions it does not already hold."""
    return _decode(data, max_bytes, nesting=False, duplicates=True)


def _decode(data: bytes | str, max_bytes: int | None, *, nesting: bool, duplicates: bool) -> Any:
    """The standard C decoder: integers exact at any size, a float or NaN refused through its
    hooks (called only when one occurs), its own recursion bounded (RecursionError, caught),
    so deep input cannot blow the stack; the tighter ``MAX_DEPTH`` is checked on the decoded
    value with ``nesting``. ``duplicates=False`` refuses duplicate keys (a Python hook per
    object: the strict decoder's price). Faster than orjson followed by a scan for float tokens
    (a regex over every byte cost more than decoding)."""
    if max_bytes is not None and len(data) > max_bytes:
        raise CanonicalJSONError(f"JSON document of {len(data)} bytes exceeds {max_bytes}")
    try:
        # What json.loads does, with decoders made once (json.loads builds a new decoder on
        # every call that passes hooks, which cost more than decoding a small document).
        if isinstance(data, (bytes, bytearray)):
            data = data.decode(json.detect_encoding(data), "surrogatepass")
        elif data.startswith("\ufeff"):
            raise ValueError("Unexpected UTF-8 BOM (decode using utf-8-sig)")
        value = (_DECODER if duplicates else _UNIQUE_KEYS_DECODER).decode(data)
    except CanonicalJSONError:
        raise
    except (ValueError, RecursionError) as exc:
        raise CanonicalJSONError(f"malformed JSON: {exc}") from None
    if nesting and too_deep(value):
        raise CanonicalJSONError(f"JSON nested deeper than {MAX_DEPTH} levels")
    return value


def too_deep(value: Any) -> bool:
    """Whether a decoded JSON ``value`` (plain dicts and lists, as the decoders make them)
    nests deeper than ``MAX_DEPTH``."""
    kind = type(value)
    return (kind is dict or kind is list) and not _nesting_ok(value, 1)


def _nesting_ok(container: Any, depth: int) -> bool:
    # Recursion stops at MAX_DEPTH: the Python stack stays shallow whatever the input.
    for child in container.values() if type(container) is dict else container:
        kind = type(child)
        if (kind is dict or kind is list) and (
            depth >= MAX_DEPTH or not _nesting_ok(child, depth + 1)
        ):
            return False
    return True
