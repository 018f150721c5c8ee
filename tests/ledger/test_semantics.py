"""Execution semantics a user relies on, on every backend: an SQLTransaction is all or nothing
whatever it touched, and tables stay apart whatever a transaction does to their names."""

from __future__ import annotations

from typing import Any

import pytest

from tablechain.ledger.errors import TableNotFound

FIELDS = [{"field": "id", "type": "int", "PK": 1}, {"field": "v", "type": "varchar", "length": 20}]


def _tables(name: str) -> list[dict[str, Any]]:
    return [{"Table": {"TableName": name}}]


def _sql_transaction(h, who, *statements: dict[str, Any]):  # type: ignore[no-untyped-def]
    return h.run(who, {"TransactionType": "SQLTransaction", "Statements": list(statements)})


def test_a_failed_transaction_that_dropped_a_table_leaves_its_rows(harness):
    # MariaDB drops tables only after the block commits (DDL would commit the block): a drop
    # taken back by its failing transaction must not be carried out then.
    h = harness
    a = h.account()
    assert h.create(a, "t", FIELDS).success
    assert h.statement(a, 6, a, "t", [{"id": 1, "v": "kept"}]).success
    r = _sql_transaction(
        h,
        a,
        {"TransactionType": "TableListSet", "OpType": 2, "Tables": _tables("t")},
        {"TransactionType": "SQLStatement", "OpType": 10, "Tables": _tables("nope"),
         "Raw": [{"id": 1}]},
    )
    assert r.result == "tefTABLE_NOTEXIST"
    h.block()  # past the commit of the block that carried the failed drop
    assert h.read(a, a, "t", [[]]) == [{"id": 1, "v": "kept"}]
    assert h.statement(a, 6, a, "t", [{"id": 2, "v": "more"}]).success


def test_a_transaction_creates_a_table_name_at_most_once(harness):
    # A table's physical name derives from its owner, name and transaction hash: a second
    # create of the name in one transaction (after renaming or dropping the first) would share
    # the first one's physical table. It is refused alike on every backend, changing nothing.
    h = harness
    a = h.account()
    create = {"TransactionType": "TableListSet", "OpType": 1, "Tables": _tables("t"),
              "Raw": FIELDS}
    rename = {"TransactionType": "TableListSet", "OpType": 3,
              "Tables": [{"Table": {"TableName": "t", "TableNewName": "u"}}]}
    drop = {"TransactionType": "TableListSet", "OpType": 2, "Tables": _tables("t")}
    insert = {"TransactionType": "SQLStatement", "OpType": 6, "Tables": _tables("t"),
              "Raw": [{"id": 1, "v": "a"}]}
    for middle in (rename, drop):
        r = _sql_transaction(h, a, create, insert, middle, create, insert)
        assert (r.result, r.message) == (
            "temMALFORMED", "an SQLTransaction creates table 't' at most once"
        )
        for name in ("t", "u"):
            with pytest.raises(TableNotFound):
                h.ledger.table_info(a.address, name)
    # Creating it once (and renaming it) in one transaction still works.
    assert _sql_transaction(h, a, create, insert, rename).success
    assert h.read(a, a, "u", [[]]) == [{"id": 1, "v": "a"}]


def test_a_statement_the_database_refuses_gets_the_same_receipt_everywhere(harness, monkeypatch):  # type: ignore[no-untyped-def]
    """SQLAlchemy's error codes and the driver's words differ between backends; a receipt is
    hashed into the block, so such a failure is recorded as tefEXCEPTION with fixed words."""
    import sqlalchemy as sa

    from tablechain.ledger.tables import TableEngine

    h = harness
    a = h.account()
    assert h.create(a, "t", [{"field": "id", "type": "int", "PK": 1}]).success
    assert h.statement(a, 6, a, "t", [{"id": 1}]).success

    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise sa.exc.OperationalError("UPDATE ...", {}, Exception("driver words, backend 42"))

    monkeypatch.setattr(TableEngine, "update_rows", refuse)
    receipt = h.statement(a, 8, a, "t", [{"id": 2}, {"id": 1}])
    assert (receipt.result, receipt.message) == ("tefEXCEPTION",
                                                 "the database refused a statement")


def test_a_read_sees_one_state_even_while_a_block_commits(harness, monkeypatch):  # type: ignore[no-untyped-def]
    """A read checks the reader's grant and selects the rows in one snapshot: a block that
    revokes the grant and adds a row, committed between the two, shows in neither."""
    from tablechain.ledger.tables import TableEngine

    h = harness
    a, b = h.account(), h.account()
    assert h.create(a, "t", FIELDS).success
    assert h.grant(a, "t", b.address, select=True).success
    assert h.statement(a, 6, a, "t", [{"id": 1, "v": "before"}]).success
    revoke_and_add = [
        h.sign(a, {"TransactionType": "TableListSet", "OpType": 11, "Tables": _tables("t"),
                   "User": b.address, "Raw": [{"select": False}]}),
        h.sign(a, {"TransactionType": "SQLStatement", "OpType": 6, "Owner": a.address,
                   "Tables": _tables("t"), "Raw": [{"id": 2, "v": "after"}]}),
    ]
    select = TableEngine.select

    def commit_first(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if revoke_and_add:  # the grant was checked: now the block commits, then the select
            assert all(r.success for r in h.block(*revoke_and_add).receipts)
            revoke_and_add.clear()
        return select(self, *args, **kwargs)

    monkeypatch.setattr(TableEngine, "select", commit_first)
    assert h.read(b, a, "t", [[]]) == [{"id": 1, "v": "before"}]
    assert not revoke_and_add
