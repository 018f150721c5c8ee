"""World state: a key-value store with a homomorphic root, overlaid for one block.

Everything consensus must agree on beside the rows themselves lives here as canonical-JSON
values under string keys: account nonces (``acct/``), table metadata (``table/``), grants
(``grant/``), strict-mode pointers (inside the table metadata) and each table's row digest
(``rows/``). The state root is the LtHash of all ``(key, value)`` pairs, so a change costs O(1)
and two states with any different entry (a different row included) have different roots.

``StateOverlay`` buffers a block's writes in memory with an undo journal so a failed
transaction is rolled back exactly; ``flush`` writes the block's net changes in sorted key order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tablechain.crypto import canonical_json, parse_relayed
from tablechain.ledger.digest import LtHash
from tablechain.ledger.storage import (
    LedgerTables,
    insert_many,
    stored_value,
    stored_values,
    update_values,
    upsert_value,
)

__all__ = ["StateOverlay", "TableDigest", "STATE_LTHASH_KEY"]

STATE_LTHASH_KEY = "state_lthash"
_ABSENT = object()


def _entry(key: str, value: bytes) -> bytes:
    return key.encode("utf-8") + b"\x00" + value


class TableDigest:
    """A table's row multiset digest plus its row count and next row id."""

    def __init__(self, name_in_db: str, vector: LtHash, rows: int, next_rowid: int) -> None:
        self.name_in_db = name_in_db
        self.vector = vector
        self.rows = rows
        self.next_rowid = next_rowid
        # Added elements not yet folded into the vector: folding many at once is far cheaper.
        self.pending: list[bytes] = []

    def materialize(self) -> None:
        if self.pending:
            self.vector.add_many(self.pending)
            self.pending = []


class StateOverlay:
    """One block's view of state: reads through to the database, writes buffered."""

    def __init__(self, conn: Connection, tables: LedgerTables) -> None:
        self.conn = conn
        self.t = tables
        self._cache: dict[str, Any] = {}  # key -> decoded value or None (absent)
        self._original: dict[str, bytes | None] = {}  # raw value at block start, for the root
        self._dirty: set[str] = set()
        self._digests: dict[str, TableDigest] = {}
        self._dirty_digests: set[str] = set()
        self._journal: list[Callable[[], None]] = []
        self._savepoints = 0
        # Per-block memo for derived results (e.g. admission checks). Whoever writes the state a
        # memo entry depends on must drop that entry, and undoing writes drops it all; entries
        # hold only successful checks, so dropping too much only costs time.
        self.memo: dict[str, Any] = {}

    # --- key-value --------------------------------------------------------------------------

    def _load(self, key: str) -> Any:
        if key not in self._cache:
            self._remember(key, stored_value(self.conn, self.t.kv.c.key, self.t.kv.c.value, key))
        return self._cache[key]

    def _remember(self, key: str, raw: bytes | None) -> None:
        """Cache a stored value (``None``: absent) as read at the start of the block."""
        self._original[key] = raw
        self._cache[key] = None if raw is None else parse_relayed(raw)

    def prefetch(self, keys: list[str]) -> None:
        """Load many keys with one query per 100 (e.g. the accounts of a block's transactions)
        instead of one query each."""
        missing = sorted({k for k in keys if k not in self._cache})
        found = stored_values(self.conn, self.t.kv.c.key, self.t.kv.c.value, missing)
        for key in missing:
            self._remember(key, found.get(key))

    def get(self, key: str, default: Any = None) -> Any:
        value = self._load(key)
        return default if value is None else value

    def set(self, key: str, value: Any) -> None:
        """Set ``key`` to a JSON value; ``None`` deletes it."""
        previous = self._load(key)
        was_dirty = key in self._dirty
        self._cache[key] = value
        self._dirty.add(key)

        def undo() -> None:
            self._cache[key] = previous
            if not was_dirty:
                self._dirty.discard(key)

        self._journal.append(undo)

    def delete(self, key: str) -> None:
        self.set(key, None)

    def scan(self, prefix: str) -> list[tuple[str, Any]]:
        """Every live entry whose key starts with ``prefix``, sorted by key."""
        rows = (
            self.conn.execute(
                sa.select(self.t.kv.c.key).where(
                    self.t.kv.c.key.startswith(prefix, autoescape=True)
                )
            )
            .scalars()
            .all()
        )
        keys = set(rows) | {k for k in self._cache if k.startswith(prefix)}
        out = []
        for key in sorted(keys):
            value = self._load(key)
            if value is not None:
                out.append((key, value))
        return out

    # --- table digests ----------------------------------------------------------------------

    def table_digest(self, name_in_db: str) -> TableDigest:
        if name_in_db not in self._digests:
            info = self.get(f"rows/{name_in_db}")
            digests = self.t.digests
            vector = stored_value(self.conn, digests.c.name_in_db, digests.c.vector, name_in_db)
            if info is None:
                self._digests[name_in_db] = TableDigest(name_in_db, LtHash(), 0, 1)
            else:
                self._digests[name_in_db] = TableDigest(
                    name_in_db, LtHash(vector), int(info["rows"]), int(info["next_rowid"])
                )
        return self._digests[name_in_db]

    def add_rows(self, name_in_db: str, encoded_rows: list[bytes], new_rowids: int = 0) -> None:
        """Add encoded rows to a table's digest (and reserve ``new_rowids`` row ids)."""
        d = self.table_digest(name_in_db)
        mark = len(d.pending)
        d.pending.extend(encoded_rows)
        d.rows += len(encoded_rows)
        d.next_rowid += new_rowids
        self._mark_digest(name_in_db)

        def undo() -> None:
            if len(d.pending) >= mark + len(encoded_rows):
                del d.pending[mark:]
            else:  # folded in meanwhile
                for row in encoded_rows:
                    d.vector.remove(row)
            d.rows -= len(encoded_rows)
            d.next_rowid -= new_rowids

        self._journal.append(undo)

    def remove_rows(self, name_in_db: str, encoded_rows: list[bytes]) -> None:
        d = self.table_digest(name_in_db)
        for row in encoded_rows:
            d.vector.remove(row)
        d.rows -= len(encoded_rows)
        self._mark_digest(name_in_db)

        def undo() -> None:
            d.vector.add_many(encoded_rows)
            d.rows += len(encoded_rows)

        self._journal.append(undo)

    def reset_table_digest(self, name_in_db: str, drop: bool = False) -> None:
        """Forget a table's rows (drop, or before a rebuild)."""
        d = self.table_digest(name_in_db)
        d.materialize()
        saved = (d.vector.copy(), d.rows, d.next_rowid)
        d.vector, d.rows = LtHash(), 0
        if drop:
            d.next_rowid = -1  # marks the digest entry for deletion at flush
        self._mark_digest(name_in_db)

        def undo() -> None:
            d.vector, d.rows, d.next_rowid = saved

        self._journal.append(undo)

    def on_undo(self, undo: Callable[[], None]) -> None:
        """Register how to reverse a change made outside the overlay (see ``atomic``)."""
        self._journal.append(undo)

    def _mark_digest(self, name_in_db: str) -> None:
        was = name_in_db in self._dirty_digests
        self._dirty_digests.add(name_in_db)
        if not was:
            self._journal.append(lambda: self._dirty_digests.discard(name_in_db))

    # --- transactions within the block -------------------------------------------------------

    @contextmanager
    def journaled(self) -> Iterator[None]:
        """All or nothing for the overlay only (no SQL savepoint): for changes whose SQL
        writes are deferred (see ``TableEngine.batching``)."""
        mark = len(self._journal)
        try:
            yield
        except BaseException:
            self.rollback_to(mark)
            raise

    def mark(self) -> int:
        return len(self._journal)

    def rollback_to(self, mark: int) -> None:
        if len(self._journal) > mark:
            # What the memo derived may rest on the writes undone here: forget it (it only
            # holds what can be recomputed).
            self.memo.clear()
        while len(self._journal) > mark:
            self._journal.pop()()

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """All or nothing for the enclosed changes: a SQL savepoint plus the undo journal."""
        mark = len(self._journal)
        # Driver-level savepoints: SQLAlchemy's begin_nested() costs ~0.4 ms each, which
        # dominated per-transaction time. The name holds only our own counter.
        self._savepoints += 1
        name = f"tc_sp{self._savepoints}"
        self.conn.exec_driver_sql(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            self.conn.exec_driver_sql(f"ROLLBACK TO SAVEPOINT {name}")
            self.conn.exec_driver_sql(f"RELEASE SAVEPOINT {name}")
            self.rollback_to(mark)
            raise
        else:
            self.conn.exec_driver_sql(f"RELEASE SAVEPOINT {name}")

    # --- end of block ------------------------------------------------------------------------

    def flush(self) -> bytes:
        """Write the block's net changes; return the new state root (32 bytes)."""
        for name in sorted(self._dirty_digests):
            d = self._digests[name]
            d.materialize()
            if d.next_rowid < 0:
                self.set(f"rows/{name}", None)
                self.conn.execute(
                    sa.delete(self.t.digests).where(self.t.digests.c.name_in_db == name)
                )
                continue
            self.set(
                f"rows/{name}",
                {"digest": d.vector.digest().hex(), "rows": d.rows, "next_rowid": d.next_rowid},
            )
            upsert_value(
                self.conn, self.t.digests, "name_in_db", "vector", name, d.vector.to_bytes()
            )
        self._dirty_digests.clear()
        root = self._root_vector()
        removed: list[bytes] = []
        added: list[bytes] = []
        deletes: list[dict[str, Any]] = []
        inserts: list[dict[str, Any]] = []
        updates: list[tuple[str, bytes]] = []
        for key in sorted(self._dirty):
            old = self._original.get(key)
            new_value = self._cache[key]
            new = None if new_value is None else canonical_json(new_value)
            if old == new:
                continue
            if old is not None:
                removed.append(_entry(key, old))
                if new is None:
                    deletes.append({"k": key})
            if new is not None:
                added.append(_entry(key, new))
                if old is None:
                    inserts.append({"key": key, "value": new})
                else:
                    updates.append((key, new))
            self._original[key] = new
        root.remove_many(removed)
        root.add_many(added)
        kv = self.t.kv
        # One executemany per kind of change, in sorted key order (deterministic everywhere).
        if deletes:
            self.conn.execute(sa.delete(kv).where(kv.c.key == sa.bindparam("k")), deletes)
        update_values(self.conn, kv, "key", "value", updates)
        if inserts:
            insert_many(self.conn, kv, inserts)
        self._dirty.clear()
        self._journal.clear()
        upsert_value(self.conn, self.t.meta, "key", "value", STATE_LTHASH_KEY, root.to_bytes())
        return root.digest()

    def _root_vector(self) -> LtHash:
        meta = self.t.meta
        return LtHash(stored_value(self.conn, meta.c.key, meta.c.value, STATE_LTHASH_KEY))

    def state_root(self) -> bytes:
        """The root as last flushed."""
        return self._root_vector().digest()
