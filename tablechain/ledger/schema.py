"""Field definitions of ChainSQL tables: parsing a create ``Raw``, value coercion, physical tables.

A create's ``Raw`` is a list of field definitions such as
``{"field": "id", "type": "int", "length": 11, "PK": 1, "NN": 1, "UQ": 1}``. ``parse_fields``
validates it into frozen ``FieldDef`` values, ``coerce_value`` checks and normalises a JSON value
for a field, and ``build_table`` makes the SQLAlchemy table that holds the rows.

Determinism is the main design constraint: validators running different backends (SQLite,
PostgreSQL, MariaDB) must store the same values and select exactly the same rows.

Value representation (the canonical JSON form, what rows read back as):

- ``int``: a JSON integer in the signed 64-bit range (booleans are not integers here).
- ``decimal``, ``float``, ``double``: exact decimals, never binary floats. Input is a JSON
  integer or a decimal string (``"-12.5"``); the canonical form is a string with exactly
  ``accuracy`` fractional digits (``"-12.50"``; ``"12"`` when the scale is 0). Extra fractional
  digits are accepted only when they are zeros, nothing is rounded. ``length`` is the
  precision (at most 18 digits), ``accuracy`` the scale. Defaults: ``decimal`` (10, 0),
  ``float`` (18, 6), ``double`` (18, 9). They are stored as a BIGINT holding
  ``value * 10**scale`` on every backend: SQLite's NUMERIC affinity would store binary floats,
  so a scaled integer is the only exact representation common to all three.
- ``varchar`` / ``char`` / ``text``: JSON strings; ``length`` counts characters (code points).
  No NUL characters and no lone surrogates (PostgreSQL refuses the first, UTF-8 the second).
  ``char`` is stored as VARCHAR: SQL CHAR pads with spaces on some backends, and trailing
  spaces are significant here.
- ``blob``: a hex string (even length, either case, no ``0x``); canonical form is lowercase
  hex. ``length`` counts bytes.
- ``datetime``: ``"YYYY-MM-DD HH:MM:SS"`` (a ``T`` separator is accepted on input), no
  fraction, no time zone; ``date``: ``"YYYY-MM-DD"``. Both are stored as fixed-width strings,
  whose byte order is the chronological order.

Text comparison is byte-wise (= code-point order) and exact on every backend: SQLite's default
BINARY collation, PostgreSQL collation ``"C"``, MariaDB ``utf8mb4`` with ``utf8mb4_nopad_bin``
(NO PAD, so ``'a' != 'a '``; ``utf8mb4_bin`` would pad and call them equal).
"""

from __future__ import annotations

import datetime as _dt
import decimal
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql as _mysql
from sqlalchemy.engine.interfaces import Dialect

from tablechain.ledger.errors import BadField, TooLarge, TypeMismatch

__all__ = [
    "FIELD_TYPES",
    "MAX_FIELDS",
    "ROWID_COLUMN",
    "BinaryText",
    "FieldDef",
    "HexBlob",
    "ScaledDecimal",
    "build_column",
    "build_table",
    "check_field_name",
    "coerce_operand",
    "coerce_value",
    "comparable",
    "field_map",
    "index_name",
    "parse_add_fields",
    "parse_delete_fields",
    "parse_field",
    "parse_fields",
    "parse_modify_fields",
    "sql_type",
    "validate_schema",
]

FIELD_TYPES = (
    "int",
    "float",
    "double",
    "decimal",
    "varchar",
    "char",
    "text",
    "blob",
    "datetime",
    "date",
)
INTEGER_TYPES = frozenset({"int"})
DECIMAL_TYPES = frozenset({"float", "double", "decimal"})
STRING_TYPES = frozenset({"varchar", "char", "text"})
TEMPORAL_TYPES = frozenset({"datetime", "date"})

#: Hidden first column of every physical table: the engine assigns it, reads never show it.
ROWID_COLUMN = "_tc_rowid"
RESERVED_PREFIX = "_tc_"
#: 63: PostgreSQL truncates longer identifiers, which could make two names collide.
FIELD_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
MAX_FIELDS = 64

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MAX_DECIMAL_PRECISION = 18
DECIMAL_DEFAULTS = {"decimal": (10, 0), "float": (18, 6), "double": (18, 9)}
#: MariaDB's 65,535-byte row limit leaves room for about 16,380 utf8mb4 characters.
MAX_VARCHAR_LENGTH = 16000
MAX_CHAR_LENGTH = 255
MAX_TEXT_LENGTH = 65535  # characters
MAX_BLOB_LENGTH = 65535  # bytes
MAX_INT_DISPLAY_LENGTH = 20
#: PostgreSQL's B-tree takes index entries of at most 2,704 bytes (a third of a page) and
#: fails the insert of a longer one, so an index's widest entry must fit (``_index_entry_bytes``,
#: 4 bytes per character); MariaDB's 3,072-byte keys are then never the limit.
MAX_INDEX_ENTRY_BYTES = 2704
MAX_INDEXED_STRING_LENGTH = 670  # one string alone: 16 + 8 + 4 * 670 = 2704
#: Budgets that keep every accepted table creatable on MariaDB/InnoDB (estimates below).
MAX_ROW_BYTES = 65000  # the 65,535-byte row limit of MySQL/MariaDB
MAX_INLINE_ROW_BYTES = 8000  # InnoDB's ~8,126-byte in-page record limit (strict mode)
MAX_DECIMAL_TEXT = 64  # characters of a decimal string on input

_ALLOWED_KEYS = frozenset(
    {"field", "type", "length", "accuracy", "PK", "NN", "UQ", "AI", "index", "default"}
)
_FLAG_KEYS = (("PK", "pk"), ("NN", "nn"), ("UQ", "uq"), ("AI", "ai"), ("index", "index"))
_DECIMAL_RE = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?")
_HEX_RE = re.compile(r"(?:[0-9A-Fa-f]{2})*")
_DATETIME_RE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})[ T]([0-9]{2}):([0-9]{2}):([0-9]{2})")
_DATE_RE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_SURROGATES_OR_NUL = re.compile("[\x00\ud800-\udfff]")


@dataclass(frozen=True)
class FieldDef:
    """One validated column of a ChainSQL table.

    ``length``/``accuracy`` are resolved (defaults applied): the character or byte limit of
    string and blob types, the precision/scale of decimal types, the display width of ``int``
    (informational only), ``None`` for dates. ``default`` is already in canonical form.
    """

    name: str
    type: str
    length: int | None = None
    accuracy: int | None = None
    pk: bool = False
    nn: bool = False
    uq: bool = False
    ai: bool = False
    index: bool = False
    default: int | str | None = None

    @property
    def not_null(self) -> bool:
        """Whether the column refuses NULL (``NN`` or part of the primary key)."""
        return self.nn or self.pk

    def to_raw(self) -> dict[str, Any]:
        """The field as a ChainSQL definition object (resolved values, flags as 1)."""
        raw: dict[str, Any] = {"field": self.name, "type": self.type}
        if self.length is not None:
            raw["length"] = self.length
        if self.accuracy is not None:
            raw["accuracy"] = self.accuracy
        for key, attr in _FLAG_KEYS:
            if getattr(self, attr):
                raw[key] = 1
        if self.default is not None:
            raw["default"] = self.default
        return raw


def check_field_name(name: object) -> str:
    """Return ``name`` if it is a legal user field name, else raise ``BadField``.

    Legal: ``[A-Za-z_][A-Za-z0-9_]{0,62}`` and not starting with the reserved ``_tc_`` prefix
    (in any letter case: MariaDB column names are case-insensitive).
    """
    if not isinstance(name, str):
        raise BadField(f"field name must be a string, got {type(name).__name__}")
    if FIELD_NAME_RE.fullmatch(name) is None:
        raise BadField(
            f"invalid field name {name[:80]!r}: use 1-63 characters of A-Z a-z 0-9 _, "
            "not starting with a digit"
        )
    if name.lower().startswith(RESERVED_PREFIX):
        raise BadField(f"field name {name!r} uses the reserved prefix {RESERVED_PREFIX!r}")
    return name


def _flag(raw: Mapping[str, Any], key: str, fname: str) -> bool:
    value = raw.get(key, 0)
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise BadField(f"field {fname!r}: {key} must be 0 or 1 (or a boolean), got {value!r}")


def _int_param(raw: Mapping[str, Any], key: str, fname: str, low: int, high: int) -> int | None:
    if key not in raw or raw[key] is None:
        return None
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadField(f"field {fname!r}: {key} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise BadField(f"field {fname!r}: {key} must be between {low} and {high}, got {value}")
    return value


def parse_field(raw: object) -> FieldDef:
    """Validate one field definition object of a create / add / modify ``Raw``."""
    if not isinstance(raw, Mapping):
        raise BadField(f"a field definition must be an object, got {type(raw).__name__}")
    unknown = sorted(str(k) for k in raw if k not in _ALLOWED_KEYS)
    if unknown:
        raise BadField(f"unknown key(s) in field definition: {', '.join(unknown)[:200]}")
    if "field" not in raw:
        raise BadField("field definition lacks 'field' (the name)")
    name = check_field_name(raw["field"])
    ftype_raw = raw.get("type")
    if not isinstance(ftype_raw, str) or ftype_raw.lower() not in FIELD_TYPES:
        raise BadField(
            f"field {name!r}: type must be one of {', '.join(FIELD_TYPES)}, got {ftype_raw!r}"
        )
    ftype = ftype_raw.lower()
    flags = {attr: _flag(raw, key, name) for key, attr in _FLAG_KEYS}

    length: int | None
    accuracy: int | None = None
    if ftype != "float" and ftype != "double" and ftype != "decimal" and "accuracy" in raw:
        raise BadField(f"field {name!r}: accuracy applies only to decimal, float and double")
    if ftype == "int":
        length = _int_param(raw, "length", name, 1, MAX_INT_DISPLAY_LENGTH)
    elif ftype in DECIMAL_TYPES:
        default_p, default_s = DECIMAL_DEFAULTS[ftype]
        precision = _int_param(raw, "length", name, 1, MAX_DECIMAL_PRECISION)
        scale = _int_param(raw, "accuracy", name, 0, MAX_DECIMAL_PRECISION)
        if precision is None:
            precision = max(default_p, scale or 0)
        if scale is None:
            scale = min(default_s, precision)
        if scale > precision:
            raise BadField(f"field {name!r}: accuracy {scale} exceeds length {precision}")
        length, accuracy = precision, scale
    elif ftype == "varchar":
        length = _int_param(raw, "length", name, 1, MAX_VARCHAR_LENGTH)
        if length is None:
            raise BadField(f"field {name!r}: varchar needs a length (1-{MAX_VARCHAR_LENGTH})")
    elif ftype == "char":
        length = _int_param(raw, "length", name, 1, MAX_CHAR_LENGTH) or 1
    elif ftype == "text":
        length = _int_param(raw, "length", name, 1, MAX_TEXT_LENGTH) or MAX_TEXT_LENGTH
    elif ftype == "blob":
        length = _int_param(raw, "length", name, 1, MAX_BLOB_LENGTH) or MAX_BLOB_LENGTH
    else:  # datetime, date: fixed formats
        if raw.get("length") is not None:
            raise BadField(f"field {name!r}: {ftype} takes no length")
        length = None

    if flags["ai"]:
        if ftype != "int":
            raise BadField(f"field {name!r}: AI (auto increment) needs type int")
        if raw.get("default") is not None:
            raise BadField(f"field {name!r}: an AI field cannot have a default")
    if flags["pk"] or flags["uq"] or flags["index"]:
        if ftype in ("text", "blob"):
            raise BadField(f"field {name!r}: a {ftype} field cannot be PK, UQ or indexed")
        if ftype in ("varchar", "char") and (length or 0) > MAX_INDEXED_STRING_LENGTH:
            raise BadField(
                f"field {name!r}: a PK, UQ or indexed string may have at most "
                f"{MAX_INDEXED_STRING_LENGTH} characters, got length {length}"
            )

    field = FieldDef(name=name, type=ftype, length=length, accuracy=accuracy, **flags)
    if raw.get("default") is not None:
        try:
            default = coerce_value(field, raw["default"])
        except (TypeMismatch, TooLarge) as exc:
            raise BadField(f"field {name!r}: bad default: {exc.message}") from None
        field = replace(field, default=default)
    return field


def _row_budget(fields: Sequence[FieldDef]) -> tuple[int, int]:
    """Worst-case (row bytes, in-page bytes) of a row on MariaDB/InnoDB (utf8mb4, DYNAMIC).

    Row bytes follow the 65,535-byte rule (BLOB/TEXT count 12); in-page bytes assume InnoDB
    keeps a column in the page when its maximum is at most 255 bytes and otherwise a 20-byte
    pointer (+2 length bytes). Both are over-estimates, so what passes here creates there.
    """
    row = inline = 8 + 8  # _tc_rowid + NULL bitmap/header slack
    for f in fields:
        if f.type in ("int",) or f.type in DECIMAL_TYPES:
            row += 8
            inline += 8
            continue
        if f.type in ("text", "blob"):
            row += 12
            inline += 22
            continue
        chars = 19 if f.type == "datetime" else 10 if f.type == "date" else (f.length or 0)
        max_bytes = 4 * chars
        row += max_bytes + (1 if max_bytes <= 255 else 2)
        inline += max_bytes + 1 if max_bytes <= 255 else 22
    return row, inline


def _index_entry_bytes(fields: Sequence[FieldDef]) -> int:
    """Worst-case bytes of a PostgreSQL B-tree entry over ``fields``: 16 for its header and
    NULL bitmap, then per column 8 for a length word and alignment plus its widest value.
    An over-estimate, so what passes here indexes there."""
    size = 16
    for f in fields:
        if f.type in ("varchar", "char"):
            size += 8 + 4 * (f.length or 0)
        else:  # int and decimals (BIGINT), datetime and date (ASCII)
            size += 8 + {"datetime": 19, "date": 10}.get(f.type, 8)
    return size


def validate_schema(fields: Sequence[FieldDef]) -> tuple[FieldDef, ...]:
    """Check a whole table's fields together: count, unique names, AI, size budgets."""
    if not fields:
        raise BadField("a table needs at least one field")
    if len(fields) > MAX_FIELDS:
        raise TooLarge(f"a table may have at most {MAX_FIELDS} fields, got {len(fields)}")
    seen: set[str] = set()
    for f in fields:
        folded = f.name.lower()  # MariaDB column names ignore case
        if folded in seen:
            raise BadField(f"duplicate field name {f.name!r} (names are compared ignoring case)")
        seen.add(folded)
    if sum(1 for f in fields if f.ai) > 1:
        raise BadField("a table may have at most one AI field")
    pk = [f for f in fields if f.pk]
    if _index_entry_bytes(pk) > MAX_INDEX_ENTRY_BYTES:
        raise BadField(
            f"the primary key fields {[f.name for f in pk]} are too wide to index together: "
            f"at most {MAX_INDEX_ENTRY_BYTES} bytes at 4 bytes per character (estimated "
            f"{_index_entry_bytes(pk)})"
        )
    row, inline = _row_budget(fields)
    if row > MAX_ROW_BYTES or inline > MAX_INLINE_ROW_BYTES:
        raise TooLarge(
            "the fields are too wide for one row: shorten varchar/char lengths or use text "
            f"(estimated {row} of {MAX_ROW_BYTES} row bytes, {inline} of "
            f"{MAX_INLINE_ROW_BYTES} in-page bytes)"
        )
    return tuple(fields)


def parse_fields(raw: object) -> tuple[FieldDef, ...]:
    """Validate a create ``Raw`` (list of field definitions) into ``FieldDef`` values."""
    if not isinstance(raw, list | tuple):
        raise BadField(f"the field definitions must be a list, got {type(raw).__name__}")
    if len(raw) > MAX_FIELDS:
        raise TooLarge(f"a table may have at most {MAX_FIELDS} fields, got {len(raw)}")
    return validate_schema([parse_field(item) for item in raw])


def field_map(fields: Iterable[FieldDef]) -> dict[str, FieldDef]:
    """Fields by name (exact, case-sensitive)."""
    return {f.name: f for f in fields}


# ---------------------------------------------------------------------------------------------
# Values


def _check_text(field: FieldDef, value: str, max_chars: int | None) -> str:
    if _SURROGATES_OR_NUL.search(value) is not None:
        raise TypeMismatch(
            f"field {field.name!r}: strings may not contain NUL or unpaired surrogates"
        )
    if max_chars is not None and len(value) > max_chars:
        raise TooLarge(
            f"field {field.name!r}: {len(value)} characters exceed the length {max_chars}"
        )
    return value


def _decimal_to_scaled(field: FieldDef, value: object) -> int:
    """The exact integer ``value * 10**scale`` of a decimal field's value, or an error."""
    precision = field.length or MAX_DECIMAL_PRECISION
    scale = field.accuracy or 0
    if isinstance(value, bool):
        raise TypeMismatch(f"field {field.name!r} is {field.type}: got a boolean")
    if isinstance(value, int):
        sign, whole, frac = (-1 if value < 0 else 1), str(abs(value)), ""
    elif isinstance(value, str) or isinstance(value, decimal.Decimal):
        text = str(value) if isinstance(value, str) else _plain_decimal(field, value)
        if len(text) > MAX_DECIMAL_TEXT:
            raise TooLarge(f"field {field.name!r}: decimal string longer than {MAX_DECIMAL_TEXT}")
        m = _DECIMAL_RE.fullmatch(text)
        if m is None:
            raise TypeMismatch(
                f"field {field.name!r} is {field.type}: {text[:40]!r} is not a decimal string "
                "like '-12.50'"
            )
        sign = -1 if m.group(1) else 1
        whole, frac = m.group(2), m.group(3) or ""
    elif isinstance(value, float):
        raise TypeMismatch(
            f"field {field.name!r} is {field.type}: floats are not accepted, send the number "
            "as a decimal string such as '1.25'"
        )
    else:
        raise TypeMismatch(
            f"field {field.name!r} is {field.type}: expected an integer or decimal string, "
            f"got {type(value).__name__}"
        )
    if len(frac) > scale:
        if frac[scale:].strip("0"):
            raise TypeMismatch(
                f"field {field.name!r}: {value!s:.40} has more than {scale} decimal places"
            )
        frac = frac[:scale]
    whole = whole.lstrip("0")
    if len(whole) > precision - scale:
        raise TypeMismatch(
            f"field {field.name!r}: {value!s:.40} does not fit decimal({precision},{scale})"
        )
    return sign * int((whole or "0") + frac.ljust(scale, "0"))


def _plain_decimal(field: FieldDef, value: decimal.Decimal) -> str:
    if not value.is_finite():
        raise TypeMismatch(f"field {field.name!r}: {value} is not a finite decimal")
    return format(value, "f")


def _scaled_to_text(scaled: int, scale: int) -> str:
    sign = "-" if scaled < 0 else ""
    digits = str(abs(scaled)).rjust(scale + 1, "0")
    if scale == 0:
        return sign + digits
    return f"{sign}{digits[:-scale]}.{digits[-scale:]}"


def _check_datetime(field: FieldDef, value: str) -> str:
    if field.type == "datetime":
        m = _DATETIME_RE.fullmatch(value)
        fmt = "'YYYY-MM-DD HH:MM:SS'"
    else:
        m = _DATE_RE.fullmatch(value)
        fmt = "'YYYY-MM-DD'"
    if m is None:
        raise TypeMismatch(
            f"field {field.name!r} is {field.type}: expected {fmt}, got {value[:40]!r}"
        )
    parts = [int(g) for g in m.groups()]
    try:
        if field.type == "datetime":
            t = _dt.datetime(
                parts[0], parts[1], parts[2], parts[3], parts[4], parts[5]
            )  # naive: no time zones
            return (
                f"{t.year:04d}-{t.month:02d}-{t.day:02d} {t.hour:02d}:{t.minute:02d}:{t.second:02d}"
            )
        day = _dt.date(parts[0], parts[1], parts[2])
        return f"{day.year:04d}-{day.month:02d}-{day.day:02d}"
    except ValueError as exc:
        raise TypeMismatch(
            f"field {field.name!r}: {value!r} is not a valid {field.type}: {exc}"
        ) from None


def _coerce(field: FieldDef, value: object, check_length: bool) -> int | str:
    ftype = field.type
    if ftype == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeMismatch(
                f"field {field.name!r} is int: expected a JSON integer, got {type(value).__name__}"
            )
        if not INT64_MIN <= value <= INT64_MAX:
            raise TypeMismatch(f"field {field.name!r}: {value} is outside the 64-bit range")
        return value
    if ftype in DECIMAL_TYPES:
        return _scaled_to_text(_decimal_to_scaled(field, value), field.accuracy or 0)
    if ftype == "blob":
        if isinstance(value, bytes | bytearray):
            data = bytes(value)
        elif isinstance(value, str):
            if len(value) > 2 * MAX_BLOB_LENGTH + 2 or _HEX_RE.fullmatch(value) is None:
                raise TypeMismatch(
                    f"field {field.name!r} is blob: expected a hex string of even length"
                )
            data = bytes.fromhex(value)
        else:
            raise TypeMismatch(
                f"field {field.name!r} is blob: expected a hex string, got {type(value).__name__}"
            )
        if len(data) > (field.length if check_length and field.length else MAX_BLOB_LENGTH):
            raise TooLarge(
                f"field {field.name!r}: {len(data)} bytes exceed the length {field.length}"
            )
        return data.hex()
    if not isinstance(value, str):
        raise TypeMismatch(
            f"field {field.name!r} is {ftype}: expected a string, got {type(value).__name__}"
        )
    if ftype in TEMPORAL_TYPES:
        return _check_datetime(field, value)
    limit = field.length if check_length else MAX_TEXT_LENGTH
    return _check_text(field, value, limit)


def coerce_value(field: FieldDef, value: object) -> int | str | None:
    """Validate and normalise a JSON value for ``field`` into its canonical form.

    ``None`` is accepted for nullable fields only. Raises ``TypeMismatch`` for a value of the
    wrong type or format, ``TooLarge`` for one longer than the field allows.
    """
    if value is None:
        if field.not_null:
            raise TypeMismatch(f"field {field.name!r} is NOT NULL")
        return None
    return _coerce(field, value, check_length=True)


def coerce_operand(field: FieldDef, value: object) -> int | str:
    """Like ``coerce_value`` for a comparison operand: not NULL, and strings need not fit
    the column length (``name < 'a longer string'`` is meaningful), up to a global cap."""
    if value is None:
        raise TypeMismatch(f"field {field.name!r}: NULL is not a comparison operand")
    return _coerce(field, value, check_length=False)


def comparable(field: FieldDef, value: object) -> int | str | bytes:
    """A Python value whose ordering equals the SQL ordering of ``field``'s stored value.

    Integers stay integers, decimals become their scaled integers, blobs bytes, strings stay
    strings (Python compares code points, the same order as UTF-8 bytes).
    """
    if field.type in DECIMAL_TYPES:
        return _decimal_to_scaled(field, value)
    if field.type == "blob":
        if isinstance(value, bytes | bytearray):
            return bytes(value)
        if isinstance(value, str):
            return bytes.fromhex(value)
        raise TypeMismatch(f"field {field.name!r}: blob value must be hex or bytes")
    if field.type == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeMismatch(f"field {field.name!r}: int value expected")
        return value
    if not isinstance(value, str):
        raise TypeMismatch(f"field {field.name!r}: string value expected")
    return value


# ---------------------------------------------------------------------------------------------
# Physical tables


class ScaledDecimal(sa.types.TypeDecorator[str]):
    """An exact decimal stored as BIGINT ``value * 10**scale``; reads back canonical text."""

    impl = sa.BigInteger
    cache_ok = True

    def __init__(self, precision: int, scale: int) -> None:
        super().__init__()
        self.precision = precision
        self.scale = scale

    def _field(self) -> FieldDef:
        return FieldDef(name="value", type="decimal", length=self.precision, accuracy=self.scale)

    def process_bind_param(self, value: Any, dialect: Dialect) -> int | None:
        if value is None:
            return None
        return _decimal_to_scaled(self._field(), value)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return _scaled_to_text(int(value), self.scale)


class HexBlob(sa.types.TypeDecorator[str]):
    """Bytes stored natively (MEDIUMBLOB on MariaDB); values travel as lowercase hex."""

    impl = sa.LargeBinary
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(_mysql.MEDIUMBLOB())
        return dialect.type_descriptor(sa.LargeBinary())

    def process_bind_param(self, value: Any, dialect: Dialect) -> bytes | None:
        if value is None:
            return None
        if isinstance(value, bytes | bytearray):
            return bytes(value)
        return bytes.fromhex(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return bytes(value).hex()


class BinaryText(sa.types.TypeDecorator[str]):
    """A string column compared byte-wise on every backend (see the module docstring).

    ``length`` None means a long text (TEXT; MEDIUMTEXT on MariaDB, whose TEXT holds only
    65,535 bytes).
    """

    impl = sa.String
    cache_ok = True

    def __init__(self, length: int | None = None) -> None:
        super().__init__()
        self.max_length = length

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        n = self.max_length
        if dialect.name in ("mysql", "mariadb"):
            kw = {"charset": "utf8mb4", "collation": "utf8mb4_nopad_bin"}
            if n is None:
                return dialect.type_descriptor(_mysql.MEDIUMTEXT(**kw))
            return dialect.type_descriptor(_mysql.VARCHAR(n, **kw))
        if dialect.name == "postgresql":
            return dialect.type_descriptor(
                sa.Text(collation="C") if n is None else sa.String(n, collation="C")
            )
        return dialect.type_descriptor(sa.Text() if n is None else sa.String(n))


def sql_type(field: FieldDef) -> sa.types.TypeEngine[Any]:
    """The SQLAlchemy column type storing ``field``."""
    if field.type == "int":
        return sa.BigInteger()
    if field.type in DECIMAL_TYPES:
        return ScaledDecimal(field.length or MAX_DECIMAL_PRECISION, field.accuracy or 0)
    if field.type == "blob":
        return HexBlob()
    if field.type == "text":
        return BinaryText(None)
    if field.type == "datetime":
        return BinaryText(19)
    if field.type == "date":
        return BinaryText(10)
    return BinaryText(field.length)


def build_column(field: FieldDef) -> sa.Column[Any]:
    """The column of ``field`` (no server default: the engine fills defaults itself)."""
    return sa.Column(field.name, sql_type(field), nullable=not field.not_null, autoincrement=False)


def _object_name(prefix: str, physical_name: str, *parts: str) -> str:
    digest = hashlib.sha256("\x1f".join((physical_name, *parts)).encode()).hexdigest()
    return f"{prefix}_{digest[:24]}"


def index_name(physical_name: str, field_name: str) -> str:
    """Deterministic, short (< 63 characters) name of the index on one field."""
    return _object_name("tcix", physical_name, field_name)


def build_table(metadata: sa.MetaData, physical_name: str, fields: Sequence[FieldDef]) -> sa.Table:
    """The physical table of a ChainSQL table.

    Columns: the hidden ``_tc_rowid`` BIGINT primary key (assigned by the engine, never
    autoincremented by the database), then the fields in order. The user's PK fields together
    form one UNIQUE constraint over NOT NULL columns; each UQ field is UNIQUE (NULLs may
    repeat, as on every backend); each ``index`` field gets an index.
    """
    if FIELD_NAME_RE.fullmatch(physical_name) is None:
        raise BadField(f"invalid physical table name {physical_name[:80]!r}")
    fields = validate_schema(fields)
    columns: list[sa.Column[Any]] = [
        sa.Column(ROWID_COLUMN, sa.BigInteger(), primary_key=True, autoincrement=False)
    ]
    columns.extend(build_column(f) for f in fields)
    constraints: list[sa.UniqueConstraint] = []
    pk_names = [f.name for f in fields if f.pk]
    if pk_names:
        constraints.append(
            sa.UniqueConstraint(*pk_names, name=_object_name("tcpk", physical_name, *pk_names))
        )
    for f in fields:
        if f.uq and [f.name] != pk_names:
            constraints.append(
                sa.UniqueConstraint(f.name, name=_object_name("tcuq", physical_name, f.name))
            )
    table = sa.Table(
        physical_name,
        metadata,
        *columns,
        *constraints,
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_nopad_bin",
        mysql_row_format="DYNAMIC",
        mariadb_engine="InnoDB",
        mariadb_charset="utf8mb4",
        mariadb_collate="utf8mb4_nopad_bin",
        mariadb_row_format="DYNAMIC",
    )
    for f in fields:
        if f.index:
            sa.Index(index_name(physical_name, f.name), table.c[f.name])
    return table


# ---------------------------------------------------------------------------------------------
# Schema changes (OpType 14 add fields, 15 delete fields, 16 modify fields)


def parse_add_fields(existing: Sequence[FieldDef], raw: object) -> tuple[FieldDef, ...]:
    """Validate an add-fields ``Raw``; return the new fields (in order).

    Existing rows get each new field's default (or NULL), so a new field may not be PK or AI,
    NN needs a default, and UQ is allowed only without a default (NULLs may repeat). The
    combined schema must pass the same checks as a create.
    """
    if not isinstance(raw, list | tuple) or not raw:
        raise BadField("add fields needs a non-empty list of field definitions")
    if len(raw) > MAX_FIELDS:
        raise TooLarge(f"at most {MAX_FIELDS} fields may be added at once")
    added = [parse_field(item) for item in raw]
    for f in added:
        if f.pk or f.ai:
            raise BadField(f"field {f.name!r}: an added field cannot be PK or AI")
        if f.nn and f.default is None:
            raise BadField(f"field {f.name!r}: an added NN field needs a default for old rows")
        if f.uq and f.default is not None:
            raise BadField(
                f"field {f.name!r}: an added UQ field cannot have a default "
                "(old rows would share it)"
            )
    validate_schema([*existing, *added])
    return tuple(added)


def parse_delete_fields(existing: Sequence[FieldDef], raw: object) -> tuple[FieldDef, ...]:
    """Validate a delete-fields ``Raw`` (``[{"field": name}, ...]``); return remaining fields.

    Unknown or repeated names, PK fields and deleting every field are refused.
    """
    if not isinstance(raw, list | tuple) or not raw:
        raise BadField('delete fields needs a non-empty list of {"field": name} objects')
    by_name = field_map(existing)
    doomed: list[str] = []
    for item in raw:
        if not isinstance(item, Mapping) or set(item) != {"field"}:
            raise BadField('each entry of delete fields must be {"field": name}')
        name = check_field_name(item["field"])
        if name not in by_name:
            raise BadField(f"no field {name!r} to delete")
        if name in doomed:
            raise BadField(f"field {name!r} listed twice")
        if by_name[name].pk:
            raise BadField(f"field {name!r} is part of the primary key and cannot be deleted")
        doomed.append(name)
    remaining = tuple(f for f in existing if f.name not in doomed)
    if not remaining:
        raise BadField("cannot delete every field of a table")
    return remaining


def parse_modify_fields(existing: Sequence[FieldDef], raw: object) -> tuple[FieldDef, ...]:
    """Validate a modify-fields ``Raw`` (full definitions of existing fields); return the new
    full field tuple in the original order.

    Only changes that cannot fail on existing rows are allowed, so every validator accepts or
    refuses alike without looking at data: the type stays; string and blob lengths may grow;
    a decimal's precision may grow with the same scale; ``default`` and ``index`` may change.
    PK, NN, UQ and AI stay as they are.
    """
    if not isinstance(raw, list | tuple) or not raw:
        raise BadField("modify fields needs a non-empty list of field definitions")
    by_name = field_map(existing)
    changed: dict[str, FieldDef] = {}
    for item in raw:
        new = parse_field(item)
        old = by_name.get(new.name)
        if old is None:
            raise BadField(f"no field {new.name!r} to modify")
        if new.name in changed:
            raise BadField(f"field {new.name!r} listed twice")
        if new.type != old.type:
            raise BadField(f"field {new.name!r}: the type cannot change ({old.type} -> {new.type})")
        for attr in ("pk", "nn", "uq", "ai"):
            if getattr(new, attr) != getattr(old, attr):
                raise BadField(f"field {new.name!r}: {attr.upper()} cannot change")
        if new.type in DECIMAL_TYPES:
            if new.accuracy != old.accuracy or (new.length or 0) < (old.length or 0):
                raise BadField(
                    f"field {new.name!r}: a decimal may only gain precision, with the same accuracy"
                )
        elif new.type != "int" and (new.length or 0) < (old.length or 0):
            raise BadField(
                f"field {new.name!r}: length may only grow ({old.length} -> {new.length})"
            )
        changed[new.name] = new
    return validate_schema([changed.get(f.name, f) for f in existing])
