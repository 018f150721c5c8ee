"""Signature verification in parallel worker processes, for batches of submissions.

Verification is the dominant stateless cost of admitting a transaction; a batch is split across
one worker process per core. Small batches are verified inline (a process round trip would cost
more than it saves).
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import Any

from tablechain.errors import TablechainError
from tablechain.ledger.transactions import CryptoSuite, SignedTransaction, parse_transaction

__all__ = ["ParallelVerifier", "verify_chunk"]

_INLINE_BELOW = 64
log = logging.getLogger(__name__)


def verify_chunk(
    txs: list[Any], suite_name: str, network_id: int, keep_json: bool = True, trusted: bool = False
) -> list[SignedTransaction | TablechainError]:
    """Check each transaction fully (shape and signature): the parsed transaction, or why not.

    With ``keep_json=False`` the transactions come back without their JSON (the caller, who
    sent it, puts it back): a worker need not ship the submitted object back to the node.
    ``trusted``: as ``parse_transaction``'s (the JSON came from a strict decoder).
    """
    suite = CryptoSuite(suite_name)
    out: list[SignedTransaction | TablechainError] = []
    for tx in txs:
        try:
            parsed = parse_transaction(tx, suite, network_id, trusted=trusted)
        except TablechainError as exc:
            out.append(exc)
            continue
        if not keep_json:
            object.__setattr__(parsed, "json", None)
        out.append(parsed)
    return out


class ParallelVerifier:
    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        self._pool: ProcessPoolExecutor | None = None

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: the node has threads (RPC, block producer) and open databases.
            self._pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"))
        return self._pool

    def verify(
        self, txs: list[Any], suite: CryptoSuite, network_id: int, trusted: bool = False
    ) -> list[SignedTransaction | TablechainError]:
        if len(txs) < _INLINE_BELOW or self.workers == 1:
            return verify_chunk(txs, suite.name, network_id, True, trusted)
        size = -(-len(txs) // self.workers)
        chunks = [txs[i : i + size] for i in range(0, len(txs), size)]
        try:
            pool = self._get_pool()
            futures = [
                pool.submit(verify_chunk, c, suite.name, network_id, False, trusted)
                for c in chunks
            ]
            out: list[SignedTransaction | TablechainError] = []
            for f in futures:
                out.extend(f.result())
        except BrokenProcessPool:
            # A worker died (killed, out of memory): a broken pool stays broken, so drop it (the
            # next batch starts a new one) and check this batch here rather than fail it.
            log.warning("a signature-verification worker died; restarting the pool")
            self._discard_pool()
            return verify_chunk(txs, suite.name, network_id, True, trusted)
        for sent, result in zip(txs, out, strict=True):
            if isinstance(result, SignedTransaction):
                object.__setattr__(result, "json", sent)  # the very object that was verified
        return out

    def warm_up(self) -> None:
        """Start the worker processes now rather than on the first large batch."""
        if self.workers > 1:
            pool = self._get_pool()
            nothing: list[Any] = []
            starts = []
            for _ in range(self.workers):
                starts.append(pool.submit(verify_chunk, nothing, "international", 0))
            for f in starts:
                f.result()

    def _discard_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
