"""A table's history from the chain: its operation log (dump) and who changed which values
(audit), as ChainSQL's node-side dump and audit do.

A table is followed through its whole life, whatever it was called: its *lineage* starts at the
create that made it and follows renames (its statements name it as it was called then); schema
changes keep it (and its rows' ids); a drop ends it, and a later create of the same name starts
another lineage. Only successful transactions are part of a table's history.

- ``table_log`` / ``dump_table``: every successful statement on the table, in chain order, as
  JSON lines; ``dump_table`` appends to an existing file after its last line (resumable).
- ``audit_table``: for the rows a condition selects now and the fields named, every transaction
  that changed one of those values (insert, update, delete), with the values before and after.
  It re-executes the chain into a scratch database, one transaction at a time where the table is
  touched: as costly as ``tablechain node rebuild``, and exact (an update's condition is judged
  on the table as it was then).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tablechain.crypto import canonical_json
from tablechain.ledger.blocks import BlockHeader
from tablechain.ledger.errors import BadField, TableNotFound
from tablechain.ledger.query import parse_condition
from tablechain.ledger.tables import ROWID, json_value
from tablechain.ledger.transactions import (
    SignedTransaction,
    SQLStatement,
    SQLTransaction,
    Statement,
    TableListSet,
)

__all__ = ["TableEvent", "table_log", "dump_table", "audit_table"]


@dataclass(frozen=True)
class TableEvent:
    """One successful statement on a table: where it is in the chain and what it did."""

    ledger_index: int
    index: int  # the transaction's position in its block
    statement: int  # the statement's position in its transaction (0 unless SQLTransaction)
    tx_hash: str
    account: str
    op_type: int
    name: str  # the table's name when the statement ran
    raw: Any

    def to_json(self) -> dict[str, Any]:
        return {"ledger_index": self.ledger_index, "index": self.index,
                "statement": self.statement, "hash": self.tx_hash, "account": self.account,
                "op_type": self.op_type, "table": self.name, "raw": self.raw}


def _statements(tx: SignedTransaction) -> list[Statement]:
    body = tx.body
    if isinstance(body, SQLTransaction):
        return list(body.statements)
    if isinstance(body, (TableListSet, SQLStatement)):
        return [body]
    return []


class _Lineages:
    """Which lineage each (owner, name) belongs to, updated statement by statement."""

    def __init__(self) -> None:
        self.current: dict[tuple[str, str], str] = {}

    def apply(self, tx: SignedTransaction, i: int, st: Statement) -> tuple[str | None, str]:
        """The lineage the statement touches (None: a table not followed) and its name then."""
        if isinstance(st, TableListSet):
            owner = st.owner or tx.account
            key = (owner, st.table.name)
            if st.op_type == 1:
                self.current[key] = f"{tx.hash_hex}:{i}"
                return self.current[key], st.table.name
            if st.op_type == 2:
                return self.current.pop(key, None), st.table.name
            if st.op_type == 3:
                lineage = self.current.pop(key, None)
                if lineage is not None and st.table.new_name is not None:
                    self.current[(owner, st.table.new_name)] = lineage
                return lineage, st.table.name
            return self.current.get(key), st.table.name
        return self.current.get((st.owner, st.table.name)), st.table.name


def _committed(ledger: Any, start: int = 1) -> Iterator[tuple[BlockHeader, list[tuple[
        SignedTransaction, dict[str, Any]]]]]:
    """Committed blocks from ``start``: the header, and each transaction with its receipt."""
    for height in range(start, ledger.height + 1):
        block = ledger.block(height)
        txs = [ledger.parse_stored(t) for t in block["transactions"]]
        yield (BlockHeader.from_json(block["header"]),
               list(zip(txs, block["receipts"], strict=True)))


def _lineage_log(ledger: Any) -> tuple[dict[str, list[TableEvent]], dict[tuple[str, str], str]]:
    lineages = _Lineages()
    events: dict[str, list[TableEvent]] = {}
    for header, items in _committed(ledger):
        for index, (tx, receipt) in enumerate(items):
            if receipt["result"] != "tesSUCCESS":
                continue
            for i, st in enumerate(_statements(tx)):
                lineage, name = lineages.apply(tx, i, st)
                if lineage is not None:
                    events.setdefault(lineage, []).append(TableEvent(
                        header.height, index, i, tx.hash_hex, tx.account, st.op_type, name,
                        st.raw))
    return events, lineages.current


def table_log(ledger: Any, owner: str, name: str) -> list[TableEvent]:
    """Every successful statement on table ``name`` of ``owner`` (as it is called now), in
    chain order, from its create on."""
    events, current = _lineage_log(ledger)
    lineage = current.get((owner, name))
    if lineage is None:
        raise TableNotFound(f"table {name!r} of {owner} does not exist")
    return events[lineage]


def dump_table(ledger: Any, owner: str, name: str, path: str | Path) -> int:
    """Write the table's operation log to ``path`` as JSON lines; when the file exists, append
    what follows its last line (a dump resumes). How many lines were written."""
    path = Path(path)
    after = _resume_after(path) if path.exists() and path.stat().st_size else None
    written = 0
    with path.open("a", encoding="utf-8") as out:
        for event in table_log(ledger, owner, name):
            if after is not None and (event.ledger_index, event.index, event.statement) <= after:
                continue
            out.write(canonical_json(event.to_json()).decode() + "\n")
            written += 1
    return written


_LINE_START = b'{"account":"'  # how every dump line starts (canonical JSON, sorted keys)


def _event_key(line: bytes) -> tuple[int, int, int] | None:
    try:
        obj = json.loads(line)
        return int(obj["ledger_index"]), int(obj["index"]), int(obj["statement"])
    except (ValueError, KeyError, TypeError):
        return None


def _resume_after(path: Path) -> tuple[int, int, int] | None:
    """Where a dump in ``path`` stops. A dump interrupted mid-line leaves a last line without
    its newline: a whole one gets its newline, a cut one is removed (the next run writes it
    again), so appending never glues two events into one line."""
    data = path.read_bytes()
    body, _, tail = data.rpartition(b"\n")
    if tail:
        if _event_key(tail) is not None:
            with path.open("ab") as out:
                out.write(b"\n")
            return _event_key(tail)
        if not (_LINE_START.startswith(tail) or tail.startswith(_LINE_START)):
            raise BadField(f"{path} does not end with a line of a table dump")
        previous = body.rstrip(b"\n").rsplit(b"\n", 1)[-1]
        after = _event_key(previous) if previous else None
        if previous and after is None:
            raise BadField(f"{path} does not end with a line of a table dump")
        with path.open("r+b") as out:
            out.truncate(len(data) - len(tail))
        return after
    after = _event_key(body.rstrip(b"\n").rsplit(b"\n", 1)[-1])
    if after is None:
        raise BadField(f"{path} does not end with a line of a table dump")
    return after


# --- audit -----------------------------------------------------------------------------------


def audit_table(ledger: Any, owner: str, name: str, fields: Sequence[str],
                condition: Any = None) -> list[dict[str, Any]]:
    """Every transaction that changed ``fields`` of the rows ``condition`` selects now.

    One entry per such transaction, in chain order: ``{"ledger_index", "index", "hash",
    "account", "changes": [{"row": rowid, "field", "before", "after"}]}`` (``before`` None for
    an insert, ``after`` None for a delete)."""
    from tablechain.ledger.chain import Ledger

    events, current = _lineage_log(ledger)
    lineage = current.get((owner, name))
    if lineage is None:
        raise TableNotFound(f"table {name!r} of {owner} does not exist")
    with ledger.reader() as (_, tables):
        meta = tables.lookup(owner, name)
        _, defs = tables.physical(meta)
        known = {f.name for f in defs}
        unknown = sorted(set(fields) - known)
        if not fields or unknown:
            raise BadField(f"audit names fields of the table: unknown {unknown}"
                           if unknown else "audit names at least one field")
        cond = None if condition is None else parse_condition(condition, defs)
        rowids = {rowid for rowid, _ in tables.matching_rows(meta, cond)}
    touching = {(e.ledger_index, e.index) for e in events[lineage]}
    # The table's name as each transaction starts (a rename inside it comes later), and the
    # transactions that create it (before them, the name may still be another table's).
    names: dict[tuple[int, int], str] = {}
    creates: set[tuple[int, int]] = set()
    for e in events[lineage]:
        if (e.ledger_index, e.index) not in names:
            names[(e.ledger_index, e.index)] = e.name
            if e.op_type == 1:
                creates.add((e.ledger_index, e.index))
    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Ledger(f"sqlite:///{Path(scratch_dir) / 'audit.db'}", ledger.genesis,
                         ledger.registry, ledger.admission)
        try:
            for header, items in _committed(ledger):
                if not any((header.height, i) in touching for i in range(len(items))):
                    scratch.execute([tx for tx, _ in items], header.timestamp_ms,
                                    header.proposer).commit()
                    continue
                for index, (tx, _) in enumerate(items):
                    key = (header.height, index)
                    if key not in touching:
                        scratch.execute([tx], header.timestamp_ms, header.proposer).commit()
                        continue
                    before = ({} if key in creates
                              else _snapshot(scratch, owner, names[key], rowids, fields))
                    scratch.execute([tx], header.timestamp_ms, header.proposer).commit()
                    after = _snapshot(scratch, owner, _name_after(tx, owner, names[key]),
                                      rowids, fields)
                    changes = _diff(before, after, fields)
                    if changes:
                        out.append({"ledger_index": header.height, "index": index,
                                    "hash": tx.hash_hex, "account": tx.account,
                                    "changes": changes})
        finally:
            scratch.close()
    return out


def _name_after(tx: SignedTransaction, owner: str, name: str) -> str:
    """The table's name once ``tx`` ran (a rename inside it moves it)."""
    for st in _statements(tx):
        if isinstance(st, TableListSet) and st.op_type == 3 and st.table.name == name and (
            (st.owner or tx.account) == owner
        ) and st.table.new_name is not None:
            name = st.table.new_name
    return name


def _snapshot(scratch: Any, owner: str, name: str, rowids: set[int],
              fields: Sequence[str]) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    with scratch.reader() as (_, tables):
        meta = tables.find(owner, name)
        if meta is None:
            return out
        table, defs = tables.physical(meta)
        by_name = {f.name: f for f in defs}
        wanted = sorted(rowids)
        for start in range(0, len(wanted), 500):  # bound the IN list
            stmt = sa.select(table).where(table.c[ROWID].in_(wanted[start : start + 500]))
            for rec in tables.conn.execute(stmt):
                m = rec._mapping
                out[int(m[ROWID])] = {
                    f: json_value(by_name[f], m[f]) if f in by_name else None for f in fields
                }
    return out


def _diff(before: dict[int, dict[str, Any]], after: dict[int, dict[str, Any]],
          fields: Sequence[str]) -> list[dict[str, Any]]:
    changes = []
    for rowid in sorted(set(before) | set(after)):
        old, new = before.get(rowid), after.get(rowid)
        for f in fields:
            a = None if old is None else old.get(f)
            b = None if new is None else new.get(f)
            if a != b or (old is None) != (new is None):
                changes.append({"row": rowid, "field": f, "before": a, "after": b})
    return changes
