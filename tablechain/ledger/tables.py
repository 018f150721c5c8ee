"""The table engine: ChainSQL tables materialised as real SQL tables through SQLAlchemy Core.

A table is known in state by ``(owner, name)``; its rows live in the physical table
``t_<NameInDB>``, so a rename touches metadata only. Every row carries a hidden ``_tc_rowid``
assigned deterministically from the table's counter; every row change updates the table's
LtHash digest in the state overlay, so the state root covers the rows themselves.
"""

from __future__ import annotations

import datetime as _dt
import decimal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tablechain.crypto import canonical_json
from tablechain.ledger.errors import BadField, LedgerError, TableNotFound
from tablechain.ledger.query import (
    Condition,
    ReadQuery,
    build_select,
    condition_to_sql,
)
from tablechain.ledger.rules import OperationRule, parse_rule
from tablechain.ledger.schema import FieldDef, build_table, coerce_value, parse_fields
from tablechain.ledger.state import StateOverlay
from tablechain.ledger.storage import insert_many, physical_table_name

__all__ = [
    "CONFIDENTIAL_FIELDS",
    "TableMeta",
    "TableEngine",
    "RowConflict",
    "ROWID",
    "table_key",
    "json_value",
]

ROWID = "_tc_rowid"
# Receipts must be identical on every backend, so the driver's own wording is never used.
_CONFLICT = "the {} breaks a PRIMARY KEY, UNIQUE or NOT NULL constraint of the table"


class RowConflict(LedgerError):
    """A row breaks a PRIMARY KEY / UNIQUE / NOT NULL constraint."""

    code = "tefTABLE_CONSTRAINT"


def table_key(owner: str, name: str) -> str:
    return f"table/{owner}/{name}"


def pointer_key(name_in_db: str) -> str:
    return f"strict/{name_in_db}"


#: The columns of a confidential table as validators keep it: one record per insert, holding
#: the batch of rows sealed by the client (see ``tablechain.crypto.envelope``), with who
#: inserted it and in which transaction. The table's own field definitions are sealed too.
CONFIDENTIAL_FIELDS: tuple[dict[str, Any], ...] = (
    {"field": "tx_hash", "type": "char", "length": 64, "NN": 1},
    {"field": "account", "type": "varchar", "length": 42, "NN": 1, "index": 1},
    {"field": "sealed", "type": "blob", "length": 65535, "NN": 1},
)


@dataclass(frozen=True)
class TableMeta:
    """A table's metadata as kept in state.

    A confidential table has ``token`` (its key wrapped to the owner's public key) and
    ``sealed`` (its field definitions, sealed with that key); its ``raw_fields`` are
    ``CONFIDENTIAL_FIELDS``."""

    owner: str
    name: str
    name_in_db: str
    raw_fields: tuple[Any, ...]
    rule: Any
    token: str | None
    strict_pointer: str
    created_height: int
    sealed: str | None = None
    token_tx: str | None = None  # the create that gave ``token`` (clients check it)

    def to_json(self) -> dict[str, Any]:
        out = {
            "owner": self.owner,
            "name": self.name,
            "name_in_db": self.name_in_db,
            "fields": list(self.raw_fields),
            "rule": self.rule,
            "token": self.token,
            "strict_pointer": self.strict_pointer,
            "created_height": self.created_height,
        }
        if self.sealed is not None:  # absent otherwise: ordinary tables' state is unchanged
            out["sealed"] = self.sealed
        if self.token_tx is not None:
            out["token_tx"] = self.token_tx
        return out

    def to_state_json(self) -> dict[str, Any]:
        """The metadata entry; the strict-mode pointer has its own entry (it moves on every
        statement, the rest rarely)."""
        out = self.to_json()
        del out["strict_pointer"]
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], strict_pointer: str | None = None) -> TableMeta:
        return cls(
            obj["owner"],
            obj["name"],
            obj["name_in_db"],
            tuple(obj["fields"]),
            obj.get("rule"),
            obj.get("token"),
            obj["strict_pointer"] if strict_pointer is None else strict_pointer,
            int(obj["created_height"]),
            obj.get("sealed"),
            obj.get("token_tx"),
        )

    @property
    def confidential(self) -> bool:
        return self.token is not None


def json_value(field: FieldDef, value: Any) -> Any:
    """A stored value as canonical JSON (identical whichever backend returned it)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, decimal.Decimal):
        scale = field.accuracy if field.accuracy is not None else None
        if scale is not None:
            value = value.quantize(decimal.Decimal(1).scaleb(-scale))
        text = format(value, "f")
        return text
    if isinstance(value, _dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, _dt.date):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return value


class TableEngine:
    """Physical table operations on one connection, keeping digests in the overlay."""

    def __init__(
        self,
        conn: Connection,
        state: StateOverlay,
        hasher: Callable[[bytes], bytes],
        ddl_engine: sa.engine.Engine | None = None,
        schemas: dict[str, tuple[tuple[Any, ...], sa.Table, tuple[FieldDef, ...]]] | None = None,
    ) -> None:
        self.conn = conn
        self.state = state
        # MySQL/MariaDB commit implicitly on DDL. There, tables are created on a side
        # connection (a new table cannot be touched by the open block yet) and dropped only
        # after the block commits, so a block still applies all or nothing.
        self.implicit_commit_ddl = conn.dialect.name == "mysql"
        self.ddl_engine = ddl_engine
        self.deferred_drops: list[sa.Table] = []
        # NameInDB -> (field definitions, SQLAlchemy table, parsed fields). A ledger shares one
        # across its blocks and readers (``schemas``): building the table each block also cost
        # recompiling its statements, which are cached per table object.
        self._tables = {} if schemas is None else schemas
        # Batching: inserts are queued and written with one executemany per table before the
        # next read or other write (``flush_pending``). Ledger execution switches it on for runs
        # of plain inserts, and falls back to one-by-one if the batched write fails.
        self.batching = False
        self._pending: dict[str, tuple[sa.Table, list[dict[str, Any]]]] = {}
        self.hasher = hasher
        self._metas: dict[int, tuple[Any, TableMeta]] = {}
        self._rules: dict[str, tuple[Any, tuple[FieldDef, ...], OperationRule | None]] = {}

    # --- metadata ----------------------------------------------------------------------------

    def lookup(self, owner: str, name: str) -> TableMeta:
        meta = self.find(owner, name)
        if meta is None:
            raise TableNotFound(f"table {name!r} of {owner} does not exist")
        return meta

    def find(self, owner: str, name: str) -> TableMeta | None:
        obj = self.state.get(table_key(owner, name))
        if obj is None:
            return None
        pointer = self.state.get(pointer_key(obj["name_in_db"]))
        cached = self._metas.get(id(obj))
        if cached is not None and cached[0] is obj:  # the same state entry: parse once
            meta = cached[1]
            if meta.strict_pointer != pointer:
                # The pointer moves on every statement: a shallow copy with the new pointer is
                # far cheaper than dataclasses.replace (which re-runs __init__).
                moved = object.__new__(TableMeta)
                moved.__dict__.update(meta.__dict__)
                moved.__dict__["strict_pointer"] = pointer
                meta = moved
                self._metas[id(obj)] = (obj, meta)
            return meta
        meta = TableMeta.from_json(obj, pointer)
        self._metas[id(obj)] = (obj, meta)
        return meta

    def save(self, meta: TableMeta) -> None:
        self.state.set(table_key(meta.owner, meta.name), meta.to_state_json())
        self.set_pointer(meta, meta.strict_pointer)

    def set_pointer(self, meta: TableMeta, pointer: str | None) -> None:
        """Move (or, with None, delete) a table's strict-mode pointer."""
        self.state.set(pointer_key(meta.name_in_db), pointer)

    def rule(self, meta: TableMeta, fields: tuple[FieldDef, ...]) -> OperationRule | None:
        """The table's parsed rule (parsed once per engine while the rule is unchanged)."""
        cached = self._rules.get(meta.name_in_db)
        if cached is None or cached[0] is not meta.rule or cached[1] is not fields:
            cached = (meta.rule, fields, parse_rule(meta.rule, fields))
            self._rules[meta.name_in_db] = cached
        return cached[2]

    def physical(self, meta: TableMeta) -> tuple[sa.Table, tuple[FieldDef, ...]]:
        cached = self._tables.get(meta.name_in_db)
        if cached is None or cached[0] != meta.raw_fields:
            fields = parse_fields(list(meta.raw_fields))
            table = build_table(sa.MetaData(), physical_table_name(meta.name_in_db), fields)
            cached = (meta.raw_fields, table, fields)
            if len(self._tables) >= 4096:
                self._tables.clear()
            self._tables[meta.name_in_db] = cached
        return cached[1], cached[2]

    # --- DDL ---------------------------------------------------------------------------------

    def create_physical(self, meta: TableMeta) -> None:
        self.flush_pending()
        table, _ = self.physical(meta)
        if self.implicit_commit_ddl:
            if self.ddl_engine is None:
                raise LedgerError("MySQL/MariaDB needs a DDL engine for table creation")
            with self.ddl_engine.begin() as side:
                # A block that was rolled back may have left this (empty) table behind.
                table.drop(side, checkfirst=True)
                table.create(side)
        else:
            table.create(self.conn)

    def drop_physical(self, meta: TableMeta) -> None:
        self.flush_pending()
        table, _ = self.physical(meta)
        if self.implicit_commit_ddl:
            self.deferred_drops.append(table)
            # The drop is carried out after the block commits: a transaction that fails after
            # it (a later statement of an SQLTransaction) must take it back, or the table it
            # leaves in state would lose its rows on MariaDB only.
            drops = self.deferred_drops
            self.state.on_undo(lambda: drops.remove(table))
        else:
            table.drop(self.conn)
        self.state.reset_table_digest(meta.name_in_db, drop=True)

    def finish_block(self) -> None:
        """After the block's commit: carry out deferred drops (MySQL/MariaDB)."""
        drops, self.deferred_drops = self.deferred_drops, []
        if drops and self.ddl_engine is not None:
            with self.ddl_engine.begin() as side:
                for table in drops:
                    table.drop(side, checkfirst=True)

    def abandon_block(self) -> None:
        self.deferred_drops = []

    def rebuild_schema(
        self, meta: TableMeta, raw_fields: list[Any], pointer: str, tx_hash: str
    ) -> TableMeta:
        """Apply a schema change by copying the rows into a new physical table.

        The new table gets a new NameInDB; the old one is dropped. Copying keeps the change
        atomic on every backend (MySQL's ALTER TABLE would commit the block) and re-validates
        every value against its new type.
        """
        new_fields = parse_fields(raw_fields)
        name_in_db = self.state_hash([meta.name_in_db, tx_hash])
        new_meta = replace(
            meta, name_in_db=name_in_db, raw_fields=tuple(raw_fields), strict_pointer=pointer
        )
        rows = self.matching_rows(meta, None)
        self.create_physical(new_meta)
        by_name = {f.name: f for f in new_fields}
        completed = []
        for rowid, row in rows:
            kept = {k: v for k, v in row.items() if k in by_name and v is not None}
            new_row = self.complete_row(new_fields, kept, rowid)
            # A NULL a row holds stays NULL (or is refused by a NOT NULL field): defaults and
            # AI fill only the fields the row did not have.
            for f in new_fields:
                if f.name in row and row[f.name] is None:
                    new_row[f.name] = coerce_value(f, None)
            completed.append((rowid, new_row))
        table, _ = self.physical(new_meta)
        if completed:
            params = [
                {ROWID: rowid, **self._db_values(new_fields, row)} for rowid, row in completed
            ]
            try:
                self.conn.execute(sa.insert(table), params)
            except sa.exc.IntegrityError as exc:
                raise RowConflict(_CONFLICT.format("schema change")) from exc
        old_digest = self.state.table_digest(meta.name_in_db)
        self.state.add_rows(
            name_in_db,
            [self.encode_row(r, row) for r, row in completed],
            new_rowids=old_digest.next_rowid - 1,
        )
        self.drop_physical(meta)
        self.set_pointer(meta, None)
        self.save(new_meta)
        return new_meta

    def state_hash(self, parts: list[Any]) -> str:
        return self.hasher(canonical_json(parts)).hex()[:40]

    # --- rows --------------------------------------------------------------------------------

    @staticmethod
    def encode_row(rowid: int, row: Mapping[str, Any]) -> bytes:
        return canonical_json([rowid, row], trusted=True)

    def complete_row(
        self, fields: Sequence[FieldDef], given: Mapping[str, Any], rowid: int
    ) -> dict[str, Any]:
        """Validate a row to insert: coerce every value, apply defaults and auto-increment."""
        if not isinstance(given, dict):
            raise BadField("each row to insert is a JSON object")
        names = {f.name for f in fields}
        if not names.issuperset(given):
            raise BadField(f"unknown fields {sorted(set(given) - names)}")
        row: dict[str, Any] = {}
        for f in fields:
            value = given.get(f.name)
            if value is not None:
                # coerce_value gives the canonical form: an int or a str, as stored
                row[f.name] = coerce_value(f, value)
            elif f.ai:
                row[f.name] = rowid
            elif f.default is not None:
                row[f.name] = json_value(f, coerce_value(f, f.default))
            elif f.nn or f.pk:
                raise BadField(f"field {f.name!r} is NOT NULL and has no value")
            else:
                row[f.name] = None
        return row

    def _db_values(self, fields: Sequence[FieldDef], row: Mapping[str, Any]) -> dict[str, Any]:
        return {
            f.name: (None if row[f.name] is None else coerce_value(f, row[f.name])) for f in fields
        }

    def insert_rows(self, meta: TableMeta, rows: Sequence[Mapping[str, Any]]) -> list[int]:
        """Insert already completed rows (see ``complete_row``); returns their row ids."""
        table, fields = self.physical(meta)
        digest = self.state.table_digest(meta.name_in_db)
        first = digest.next_rowid
        params = []
        encoded = []
        for i, row in enumerate(rows):
            rowid = first + i
            # Completed rows hold canonical values, which are also what the columns store.
            params.append({ROWID: rowid, **row})
            encoded.append(self.encode_row(rowid, row))
        if self.batching:
            queued = self._pending.setdefault(meta.name_in_db, (table, []))[1]
            mark = len(queued)
            queued.extend(params)
            self.state.on_undo(lambda: queued.__delitem__(slice(mark, None)))
        else:
            self.flush_pending()
            try:
                insert_many(self.conn, table, params)
            except sa.exc.IntegrityError as exc:
                raise RowConflict(_CONFLICT.format("insert")) from exc
        self.state.add_rows(meta.name_in_db, encoded, new_rowids=len(rows))
        return [first + i for i in range(len(rows))]

    def flush_pending(self) -> None:
        """Write queued inserts (raises ``RowConflict`` if any breaks a constraint)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        for table, params in pending.values():
            if params:
                try:
                    insert_many(self.conn, table, params)
                except sa.exc.IntegrityError as exc:
                    raise RowConflict(_CONFLICT.format("insert")) from exc

    def discard_pending(self) -> None:
        self._pending = {}

    def next_rowid(self, meta: TableMeta) -> int:
        return self.state.table_digest(meta.name_in_db).next_rowid

    def matching_rows(
        self, meta: TableMeta, condition: Condition | None, limit: int | None = None
    ) -> list[tuple[int, dict[str, Any]]]:
        """``(rowid, row)`` of the rows matching ``condition``, in row-id order."""
        self.flush_pending()
        table, fields = self.physical(meta)
        stmt = sa.select(table)
        if condition is not None:
            stmt = stmt.where(condition_to_sql(condition, table))
        stmt = stmt.order_by(table.c[ROWID])
        if limit is not None:
            stmt = stmt.limit(limit)
        out = []
        for rec in self.conn.execute(stmt):
            m = rec._mapping
            out.append((int(m[ROWID]), {f.name: json_value(f, m[f.name]) for f in fields}))
        return out

    def count_rows(self, meta: TableMeta, condition: Condition | None) -> int:
        self.flush_pending()
        table, _ = self.physical(meta)
        stmt = sa.select(sa.func.count()).select_from(table)
        if condition is not None:
            stmt = stmt.where(condition_to_sql(condition, table))
        return int(self.conn.execute(stmt).scalar_one())

    def update_rows(
        self, meta: TableMeta, changes: Mapping[str, Any], condition: Condition | None
    ) -> int:
        """Set ``changes`` (raw JSON values) on every row matching ``condition``."""
        table, fields = self.physical(meta)
        by_name = {f.name: f for f in fields}
        for name in changes:
            if name not in by_name:
                raise BadField(f"unknown field {name!r} in update")
        new_values = {
            name: (None if v is None else json_value(by_name[name], coerce_value(by_name[name], v)))
            for name, v in changes.items()
        }
        for name, v in new_values.items():
            if v is None and (by_name[name].nn or by_name[name].pk):
                raise BadField(f"field {name!r} is NOT NULL")
        rows = self.matching_rows(meta, condition)
        if not rows:
            return 0
        old_enc, new_enc, params = [], [], []
        for rowid, row in rows:
            new_row = {**row, **new_values}
            old_enc.append(self.encode_row(rowid, row))
            new_enc.append(self.encode_row(rowid, new_row))
            params.append(
                {
                    "_rid": rowid,
                    **{
                        n: (None if new_row[n] is None else coerce_value(by_name[n], new_row[n]))
                        for n in new_values
                    },
                }
            )
        stmt = (
            sa.update(table)
            .where(table.c[ROWID] == sa.bindparam("_rid"))
            .values({n: sa.bindparam(n) for n in new_values})
        )
        try:
            self.conn.execute(stmt, params)
        except sa.exc.IntegrityError as exc:
            raise RowConflict(_CONFLICT.format("update")) from exc
        self.state.remove_rows(meta.name_in_db, old_enc)
        self.state.add_rows(meta.name_in_db, new_enc)
        return len(rows)

    def delete_rows(self, meta: TableMeta, condition: Condition | None) -> int:
        table, _ = self.physical(meta)
        rows = self.matching_rows(meta, condition)
        if not rows:
            return 0
        ids = [rowid for rowid, _ in rows]
        for start in range(0, len(ids), 500):
            self.conn.execute(sa.delete(table).where(table.c[ROWID].in_(ids[start : start + 500])))
        self.state.remove_rows(meta.name_in_db, [self.encode_row(r, row) for r, row in rows])
        return len(rows)

    def select(self, meta: TableMeta, query: ReadQuery, extra: Condition | None) -> list[dict]:
        """Rows of a read, visible columns only."""
        self.flush_pending()
        table, fields = self.physical(meta)
        by_name = {f.name: f for f in fields}
        out = []
        for rec in self.conn.execute(build_select(table, query, extra)):
            m = rec._mapping
            out.append({k: json_value(by_name[k], m[k]) for k in m.keys() if k in by_name})
        return out

    def rehash_table(self, meta: TableMeta) -> None:
        """Recompute a table's digest from its rows (after a schema change)."""
        self.state.reset_table_digest(meta.name_in_db)
        rows = self.matching_rows(meta, None)
        self.state.add_rows(meta.name_in_db, [self.encode_row(r, row) for r, row in rows])
