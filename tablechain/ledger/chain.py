"""The chain on one node: genesis, executing and committing blocks, reading committed state.

A block is executed inside one database transaction: rows, state and the block record are
written and committed together, or not at all. ``execute`` runs a block speculatively and
returns a ``PendingBlock`` holding the open transaction, so consensus can vote on its state root
before ``commit``; ``abort`` discards it. A node restarted after a crash finds the database at
its last committed block.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from tablechain.crypto import canonical_json, parse_json
from tablechain.errors import TablechainError
from tablechain.ledger.admission import (
    CERTIFICATE_TX,
    CertificateAdmission,
    CertificateExecutor,
    genesis_entries,
)
from tablechain.ledger.blocks import (
    Block,
    BlockEnvironment,
    BlockHeader,
    Receipt,
    receipts_root,
    tx_root,
)
from tablechain.ledger.errors import LedgerError, NotFound
from tablechain.ledger.execution import (
    AdmissionHook,
    ExecutionContext,
    ExecutorRegistry,
    account_sequence,
    apply_transactions,
    read_table,
    table_grants,
)
from tablechain.ledger.state import StateOverlay
from tablechain.ledger.storage import (
    READ_ONLY,
    LedgerTables,
    create_ledger_engine,
    existing,
    insert_many,
)
from tablechain.ledger.tables import TableEngine, TableMeta
from tablechain.ledger.transactions import CryptoSuite, SignedTransaction, parse_transaction

__all__ = ["Genesis", "Ledger", "PendingBlock", "ChainMismatch"]

ZERO_HASH = "00" * 32


class ChainMismatch(LedgerError):
    """A block does not fit this chain (wrong parent, wrong roots, wrong genesis)."""

    code = "tefBAD_LEDGER"


@dataclass(frozen=True)
class Genesis:
    """The chain's founding parameters; its hash identifies the chain."""

    chain_name: str = "tablechain"
    network_id: int = 1
    suite: str = "international"
    timestamp_ms: int = 0
    validators: tuple[Mapping[str, Any], ...] = ()
    max_block_txs: int = 2000
    max_block_wait_ms: int = 200
    admission: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "chain_name": self.chain_name,
            "network_id": self.network_id,
            "suite": self.suite,
            "timestamp_ms": self.timestamp_ms,
            "validators": [dict(v) for v in self.validators],
            "max_block_txs": self.max_block_txs,
            "max_block_wait_ms": self.max_block_wait_ms,
            "admission": dict(self.admission),
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Genesis:
        return cls(
            obj["chain_name"],
            int(obj["network_id"]),
            obj["suite"],
            int(obj["timestamp_ms"]),
            tuple(obj.get("validators", ())),
            int(obj.get("max_block_txs", 2000)),
            int(obj.get("max_block_wait_ms", 200)),
            obj.get("admission", {}),
        )

    @property
    def crypto_suite(self) -> CryptoSuite:
        if self.suite not in ("international", "national"):
            raise ChainMismatch(f"unknown crypto suite {self.suite!r}")
        return CryptoSuite(self.suite)

    def hash(self) -> str:
        return self.crypto_suite.hash(canonical_json(self.to_json())).hex()


class PendingBlock:
    """A block executed in an open database transaction, not yet committed."""

    def __init__(
        self,
        ledger: Ledger,
        conn: Connection,
        txn: Any,
        header: BlockHeader,
        txs: tuple[SignedTransaction, ...],
        receipts: tuple[Receipt, ...],
        tables: TableEngine,
        skipped: tuple[SignedTransaction, ...] = (),
    ) -> None:
        self.ledger = ledger
        self.header = header
        self.block = Block(header, txs, receipts)
        self._conn = conn
        self._txn = txn
        self._tables = tables
        self.done = False
        self.skipped = skipped  # see Ledger.execute

    @property
    def hash(self) -> str:
        return self.header.hash(self.ledger.suite)

    def commit(self, certificate: Any = None) -> Block:
        """Store the block record and commit everything in one go."""
        if self.done:
            raise LedgerError("this pending block is already finished")
        try:
            self.ledger._store_block(self._conn, self.block, certificate)
            self._txn.commit()
        except BaseException:
            # A commit whose acknowledgement was lost (the connection dropped) may have landed:
            # the head is read again from the database, as a restart would.
            self.ledger._head = None
            self.abort()
            raise
        self.done = True
        self._conn.close()
        self._tables.finish_block()
        self.ledger._after_commit(self.block)
        return self.block

    def abort(self) -> None:
        if self.done:
            return
        self.done = True
        try:
            self._txn.rollback()
        finally:
            self._conn.close()
            self._tables.abandon_block()
            self.ledger._write_lock.release()


class Ledger:
    """One node's chain and state over a SQL database."""

    def __init__(
        self,
        url: str,
        genesis: Genesis,
        registry: ExecutorRegistry | None = None,
        admission: AdmissionHook | None = None,
    ) -> None:
        self.url = url
        self.engine: Engine = create_ledger_engine(url)
        # Reads of committed data: on SQLite they must not queue behind an open PendingBlock.
        # Each read sees one snapshot (SQLite's is its WAL snapshot): under READ COMMITTED a
        # block committing between a read's grant check and its select would show its rows to
        # a reader whose grant it revoked.
        snapshot = (
            {} if self.engine.dialect.name == "sqlite" else {"isolation_level": "REPEATABLE READ"}
        )
        self._reads: Engine = self.engine.execution_options(**{READ_ONLY: True}, **snapshot)
        self.genesis = genesis
        self.suite = genesis.crypto_suite
        if admission is None and genesis.admission.get("enabled"):
            admission = CertificateAdmission()
        if registry is None:
            registry = ExecutorRegistry.with_tables()
            registry.register(
                CERTIFICATE_TX,
                CertificateExecutor(
                    admission
                    if isinstance(admission, CertificateAdmission)
                    else CertificateAdmission()
                ),
            )
        self.registry = registry
        self.admission = admission
        self.t = LedgerTables()
        self._write_lock = threading.Lock()
        # Built SQLAlchemy tables by NameInDB, shared by every block and reader (see TableEngine).
        self._schemas: dict[str, Any] = {}
        self._head: BlockHeader | None = None
        self.t.create_all(self.engine)
        self._init_genesis()

    # --- genesis and head --------------------------------------------------------------------

    def _init_genesis(self) -> None:
        with self.engine.begin() as conn:
            stored = conn.execute(
                sa.select(self.t.meta.c.value).where(self.t.meta.c.key == "genesis")
            ).scalar_one_or_none()
            if stored is not None:
                if Genesis.from_json(parse_json(stored)).hash() != self.genesis.hash():
                    raise ChainMismatch("this data directory belongs to another chain")
            else:
                conn.execute(
                    sa.insert(self.t.meta).values(
                        key="genesis", value=canonical_json(self.genesis.to_json())
                    )
                )
                state = StateOverlay(conn, self.t)
                for key, value in sorted(genesis_entries(self.genesis.admission).items()):
                    state.set(key, value)
                root = state.flush()
                header = BlockHeader(
                    0,
                    self.genesis.hash(),
                    self.genesis.timestamp_ms,
                    "",
                    tx_root((), self.suite),
                    receipts_root((), self.suite),
                    root.hex(),
                    0,
                )
                conn.execute(
                    sa.insert(self.t.blocks).values(
                        height=0,
                        hash=header.hash(self.suite),
                        header=canonical_json(header.to_json()).decode(),
                        certificate=None,
                    )
                )
        self._head = self._load_head()

    def _load_head(self) -> BlockHeader:
        with self._reads.connect() as conn:
            row = conn.execute(
                sa.select(self.t.blocks.c.header).order_by(self.t.blocks.c.height.desc()).limit(1)
            ).scalar_one_or_none()
        try:
            if row is None:
                raise ValueError("no block")
            return BlockHeader.from_json(parse_json(row))
        except (TablechainError, KeyError, TypeError, ValueError):
            raise ChainMismatch(
                "the database's head block is missing or unreadable (changed outside the "
                "chain?): rebuild it from another node's chain"
            ) from None

    @property
    def head(self) -> BlockHeader:
        if self._head is None:
            self._head = self._load_head()
        return self._head

    @property
    def height(self) -> int:
        return self.head.height

    # --- executing blocks --------------------------------------------------------------------

    def _context(self, conn: Connection, env: BlockEnvironment) -> ExecutionContext:
        state = StateOverlay(conn, self.t)
        tables = TableEngine(
            conn, state, self.suite.hash, ddl_engine=self.engine, schemas=self._schemas
        )
        return ExecutionContext(state, tables, env)

    def execute(
        self,
        txs: Sequence[SignedTransaction],
        timestamp_ms: int,
        proposer: str,
        *,
        skip_committed: bool = False,
    ) -> PendingBlock:
        """Execute a block on top of the head, inside an open database transaction.

        A block carrying a transaction twice, or one already committed, is refused
        (``ChainMismatch``). A proposer passes ``skip_committed=True`` instead: such
        transactions are left out of its block and listed in ``PendingBlock.skipped`` (a pool
        can come to hold a committed one: a transaction refused by admission at execution keeps
        its Sequence, and a resubmission that raced that block's commit got past both checks).
        """
        self._write_lock.acquire()
        try:
            parent = self.head
            if timestamp_ms <= parent.timestamp_ms:
                timestamp_ms = parent.timestamp_ms + 1
            env = BlockEnvironment(
                parent.height + 1, timestamp_ms, proposer, self.suite, self.genesis.network_id
            )
            conn = self.engine.connect()
            txn = conn.begin()
        except BaseException:
            self._write_lock.release()
            raise
        try:
            txs, skipped = self._fresh_part(conn, txs, refuse=not skip_committed)
            ctx = self._context(conn, env)
            receipts = apply_transactions(ctx, txs, self.registry, self.admission)
            root = ctx.state.flush()
            header = BlockHeader(
                env.height,
                parent.hash(self.suite),
                timestamp_ms,
                proposer,
                tx_root(txs, self.suite),
                receipts_root(receipts, self.suite),
                root.hex(),
                len(txs),
            )
        except BaseException:
            txn.rollback()
            conn.close()
            self._write_lock.release()
            raise
        return PendingBlock(
            self, conn, txn, header, tuple(txs), tuple(receipts), ctx.tables, tuple(skipped)
        )

    def _committed_among(self, conn: Connection, hashes: Sequence[str]) -> set[str]:
        return existing(conn, self.t.txs.c.hash, hashes)

    def committed_among(self, hashes: Sequence[str]) -> set[str]:
        """Which of ``hashes`` (hex) are already in committed blocks."""
        with self._reads.connect() as conn:
            return self._committed_among(conn, hashes)

    def _fresh_part(
        self, conn: Connection, txs: Sequence[SignedTransaction], refuse: bool
    ) -> tuple[list[SignedTransaction], list[SignedTransaction]]:
        """A block may not carry a transaction twice, nor one already committed: with
        ``refuse`` such a block is a ``ChainMismatch``; without, ``txs`` split into (kept, left
        out)."""
        committed = self._committed_among(conn, [tx.hash_hex for tx in txs])
        kept: list[SignedTransaction] = []
        left: list[SignedTransaction] = []
        seen: set[bytes] = set()
        for tx in txs:
            if tx.hash_hex in committed or tx.hash in seen:
                left.append(tx)
            else:
                seen.add(tx.hash)
                kept.append(tx)
        if left and refuse:
            if len(seen) + len(committed) < len(txs):
                raise ChainMismatch("the block carries a transaction twice")
            raise ChainMismatch(f"transaction {min(committed)} is already in a committed block")
        return kept, left

    def _store_block(self, conn: Connection, block: Block, certificate: Any) -> None:
        header = block.header
        insert_many(
            conn,
            self.t.blocks,
            [
                {
                    "height": header.height,
                    "hash": header.hash(self.suite),
                    "header": canonical_json(header.to_json()).decode(),
                    "certificate": (
                        None if certificate is None else canonical_json(certificate).decode()
                    ),
                }
            ],
        )
        if block.transactions:
            insert_many(
                conn,
                self.t.txs,
                [
                    {
                        "hash": tx.hash_hex,
                        "height": header.height,
                        "idx": i,
                        "account": tx.account,
                        "sequence": tx.sequence,
                        "tx": tx.encoded.decode(),
                        "result": r.result,
                        "receipt": r.encoded().decode(),
                    }
                    for i, (tx, r) in enumerate(
                        zip(block.transactions, block.receipts, strict=True)
                    )
                ],
            )

    def _after_commit(self, block: Block) -> None:
        self._head = block.header
        self._write_lock.release()

    def apply_block(
        self, header: BlockHeader, txs: Sequence[SignedTransaction], certificate: Any = None
    ) -> Block:
        """Re-execute a block made elsewhere and commit it if it reproduces ``header``."""
        if header.height != self.height + 1:
            raise ChainMismatch(f"block {header.height} does not follow head {self.height}")
        pending = self.execute(txs, header.timestamp_ms, header.proposer)
        if pending.header != header:
            pending.abort()
            raise ChainMismatch(
                f"block {header.height} re-executed to a different header "
                f"(state root {pending.header.state_root} vs {header.state_root})"
            )
        return pending.commit(certificate)

    # --- reading committed data --------------------------------------------------------------

    @contextmanager
    def reader(self) -> Iterator[tuple[StateOverlay, TableEngine]]:
        """A read-only view of committed state."""
        with self._reads.connect() as conn:
            state = StateOverlay(conn, self.t)
            yield state, TableEngine(conn, state, self.suite.hash, schemas=self._schemas)
            conn.rollback()

    def account_sequence(self, account: str) -> int:
        return self.account_sequences([account])[account]

    def account_sequences(self, accounts: Iterable[str]) -> dict[str, int]:
        """``account_sequence`` of several accounts, read in one query."""
        accounts = list(accounts)
        with self.reader() as (state, _):
            state.prefetch([f"acct/{a}" for a in accounts])
            return {a: account_sequence(state, a) for a in accounts}

    def read(self, owner: str, name: str, raw: Any, reader: str) -> list[dict[str, Any]]:
        with self.reader() as (state, tables):
            return read_table(state, tables, owner, name, raw, reader)

    def table_info(self, owner: str, name: str) -> dict[str, Any]:
        with self.reader() as (state, tables):
            meta: TableMeta = tables.lookup(owner, name)
            digest = state.get(f"rows/{meta.name_in_db}") or {"rows": 0, "digest": None}
            return {
                **meta.to_json(),
                "grants": table_grants(state, meta.name_in_db),
                "rows": digest["rows"],
                "digest": digest["digest"],
            }

    def block(self, height: int) -> dict[str, Any]:
        if not 0 <= height < 1 << 63:  # beyond any column (SQLite refuses to bind it)
            raise NotFound(f"no block at height {height}", "lgrNotFound")
        with self._reads.connect() as conn:
            row = conn.execute(
                sa.select(self.t.blocks).where(self.t.blocks.c.height == height)
            ).one_or_none()
            if row is None:
                raise NotFound(f"no block at height {height}", "lgrNotFound")
            txs = conn.execute(
                sa.select(self.t.txs.c.tx, self.t.txs.c.receipt)
                .where(self.t.txs.c.height == height)
                .order_by(self.t.txs.c.idx)
            ).all()
        return {
            "hash": row.hash,
            "header": parse_json(row.header),
            "certificate": None if row.certificate is None else parse_json(row.certificate),
            "transactions": [parse_json(t.tx) for t in txs],
            "receipts": [parse_json(t.receipt) for t in txs],
        }

    def transaction(self, tx_hash: str) -> dict[str, Any]:
        with self._reads.connect() as conn:
            row = conn.execute(
                sa.select(self.t.txs).where(self.t.txs.c.hash == tx_hash)
            ).one_or_none()
        if row is None:
            raise NotFound(f"transaction {tx_hash} is not in a committed block")
        return {
            "hash": row.hash,
            "ledger_index": row.height,
            "index": row.idx,
            "tx": parse_json(row.tx),
            "receipt": parse_json(row.receipt),
            "result": row.result,
        }

    def parse_stored(self, tx_json: Mapping[str, Any]) -> SignedTransaction:
        """Re-parse a committed transaction (its signature was checked when it was admitted)."""
        return parse_transaction(dict(tx_json), self.suite, self.genesis.network_id, verify=False)

    def blocks_from(self, start: int, end: int) -> Iterator[tuple[BlockHeader, list[dict], Any]]:
        for height in range(start, end + 1):
            b = self.block(height)
            yield BlockHeader.from_json(b["header"]), b["transactions"], b["certificate"]

    def close(self) -> None:
        self.engine.dispose()


def rebuild(
    source: Ledger, target_url: str, to_height: int | None = None, verify_signatures: bool = True
) -> Ledger:
    """Replay ``source``'s chain into a fresh database up to ``to_height`` (the head if None).

    Every block is re-executed and must reproduce its stored header (state root included):
    ChainSQL's recreate and restore to a point in time. A target left by an interrupted rebuild
    (the first blocks of this chain, each committed whole) is carried on from its head.
    """
    end = source.height if to_height is None else to_height
    if not 0 <= end <= source.height:
        raise NotFound(f"height {end} is outside 0..{source.height}", "lgrNotFound")
    target = Ledger(target_url, source.genesis, source.registry, source.admission)
    start = target.height
    if start > end or (start and target.head.hash(source.suite) != source.block(start)["hash"]):
        target.close()
        raise ChainMismatch(
            "the rebuild target must be an empty database or an interrupted rebuild of this "
            f"chain below height {end}"
        )
    try:
        for header, txs, cert in source.blocks_from(start + 1, end):
            parsed = [
                parse_transaction(
                    tx, source.suite, source.genesis.network_id, verify=verify_signatures
                )
                for tx in txs
            ]
            target.apply_block(header, parsed, cert)
    except BaseException:
        target.close()
        raise
    return target


__all__ += ["rebuild", "ZERO_HASH"]
