"""Blocks, headers, receipts and the environments that execution sees."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tablechain.crypto import canonical_json
from tablechain.ledger.merkle import merkle_root
from tablechain.ledger.transactions import CryptoSuite, SignedTransaction

__all__ = [
    "BlockHeader",
    "Block",
    "Receipt",
    "BlockEnvironment",
    "TxEnvironment",
    "SUCCESS",
    "tx_root",
    "receipts_root",
]

SUCCESS = "tesSUCCESS"

# The canonical JSON of the commonest receipt (a success that reports rows affected), filled
# in directly: every validator encodes one receipt per transaction for the receipts root.
_AFFECTED = (
    b'{"details":{"affected":%d},"index":%d,"message":"","result":"tesSUCCESS","tx_hash":"%s"}'
)
_LOWER_HEX = re.compile(r"[0-9a-f]*")


@dataclass(frozen=True)
class BlockEnvironment:
    """What execution may know of its block: never the wall clock."""

    height: int
    timestamp_ms: int
    proposer: str
    suite: CryptoSuite
    network_id: int


@dataclass(frozen=True)
class TxEnvironment:
    """What a transaction's execution knows of itself."""

    block: BlockEnvironment
    signer: str
    tx_hash: str
    index: int


@dataclass(frozen=True)
class Receipt:
    """The outcome of one transaction in a block."""

    tx_hash: str
    index: int
    result: str
    message: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def success(self) -> bool:
        return self.result == SUCCESS

    def to_json(self) -> dict[str, Any]:
        return {
            "tx_hash": self.tx_hash,
            "index": self.index,
            "result": self.result,
            "message": self.message,
            "details": dict(self.details),
        }

    def encoded(self) -> bytes:
        """The canonical JSON of ``to_json()``, made once (hashed for the root, then stored)."""
        cached = self.__dict__.get("_encoded")
        if cached is None:
            details = self.details
            affected = details.get("affected")
            if (
                self.result == SUCCESS
                and self.message == ""
                and type(self.index) is int
                and type(affected) is int
                and len(details) == 1
                and _LOWER_HEX.fullmatch(self.tx_hash) is not None
            ):
                cached = _AFFECTED % (affected, self.index, self.tx_hash.encode())
            else:
                cached = canonical_json(self.to_json(), trusted=True)
            object.__setattr__(self, "_encoded", cached)
        return cached  # type: ignore[no-any-return]

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Receipt:
        return cls(
            obj["tx_hash"],
            obj["index"],
            obj["result"],
            obj.get("message", ""),
            obj.get("details", {}),
        )


@dataclass(frozen=True)
class BlockHeader:
    height: int
    parent_hash: str
    timestamp_ms: int
    proposer: str
    tx_root: str
    receipts_root: str
    state_root: str
    tx_count: int

    def to_json(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "parent_hash": self.parent_hash,
            "timestamp_ms": self.timestamp_ms,
            "proposer": self.proposer,
            "tx_root": self.tx_root,
            "receipts_root": self.receipts_root,
            "state_root": self.state_root,
            "tx_count": self.tx_count,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> BlockHeader:
        return cls(
            int(obj["height"]),
            str(obj["parent_hash"]),
            int(obj["timestamp_ms"]),
            str(obj["proposer"]),
            str(obj["tx_root"]),
            str(obj["receipts_root"]),
            str(obj["state_root"]),
            int(obj["tx_count"]),
        )

    def hash(self, suite: CryptoSuite) -> str:
        return suite.hash(canonical_json(self.to_json())).hex()


@dataclass(frozen=True)
class Block:
    header: BlockHeader
    transactions: tuple[SignedTransaction, ...]
    receipts: tuple[Receipt, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "header": self.header.to_json(),
            "transactions": [dict(tx.json) for tx in self.transactions],
            "receipts": [r.to_json() for r in self.receipts],
        }


def tx_root(transactions: Sequence[SignedTransaction], suite: CryptoSuite) -> str:
    return merkle_root([tx.hash for tx in transactions], suite.hash).hex()


def receipts_root(receipts: Sequence[Receipt], suite: CryptoSuite) -> str:
    return merkle_root([r.encoded() for r in receipts], suite.hash).hex()
