"""Tamper checks that recompute everything from the data a node holds.

openGauss's ledger check compares sums of stored 64-bit row hashes and never recomputes a row's
hash from its values, so an edit that leaves the hash column alone goes unseen. Here nothing
stored is trusted: ``verify_ledger`` recomputes

- every table's LtHash digest and row count from the rows in its SQL table, against the digest
  the state (and so the state root) commits to, and against the stored digest vector;
- the state root from every key-value entry, against the head block's ``state_root``;
- each block's hash, parent link, transaction and receipt Merkle roots from the stored
  transactions and receipts; each stored transaction's hash from its own bytes (and, with
  ``signatures=True``, its signature); each quorum certificate against genesis' validators.

An administrator who edits a value, deletes or adds a row, alters a grant or a nonce in the
state table, or rewrites a stored transaction or receipt is found, and the report says where.
What a check cannot see: a database rebuilt consistently from other blocks with forged headers,
which is what quorum certificates (signed by the validators) rule out for a chain of several
validators; a single development node signs nothing but its block headers' proposer field.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tablechain.crypto import parse_json
from tablechain.errors import TablechainError
from tablechain.ledger.blocks import BlockHeader, Receipt, receipts_root, tx_root
from tablechain.ledger.digest import LtHash
from tablechain.ledger.proofs import certified_chain, check_certificate
from tablechain.ledger.state import STATE_LTHASH_KEY, StateOverlay
from tablechain.ledger.tables import ROWID, TableEngine, TableMeta, json_value
from tablechain.ledger.transactions import SignedTransaction, parse_transaction

__all__ = ["Problem", "IntegrityReport", "verify_ledger"]

_BATCH = 1000
# Per statement: Connection.execution_options would stream every later statement on the
# connection too (SAVEPOINT included, which PostgreSQL cannot DECLARE as a cursor).
_STREAM = {"yield_per": _BATCH}


@dataclass(frozen=True)
class Problem:
    """One thing that does not recompute: ``kind`` (table, state, block, transaction,
    certificate), where (a table, a height, a hash) and what differs."""

    kind: str
    where: str
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "where": self.where, "detail": self.detail}


@dataclass
class IntegrityReport:
    height: int
    tables: int = 0
    rows: int = 0
    state_entries: int = 0
    blocks: int = 0
    transactions: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "height": self.height,
            "tables": self.tables,
            "rows": self.rows,
            "state_entries": self.state_entries,
            "blocks": self.blocks,
            "transactions": self.transactions,
            "problems": [p.to_json() for p in self.problems],
        }


def _folded(elements: Iterator[bytes]) -> tuple[LtHash, int]:
    vector = LtHash()
    batch: list[bytes] = []
    count = 0
    for element in elements:
        batch.append(element)
        count += 1
        if len(batch) >= _BATCH:
            vector.add_many(batch)
            batch = []
    if batch:
        vector.add_many(batch)
    return vector, count


def _state_entries(conn: Connection, ledger: Any) -> Iterator[bytes]:
    kv = ledger.t.kv
    for key, value in conn.execute(
        sa.select(kv.c.key, kv.c.value).order_by(kv.c.key), execution_options=_STREAM
    ):
        # A value written behind the chain's back may come back as text: hash what is there.
        raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        yield str(key).encode("utf-8") + b"\x00" + raw


def _check_state(conn: Connection, ledger: Any, head: BlockHeader | None,
                 report: IntegrityReport, problems: list[Problem]) -> None:
    vector, report.state_entries = _folded(_state_entries(conn, ledger))
    if head is not None and vector.digest().hex() != head.state_root:
        problems.append(Problem(
            "state", f"height {head.height}",
            "the key-value state does not hash to the head block's state_root (an entry was "
            "changed, added or removed outside the chain)"))
    meta = ledger.t.meta
    stored = conn.execute(
        sa.select(meta.c.value).where(meta.c.key == STATE_LTHASH_KEY)
    ).scalar_one_or_none()
    if stored is None or bytes(stored) != vector.to_bytes():
        problems.append(Problem("state", STATE_LTHASH_KEY,
                                "the stored state vector differs from the recomputed one"))


def _table_rows(conn: Connection, tables: TableEngine, meta: TableMeta) -> Iterator[bytes]:
    table, fields = tables.physical(meta)
    stmt = sa.select(table).order_by(table.c[ROWID])
    for rec in conn.execute(stmt, execution_options=_STREAM):
        m = rec._mapping
        row = {f.name: json_value(f, m[f.name]) for f in fields}
        yield TableEngine.encode_row(int(m[ROWID]), row)


def _check_tables(conn: Connection, ledger: Any, report: IntegrityReport,
                  problems: list[Problem]) -> None:
    state = StateOverlay(conn, ledger.t)
    tables = TableEngine(conn, state, ledger.suite.hash)
    digests = ledger.t.digests
    kv = ledger.t.kv
    keys = conn.execute(
        sa.select(kv.c.key).where(kv.c.key.startswith("table/", autoescape=True))
        .order_by(kv.c.key)
    ).scalars().all()
    for key in keys:
        # Whatever was written behind the chain's back is reported, never a crash.
        try:
            meta = TableMeta.from_json(state.get(key), strict_pointer="")
            committed = state.get(f"rows/{meta.name_in_db}") or {
                "digest": LtHash().digest().hex(), "rows": 0}
            committed_digest, committed_rows = str(committed["digest"]), committed["rows"]
        except (TablechainError, KeyError, TypeError, ValueError):
            problems.append(Problem("state", key, "the table's metadata or row digest entry "
                                    "is not what the chain writes"))
            continue
        where = f"{meta.owner}/{meta.name} ({meta.name_in_db})"
        report.tables += 1
        try:
            # In a savepoint: on PostgreSQL a read that fails (a table or column dropped
            # behind the chain) aborts the snapshot's transaction and every check after it.
            with conn.begin_nested():
                vector, count = _folded(_table_rows(conn, tables, meta))
        except sa.exc.SQLAlchemyError as exc:
            problems.append(
                Problem("table", where, f"its rows cannot be read: {type(exc).__name__}")
            )
            continue
        except (TablechainError, ValueError, TypeError, ArithmeticError) as exc:
            detail = getattr(exc, "message", None) or type(exc).__name__
            problems.append(Problem("table", where, f"a stored value is invalid: {detail}"))
            continue
        report.rows += count
        committed = {"digest": committed_digest, "rows": committed_rows}
        if vector.digest().hex() != committed["digest"]:
            problems.append(Problem(
                "table", where,
                f"its rows do not hash to the digest the state commits to ({count} rows read, "
                f"{committed['rows']} committed): a row was edited, added or removed outside "
                "the chain"))
            continue
        if count != committed["rows"]:
            problems.append(Problem("table", where,
                                    f"{count} rows read, {committed['rows']} committed"))
        stored = conn.execute(
            sa.select(digests.c.vector).where(digests.c.name_in_db == meta.name_in_db)
        ).scalar_one_or_none()
        # No stored vector is right only for a table that never held a row.
        if (stored is None and count) or (
            stored is not None and bytes(stored) != vector.to_bytes()
        ):
            problems.append(Problem("table", where,
                                    "the stored digest vector differs from the recomputed one"))


def _check_blocks(conn: Connection, ledger: Any, top: int, signatures: bool,
                  report: IntegrityReport, problems: list[Problem]) -> None:
    suite = ledger.suite
    blocks, txs = ledger.t.blocks, ledger.t.txs
    # On a chain of validators every committed block is stored with its certificate: one
    # without is exactly what a database rebuilt with forged blocks would look like.
    certified = certified_chain(ledger.genesis)
    previous_hash = None
    expected_height = 0
    for height, stored_hash, header_text, certificate, records in _block_pages(
        conn, blocks, txs, top
    ):
        where = f"block {height}"
        if height != expected_height:
            problems.append(Problem("block", where, f"block {expected_height} is missing"))
        expected_height = height + 1
        try:
            header = BlockHeader.from_json(parse_json(header_text))
        except (TablechainError, KeyError, TypeError, ValueError):
            problems.append(Problem("block", where, "its header is not a valid header"))
            previous_hash = None
            continue
        own_hash = header.hash(suite)
        if own_hash != stored_hash or header.height != height:
            problems.append(Problem("block", where, "its header does not hash to its stored hash"))
        if height == 0:
            if header.parent_hash != ledger.genesis.hash():
                problems.append(Problem("block", where, "the genesis header names another chain"))
        elif previous_hash is not None and header.parent_hash != previous_hash:
            problems.append(Problem("block", where, "its parent_hash is not block "
                                    f"{height - 1}'s hash"))
        previous_hash = own_hash
        report.blocks += 1
        report.transactions += len(records)
        parsed: list[SignedTransaction] = []
        receipts: list[Receipt] = []
        for tx_hash, tx_text, receipt_text in records:
            try:
                tx = parse_transaction(parse_json(tx_text), suite, ledger.genesis.network_id,
                                       verify=signatures)
                receipt = Receipt.from_json(parse_json(receipt_text))
            except (TablechainError, KeyError, TypeError, ValueError) as exc:
                detail = getattr(exc, "message", str(exc))
                problems.append(Problem("transaction", tx_hash,
                                        f"in block {height}: stored bytes do not parse ({detail})"))
                continue
            if tx.hash_hex != tx_hash:
                problems.append(Problem("transaction", tx_hash,
                                        f"in block {height}: its bytes hash to {tx.hash_hex}"))
            parsed.append(tx)
            receipts.append(receipt)
        if tx_root(parsed, suite) != header.tx_root:
            problems.append(Problem("block", where, "its transactions do not hash to tx_root"))
        if receipts_root(receipts, suite) != header.receipts_root:
            problems.append(Problem("block", where, "its receipts do not hash to receipts_root"))
        if certificate is not None:
            try:
                check_certificate(parse_json(certificate), header, ledger.genesis)
            except TablechainError as exc:
                problems.append(Problem("certificate", where, exc.message))
        elif certified and height > 0:
            problems.append(Problem("certificate", where, "it carries no quorum certificate "
                                    "(every block of a chain of validators is stored with one)"))
    if expected_height != top + 1:
        problems.append(Problem("block", f"block {expected_height}", "blocks up to the head "
                                f"({top}) are missing"))


def _block_pages(conn: Connection, blocks: sa.Table, txs: sa.Table, head: int
                 ) -> Iterator[tuple[int, str, str, str | None, list[Any]]]:
    """Stored blocks up to ``head`` in height order, each with its transactions' (hash, tx,
    receipt) in block order; read a page of heights at a time (two buffered queries)."""
    page = 256
    for start in range(0, head + 1, page):
        end = min(head, start + page - 1)
        by_height: dict[int, list[Any]] = {}
        for row in conn.execute(
            sa.select(txs.c.height, txs.c.hash, txs.c.tx, txs.c.receipt)
            .where(txs.c.height.between(start, end)).order_by(txs.c.height, txs.c.idx)
        ):
            by_height.setdefault(row.height, []).append((row.hash, row.tx, row.receipt))
        for row in conn.execute(
            sa.select(blocks.c.height, blocks.c.hash, blocks.c.header, blocks.c.certificate)
            .where(blocks.c.height.between(start, end)).order_by(blocks.c.height)
        ).all():
            yield row.height, row.hash, row.header, row.certificate, by_height.get(row.height, [])


def verify_ledger(ledger: Any, *, blocks: bool = True, signatures: bool = False
                  ) -> IntegrityReport:
    """Recompute tables, state and (with ``blocks``) the chain from what ``ledger`` stores.

    Reads one consistent snapshot; a node may keep committing meanwhile (its later blocks are
    not looked at)."""
    with ledger._reads.connect() as conn:
        stored = ledger.t.blocks
        top = conn.execute(sa.select(sa.func.max(stored.c.height))).scalar_one()
        if top is None:  # even genesis' block is gone
            report = IntegrityReport(-1)
            report.problems = [Problem("block", "block 0", "the database holds no block")]
            return report
        report = IntegrityReport(int(top))
        problems: list[Problem] = []
        try:
            head: BlockHeader | None = BlockHeader.from_json(parse_json(conn.execute(
                sa.select(stored.c.header).where(stored.c.height == top)).scalar_one()))
        except (TablechainError, KeyError, TypeError, ValueError):
            head = None
            problems.append(Problem("block", f"block {top}", "the head header is not a valid "
                                    "header: the state root cannot be checked against it"))
        _check_tables(conn, ledger, report, problems)
        _check_state(conn, ledger, head, report, problems)
        if blocks:
            _check_blocks(conn, ledger, int(top), signatures, report, problems)
        conn.rollback()
    report.problems = problems
    return report
