"""Confidential tables in the ledger: sealed records on every backend, grants with Tokens,
refusals with stable codes that change nothing, rename and rebuild keeping them."""

from __future__ import annotations

import pytest

from tablechain.crypto import canonical_json, parse_json
from tablechain.crypto.envelope import new_table_key, open_sealed, seal, unwrap_key, wrap_key
from tablechain.ledger.chain import rebuild
from tablechain.ledger.tables import CONFIDENTIAL_FIELDS
from tests.ledger.conftest import Account, Harness

FIELDS = [{"field": "id", "type": "int", "PK": 1}, {"field": "v", "type": "varchar", "length": 8}]


def _create(h: Harness, owner: Account, name: str, key: bytes, **extra: object):
    return h.create(owner, name, seal(key, canonical_json(FIELDS)).hex(),  # type: ignore[arg-type]
                    Token=wrap_key(key, owner.key.public_key).hex(), **extra)


def _insert(h: Harness, who: Account, owner: Account, name: str, key: bytes, rows: list):
    return h.statement(who, 6, owner, name, seal(key, canonical_json(rows)).hex())


def _rows(h: Harness, who: Account, owner: Account, name: str, key: bytes) -> list:
    out = []
    for record in h.read(who, owner, name, [["sealed"]]):
        out.extend(parse_json(open_sealed(key, bytes.fromhex(record["sealed"]))))
    return out


def test_sealed_records_grants_and_refusals(harness: Harness) -> None:
    h = harness
    alice, bob, carol = h.account(), h.account("ed25519"), h.account()
    key = new_table_key("international")
    created = _create(h, alice, "c", key)
    assert created.success, created.message
    info = h.ledger.table_info(alice.address, "c")
    assert info["fields"] == list(CONFIDENTIAL_FIELDS)
    assert unwrap_key(bytes.fromhex(info["token"]), alice.key) == key
    assert parse_json(open_sealed(key, bytes.fromhex(info["sealed"]))) == FIELDS

    assert _insert(h, alice, alice, "c", key, [{"id": 1, "v": "a"}]).success
    # Bob may not insert before a grant; a grant with select but no Token is refused.
    assert _insert(h, bob, alice, "c", key, [{"id": 2}]).result == "tefBAD_AUTH_NO"
    assert h.grant(alice, "c", bob.address, select=True).result == "tefTABLE_CONFIDENTIAL"
    assert h.grant(alice, "c", "everyone", select=True).result == "tefTABLE_CONFIDENTIAL"
    granted = h.run(alice, {"TransactionType": "TableListSet", "OpType": 11,
                            "Tables": [{"Table": {"TableName": "c"}}], "User": bob.address,
                            "Raw": [{"select": True, "insert": True}],
                            "Token": wrap_key(key, bob.key.public_key).hex()})
    assert granted.success, granted.message
    bob_token = h.ledger.table_info(alice.address, "c")["grants"][bob.address]["token"]
    assert unwrap_key(bytes.fromhex(bob_token), bob.key) == key  # an Ed25519 account
    assert _insert(h, bob, alice, "c", key, [{"id": 2, "v": "b"}]).success
    assert _rows(h, bob, alice, "c", key) == [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]
    assert [r["account"] for r in h.read(alice, alice, "c", [["account"]])] == \
        [alice.address, bob.address]

    # The largest sealed batch fits its column on every backend; one byte more is refused.
    assert h.statement(bob, 6, alice, "c", "ab" * 65535).success
    assert h.statement(bob, 6, alice, "c", "ab" * 65536).result == "temTOO_LARGE"
    assert len(h.read(alice, alice, "c", [["sealed"], {"account": bob.address}])[-1]["sealed"]) \
        == 2 * 65535
    root = h.ledger.head.state_root
    refusals = [
        h.statement(alice, 8, alice, "c", [{"v": "x"}, {"id": 1}]),
        h.statement(alice, 9, alice, "c", [{}]),
        h.statement(alice, 10, alice, "c", [{"id": 1}]),
        h.statement(alice, 6, alice, "c", [{"id": 3, "v": "clear"}]),  # not sealed
        h.statement(alice, 6, alice, "c", "ABCD"),  # not lowercase hex
        h.run(alice, {"TransactionType": "TableListSet", "OpType": 14,
                      "Tables": [{"Table": {"TableName": "c"}}],
                      "Raw": [{"field": "w", "type": "int"}]}),
        h.statement(alice, 6, alice, "c", seal(key, b"[]").hex(), AutoFillField="v"),
        h.run(carol, {"TransactionType": "TableListSet", "OpType": 11,  # not the owner
                      "Owner": alice.address, "Tables": [{"Table": {"TableName": "c"}}],
                      "User": carol.address, "Raw": [{"select": True}],
                      "Token": wrap_key(key, carol.key.public_key).hex()}),
    ]
    assert [r.result for r in refusals] == [
        "tefTABLE_CONFIDENTIAL", "tefTABLE_CONFIDENTIAL", "tefTABLE_CONFIDENTIAL",
        "temBAD_FIELD", "temBAD_FIELD", "tefTABLE_CONFIDENTIAL", "tefTABLE_CONFIDENTIAL",
        "tefBAD_AUTH_NO",
    ]
    # Failed transactions only move nonces: the table, its rows and grants are as before.
    assert len(h.read(alice, alice, "c", [[]])) == 3
    assert h.ledger.head.state_root != root  # the nonces moved ...
    assert set(h.ledger.table_info(alice.address, "c")["grants"]) == {bob.address}

    # A Token on an ordinary table's grant, a rule on a confidential create: refused.
    assert h.create(alice, "plain", FIELDS).success
    token = wrap_key(key, bob.key.public_key).hex()
    plain_grant = h.run(alice, {"TransactionType": "TableListSet", "OpType": 11,
                                "Tables": [{"Table": {"TableName": "plain"}}],
                                "User": bob.address, "Raw": [{"select": True}], "Token": token})
    assert plain_grant.result == "temBAD_FIELD"
    ruled = _create(h, alice, "ruled", key, OperationRule={"Insert": {"Condition": {}}})
    assert ruled.result == "tefTABLE_CONFIDENTIAL"
    assert h.create(alice, "badtoken", seal(key, b"[]").hex(), Token="zz").result == \
        "temBAD_FIELD"


def test_rename_drop_and_rebuild_keep_confidential_tables(sqlite_harness: Harness,
                                                          tmp_path) -> None:  # type: ignore[no-untyped-def]
    h = sqlite_harness
    alice = h.account()
    key = new_table_key("international")
    assert _create(h, alice, "c", key).success
    assert _insert(h, alice, alice, "c", key, [{"id": 1, "v": "a"}]).success
    renamed = h.run(alice, {"TransactionType": "TableListSet", "OpType": 3,
                            "Tables": [{"Table": {"TableName": "c", "TableNewName": "d"}}]})
    assert renamed.success, renamed.message
    info = h.ledger.table_info(alice.address, "d")
    assert info["sealed"] and info["token"]
    assert _rows(h, alice, alice, "d", key) == [{"id": 1, "v": "a"}]
    copy = rebuild(h.ledger, f"sqlite:///{tmp_path / 'copy.db'}")
    assert copy.head == h.ledger.head
    assert copy.read(alice.address, "d", [[]], alice.address) == \
        h.ledger.read(alice.address, "d", [[]], alice.address)
    copy.close()
    dropped = h.run(alice, {"TransactionType": "TableListSet", "OpType": 2,
                            "Tables": [{"Table": {"TableName": "d"}}]})
    assert dropped.success


@pytest.mark.parametrize("scheme_suite", [("sm2", "national")])
def test_national_suite_seals_with_sm4_and_wraps_with_sm2(tmp_path, scheme_suite) -> None:  # type: ignore[no-untyped-def]
    scheme, suite = scheme_suite
    h = Harness(f"sqlite:///{tmp_path / 'gm.db'}", suite=suite)
    alice, bob = h.account(scheme), h.account(scheme)
    key = new_table_key(suite)
    assert len(key) == 16
    assert _create(h, alice, "gm", key).success
    assert _insert(h, alice, alice, "gm", key, [{"id": 7, "v": "sm4"}]).success
    granted = h.run(alice, {"TransactionType": "TableListSet", "OpType": 11,
                            "Tables": [{"Table": {"TableName": "gm"}}], "User": bob.address,
                            "Raw": [{"select": True}],
                            "Token": wrap_key(key, bob.key.public_key).hex()})
    assert granted.success, granted.message
    token = h.ledger.table_info(alice.address, "gm")["grants"][bob.address]["token"]
    bob_key = unwrap_key(bytes.fromhex(token), bob.key)
    assert _rows(h, bob, alice, "gm", bob_key) == [{"id": 7, "v": "sm4"}]
    h.ledger.close()
