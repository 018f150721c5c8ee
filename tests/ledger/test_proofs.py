"""Transaction proofs: every transaction of a block proves, and hostile proofs never do."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from tablechain.ledger.proofs import ProofError, tx_proof, verify_tx_proof
from tests.ledger.conftest import Harness

FIELDS = [{"field": "id", "type": "int", "PK": 1}]


def _block_of(h: Harness, size: int) -> tuple[Any, str]:
    a = h.account()
    assert h.create(a, "t", FIELDS).success
    txs = [h.sign(a, {"TransactionType": "SQLStatement", "OpType": 6, "Owner": a.address,
                      "Tables": [{"Table": {"TableName": "t"}}], "Raw": [{"id": i % 3}]})
           for i in range(size)]
    block = h.block(*txs)
    return block, h.ledger.block(block.header.height)["hash"]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 9])
def test_every_transaction_of_a_block_proves(sqlite_harness: Harness, size: int) -> None:
    h = sqlite_harness
    block, block_hash = _block_of(h, size)
    for i, tx in enumerate(block.transactions):
        proof = tx_proof(h.ledger, tx.hash_hex)
        proven = verify_tx_proof(proof, h.genesis, trusted_block_hash=block_hash)
        assert (proven["index"], proven["block_hash"]) == (i, block_hash)
        assert proven["result"] == block.receipts[i].result  # failures (duplicate ids) too


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict], None]:
    def change(proof: dict) -> None:
        target = proof
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


def _flip_path(name: str) -> Callable[[dict], None]:
    def change(proof: dict) -> None:
        first = bytearray(bytes.fromhex(proof[name][0]))
        first[0] ^= 1
        proof[name][0] = first.hex()
    return change


HOSTILE: dict[str, Callable[[dict], None]] = {
    "a failure reported as success": _set(("receipt", "result"), "tefBAD_AUTH_NO"),
    "another receipt message": _set(("receipt", "message"), "x"),
    "another index": _set(("index",), 0),
    "an index past the block": _set(("index",), 99),
    "a bent tx path": _flip_path("tx_path"),
    "a bent receipt path": _flip_path("receipt_path"),
    "a shortened tx path": lambda p: p["tx_path"].pop(),
    "another tx_root": _set(("header", "tx_root"), "00" * 32),
    "another height": _set(("ledger_index",), 1),
    "an edited transaction": _set(("tx", "Raw"), [{"id": 77}]),
    "a claimed hash of another": _set(("hash",), "ab" * 32),
    "a missing field": lambda p: p.pop("receipt_path"),
    "an extra field": _set(("extra",), 1),
    "a path of text": _set(("tx_path",), ["zz"]),
    "a receipt that is not an object": _set(("receipt",), [1]),
    # Odd JSON types a hostile node may send: a ProofError, never another exception.
    "a transaction that is not an object": _set(("tx",), "ab"),
    "a tx_root that is not hex": _set(("header", "tx_root"), "zz"),
    "a receipts_root that is not hex": _set(("header", "receipts_root"), "zz"),
    "a height past any integer": _set(("header", "height"), float("inf")),
    "a header with an extra field": _set(("header", "extra"), 1),
    "receipt details that are not an object": _set(("receipt", "details"), [1]),
    "a receipt index of text": _set(("receipt", "index"), "3"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_proofs_are_refused(sqlite_harness: Harness, case: str) -> None:
    h = sqlite_harness
    block, block_hash = _block_of(h, 5)
    proof = tx_proof(h.ledger, block.transactions[3].hash_hex)
    bad = copy.deepcopy(proof)
    HOSTILE[case](bad)
    with pytest.raises(ProofError):
        verify_tx_proof(bad, h.genesis, trusted_block_hash=block_hash)
    assert verify_tx_proof(proof, h.genesis, trusted_block_hash=block_hash)["index"] == 3


def test_a_proof_needs_an_anchor(sqlite_harness: Harness) -> None:
    h = sqlite_harness
    block, block_hash = _block_of(h, 2)
    proof = tx_proof(h.ledger, block.transactions[0].hash_hex)
    with pytest.raises(ProofError, match="trusted block hash"):
        verify_tx_proof(proof, h.genesis)
    with pytest.raises(ProofError, match="not the one trusted"):
        verify_tx_proof(proof, h.genesis, trusted_block_hash="00" * 32)


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths to every scalar in a proof (dict keys and list indices)."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _leaves(v, (*path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _leaves(v, (*path, i))]
    return [path]


def test_any_single_changed_value_breaks_a_proof(sqlite_harness: Harness) -> None:
    """Every scalar of a real proof, changed (a flipped hex digit, a number off by one, another
    string), makes it refused or leaves the proven record exactly as it was: nothing a node
    alters passes for something else. A property over every position of a 7-transaction
    block."""
    import random

    h = sqlite_harness
    block, block_hash = _block_of(h, 7)
    rng = random.Random(7)
    for tx in block.transactions:
        proof = tx_proof(h.ledger, tx.hash_hex)
        honest = verify_tx_proof(proof, h.genesis, trusted_block_hash=block_hash)
        for path in _leaves(proof):
            bad = copy.deepcopy(proof)
            target = bad
            for key in path[:-1]:
                target = target[key]
            value = target[path[-1]]
            if isinstance(value, bool) or value is None:
                target[path[-1]] = 1
            elif isinstance(value, int):
                target[path[-1]] = value + rng.choice([-1, 1])
            elif isinstance(value, str) and value and all(c in "0123456789abcdef" for c in value):
                i = rng.randrange(len(value))
                target[path[-1]] = value[:i] + ("0" if value[i] != "0" else "1") + value[i + 1:]
            else:
                target[path[-1]] = f"{value}x"
            try:
                proven = verify_tx_proof(bad, h.genesis, trusted_block_hash=block_hash)
            except ProofError:
                continue
            assert proven == honest, path  # only an unsigned, unhashed detail may differ
