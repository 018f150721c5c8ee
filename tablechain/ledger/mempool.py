"""The mempool: verified transactions waiting for a block, in per-account Sequence order.

Deduplicated by hash; an account's transactions must arrive in Sequence order (a replayed
Sequence and a skipped one are refused at once with a clear code); a size limit gives
backpressure (``MempoolFull``) rather than silent loss, and a limit per account keeps one busy
(or hostile) account from filling the pool and shutting everyone else out.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence

from tablechain.ledger.errors import BadNonce, FutureNonce, LedgerError, MempoolFull
from tablechain.ledger.transactions import SignedTransaction

__all__ = ["Mempool", "DuplicateTransaction"]


class DuplicateTransaction(LedgerError):
    code = "tefALREADY"


class Mempool:
    """Thread-safe pool; ``committed_sequences(accounts)`` reads the chain's last used Sequence
    of each account (one read for a whole batch)."""

    def __init__(
        self,
        committed_sequences: Callable[[Iterable[str]], dict[str, int]],
        max_size: int = 100_000,
        max_per_account: int = 10_000,
    ) -> None:
        self._committed_sequences = committed_sequences
        self.max_size = max_size
        self.max_per_account = max_per_account
        self._lock = threading.Lock()
        self._by_hash: OrderedDict[bytes, SignedTransaction] = OrderedDict()
        self._next_seq: dict[str, int] = {}  # next expected Sequence per account with pending txs
        self._by_encoding: dict[bytes, SignedTransaction] = {}  # canonical JSON -> transaction
        self._pending_count: dict[str, int] = {}
        self.arrived = threading.Event()
        # time.monotonic() when the pool last went from empty to holding something: the block
        # cutter's wait runs from there (a transaction that waited through the previous block
        # need not wait again). Local timing only, never part of state.
        self.first_arrival: float | None = None

    def __len__(self) -> int:
        return len(self._by_hash)

    def __contains__(self, tx_hash: bytes) -> bool:
        return tx_hash in self._by_hash

    def add(self, tx: SignedTransaction) -> None:
        [result] = self.add_many([tx])
        if result is not None:
            raise result

    def add_many(self, txs: Sequence[SignedTransaction]) -> list[LedgerError | None]:
        """Add transactions in order: per transaction None, or the error that refused it.

        The committed Sequences of the accounts the pool holds nothing from are read once for
        the batch, under the pool's lock (a block commits before it leaves the pool, so an
        account with queued transactions never needs the chain's value)."""
        with self._lock:
            unknown = {tx.account for tx in txs if tx.account not in self._next_seq}
            committed = self._committed_sequences(sorted(unknown)) if unknown else {}
            out: list[LedgerError | None] = []
            for tx in txs:
                try:
                    self._add_locked(tx, committed)
                except LedgerError as exc:
                    out.append(exc)
                    continue
                out.append(None)
        if any(r is None for r in out):
            self.arrived.set()
        return out

    def _add_locked(self, tx: SignedTransaction, committed: dict[str, int]) -> None:
        if tx.hash in self._by_hash:
            raise DuplicateTransaction(f"transaction {tx.hash_hex} is already queued")
        if len(self._by_hash) >= self.max_size:
            raise MempoolFull(f"the mempool holds {self.max_size} transactions; retry later")
        waiting = self._pending_count.get(tx.account, 0)
        if waiting >= self.max_per_account:
            raise MempoolFull(
                f"{tx.account} already has {waiting} transactions waiting (the limit per "
                "account); retry once some are in a block"
            )
        expected = self._next_seq.get(tx.account)
        if expected is None:
            expected = committed[tx.account] + 1
        if tx.sequence < expected:
            raise BadNonce(f"Sequence {tx.sequence} was already used; next is {expected}")
        if tx.sequence > expected:
            raise FutureNonce(f"Sequence {tx.sequence} skips ahead; next is {expected}")
        if not self._by_hash:
            self.first_arrival = time.monotonic()
        self._by_hash[tx.hash] = tx
        self._by_encoding[tx.encoded] = tx
        self._next_seq[tx.account] = expected + 1
        self._pending_count[tx.account] = self._pending_count.get(tx.account, 0) + 1

    def by_encoding(self, data: bytes) -> SignedTransaction | None:
        """The queued transaction whose canonical JSON is exactly ``data``, if any."""
        return self._by_encoding.get(data)

    def next_sequence(self, account: str) -> int | None:
        """The next Sequence the pool expects from ``account`` if it holds any of its txs."""
        with self._lock:
            return self._next_seq.get(account)

    def take(self, limit: int) -> list[SignedTransaction]:
        """Up to ``limit`` transactions in arrival order (per-account order is preserved)."""
        with self._lock:
            out: list[SignedTransaction] = []
            for tx in self._by_hash.values():
                if len(out) >= limit:
                    break
                out.append(tx)
            return out

    def remove(self, txs: list[SignedTransaction]) -> None:
        """Drop transactions that were committed (or that a block rejected)."""
        with self._lock:
            for tx in txs:
                if self._by_hash.pop(tx.hash, None) is None:
                    continue
                self._by_encoding.pop(tx.encoded, None)
                left = self._pending_count.get(tx.account, 1) - 1
                if left <= 0:
                    self._pending_count.pop(tx.account, None)
                    self._next_seq.pop(tx.account, None)
                else:
                    self._pending_count[tx.account] = left
            if not self._by_hash:
                self.arrived.clear()
                self.first_arrival = None
