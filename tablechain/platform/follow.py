"""A read replica: follow a chain over JSON-RPC into your own database, trusting no one.

ChainSQL's "table sync" materialises a chain's tables into an ordinary database for applications
to read with plain SQL. Here a follower fetches committed blocks from any node (``ledger`` with
``expand``) and applies them to its own ledger on any backend (SQLite, PostgreSQL, MariaDB):

- the node serving the blocks is not trusted: each block's quorum certificate is checked against
  genesis' validators (on a BFT chain), each transaction's signature is verified, and every block
  is re-executed locally and must reproduce its header, state root included
  (``Ledger.apply_block``), so a lying node is caught at the first block it alters;
- progress is the follower's own chain: a restart resumes after its last block; a crash leaves
  it at a committed block (blocks are applied atomically).

The replica's tables are the chain's: ``g_dbname`` (or ``table_info``) names their physical
tables ``t_<NameInDB>``, which applications may query directly; nothing but the follower
should write to them (``tablechain node verify`` finds it if anything does).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from tablechain.errors import TablechainError
from tablechain.ledger.blocks import BlockHeader
from tablechain.ledger.chain import Ledger
from tablechain.ledger.proofs import ProofError, certified_chain, check_certificate
from tablechain.ledger.transactions import parse_transaction
from tablechain.platform.client import Client
from tablechain.platform.errors import ClientError

__all__ = ["Follower", "FollowError"]

log = logging.getLogger(__name__)


class FollowError(TablechainError):
    """The source serves another chain, or a block that does not check."""

    code = "followMismatch"


class Follower:
    """Apply the blocks a node serves to ``ledger``, checking each one."""

    def __init__(self, ledger: Ledger, client: Client) -> None:
        self.ledger = ledger
        self.client = client
        self.genesis = ledger.genesis
        chain = client.server_info()["chain"]
        if chain != self.genesis.hash():
            raise FollowError(f"{client.url} serves chain {chain}, not this genesis' "
                              f"({self.genesis.hash()})")

    def _check_certificate(self, header: BlockHeader, certificate: Any) -> Any:
        """The certificate to store with the block: the checked one, as consensus stores it
        (nothing else a source adds), or None on a chain whose blocks carry none."""
        if not certified_chain(self.genesis):
            return None
        try:
            check_certificate(certificate, header, self.genesis)
        except ProofError as exc:
            raise FollowError(f"block {header.height}: {exc.message}") from None
        return {"qc": certificate["qc"]}

    def apply(self, height: int) -> None:
        """Fetch block ``height`` (the next one) and apply it, or raise ``FollowError``."""
        try:
            block = self.client.ledger(height, expand=True)
            header = BlockHeader.from_json(block["header"])
            transactions = block.get("transactions", [])
            if not isinstance(transactions, list):
                raise TypeError("transactions")
        except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError):
            raise FollowError(f"block {height}: the answer is not a block") from None
        if header.height != height:
            raise FollowError(f"asked for block {height}, got {header.height}")
        certificate = self._check_certificate(header, block.get("certificate"))
        suite = self.ledger.suite
        try:
            txs = [parse_transaction(tx, suite, self.genesis.network_id)
                   for tx in transactions]
        except TablechainError as exc:
            raise FollowError(f"block {height}: a transaction does not check: "
                              f"{exc.message}") from None
        try:
            self.ledger.apply_block(header, txs, certificate)
        except TablechainError as exc:  # another header, a transaction twice, ...
            raise FollowError(f"block {height}: {exc.message}") from None

    def sync(self) -> int:
        """Apply every block the source has committed beyond ours; how many were applied."""
        closed = self.client.ledger_closed()
        try:
            target = int(closed["ledger_index"])
        except (KeyError, TypeError, ValueError, ArithmeticError):
            raise FollowError("the source's ledger_closed answer has no ledger_index") from None
        applied = 0
        while self.ledger.height < target:
            self.apply(self.ledger.height + 1)
            applied += 1
        return applied

    def run(self, stop: threading.Event, poll_s: float = 0.5) -> None:
        """Keep up until ``stop`` is set; transport errors are retried, a block that does not
        check stops the follower (``FollowError``)."""
        while not stop.is_set():
            try:
                applied = self.sync()
            except ClientError as exc:
                log.warning("follow: %s; retrying", exc.message)
                applied = 0
            if not applied:
                stop.wait(poll_s)
            else:
                log.info("follow: at block %d", self.ledger.height)
