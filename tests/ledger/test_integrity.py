"""Tamper checks: whatever is changed in the database behind the chain's back is found, on every
backend, by recomputing from the data (openGauss's check compares stored hashes only)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from tablechain.crypto import canonical_json, parse_json
from tablechain.ledger.integrity import verify_ledger
from tablechain.ledger.storage import physical_table_name
from tests.ledger.conftest import Harness

FIELDS = [{"field": "id", "type": "int", "PK": 1}, {"field": "v", "type": "varchar", "length": 16},
          {"field": "amount", "type": "decimal", "length": 10, "accuracy": 2}]


def _filled(h: Harness) -> tuple[Any, Any]:
    a, b = h.account(), h.account()
    assert h.create(a, "t", FIELDS).success
    for i in range(4):
        assert h.statement(a, 6, a, "t", [{"id": i, "v": f"r{i}", "amount": f"{i}.50"}]).success
    assert h.statement(a, 8, a, "t", [{"v": "changed"}, {"id": 1}]).success
    assert h.grant(a, "t", b.address, select=True).success
    return a, b


def _rows_table(h: Harness, a: Any) -> sa.Table:
    name_in_db = h.ledger.table_info(a.address, "t")["name_in_db"]
    return sa.Table(physical_table_name(name_in_db), sa.MetaData(), autoload_with=h.ledger.engine)


def _edit_row(h: Harness, a: Any) -> None:
    t = _rows_table(h, a)
    with h.ledger.engine.begin() as conn:
        conn.execute(sa.update(t).where(t.c.id == 2).values(v="evil"))


def _delete_row(h: Harness, a: Any) -> None:
    t = _rows_table(h, a)
    with h.ledger.engine.begin() as conn:
        conn.execute(sa.delete(t).where(t.c.id == 3))


def _add_row(h: Harness, a: Any) -> None:
    t = _rows_table(h, a)
    with h.ledger.engine.begin() as conn:
        conn.execute(sa.insert(t).values(_tc_rowid=99, id=99, v="extra", amount=100))


def _edit_grant(h: Harness, a: Any) -> None:
    kv = h.ledger.t.kv
    with h.ledger.engine.begin() as conn:
        key = conn.execute(sa.select(kv.c.key).where(kv.c.key.like("grant/%"))).scalar_one()
        value = canonical_json({"select": True, "insert": True, "update": True, "delete": True})
        conn.execute(sa.update(kv).where(kv.c.key == key).values(value=value))


def _edit_nonce(h: Harness, a: Any) -> None:
    kv = h.ledger.t.kv
    with h.ledger.engine.begin() as conn:
        conn.execute(sa.update(kv).where(kv.c.key == f"acct/{a.address}")
                     .values(value=canonical_json({"sequence": 1})))


def _edit_tx(h: Harness, a: Any) -> None:
    txs = h.ledger.t.txs
    with h.ledger.engine.begin() as conn:
        row = conn.execute(sa.select(txs.c.hash, txs.c.tx).where(txs.c.height == 3)).one()
        tx = parse_json(row.tx)
        tx["Raw"] = [{"id": 1, "v": "forged", "amount": "1.50"}]
        conn.execute(sa.update(txs).where(txs.c.hash == row.hash)
                     .values(tx=canonical_json(tx).decode()))


def _edit_receipt(h: Harness, a: Any) -> None:
    txs = h.ledger.t.txs
    with h.ledger.engine.begin() as conn:
        row = conn.execute(sa.select(txs.c.hash, txs.c.receipt).where(txs.c.height == 2)).one()
        receipt = parse_json(row.receipt)
        receipt["result"] = "tefBAD_AUTH_NO"
        conn.execute(sa.update(txs).where(txs.c.hash == row.hash)
                     .values(receipt=canonical_json(receipt).decode()))


def _edit_header(h: Harness, a: Any) -> None:
    blocks = h.ledger.t.blocks
    with h.ledger.engine.begin() as conn:
        text = conn.execute(sa.select(blocks.c.header).where(blocks.c.height == 2)).scalar_one()
        header = parse_json(text)
        header["timestamp_ms"] += 1
        conn.execute(sa.update(blocks).where(blocks.c.height == 2)
                     .values(header=canonical_json(header).decode()))


def _drop_block(h: Harness, a: Any) -> None:
    blocks, txs = h.ledger.t.blocks, h.ledger.t.txs
    with h.ledger.engine.begin() as conn:
        conn.execute(sa.delete(txs).where(txs.c.height == 4))
        conn.execute(sa.delete(blocks).where(blocks.c.height == 4))


def _drop_rows_table(h: Harness, a: Any) -> None:
    # Reading it fails in SQL: on PostgreSQL that must not abort the checks after it.
    table = _rows_table(h, a)
    h.ledger.engine.dispose()  # SQLite drops a table only when no pooled reader holds it
    with h.ledger.engine.begin() as conn:
        table.drop(conn)


TAMPERING: dict[str, tuple[Callable[[Harness, Any], None], set[str]]] = {
    "edit a row value": (_edit_row, {"table"}),
    "delete a row": (_delete_row, {"table"}),
    "add a row": (_add_row, {"table"}),
    "widen a grant": (_edit_grant, {"state"}),
    "roll back a nonce": (_edit_nonce, {"state"}),
    "rewrite a transaction": (_edit_tx, {"transaction", "block"}),
    "rewrite a receipt": (_edit_receipt, {"block"}),
    "edit a header": (_edit_header, {"block"}),
    "remove a block": (_drop_block, {"block"}),
    "drop a table's SQL table": (_drop_rows_table, {"table"}),
}


def test_an_untouched_ledger_verifies(harness: Harness) -> None:
    _filled(harness)
    report = verify_ledger(harness.ledger, signatures=True)
    assert report.ok, report.problems
    assert (report.tables, report.rows, report.blocks) == (1, 4, harness.ledger.height + 1)
    assert report.transactions == harness.ledger.height


@pytest.mark.parametrize("case", sorted(TAMPERING))
def test_tampering_behind_the_chain_is_found(harness: Harness, case: str) -> None:
    a, _ = _filled(harness)
    tamper, kinds = TAMPERING[case]
    tamper(harness, a)
    report = verify_ledger(harness.ledger)
    assert not report.ok
    assert {p.kind for p in report.problems} == kinds, report.problems


def test_tables_and_state_alone_and_signatures(sqlite_harness: Harness) -> None:
    h = sqlite_harness
    a, _ = _filled(h)
    _edit_header(h, a)
    assert verify_ledger(h.ledger, blocks=False).ok  # the blocks were not looked at
    # A stored transaction whose signature no longer verifies (its bytes re-signed by nobody):
    # its hash still matches only if the signed part is unchanged, so change the signature.
    txs = h.ledger.t.txs
    with h.ledger.engine.begin() as conn:
        row = conn.execute(sa.select(txs.c.hash, txs.c.tx).where(txs.c.height == 1)).one()
        tx = parse_json(row.tx)
        sig = bytearray(bytes.fromhex(tx["TxnSignature"]))
        sig[5] ^= 1
        tx["TxnSignature"] = sig.hex()
        conn.execute(sa.update(txs).where(txs.c.hash == row.hash)
                     .values(tx=canonical_json(tx).decode()))
    kinds = {(p.kind, p.where) for p in verify_ledger(h.ledger, signatures=True).problems}
    assert ("transaction", row.hash) in kinds


def test_garbage_written_behind_the_chain_is_reported_never_a_crash(sqlite_harness: Harness
                                                                    ) -> None:
    """Values no chain would write (a table entry that is not JSON, text in a decimal column,
    a head header that is not a header) are problems in the report, not exceptions."""
    h = sqlite_harness
    a, _ = _filled(h)
    kv, blocks = h.ledger.t.kv, h.ledger.t.blocks
    t = _rows_table(h, a)
    with h.ledger.engine.begin() as conn:
        conn.execute(sa.update(t).where(t.c.id == 0).values(amount="not a number"))
        conn.execute(sa.insert(kv).values(key="table/0xzz/junk", value=b"{not json"))
        conn.execute(sa.update(blocks).where(blocks.c.height == h.ledger.height)
                     .values(header="[]"))
    report = verify_ledger(h.ledger)
    kinds = {(p.kind, p.where.split(" ")[0]) for p in report.problems}
    assert ("state", "table/0xzz/junk") in kinds
    assert any(p.kind == "table" for p in report.problems)
    assert ("block", "block") in kinds  # the head header


def _certified_chain(url: str, blocks: int) -> tuple[Any, Any, Any]:
    """A 4-validator chain of one-insert blocks, each committed with a quorum certificate (as
    consensus stores it); (ledger, owner key, proposer address of the last block)."""
    from tablechain.crypto import address_to_text, generate_private_key
    from tablechain.ledger.chain import Genesis, Ledger
    from tablechain.ledger.consensus.messages import PRECOMMIT, QuorumCertificate, vote_payload
    from tablechain.ledger.transactions import parse_transaction, sign_transaction
    from tablechain.ledger.validator import validator_set_from_genesis

    keys = {f"v{i}": generate_private_key("ed25519") for i in range(4)}
    genesis = Genesis(network_id=9, validators=tuple(
        {"id": vid, "scheme": "ed25519", "public_key": k.public_key.to_bytes().hex()}
        for vid, k in keys.items()))
    ledger, owner = Ledger(url, genesis), generate_private_key()
    validators = validator_set_from_genesis(genesis)
    proposer = ""
    for height in range(1, blocks + 1):
        body: dict[str, Any] = (
            {"TransactionType": "TableListSet", "OpType": 1,
             "Tables": [{"Table": {"TableName": "t"}}], "Raw": FIELDS} if height == 1 else
            {"TransactionType": "SQLStatement", "OpType": 6,
             "Tables": [{"Table": {"TableName": "t"}}], "Raw": [{"id": height}]})
        tx = sign_transaction({"NetworkID": 9, "Sequence": height, **body}, owner)
        proposer = address_to_text(keys[validators.proposer(height, 0)].address())
        pending = ledger.execute([parse_transaction(tx, ledger.suite, 9)], 1000 + height,
                                 proposer)
        block_hash, root = bytes.fromhex(pending.hash), bytes.fromhex(pending.header.state_root)
        payload = vote_payload(validators.chain_id, PRECOMMIT, height, 0, block_hash, root)
        qc = QuorumCertificate(height, 0, block_hash, root, tuple(
            (vid, keys[vid].sign(payload)) for vid in validators.ids[: validators.quorum]))
        pending.commit({"qc": qc.to_bytes().hex()})
    return ledger, owner, proposer


def test_a_block_without_its_certificate_is_found_on_a_chain_of_validators(tmp_path: Any
                                                                           ) -> None:
    """A database rebuilt consistently with a forged head block (another row, its digest,
    state root and header all recomputed) verifies everything but the certificate, which
    nobody but a quorum of validators can make: a missing one must count as a problem."""
    from tablechain.ledger.chain import rebuild
    from tablechain.ledger.transactions import parse_transaction, sign_transaction

    real, owner, proposer = _certified_chain(f"sqlite:///{tmp_path / 'real.db'}", 3)
    assert verify_ledger(real, signatures=True).ok
    forged = rebuild(real, f"sqlite:///{tmp_path / 'forged.db'}", to_height=2)
    tx = sign_transaction({"NetworkID": 9, "Sequence": 3, "TransactionType": "SQLStatement",
                           "OpType": 6, "Tables": [{"Table": {"TableName": "t"}}],
                           "Raw": [{"id": 99, "v": "forged"}]}, owner)
    forged.execute([parse_transaction(tx, forged.suite, 9)], 1003, proposer).commit()
    try:
        problems = verify_ledger(forged, signatures=True).problems
        assert [(p.kind, p.where) for p in problems] == [("certificate", "block 3")]
    finally:
        forged.close()
        real.close()


def test_a_stored_vector_edited_for_an_emptied_table_is_found(sqlite_harness: Harness) -> None:
    """The stored digest vector is checked even when the table holds no row any more."""
    h = sqlite_harness
    a, _ = _filled(h)
    assert h.statement(a, 9, a, "t", [{}]).success  # delete every row
    assert verify_ledger(h.ledger).ok
    digests = h.ledger.t.digests
    with h.ledger.engine.begin() as conn:
        conn.execute(sa.update(digests).values(vector=b"\x01" * 2048))
    assert [p.kind for p in verify_ledger(h.ledger).problems] == ["table"]


def test_a_database_without_blocks_is_reported(sqlite_harness: Harness) -> None:
    h = sqlite_harness
    _filled(h)
    blocks, txs = h.ledger.t.blocks, h.ledger.t.txs
    with h.ledger.engine.begin() as conn:
        conn.execute(sa.delete(txs))
        conn.execute(sa.delete(blocks))
    report = verify_ledger(h.ledger)
    assert not report.ok and report.problems[0].detail == "the database holds no block"


def test_a_ledger_over_a_database_without_its_head_refuses_to_open(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tablechain.ledger.chain import ChainMismatch, Genesis, Ledger

    url = f"sqlite:///{tmp_path / 'n.db'}"
    first = Ledger(url, Genesis(network_id=3))
    with first.engine.begin() as conn:
        conn.execute(sa.update(first.t.blocks).values(header="{}"))
    first.close()
    with pytest.raises(ChainMismatch, match="head block"):
        Ledger(url, Genesis(network_id=3))
