"""Transaction proofs a client verifies on its own, without trusting the node that serves them.

A node answers ``tx_proof`` with the transaction, its receipt, the header of its block, the
Merkle audit paths of both (RFC 9162 §2.1.3, against the header's ``tx_root`` and
``receipts_root``) and the block's quorum certificate. ``verify_tx_proof`` checks, with the
chain's genesis only:

1. the transaction's signature, and that its bytes hash to the claimed hash;
2. its inclusion at ``index`` under the header's ``tx_root``; the receipt's inclusion at the same
   index under ``receipts_root``, and that the receipt names that transaction;
3. the header: its hash is certified by a quorum of genesis' validators (a BFT chain), or equals
   a block hash the caller already trusts (a single development node certifies nothing).

So a node that lies about a transaction's outcome, its block or its very existence is caught; a
``ProofError`` says which step failed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tablechain.crypto import parse_json
from tablechain.errors import TablechainError
from tablechain.ledger.blocks import BlockHeader, Receipt
from tablechain.ledger.chain import Genesis
from tablechain.ledger.errors import LedgerError
from tablechain.ledger.merkle import inclusion_proof, verify_inclusion
from tablechain.ledger.transactions import CryptoSuite, parse_transaction

__all__ = [
    "ProofError",
    "certified_chain",
    "check_certificate",
    "make_tx_proof",
    "tx_proof",
    "verify_tx_proof",
]

_PROOF_FIELDS = {"hash", "ledger_index", "index", "tx", "receipt", "header", "certificate",
                 "tx_path", "receipt_path"}


class ProofError(LedgerError):
    """A proof does not establish what it claims."""

    code = "proofInvalid"


def make_tx_proof(block: Mapping[str, Any], tx_hash: str, suite: CryptoSuite) -> dict[str, Any]:
    """The proof of ``tx_hash`` in a stored block (``Ledger.block``'s form)."""
    hashes = [bytes.fromhex(r["tx_hash"]) for r in block["receipts"]]
    index = next(i for i, r in enumerate(block["receipts"]) if r["tx_hash"] == tx_hash)
    receipts = [Receipt.from_json(r).encoded() for r in block["receipts"]]
    return {
        "hash": tx_hash,
        "ledger_index": block["header"]["height"],
        "index": index,
        "tx": block["transactions"][index],
        "receipt": block["receipts"][index],
        "header": block["header"],
        "certificate": block["certificate"],
        "tx_path": [p.hex() for p in inclusion_proof(hashes, index, suite.hash)],
        "receipt_path": [p.hex() for p in inclusion_proof(receipts, index, suite.hash)],
    }


def tx_proof(ledger: Any, tx_hash: str) -> dict[str, Any]:
    """The proof of a committed transaction (``NotFound`` if it is in no block)."""
    record = ledger.transaction(tx_hash)
    return make_tx_proof(ledger.block(int(record["ledger_index"])), tx_hash, ledger.suite)


def _header(value: Any) -> BlockHeader:
    """The header of a proof, in exactly the shape nodes store: a hostile node's odd types
    (roots that are not hex, a height of 1e309) are a ``ProofError``, never an exception."""
    try:
        header = BlockHeader.from_json(value)
        if header.to_json() != dict(value):
            raise ValueError("not a header")
        bytes.fromhex(header.tx_root), bytes.fromhex(header.receipts_root)
    except (KeyError, TypeError, ValueError, ArithmeticError):
        raise ProofError("the header is malformed") from None
    return header


def _receipt(value: Any) -> Receipt:
    """The receipt of a proof, with the types a stored receipt has (``ProofError`` else)."""
    try:
        receipt = Receipt.from_json(value)
    except (KeyError, TypeError, ValueError):
        raise ProofError("the receipt is malformed") from None
    if not (isinstance(receipt.tx_hash, str) and type(receipt.index) is int
            and isinstance(receipt.result, str) and isinstance(receipt.message, str)
            and isinstance(receipt.details, dict)):
        raise ProofError("the receipt is malformed")
    return receipt


def _path(value: Any, what: str) -> list[bytes]:
    if not isinstance(value, list) or len(value) > 64:
        raise ProofError(f"{what} is a list of at most 64 hex hashes")
    try:
        return [bytes.fromhex(p) for p in value]
    except (TypeError, ValueError):
        raise ProofError(f"{what} holds something other than hex") from None


def verify_tx_proof(
    proof: Any, genesis: Genesis, trusted_block_hash: str | None = None
) -> dict[str, Any]:
    """Check ``proof`` (from ``make_tx_proof``) against ``genesis``; the proven record
    (``hash``, ``ledger_index``, ``index``, ``result``, ``receipt``, ``block_hash``) or
    ``ProofError``.

    The header is anchored by its quorum certificate when genesis names validators with ids (a
    BFT chain), else by ``trusted_block_hash``, which the caller must then give.
    """
    if not isinstance(proof, Mapping) or set(proof) != _PROOF_FIELDS:
        raise ProofError(f"a transaction proof has exactly the fields {sorted(_PROOF_FIELDS)}")
    suite = genesis.crypto_suite
    if not isinstance(proof["tx"], Mapping):
        raise ProofError("the transaction is not an object")
    try:
        tx = parse_transaction(dict(proof["tx"]), suite, genesis.network_id)
    except TablechainError as exc:
        raise ProofError(f"the transaction does not check: {exc.message}") from None
    if tx.hash_hex != proof["hash"]:
        raise ProofError(f"the transaction hashes to {tx.hash_hex}, not {proof['hash']}")
    header, receipt = _header(proof["header"]), _receipt(proof["receipt"])
    index = proof["index"]
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < header.tx_count:
        raise ProofError("index is not a position in the block")
    if header.height != proof["ledger_index"]:
        raise ProofError("ledger_index is not the header's height")
    if not verify_inclusion(tx.hash, index, header.tx_count, _path(proof["tx_path"], "tx_path"),
                            bytes.fromhex(header.tx_root), suite.hash):
        raise ProofError("the transaction is not in the block (tx_path does not reach tx_root)")
    if receipt.tx_hash != tx.hash_hex or receipt.index != index:
        raise ProofError("the receipt is another transaction's")
    if not verify_inclusion(receipt.encoded(), index, header.tx_count,
                            _path(proof["receipt_path"], "receipt_path"),
                            bytes.fromhex(header.receipts_root), suite.hash):
        raise ProofError("the receipt is not the block's (receipt_path does not reach "
                         "receipts_root)")
    block_hash = header.hash(suite)
    _anchor(proof["certificate"], header, block_hash, genesis, trusted_block_hash)
    return {"hash": tx.hash_hex, "ledger_index": header.height, "index": index,
            "result": receipt.result, "receipt": receipt.to_json(), "block_hash": block_hash}


def _anchor(certificate: Any, header: BlockHeader, block_hash: str, genesis: Genesis,
            trusted_block_hash: str | None) -> None:
    if trusted_block_hash is not None:
        if trusted_block_hash != block_hash:
            raise ProofError("the block is not the one trusted")
        return
    if not certified_chain(genesis):
        raise ProofError("this chain's blocks carry no certificate: give a trusted block hash")
    check_certificate(certificate, header, genesis)


def certified_chain(genesis: Genesis) -> bool:
    """Whether the chain's blocks carry quorum certificates (its genesis names a validator set
    with ids; a single development node's does not)."""
    return _bft(genesis.validators)


_VALIDATOR_SETS: dict[str, Any] = {}  # genesis hash -> its validator set (built once)


def _validator_set(genesis: Genesis) -> Any:
    """Genesis' validator set, built once per chain: building it checks every validator's
    certificate chain, far more than one certificate check costs."""
    from tablechain.ledger.validator import validator_set_from_genesis

    key = genesis.hash()
    found = _VALIDATOR_SETS.get(key)
    if found is None:
        if len(_VALIDATOR_SETS) >= 16:
            _VALIDATOR_SETS.clear()
        found = _VALIDATOR_SETS[key] = validator_set_from_genesis(genesis)
    return found


def check_certificate(certificate: Any, header: BlockHeader, genesis: Genesis) -> None:
    """``ProofError`` unless ``certificate`` (as stored with a block) is a quorum of genesis'
    validators signing exactly ``header``."""
    from tablechain.ledger.consensus.messages import QuorumCertificate, verify_qc

    try:
        qc = QuorumCertificate.from_bytes(bytes.fromhex(certificate["qc"]))
        verify_qc(qc, _validator_set(genesis))
    except (TablechainError, KeyError, TypeError, ValueError) as exc:
        raise ProofError(
            f"the block's certificate does not verify: {getattr(exc, 'message', exc)}"
        ) from None
    if (qc.height, qc.block_hash.hex(), qc.state_root.hex()) != (
        header.height, header.hash(genesis.crypto_suite), header.state_root
    ):
        raise ProofError("the certificate is for another block")


def _bft(validators: Sequence[Mapping[str, Any]]) -> bool:
    return bool(validators) and all("id" in v for v in validators)


def proof_from_text(text: str | bytes) -> Any:
    """A proof received as JSON text (strict decoder)."""
    try:
        return parse_json(text)
    except TablechainError as exc:
        raise ProofError(f"the proof is not JSON: {exc.message}") from None
