"""A validating node: admits transactions, cuts blocks, commits them and tells subscribers.

This is the single-validator mode (development, and the base the BFT network builds on): the
node proposes and commits its own blocks. A block is cut when ``max_block_txs`` transactions are
waiting or ``max_block_wait_ms`` after the first of them arrived; no block is made when there is
nothing to commit.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from tablechain.crypto import PrivateKey, address_to_text, parse_json
from tablechain.errors import TablechainError
from tablechain.ledger.blocks import Block
from tablechain.ledger.chain import Genesis, Ledger, PendingBlock
from tablechain.ledger.errors import BadNonce, LedgerError, TooLarge
from tablechain.ledger.execution import AdmissionHook, ExecutorRegistry
from tablechain.ledger.mempool import Mempool
from tablechain.ledger.transactions import (
    MAX_TX_BYTES,
    SignedTransaction,
    SQLStatement,
    SQLTransaction,
    TableListSet,
    parse_transaction,
)
from tablechain.ledger.verifier import ParallelVerifier

__all__ = ["Node", "NodeConfig", "Event", "touched_tables", "tune_gc"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeConfig:
    max_block_txs: int | None = None  # default from genesis
    max_block_wait_ms: int | None = None
    mempool_size: int = 100_000
    mempool_per_account: int = 10_000  # waiting transactions one account may hold
    verify_workers: int | None = None  # signature-verification processes (default: one a core)


class Event(NamedTuple):
    """A subscription event, in ChainSQL's shape (a tuple: a block makes three per
    transaction, and a frozen dataclass costs several times as much to build)."""

    kind: str  # "singleTransaction" or "table"
    status: str  # validate_success, validate_fail, db_success, db_error
    tx_hash: str
    ledger_index: int
    result: str
    message: str = ""
    owner: str | None = None
    table: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.kind,
            "status": self.status,
            "transaction": self.tx_hash,
            "ledger_index": self.ledger_index,
            "result": self.result,
        }
        if self.message:
            out["error_message"] = self.message
        if self.owner is not None:
            out["owner"], out["tablename"] = self.owner, self.table
        return out


_OK_STATUSES = ("validate_success", "db_success")  # in the order they are sent
_FAIL_STATUSES = ("validate_fail", "db_error")
_TABLE_STATUS = "db_success"  # a table's subscribers hear of its successful changes


def touched_tables(tx: SignedTransaction) -> list[tuple[str, str]]:
    """(owner, table name) of every table a table transaction names, in order, unique."""
    body = tx.body
    statements: list[Any]
    if isinstance(body, SQLTransaction):
        statements = list(body.statements)
    elif isinstance(body, (TableListSet, SQLStatement)):
        statements = [body]
    else:
        return []
    out: list[tuple[str, str]] = []
    for st in statements:
        owner = st.owner or tx.account
        for ref in st.tables:
            for name in (ref.name, ref.new_name):
                if name and (owner, name) not in out:
                    out.append((owner, name))
    return out


def tune_gc() -> None:
    """Collect garbage less often in a serving node.

    The collector runs when the count of live tracked objects has grown by the gen-0
    threshold, and each pass walks every young object: a transaction's dozen containers
    (JSON, parsed body) were walked again and again while it waited in the pool (~18 ms a pass,
    ~5% of a validator's CPU under load at 50,000). At 200,000 a pool filling and draining
    under load seldom triggers a pass at all. The node's data holds no reference cycles on the
    hot path, so this bounds what cyclic garbage can pile up (some tens of MB) rather than
    letting memory grow.
    """
    if gc.get_threshold()[0] < 200_000:
        gc.set_threshold(200_000, 20, 100)


class Node:
    """One validator on one database."""

    def __init__(
        self,
        db_url: str,
        genesis: Genesis,
        key: PrivateKey,
        config: NodeConfig | None = None,
        registry: ExecutorRegistry | None = None,
        admission: AdmissionHook | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.config = config or NodeConfig()
        self.ledger = Ledger(db_url, genesis, registry, admission)
        self.genesis = genesis
        self.key = key
        self.address = address_to_text(key.address())
        self.max_block_txs = self.config.max_block_txs or genesis.max_block_txs
        self.max_block_wait_ms = self.config.max_block_wait_ms or genesis.max_block_wait_ms
        self.mempool = Mempool(
            self.ledger.account_sequences,
            self.config.mempool_size,
            self.config.mempool_per_account,
        )
        self._clock = clock or (lambda: int(time.time() * 1000))
        self._subscribers: list[Callable[[Event], None]] = []
        self._block_listeners: list[Callable[[Block], None]] = []
        self._sub_lock = threading.Lock()
        self._committed = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.admission = admission or self.ledger.admission
        self.verifier = ParallelVerifier(self.config.verify_workers)

    # --- admission of transactions -----------------------------------------------------------

    def check_transaction(
        self, tx_json: Any, size: int | None = None, trusted: bool = False
    ) -> SignedTransaction:
        """Stateless checks (shape, size, signature) of a submitted transaction.

        ``trusted``: the JSON came from a strict decoder (``parse_json``), as over RPC."""
        return parse_transaction(
            tx_json, self.ledger.suite, self.genesis.network_id, size, trusted=trusted
        )

    def submit(
        self, tx_json: Any, size: int | None = None, trusted: bool = False
    ) -> SignedTransaction:
        """Admit a transaction to the mempool or raise a ``TablechainError``."""
        return self.submit_checked(self.check_transaction(tx_json, size, trusted))

    def check_many(
        self, txs: list[Any], trusted: bool = False
    ) -> list[SignedTransaction | TablechainError]:
        """``check_transaction`` for a batch, in parallel worker processes (stateless)."""
        return self.verifier.verify(txs, self.ledger.suite, self.genesis.network_id, trusted)

    def submit_checked(self, checked: SignedTransaction | TablechainError) -> SignedTransaction:
        """Admit one transaction already checked by ``check_transaction`` / ``check_many``
        (or raise the error it got there, or the one admission gives)."""
        [result] = self._admit([checked])
        if isinstance(result, TablechainError):
            raise result
        return result

    def submit_many(
        self, txs: list[Any], trusted: bool = False
    ) -> list[SignedTransaction | TablechainError]:
        """Admit a batch: signatures are verified in parallel worker processes, then each
        transaction enters the mempool in order. One result (or error) per transaction."""
        return self._admit(self.check_many(txs, trusted))

    def _admit(
        self, parsed: list[SignedTransaction | TablechainError]
    ) -> list[SignedTransaction | TablechainError]:
        """Checked transactions (or their errors) into the mempool, in order: those already
        committed are refused (a transaction refused by admission keeps its Sequence, so the
        nonce alone would not catch it), then admission, then nonce order and capacity."""
        good = [p for p in parsed if isinstance(p, SignedTransaction)]
        refusals: dict[int, TablechainError] = {}
        committed = self.ledger.committed_among([tx.hash_hex for tx in good]) if good else set()
        for tx in good:
            if tx.hash_hex in committed:
                refusals[id(tx)] = BadNonce(f"transaction {tx.hash_hex} is already in a block")
        check = getattr(self.admission, "check_submissions", None)
        if check is not None:
            fresh = [tx for tx in good if id(tx) not in refusals]
            for tx, refusal in zip(fresh, check(self.ledger, fresh) if fresh else [], strict=True):
                if refusal is not None:
                    refusals[id(tx)] = refusal
        admitted = [p for p in good if id(p) not in refusals]
        for tx, refusal in zip(admitted, self.mempool.add_many(admitted), strict=True):
            if refusal is not None:
                refusals[id(tx)] = refusal
        return [refusals.get(id(p), p) if isinstance(p, SignedTransaction) else p for p in parsed]

    def submit_blob(self, data: bytes) -> SignedTransaction:
        if len(data) > MAX_TX_BYTES + 4096:
            raise TooLarge(f"request of {len(data)} bytes exceeds the limit")
        return self.submit(parse_json(data), len(data), trusted=True)

    # --- block production --------------------------------------------------------------------

    def produce_block(self) -> Block | None:
        """Cut, execute and commit one block from the mempool; None when it is empty."""
        txs = self.mempool.take(self.max_block_txs)
        if not txs:
            return None
        pending = self.execute_proposal(txs, self._clock())
        if pending is None:
            return None
        block = pending.commit()
        self.mempool.remove(list(block.transactions))
        self.notify_committed(block)
        return block

    def execute_proposal(
        self, txs: list[SignedTransaction], timestamp_ms: int
    ) -> PendingBlock | None:
        """Execute a block this node proposes from its pool's ``txs``. Any already committed
        (see ``Ledger.execute``) is left out and leaves the pool; None when nothing is left
        (never an empty block)."""
        pending = self.ledger.execute(txs, timestamp_ms, self.address, skip_committed=True)
        if pending.skipped:
            self.mempool.remove(list(pending.skipped))
        if not pending.block.transactions:
            pending.abort()
            return None
        return pending

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.mempool.arrived.wait(0.05):
                continue
            first = self.mempool.first_arrival  # the wait runs from the first arrival
            start = time.monotonic() if first is None else first
            deadline = start + self.max_block_wait_ms / 1000
            while (
                len(self.mempool) < self.max_block_txs
                and time.monotonic() < deadline
                and not self._stop.is_set()
            ):
                time.sleep(0.002)
            try:
                self.produce_block()
            except Exception:  # keep serving; the failed block left no trace (atomic)
                log.exception("block production failed")
                time.sleep(0.1)

    def warm_up(self) -> None:
        """Start the signature-verification workers ahead of the first batch."""
        self.verifier.warm_up()

    def start(self) -> None:
        tune_gc()
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="block-producer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.verifier.close()
        self.ledger.close()

    # --- events ------------------------------------------------------------------------------

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback`` with every event of each committed block (on the committing
        thread); returns the unsubscribe."""
        with self._sub_lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._sub_lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def on_commit(self, callback: Callable[[Block], None]) -> None:
        """Call ``callback`` with each committed block (on the committing thread): for whoever
        wants whole blocks rather than one event per transaction."""
        with self._sub_lock:
            self._block_listeners.append(callback)

    def notify_committed(self, block: Block) -> None:
        with self._committed:
            self._committed.notify_all()
        with self._sub_lock:
            subscribers = list(self._subscribers)
            listeners = list(self._block_listeners)
        for listener in listeners:
            try:
                listener(block)
            except Exception:
                log.exception("block listener failed")
        if not subscribers:  # a block has thousands of events: none made for nobody
            return
        height = block.header.height
        events = []
        for tx, receipt in zip(block.transactions, block.receipts, strict=True):
            ok = receipt.success
            for status in _OK_STATUSES if ok else _FAIL_STATUSES:
                events.append(
                    Event(
                        "singleTransaction",
                        status,
                        tx.hash_hex,
                        height,
                        receipt.result,
                        receipt.message,
                    )
                )
            if ok:
                for owner, name in touched_tables(tx):
                    events.append(
                        Event(
                            "table",
                            _TABLE_STATUS,
                            tx.hash_hex,
                            height,
                            receipt.result,
                            "",
                            owner,
                            name,
                        )
                    )
        for event in events:
            for callback in subscribers:
                try:
                    callback(event)
                except Exception:
                    log.exception("subscriber failed")

    def wait_for(self, tx_hash: str, timeout: float = 30.0) -> Mapping[str, Any]:
        """Block until ``tx_hash`` is committed; its record, or raise ``NotFound``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.ledger.transaction(tx_hash)
            except LedgerError:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                with self._committed:
                    self._committed.wait(min(left, 0.2))

    def server_info(self) -> dict[str, Any]:
        head = self.ledger.head
        return {
            "network_id": self.genesis.network_id,
            "chain": self.genesis.hash(),
            "suite": self.genesis.suite,
            "validator": self.address,
            "ledger_index": head.height,
            "ledger_hash": head.hash(self.ledger.suite),
            "close_time_ms": head.timestamp_ms,
            "mempool": len(self.mempool),
            "max_block_txs": self.max_block_txs,
            "max_block_wait_ms": self.max_block_wait_ms,
        }
