"""What the consensus state machine needs from the application (the ledger node).

The machine calls these methods synchronously from inside ``ConsensusMachine.step``. They must
be deterministic functions of the committed chain and the given block: every honest validator
must compute the same ``ExecutionResult`` for the same block at the same height.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from tablechain.ledger.consensus.messages import CommittedBlock, QuorumCertificate

__all__ = ["ConsensusApplication", "ExecutionResult", "ProposedBlock"]


@dataclass(frozen=True, slots=True)
class ProposedBlock:
    """A block the application built for a height, with its hash (the id votes refer to)."""

    block: bytes
    block_hash: bytes


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    """The result of executing a block speculatively: its hash and the state root after it."""

    block_hash: bytes
    state_root: bytes


@runtime_checkable
class ConsensusApplication(Protocol):
    """The ledger seen from consensus.

    Heights start at 1; ``committed_height()`` is 0 on an empty chain.
    """

    def committed_height(self) -> int:
        """The height of the last committed block (0 when none)."""
        ...

    def committed_block(self, height: int) -> CommittedBlock | None:
        """A committed block with its certificate, to serve peers catching up (None if absent)."""
        ...

    def has_pending_transactions(self) -> bool:
        """True when the mempool holds transactions that a block could include."""
        ...

    def propose_block(
        self, height: int, last_commit: QuorumCertificate | None
    ) -> ProposedBlock | None:
        """Build a block for ``height`` on top of the committed chain, or None to wait.

        None means "nothing to propose yet" (empty mempool, or a block-cutting policy still
        waiting for more transactions): no empty blocks are ever produced; the machine asks
        again on its idle timer or on a ``TransactionsAvailable`` event. ``last_commit`` is the
        certificate of ``height - 1`` the block may embed.
        """
        ...

    def validate_block(self, height: int, block: bytes) -> ExecutionResult | None:
        """Execute ``block`` speculatively on the committed state at ``height - 1``.

        Return its hash and the resulting state root, or None when the block is invalid (it
        may also raise a ``TablechainError`` subclass for undecodable bytes, which counts as
        invalid). It must not change committed state; it may be called for several competing
        blocks at the same height and may cache results.
        """
        ...

    def commit_block(self, height: int, block: bytes, qc: QuorumCertificate) -> None:
        """Commit ``block`` at ``height`` with its certificate, durably, before returning.

        The machine calls it only for a block it validated (or re-executed during catch-up)
        with the state root the certificate names.
        """
        ...
