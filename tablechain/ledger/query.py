"""The ChainSQL query language: conditions and reads, parsed into frozen dataclasses and
translated to SQLAlchemy Core (bound parameters, never string-built SQL).

Conditions. An object's keys are ANDed, the objects of a list are ORed::

    {"age": {"$le": 28}, "name": "bob"}                 age <= 28 AND name = 'bob'
    [{"id": 1}, {"id": 2}]                              id = 1 OR id = 2
    {"$or": [{"age": {"$le": 28}}, {"id": 2}]}          age <= 28 OR id = 2

Operators: ``$eq $ne $lt $le $gt $ge`` (a bare value means ``$eq``), ``$in $nin`` (a non-empty
list of at most ``MAX_IN_VALUES`` values), ``$is $isnot`` (with ``null`` only), ``$like``,
``$regex`` (string fields only), ``$and $or`` (non-empty lists of condition objects). An empty
object ``{}`` is true.

NULL: ``{"f": null}`` and ``{"f": {"$eq": null}}`` are refused in favour of
``{"f": {"$is": null}}``; any other comparison with a NULL column value is false (SQL's
three-valued logic, which has no observable UNKNOWN here because the language has no NOT).

Types: an operand must already have the field's type (see ``schema.coerce_value``): ``"5"`` for
an int field is a ``TypeMismatch``, not a backend-dependent coercion.

Variables (row rules): a string operand of the form ``$name`` (``$`` + identifier) is a variable
and is replaced by ``variables["$name"]``; a variable that is not supplied is refused. A string
beginning with ``$$`` followed by an identifier stands for the literal with one ``$`` less.
Variables are not allowed inside ``$like`` / ``$regex`` patterns.

``$like``: case-sensitive; ``%`` matches any run of characters (including none), ``_``
exactly one character (code point); ``\\`` escapes the next character, which must be ``%``,
``_`` or ``\\``. The same on all backends: PostgreSQL (collation "C") and MariaDB
(``utf8mb4_nopad_bin``) use LIKE with an explicit ``ESCAPE '!'``; SQLite, whose LIKE ignores
ASCII case, uses GLOB with a translated pattern.

``$regex``: a common subset, translated for each engine so that PostgreSQL ARE, MariaDB PCRE2
and Python agree, and searched anywhere in the value (unanchored) like all three:

- literals; ``\\`` before any of ``\\ . ^ $ * + ? ( ) [ ] { } | - /`` for that character;
  ``\\n \\t \\r`` for newline, tab, carriage return;
- ``.`` any character *including newline* (rendered with the ``s`` flag);
- classes ``[abc] [^a-z]`` with ranges by code point, and ``\\d \\w \\s`` (also in classes) and
  ``\\D \\W \\S`` meaning exactly ``[0-9]``, ``[0-9A-Za-z_]``, ``[ \\t\\n\\v\\f\\r]`` (ASCII only;
  the engines disagree about Unicode digits and letters, so those are spelled out);
- ``^`` start of the value, ``$`` end of the value only (Python's and PCRE's ``$`` also match
  before a final newline; rendered as ``\\Z`` / ``\\z`` there);
- groups ``( )`` (non-capturing), alternation ``|``;
- quantifiers ``* + ? {m} {m,} {m,n}`` (n <= 100), greedy only, on a character, ``.``, a class or
  a group holding only those (no nested quantifiers, no quantified alternation: the cases that
  make backtracking engines exponential);
- case-sensitive; no back-references, look-around, lazy quantifiers, POSIX classes, ``\\b``.

Python evaluates ``$regex`` with a linear-time automaton (no backtracking), which is also the
SQLite implementation (a ``tc_regexp`` function installed by ``prepare_engine``).

Reads: ``[[field, ...], {cond}, ..., {"$limit": {"index": i, "total": n}},
{"$order": [{"id": 1}, {"age": -1}]}]``. The empty field list means all user fields (never the
hidden ``_tc_`` columns). Default limit ``DEFAULT_LIMIT`` (200), at most ``MAX_LIMIT``.
``$order`` takes any field but text and blob.
Order: NULL sorts lowest (first ascending, last descending) on every backend, and every read
ends with ``_tc_rowid`` ascending so the row order is total and identical everywhere.

Engines must be prepared once with ``prepare_engine`` (SQLite: the regex function; MariaDB:
sort keys long enough to compare whole values).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement

from tablechain.ledger.errors import BadCondition, QueryTooComplex, TypeMismatch
from tablechain.ledger.schema import (
    ROWID_COLUMN,
    STRING_TYPES,
    FieldDef,
    coerce_operand,
    comparable,
    field_map,
)

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_DEPTH",
    "MAX_IN_VALUES",
    "MAX_LIMIT",
    "MAX_NODES",
    "MAX_PATTERN_LENGTH",
    "TRUE",
    "And",
    "Compare",
    "Condition",
    "In",
    "IsNull",
    "Like",
    "Or",
    "ReadQuery",
    "Regex",
    "RegexProgram",
    "build_select",
    "compile_regex",
    "condition_to_sql",
    "conjoin",
    "match_row",
    "parse_condition",
    "parse_like",
    "parse_read",
    "parse_regex",
    "prepare_engine",
    "regex_search",
    "render_regex",
]

MAX_DEPTH = 32  # nested condition objects / $and / $or levels
MAX_NODES = 1000  # condition terms in one parsed condition
MAX_IN_VALUES = 1000  # values of one $in / $nin
MAX_VALUES = 4000  # bound values in one parsed condition
MAX_PATTERN_LENGTH = 256  # characters of a $like or $regex pattern
MAX_REGEX_PROGRAM = 4000  # automaton size after expanding {m,n}
MAX_REPEAT = 100
UNORDERABLE_TYPES = frozenset({"text", "blob"})
DEFAULT_LIMIT = 200
MAX_LIMIT = 1000
MAX_OFFSET = 2**31 - 1

COMPARISONS = {"$eq": "==", "$ne": "!=", "$lt": "<", "$le": "<=", "$gt": ">", "$ge": ">="}
FIELD_OPERATORS = frozenset({*COMPARISONS, "$in", "$nin", "$is", "$isnot", "$like", "$regex"})
_VARIABLE_RE = re.compile(r"\$[A-Za-z_][A-Za-z0-9_]*")
_ESCAPED_VARIABLE_RE = re.compile(r"\$\$[A-Za-z_][A-Za-z0-9_]*")
_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")


# ---------------------------------------------------------------------------------------------
# Condition values


@dataclass(frozen=True)
class Condition:
    """Base of the parsed condition forms."""


@dataclass(frozen=True)
class Compare(Condition):
    """``field <op> value`` with op one of ``$eq $ne $lt $le $gt $ge``; value canonical."""

    field: FieldDef
    op: str
    value: int | str


@dataclass(frozen=True)
class In(Condition):
    """``field IN (values)`` or, negated, ``field NOT IN (values)``."""

    field: FieldDef
    values: tuple[int | str, ...]
    negated: bool = False


@dataclass(frozen=True)
class IsNull(Condition):
    """``field IS NULL`` or, negated, ``field IS NOT NULL``."""

    field: FieldDef
    negated: bool = False


@dataclass(frozen=True)
class Like(Condition):
    """``$like``: ``pattern`` as the user wrote it; ``tokens`` its parsed form (a character,
    or ``None`` for ``_``, or ``...`` for ``%``)."""

    field: FieldDef
    pattern: str
    tokens: tuple[Any, ...] = dataclasses.field(repr=False, compare=False, default=())


@dataclass(frozen=True)
class Regex(Condition):
    """``$regex``: ``pattern`` as written; ``tree`` the parsed subset (see module docstring),
    ``program`` its compiled automaton."""

    field: FieldDef
    pattern: str
    tree: Any = dataclasses.field(repr=False, compare=False, default=None)
    program: Any = dataclasses.field(repr=False, compare=False, default=None)


@dataclass(frozen=True)
class And(Condition):
    """All parts hold; no parts is true."""

    parts: tuple[Condition, ...]


@dataclass(frozen=True)
class Or(Condition):
    """At least one part holds (never empty)."""

    parts: tuple[Condition, ...]


TRUE: Condition = And(())


@dataclass(frozen=True)
class ReadQuery:
    """A parsed read: field names to return, condition, offset, row count, ordering."""

    fields: tuple[str, ...]
    condition: Condition
    limit_index: int = 0
    limit_total: int = DEFAULT_LIMIT
    order: tuple[tuple[str, int], ...] = ()


def conjoin(a: Condition, b: Condition) -> Condition:
    """``a AND b`` (flattened, so conjoining many times does not deepen the tree)."""
    parts: list[Condition] = []
    for c in (a, b):
        parts.extend(c.parts if isinstance(c, And) else (c,))
    return parts[0] if len(parts) == 1 else And(tuple(parts))


# ---------------------------------------------------------------------------------------------
# Parsing conditions


class _Parser:
    """Walks a JSON condition, bounding depth before each descent and counting terms."""

    def __init__(self, fields: Iterable[FieldDef], variables: Mapping[str, str] | None) -> None:
        self.fields = field_map(fields)
        self.variables = variables
        self.nodes = 0
        self.values = 0

    def _count(self, nodes: int = 1, values: int = 0) -> None:
        self.nodes += nodes
        self.values += values
        if self.nodes > MAX_NODES:
            raise QueryTooComplex(f"a condition may have at most {MAX_NODES} terms")
        if self.values > MAX_VALUES:
            raise QueryTooComplex(f"a condition may have at most {MAX_VALUES} values")

    def top(self, obj: object) -> Condition:
        if isinstance(obj, list | tuple):
            if len(obj) > MAX_NODES:
                raise QueryTooComplex(f"a condition may have at most {MAX_NODES} terms")
            parts = [self.obj(item, 1) for item in obj]
            if not parts:
                return TRUE
            return parts[0] if len(parts) == 1 else Or(tuple(parts))
        return self.obj(obj, 1)

    def obj(self, obj: object, depth: int) -> Condition:
        if depth > MAX_DEPTH:
            raise QueryTooComplex(f"conditions may nest at most {MAX_DEPTH} levels deep")
        if not isinstance(obj, Mapping):
            raise BadCondition(f"a condition must be an object, got {_json_type(obj)}")
        self._count()
        parts: list[Condition] = []
        for key, value in obj.items():
            if not isinstance(key, str):
                raise BadCondition("condition keys must be strings")
            if key in ("$and", "$or"):
                if not isinstance(value, list | tuple) or not value:
                    raise BadCondition(f"{key} needs a non-empty list of condition objects")
                if len(value) > MAX_NODES:
                    raise QueryTooComplex(f"a condition may have at most {MAX_NODES} terms")
                subs = tuple(self.obj(item, depth + 1) for item in value)
                if key == "$or":
                    parts.append(subs[0] if len(subs) == 1 else Or(subs))
                else:
                    parts.extend(subs)
            elif key.startswith("$"):
                raise BadCondition(
                    f"unknown condition operator {key[:40]!r} (field operators go inside a "
                    "field's object; $limit and $order only in reads)"
                )
            else:
                parts.extend(self.field_terms(self._field(key), value))
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def _field(self, name: str) -> FieldDef:
        fdef = self.fields.get(name)
        if fdef is None:
            raise BadCondition(f"unknown field {name[:80]!r}")
        return fdef

    def field_terms(self, fdef: FieldDef, value: object) -> list[Condition]:
        if isinstance(value, Mapping):
            if not value:
                raise BadCondition(f"field {fdef.name!r}: empty operator object")
            return [self.operator(fdef, op, operand) for op, operand in value.items()]
        if isinstance(value, list | tuple):
            raise BadCondition(f"field {fdef.name!r}: a list is not a value (use $in)")
        if value is None:
            raise BadCondition(f'field {fdef.name!r}: use {{"$is": null}} to test for NULL')
        return [self.operator(fdef, "$eq", value)]

    def operator(self, fdef: FieldDef, op: object, operand: object) -> Condition:
        self._count()
        if not isinstance(op, str) or op not in FIELD_OPERATORS:
            raise BadCondition(f"field {fdef.name!r}: unknown operator {str(op)[:40]!r}")
        if op in COMPARISONS:
            if operand is None:
                raise BadCondition(
                    f"field {fdef.name!r}: {op} null is not allowed, use $is / $isnot null"
                )
            self._count(0, 1)
            return Compare(fdef, op, self.operand(fdef, operand))
        if op in ("$in", "$nin"):
            if not isinstance(operand, list | tuple) or not operand:
                raise BadCondition(f"field {fdef.name!r}: {op} needs a non-empty list")
            if len(operand) > MAX_IN_VALUES:
                raise QueryTooComplex(
                    f"field {fdef.name!r}: {op} may list at most {MAX_IN_VALUES} values, "
                    f"got {len(operand)}"
                )
            self._count(0, len(operand))
            values = []
            for item in operand:
                if item is None:
                    raise BadCondition(f"field {fdef.name!r}: {op} may not contain null")
                values.append(self.operand(fdef, item))
            return In(fdef, tuple(values), negated=op == "$nin")
        if op in ("$is", "$isnot"):
            if operand is not None:
                raise BadCondition(f"field {fdef.name!r}: {op} takes null only")
            return IsNull(fdef, negated=op == "$isnot")
        # $like / $regex
        if fdef.type not in STRING_TYPES:
            raise TypeMismatch(f"field {fdef.name!r} is {fdef.type}: {op} needs a string field")
        if not isinstance(operand, str):
            raise TypeMismatch(f"field {fdef.name!r}: {op} needs a string pattern")
        if len(operand) > MAX_PATTERN_LENGTH:
            raise QueryTooComplex(
                f"field {fdef.name!r}: {op} patterns are limited to {MAX_PATTERN_LENGTH} characters"
            )
        if _BAD_CHARS.search(operand) is not None:
            raise BadCondition(f"field {fdef.name!r}: pattern contains NUL or a lone surrogate")
        if _VARIABLE_RE.fullmatch(operand):
            raise BadCondition(f"field {fdef.name!r}: variables are not allowed in {op}")
        self._count(0, 1)
        if op == "$like":
            return Like(fdef, operand, parse_like(operand))
        tree = parse_regex(operand)
        return Regex(fdef, operand, tree, compile_regex(tree))

    def operand(self, fdef: FieldDef, value: object) -> int | str:
        if isinstance(value, Mapping | list | tuple):
            raise BadCondition(f"field {fdef.name!r}: expected a value, got {_json_type(value)}")
        if isinstance(value, str):
            if _VARIABLE_RE.fullmatch(value):
                value = self._variable(value)
            elif _ESCAPED_VARIABLE_RE.fullmatch(value):
                value = value[1:]
        return coerce_operand(fdef, value)

    def _variable(self, name: str) -> str:
        if self.variables is None:
            raise BadCondition(
                f"{name} is a variable, and variables are only available in row rules "
                f"(write '${name}' for the literal text {name!r})"
            )
        if name not in self.variables:
            known = ", ".join(sorted(self.variables)) or "none"
            raise BadCondition(f"unknown variable {name!r} (known: {known})")
        return self.variables[name]


def _json_type(value: object) -> str:
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    if value is None:
        return "null"
    return type(value).__name__


def parse_condition(
    obj: object, fields: Sequence[FieldDef], variables: Mapping[str, str] | None = None
) -> Condition:
    """Parse a condition object, or a list of them (ORed; an empty list is true).

    ``variables`` maps variable tokens such as ``"$account"`` and ``"$tx_hash"`` to their
    values (row rules); without it any ``$name`` operand is refused.
    """
    return _Parser(fields, variables).top(obj)


# ---------------------------------------------------------------------------------------------
# Reads


def parse_read(
    raw: object, fields: Sequence[FieldDef], variables: Mapping[str, str] | None = None
) -> ReadQuery:
    """Parse a read ``Raw``: ``[[field, ...], {cond}, ..., {"$limit": ...}, {"$order": ...}]``."""
    if not isinstance(raw, list | tuple) or not raw:
        raise BadCondition("a read is a list starting with the list of fields to return")
    by_name = field_map(fields)
    wanted = raw[0]
    if not isinstance(wanted, list | tuple):
        raise BadCondition("the first element of a read must be the list of fields")
    names: list[str] = []
    for name in wanted:
        if not isinstance(name, str) or name not in by_name:
            raise BadCondition(f"unknown field {str(name)[:80]!r} in the field list")
        if name in names:
            raise BadCondition(f"field {name!r} listed twice")
        names.append(name)
    if not names:
        names = [f.name for f in fields]
    if len(raw) > MAX_NODES:
        raise QueryTooComplex(f"a read may have at most {MAX_NODES} elements")

    limit: tuple[int, int] | None = None
    order: tuple[tuple[str, int], ...] | None = None
    conditions: list[object] = []
    for item in raw[1:]:
        if isinstance(item, Mapping) and "$limit" in item:
            if len(item) != 1 or limit is not None:
                raise BadCondition("$limit must stand alone in its object, once")
            limit = _parse_limit(item["$limit"])
        elif isinstance(item, Mapping) and "$order" in item:
            if len(item) != 1 or order is not None:
                raise BadCondition("$order must stand alone in its object, once")
            order = _parse_order(item["$order"], by_name)
        else:
            conditions.append(item)
    condition = parse_condition(conditions, fields, variables)
    index, total = limit if limit is not None else (0, DEFAULT_LIMIT)
    return ReadQuery(tuple(names), condition, index, total, order or ())


def _parse_limit(value: object) -> tuple[int, int]:
    if not isinstance(value, Mapping) or not set(value) <= {"index", "total"}:
        raise BadCondition('$limit must be {"index": i, "total": n}')
    index = value.get("index", 0)
    total = value.get("total", DEFAULT_LIMIT)
    for key, v, low, high in (("index", index, 0, MAX_OFFSET), ("total", total, 1, MAX_LIMIT)):
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
            raise BadCondition(f"$limit {key} must be an integer from {low} to {high}")
    return index, total


def _parse_order(value: object, by_name: Mapping[str, FieldDef]) -> tuple[tuple[str, int], ...]:
    if not isinstance(value, list | tuple) or not value:
        raise BadCondition('$order must be a non-empty list like [{"id": 1}, {"age": -1}]')
    if len(value) > len(by_name):
        raise BadCondition("$order names more fields than the table has")
    order: list[tuple[str, int]] = []
    for item in value:
        if not isinstance(item, Mapping) or len(item) != 1:
            raise BadCondition('each $order entry is one {"field": 1 or -1}')
        ((name, direction),) = item.items()
        if name not in by_name:
            raise BadCondition(f"unknown field {str(name)[:80]!r} in $order")
        if by_name[name].type in UNORDERABLE_TYPES:
            raise BadCondition(
                f"cannot $order by {name!r}: {by_name[name].type} fields are not orderable "
                "(MariaDB sorts long values by a prefix only)"
            )
        if any(name == seen for seen, _ in order):
            raise BadCondition(f"field {name!r} appears twice in $order")
        if isinstance(direction, bool) or direction not in (1, -1):
            raise BadCondition(f"$order direction of {name!r} must be 1 or -1")
        order.append((name, direction))
    return tuple(order)


# ---------------------------------------------------------------------------------------------
# SQL translation


def condition_to_sql(cond: Condition, table: sa.Table) -> ColumnElement[bool]:
    """The WHERE expression of ``cond`` over ``table`` (columns named by field names)."""
    if isinstance(cond, Compare):
        col = _column(table, cond.field)
        op = cond.op
        value = cond.value
        if op == "$eq":
            return col == value
        if op == "$ne":
            return col != value
        if op == "$lt":
            return col < value
        if op == "$le":
            return col <= value
        if op == "$gt":
            return col > value
        return col >= value
    if isinstance(cond, In):
        col = _column(table, cond.field)
        return col.not_in(cond.values) if cond.negated else col.in_(cond.values)
    if isinstance(cond, IsNull):
        col = _column(table, cond.field)
        return col.is_not(None) if cond.negated else col.is_(None)
    if isinstance(cond, Like):
        return _LikeMatch(_column(table, cond.field), cond.tokens)
    if isinstance(cond, Regex):
        return _RegexMatch(_column(table, cond.field), cond.pattern, cond.tree)
    if isinstance(cond, And):
        if not cond.parts:
            return sa.true()
        return sa.and_(*(condition_to_sql(p, table) for p in cond.parts))
    if isinstance(cond, Or):
        return sa.or_(*(condition_to_sql(p, table) for p in cond.parts))
    raise BadCondition(f"not a condition: {type(cond).__name__}")


def _column(table: sa.Table, fdef: FieldDef) -> sa.ColumnElement[Any]:
    if fdef.name not in table.c:
        raise BadCondition(f"table {table.name!r} has no field {fdef.name!r}")
    return table.c[fdef.name]


def build_select(
    table: sa.Table, read: ReadQuery, extra: Condition | None = None
) -> sa.Select[Any]:
    """The SELECT of ``read`` (ANDed with ``extra``, e.g. a Get rule) over ``table``.

    Row order is total and the same on every backend: the requested order with NULL lowest,
    then ``_tc_rowid`` ascending.
    """
    cond = read.condition if extra is None else conjoin(read.condition, extra)
    stmt = sa.select(*(table.c[name] for name in read.fields))
    if not (isinstance(cond, And) and not cond.parts):
        stmt = stmt.where(condition_to_sql(cond, table))
    keys: list[sa.ColumnElement[Any]] = []
    for name, direction in read.order:
        col = table.c[name]
        if col.nullable:
            # NULL lowest everywhere (PostgreSQL's default is highest; MariaDB lacks NULLS FIRST)
            null_rank = sa.case((col.is_(None), 0), else_=1)
            keys.append(null_rank.asc() if direction == 1 else null_rank.desc())
        keys.append(col.asc() if direction == 1 else col.desc())
    keys.append(table.c[ROWID_COLUMN].asc())
    return stmt.order_by(*keys).limit(read.limit_total).offset(read.limit_index)


# ---------------------------------------------------------------------------------------------
# Python evaluation (the same semantics as the SQL)


def match_row(cond: Condition, row: Mapping[str, Any]) -> bool:
    """Whether ``row`` (field name -> canonical value; a missing field is NULL) satisfies
    ``cond``, with exactly the semantics of the SQL translation."""
    if isinstance(cond, And):
        return all(match_row(p, row) for p in cond.parts)
    if isinstance(cond, Or):
        return any(match_row(p, row) for p in cond.parts)
    if isinstance(cond, IsNull):
        return (row.get(cond.field.name) is None) == (not cond.negated)
    if not isinstance(cond, Compare | In | Like | Regex):
        raise BadCondition(f"not a condition: {type(cond).__name__}")
    value = row.get(cond.field.name)
    if value is None:
        return False  # SQL: a comparison with NULL is not true
    if isinstance(cond, Like):
        return _like_match(cond.tokens, _text(cond.field, value))
    if isinstance(cond, Regex):
        return regex_search(cond.program, _text(cond.field, value))
    key = comparable(cond.field, value)
    if isinstance(cond, In):
        found = any(key == comparable(cond.field, v) for v in cond.values)
        return found != cond.negated
    other = comparable(cond.field, cond.value)
    op = cond.op
    if op == "$eq":
        return key == other
    if op == "$ne":
        return key != other
    if op == "$lt":
        return key < other  # type: ignore[operator]
    if op == "$le":
        return key <= other  # type: ignore[operator]
    if op == "$gt":
        return key > other  # type: ignore[operator]
    return key >= other  # type: ignore[operator]


def _text(fdef: FieldDef, value: object) -> str:
    if not isinstance(value, str):
        raise TypeMismatch(f"field {fdef.name!r}: string value expected")
    return value


# ---------------------------------------------------------------------------------------------
# $like


_ANY_ONE = None  # token for "_"
_ANY_RUN = ...  # token for "%"


def parse_like(pattern: str) -> tuple[Any, ...]:
    """Tokens of a ``$like`` pattern: characters, ``None`` for ``_``, ``...`` for ``%``."""
    tokens: list[Any] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= len(pattern) or pattern[i + 1] not in "%_\\":
                raise BadCondition(
                    "in $like, a backslash must be followed by %, _ or another backslash"
                )
            tokens.append(pattern[i + 1])
            i += 2
            continue
        if ch == "%":
            if not tokens or tokens[-1] is not _ANY_RUN:  # %% is the same as %
                tokens.append(_ANY_RUN)
        elif ch == "_":
            tokens.append(_ANY_ONE)
        else:
            tokens.append(ch)
        i += 1
    return tuple(tokens)


def _like_sql_pattern(tokens: Sequence[Any]) -> str:
    """The pattern for LIKE ... ESCAPE '!' (PostgreSQL, MariaDB)."""
    out = []
    for t in tokens:
        if t is _ANY_RUN:
            out.append("%")
        elif t is _ANY_ONE:
            out.append("_")
        elif t in ("%", "_", "!"):
            out.append("!" + t)
        else:
            out.append(t)
    return "".join(out)


def _glob_pattern(tokens: Sequence[Any]) -> str:
    """The same pattern for SQLite's case-sensitive GLOB."""
    out = []
    for t in tokens:
        if t is _ANY_RUN:
            out.append("*")
        elif t is _ANY_ONE:
            out.append("?")
        elif t in ("*", "?", "["):
            out.append(f"[{t}]")
        else:
            out.append(t)
    return "".join(out)


def _like_match(tokens: Sequence[Any], text: str) -> bool:
    """LIKE by placing each %-separated segment leftmost (exact for % and _; O(n*m))."""
    segments: list[list[Any]] = [[]]
    for t in tokens:
        if t is _ANY_RUN:
            segments.append([])
        else:
            segments[-1].append(t)

    def fits(seg: list[Any], at: int) -> bool:
        return all(c is _ANY_ONE or text[at + k] == c for k, c in enumerate(seg))

    if len(segments) == 1:
        return len(text) == len(segments[0]) and fits(segments[0], 0)
    first, last = segments[0], segments[-1]
    if len(first) + len(last) > len(text):
        return False
    end = len(text) - len(last)
    if not fits(first, 0) or not fits(last, end):
        return False
    pos = len(first)
    for seg in segments[1:-1]:
        at = pos
        while at + len(seg) <= end and not fits(seg, at):
            at += 1
        if at + len(seg) > end:
            return False
        pos = at + len(seg)
    return True


class _LikeMatch(ColumnElement[bool]):
    """A ``$like`` test, rendered per dialect."""

    inherit_cache = False
    type = sa.Boolean()

    def __init__(self, column: ColumnElement[Any], tokens: tuple[Any, ...]) -> None:
        self.column = column
        self.tokens = tokens


@compiles(_LikeMatch)
def _compile_like(element: _LikeMatch, compiler: SQLCompiler, **kw: Any) -> str:
    pattern = sa.literal(_like_sql_pattern(element.tokens), sa.String())
    return "(" + compiler.process(element.column.like(pattern, escape="!"), **kw) + ")"


@compiles(_LikeMatch, "sqlite")
def _compile_like_sqlite(element: _LikeMatch, compiler: SQLCompiler, **kw: Any) -> str:
    pattern = sa.literal(_glob_pattern(element.tokens), sa.String())
    glob = element.column.op("GLOB", is_comparison=True)(pattern)
    return "(" + compiler.process(glob, **kw) + ")"


# ---------------------------------------------------------------------------------------------
# $regex: parser, per-engine rendering, linear-time matcher

# Tree nodes (tuples): ("chr", c) ("any",) ("set", negated, ((lo, hi), ...)) ("bol",) ("eol",)
# ("cat", (nodes...)) ("alt", (nodes...)) ("rep", node, min, max_or_None)

_META = set("\\.^$*+?()[]{}|")
_ESCAPABLE = set("\\.^$*+?()[]{}|-/")
_CONTROL_ESCAPES = {"n": "\n", "t": "\t", "r": "\r"}
_DIGIT = ((ord("0"), ord("9")),)
_WORD = ((ord("0"), ord("9")), (ord("A"), ord("Z")), (ord("_"), ord("_")), (ord("a"), ord("z")))
_SPACE = ((9, 13), (32, 32))  # \t \n \v \f \r and space
_SHORTHANDS = {"d": _DIGIT, "w": _WORD, "s": _SPACE}


class _RegexParser:
    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0
        self.depth = 0

    def error(self, why: str) -> BadCondition:
        return BadCondition(f"$regex {self.p[:60]!r} at position {self.i}: {why}")

    def parse(self) -> tuple[Any, ...]:
        if not self.p:
            raise BadCondition("$regex pattern is empty")
        node = self.alternation()
        if self.i != len(self.p):
            raise self.error("unbalanced ')'")
        return node

    def alternation(self) -> tuple[Any, ...]:
        branches = [self.sequence()]
        while self.i < len(self.p) and self.p[self.i] == "|":
            self.i += 1
            branches.append(self.sequence())
        return branches[0] if len(branches) == 1 else ("alt", tuple(branches))

    def sequence(self) -> tuple[Any, ...]:
        items: list[tuple[Any, ...]] = []
        while self.i < len(self.p) and self.p[self.i] not in "|)":
            atom = self.atom()
            items.append(self.quantified(atom))
        if not items:
            raise self.error("empty alternative or group")
        return items[0] if len(items) == 1 else ("cat", tuple(items))

    def atom(self) -> tuple[Any, ...]:
        ch = self.p[self.i]
        self.i += 1
        if ch == "(":
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise QueryTooComplex(f"$regex groups nest deeper than {MAX_DEPTH}")
            if self.p.startswith("?", self.i):
                raise self.error("(? constructs are not supported")
            node = self.alternation()
            if self.i >= len(self.p) or self.p[self.i] != ")":
                raise self.error("missing ')'")
            self.i += 1
            self.depth -= 1
            return node
        if ch == "[":
            return self.char_class()
        if ch == ".":
            return ("any",)
        if ch == "^":
            return ("bol",)
        if ch == "$":
            return ("eol",)
        if ch == "\\":
            return self.escape(in_class=False)
        if ch in _META:
            raise self.error(f"{ch!r} must be escaped with a backslash to match itself")
        return ("chr", ch)

    def escape(self, in_class: bool) -> tuple[Any, ...]:
        if self.i >= len(self.p):
            raise self.error("trailing backslash")
        ch = self.p[self.i]
        self.i += 1
        if ch in _ESCAPABLE:
            return ("chr", ch)
        if ch in _CONTROL_ESCAPES:
            return ("chr", _CONTROL_ESCAPES[ch])
        if ch in _SHORTHANDS:
            return ("set", False, _SHORTHANDS[ch])
        if ch.lower() in _SHORTHANDS and not in_class:
            return ("set", True, _SHORTHANDS[ch.lower()])
        raise self.error(f"unsupported escape \\{ch}")

    def char_class(self) -> tuple[Any, ...]:
        negated = self.p.startswith("^", self.i)
        if negated:
            self.i += 1
        ranges: list[tuple[int, int]] = []
        while True:
            if self.i >= len(self.p):
                raise self.error("missing ']'")
            ch = self.p[self.i]
            if ch == "]":
                self.i += 1
                break
            lo_node = self.class_char()
            if lo_node[0] == "set":
                ranges.extend(lo_node[2])
                continue
            lo = ord(lo_node[1])
            if self.p.startswith("-", self.i) and not self.p.startswith("-]", self.i):
                self.i += 1
                hi_node = self.class_char()
                if hi_node[0] == "set":
                    raise self.error("a range cannot end in a class shorthand")
                hi = ord(hi_node[1])
                if hi < lo:
                    raise self.error("range out of order")
                ranges.append((lo, hi))
            else:
                ranges.append((lo, lo))
        if not ranges:
            raise self.error("empty character class")
        return ("set", negated, tuple(sorted(set(ranges))))

    def class_char(self) -> tuple[Any, ...]:
        ch = self.p[self.i]
        self.i += 1
        if ch == "\\":
            return self.escape(in_class=True)
        if ch in "[-^":
            raise self.error(f"{ch!r} inside a class must be escaped with a backslash")
        return ("chr", ch)

    def quantified(self, atom: tuple[Any, ...]) -> tuple[Any, ...]:
        if self.i >= len(self.p) or self.p[self.i] not in "*+?{":
            return atom
        q = self.p[self.i]
        self.i += 1
        if q == "*":
            low, high = 0, None
        elif q == "+":
            low, high = 1, None
        elif q == "?":
            low, high = 0, 1
        else:
            m = re.compile(r"([0-9]{1,3})(,([0-9]{0,3}))?\}").match(self.p, self.i)
            if m is None:
                raise self.error("bad {m,n} quantifier ('{' must be escaped to match itself)")
            self.i = m.end()
            low = int(m.group(1))
            high = low if m.group(2) is None else (int(m.group(3)) if m.group(3) else None)
            if low > MAX_REPEAT or (high is not None and (high > MAX_REPEAT or high < low)):
                raise self.error(f"repeat counts must satisfy m <= n <= {MAX_REPEAT}")
        if self.i < len(self.p) and self.p[self.i] in "*+?{":
            raise self.error("a quantifier cannot follow a quantifier (no lazy or nested forms)")
        if not _fixed_sequence(atom):
            raise self.error("only a character, '.', a class or a group of those may be quantified")
        return ("rep", atom, low, high)


def _fixed_sequence(node: tuple[Any, ...]) -> bool:
    """A node made only of characters, '.', classes and concatenations of them."""
    stack = [node]
    while stack:
        n = stack.pop()
        if n[0] == "cat":
            stack.extend(n[1])
        elif n[0] not in ("chr", "any", "set"):
            return False
    return True


def parse_regex(pattern: str) -> tuple[Any, ...]:
    """Parse a ``$regex`` pattern of the supported subset (see the module docstring)."""
    tree = _RegexParser(pattern).parse()
    if _program_size(tree) > MAX_REGEX_PROGRAM:
        raise QueryTooComplex(f"$regex {pattern[:60]!r} expands beyond {MAX_REGEX_PROGRAM} steps")
    return tree


def _program_size(node: tuple[Any, ...]) -> int:
    kind = node[0]
    if kind == "cat":
        return sum(_program_size(n) for n in node[1])
    if kind == "alt":
        return sum(_program_size(n) + 2 for n in node[1])
    if kind == "rep":
        inner = _program_size(node[1]) + 2
        return inner * max(node[2], 1) + inner * ((node[3] or node[2] + 1) - node[2])
    return 1


def _render_char(ch: str, in_class: bool) -> str:
    if ch in _META or (in_class and ch in "-^"):
        return "\\" + ch
    return ch


def _render_set(node: tuple[Any, ...]) -> str:
    parts = []
    for lo, hi in node[2]:
        a = _render_char(chr(lo), True)
        parts.append(a if lo == hi else f"{a}-{_render_char(chr(hi), True)}")
    return "[" + ("^" if node[1] else "") + "".join(parts) + "]"


def render_regex(tree: tuple[Any, ...], dialect: str) -> str:
    """The pattern for ``dialect`` ("python", "postgresql", "mariadb")."""
    end = {"python": r"\Z", "postgresql": "$", "mariadb": r"\z"}[dialect]
    prefix = {"python": "(?s)", "postgresql": "(?s)", "mariadb": "(?s-imx)"}[dialect]

    def walk(n: tuple[Any, ...]) -> str:
        kind = n[0]
        if kind == "chr":
            return _render_char(n[1], False)
        if kind == "any":
            return "."
        if kind == "set":
            return _render_set(n)
        if kind == "bol":
            return "^"
        if kind == "eol":
            return end
        if kind == "cat":
            return "".join(walk(c) for c in n[1])
        if kind == "alt":
            return "(?:" + "|".join(walk(c) for c in n[1]) + ")"
        low, high = n[2], n[3]
        if (low, high) == (0, None):
            q = "*"
        elif (low, high) == (1, None):
            q = "+"
        elif (low, high) == (0, 1):
            q = "?"
        elif high is None:
            q = f"{{{low},}}"
        elif high == low:
            q = f"{{{low}}}"
        else:
            q = f"{{{low},{high}}}"
        return "(?:" + walk(n[1]) + ")" + q

    return prefix + walk(tree)


# The matcher: the tree compiled to a small instruction list, run as a Thompson NFA whose sets
# of states are memoised as DFA transitions (built lazily, per program). Each character costs a
# dictionary lookup once its transition is known, and at most O(size) to build it: linear in
# the text, never backtracking.

_Prog = tuple[tuple[Any, ...], ...]
_MAX_TRANSITIONS = 20_000  # memo bound per program; cleared (not grown) beyond it


class RegexProgram:
    """A compiled ``$regex``: instructions plus a memo of DFA transitions (pure cache)."""

    __slots__ = ("_ids", "_states", "_transitions", "instructions")

    def __init__(self, instructions: _Prog) -> None:
        self.instructions = instructions
        self._transitions: dict[tuple[int, str, bool], tuple[int, bool]] = {}
        self._ids: dict[frozenset[int], int] = {}
        self._states: list[frozenset[int]] = []

    def _state(self, pcs: frozenset[int]) -> int:
        sid = self._ids.get(pcs)
        if sid is None:
            sid = self._ids[pcs] = len(self._states)
            self._states.append(pcs)
        return sid

    def _closure(self, seeds: Iterable[int], bol: bool, eol: bool) -> tuple[int, bool]:
        """The consuming instructions reachable from ``seeds`` without input, and whether
        "match" is reachable, with ``^`` / ``$`` true as given."""
        prog = self.instructions
        seen: set[int] = set()
        consuming: list[int] = []
        stack = list(seeds)
        matched = False
        while stack:
            k = stack.pop()
            if k in seen:
                continue
            seen.add(k)
            ins = prog[k]
            op = ins[0]
            if op == "match":
                matched = True
            elif op == "jmp":
                stack.append(ins[1])
            elif op == "split":
                stack.append(ins[2])
                stack.append(ins[1])
            elif op == "bol":
                if bol:
                    stack.append(k + 1)
            elif op == "eol":
                if eol:
                    stack.append(k + 1)
            else:
                consuming.append(k)
        return self._state(frozenset(consuming)), matched

    def _step(self, sid: int, ch: str, at_end: bool) -> tuple[int, bool]:
        key = (sid, ch, at_end)
        found = self._transitions.get(key)
        if found is not None:
            return found
        prog = self.instructions
        cp = ord(ch)
        moved = [0]  # a new attempt starts at every position (unanchored search)
        for k in self._states[sid]:
            ins = prog[k]
            op = ins[0]
            if op == "chr":
                ok = ins[1] == ch
            elif op == "any":
                ok = True
            else:  # set
                ok = any(lo <= cp <= hi for lo, hi in ins[2]) != ins[1]
            if ok:
                moved.append(k + 1)
        found = self._closure(moved, bol=False, eol=at_end)
        if len(self._transitions) >= _MAX_TRANSITIONS:
            self._transitions.clear()
        self._transitions[key] = found
        return found

    def search(self, text: str) -> bool:
        """Whether the pattern matches anywhere in ``text``."""
        n = len(text)
        sid, matched = self._closure([0], bol=True, eol=n == 0)
        if matched:
            return True
        last = n - 1
        for pos, ch in enumerate(text):
            sid, matched = self._step(sid, ch, pos == last)
            if matched:
                return True
        return False


def compile_regex(tree: tuple[Any, ...]) -> RegexProgram:
    """The compiled form of a parsed ``$regex`` for ``regex_search``."""
    prog: list[list[Any]] = []

    def emit(*ins: Any) -> int:
        prog.append(list(ins))
        return len(prog) - 1

    def gen(n: tuple[Any, ...]) -> None:
        kind = n[0]
        if kind in ("chr", "any", "set", "bol", "eol"):
            emit(*n)
        elif kind == "cat":
            for c in n[1]:
                gen(c)
        elif kind == "alt":
            jumps = []
            for k, branch in enumerate(n[1]):
                if k < len(n[1]) - 1:
                    split = emit("split", 0, 0)
                    prog[split][1] = len(prog)
                    gen(branch)
                    jumps.append(emit("jmp", 0))
                    prog[split][2] = len(prog)
                else:
                    gen(branch)
            for j in jumps:
                prog[j][1] = len(prog)
        else:  # rep
            body, low, high = n[1], n[2], n[3]
            for _ in range(low):
                gen(body)
            if high is None:
                split = emit("split", 0, 0)
                prog[split][1] = len(prog)
                gen(body)
                emit("jmp", split)
                prog[split][2] = len(prog)
            else:
                ends = []
                for _ in range(high - low):
                    split = emit("split", 0, 0)
                    prog[split][1] = len(prog)
                    ends.append(split)
                    gen(body)
                for split in ends:
                    prog[split][2] = len(prog)

    gen(tree)
    emit("match")
    return RegexProgram(tuple(tuple(ins) for ins in prog))


def regex_search(program: RegexProgram, text: str) -> bool:
    """Whether the compiled pattern matches anywhere in ``text`` (linear time)."""
    return program.search(text)


class _RegexMatch(ColumnElement[bool]):
    """A ``$regex`` test, rendered per dialect."""

    inherit_cache = False
    type = sa.Boolean()

    def __init__(self, column: ColumnElement[Any], pattern: str, tree: tuple[Any, ...]) -> None:
        self.column = column
        self.pattern = pattern
        self.tree = tree


@compiles(_RegexMatch)
def _compile_regex(element: _RegexMatch, compiler: SQLCompiler, **kw: Any) -> str:
    raise sa.exc.CompileError(f"$regex is not supported on {compiler.dialect.name}")


@compiles(_RegexMatch, "postgresql")
def _compile_regex_pg(element: _RegexMatch, compiler: SQLCompiler, **kw: Any) -> str:
    pattern = sa.literal(render_regex(element.tree, "postgresql"), sa.String())
    return "(" + compiler.process(element.column.op("~", is_comparison=True)(pattern), **kw) + ")"


@compiles(_RegexMatch, "mysql")
@compiles(_RegexMatch, "mariadb")
def _compile_regex_mariadb(element: _RegexMatch, compiler: SQLCompiler, **kw: Any) -> str:
    pattern = sa.literal(render_regex(element.tree, "mariadb"), sa.String())
    match = element.column.op("REGEXP", is_comparison=True)(pattern)
    return "(" + compiler.process(match, **kw) + ")"


@compiles(_RegexMatch, "sqlite")
def _compile_regex_sqlite(element: _RegexMatch, compiler: SQLCompiler, **kw: Any) -> str:
    call = sa.func.tc_regexp(sa.literal(element.pattern, sa.String()), element.column)
    return "(" + compiler.process(call == 1, **kw) + ")"


def _sqlite_regexp_function() -> Any:
    """A ``tc_regexp(pattern, value)`` for one SQLite connection, caching compiled patterns."""
    cache: dict[str, RegexProgram] = {}

    def tc_regexp(pattern: str | None, value: str | None) -> int | None:
        if pattern is None or value is None:
            return None
        prog = cache.get(pattern)
        if prog is None:
            if len(cache) >= 256:
                cache.clear()
            prog = cache[pattern] = compile_regex(parse_regex(pattern))
        return 1 if regex_search(prog, value) else 0

    return tc_regexp


# ---------------------------------------------------------------------------------------------
# Engine preparation


#: MariaDB compares only the first max_sort_length bytes when sorting (1024 by default), which
#: would order long strings differently from the other backends. 65,536 bytes covers every
#: orderable value (VARCHAR(16383) in utf8mb4); text and blob fields are not orderable.
MARIADB_SESSION_SQL = "SET SESSION max_sort_length = 65536, default_regex_flags = ''"


def prepare_engine(engine: sa.Engine) -> None:
    """Make ``engine``'s connections give the query language its defined semantics.

    SQLite: installs the ``tc_regexp`` function used by ``$regex``. MariaDB: whole-value sort
    keys, default regex flags, and an error (``QueryTooComplex``) instead of MariaDB's silent
    "no match" when a ``$regex`` exceeds its backtracking limit. PostgreSQL needs nothing.
    Call it right after ``create_engine``, before the first connection (it applies to new
    connections).
    """
    name = engine.dialect.name
    if name == "sqlite":

        def on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.create_function(
                "tc_regexp", 2, _sqlite_regexp_function(), deterministic=True
            )

        sa.event.listen(engine, "connect", on_connect)
    elif name in ("mysql", "mariadb"):

        def on_connect_mariadb(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            try:
                cursor.execute(MARIADB_SESSION_SQL)
            finally:
                cursor.close()

        sa.event.listen(engine, "connect", on_connect_mariadb)
        sa.event.listen(engine, "after_cursor_execute", _refuse_regex_match_limit)


#: MariaDB's REGEXP backtracks (PCRE2). When a pattern/value pair exceeds PCRE2's match limit
#: MariaDB answers "no match" with warning 1139 instead of failing, a silent difference from
#: the other backends. The hook turns that warning into an error (the caller's savepoint then
#: rolls the statement back).
MARIADB_REGEX_LIMIT_WARNING = 1139


def _refuse_regex_match_limit(
    conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> None:
    if not getattr(cursor, "warning_count", 0) or "REGEXP" not in statement:
        return
    check = cursor.connection.cursor()
    try:
        check.execute("SHOW WARNINGS")
        warnings = check.fetchall()
    finally:
        check.close()
    if any(int(w[1]) == MARIADB_REGEX_LIMIT_WARNING for w in warnings):
        raise QueryTooComplex(
            "a $regex needed more backtracking than MariaDB allows for some value; "
            "simplify the pattern (fewer variable-length quantifiers)"
        )
