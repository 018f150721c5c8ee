"""A table's history from the chain: dump (its operation log, resumable) and audit (who changed
which values), following the table through renames, schema changes and same-name tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tablechain.ledger.errors import BadField, TableNotFound
from tablechain.ledger.history import audit_table, dump_table, table_log
from tests.ledger.conftest import Account, Harness

FIELDS = [{"field": "id", "type": "int", "PK": 1}, {"field": "name", "type": "varchar",
                                                       "length": 16},
          {"field": "salary", "type": "int"}]


def _tables(h: Harness, name: str, op: int, **extra: object) -> dict:
    return {"TransactionType": "TableListSet", "OpType": op,
            "Tables": [{"Table": {"TableName": name, **extra}}]}


def _story(h: Harness) -> tuple[Account, Account]:
    """A table's life: rows, a grant, updates by two accounts (two in one block), a failed
    update, a rename, a schema change, a multi-statement transaction; and another table once
    called the same, dropped before."""
    a, b = h.account(), h.account()
    assert h.create(a, "staff", FIELDS).success
    assert h.run(a, _tables(h, "staff", 2)).success  # dropped: that was another table
    assert h.create(a, "staff", FIELDS).success
    assert h.statement(a, 6, a, "staff", [{"id": 1, "name": "ann", "salary": 10},
                                          {"id": 2, "name": "bob", "salary": 20}]).success
    assert h.grant(a, "staff", b.address, update=True).success
    one = h.sign(a, {"TransactionType": "SQLStatement", "OpType": 8, "Owner": a.address,
                     "Tables": [{"Table": {"TableName": "staff"}}],
                     "Raw": [{"salary": 11}, {"id": 1}]})
    two = h.sign(b, {"TransactionType": "SQLStatement", "OpType": 8, "Owner": a.address,
                     "Tables": [{"Table": {"TableName": "staff"}}],
                     "Raw": [{"salary": 12}, {"id": 1}]})
    block = h.block(one, two)
    assert all(r.success for r in block.receipts)
    assert not h.statement(b, 9, a, "staff", [{"id": 1}]).success  # b may not delete
    assert h.run(a, _tables(h, "staff", 3, TableNewName="people")).success
    assert h.run(a, {**_tables(h, "people", 14),
                     "Raw": [{"field": "dept", "type": "varchar", "length": 8}]}).success
    assert h.run(a, {"TransactionType": "SQLTransaction", "Statements": [
        {"TransactionType": "SQLStatement", "OpType": 8, "Owner": a.address,
         "Tables": [{"Table": {"TableName": "people"}}], "Raw": [{"name": "anne"}, {"id": 1}]},
        {"TransactionType": "SQLStatement", "OpType": 6, "Owner": a.address,
         "Tables": [{"Table": {"TableName": "people"}}],
         "Raw": [{"id": 3, "name": "cy", "salary": 30}]},
    ]}).success
    assert h.statement(a, 8, a, "people", [{"salary": 21}, {"id": 2}]).success
    return a, b


def test_the_log_follows_one_table_through_its_names(harness: Harness) -> None:
    h = harness
    a, b = _story(h)
    log = table_log(h.ledger, a.address, "people")
    assert [(e.op_type, e.name) for e in log] == [
        (1, "staff"), (6, "staff"), (11, "staff"), (8, "staff"), (8, "staff"), (3, "staff"),
        (14, "people"), (8, "people"), (6, "people"), (8, "people")]
    assert [e.account for e in log][3:5] == [a.address, b.address]  # the failed delete is out
    assert log[0].ledger_index > 2  # not the dropped table of the same name
    with pytest.raises(TableNotFound):
        table_log(h.ledger, a.address, "staff")


def test_a_dump_writes_json_lines_and_resumes(sqlite_harness: Harness, tmp_path: Path) -> None:
    h = sqlite_harness
    a, _ = _story(h)
    out = tmp_path / "people.jsonl"
    assert dump_table(h.ledger, a.address, "people", out) == 10
    assert dump_table(h.ledger, a.address, "people", out) == 0  # nothing new
    assert h.statement(a, 9, a, "people", [{"id": 3}]).success
    assert dump_table(h.ledger, a.address, "people", out) == 1
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 11 and lines[-1]["op_type"] == 9 and lines[-1]["raw"] == [{"id": 3}]
    assert lines[0]["op_type"] == 1 and lines[0]["raw"] == FIELDS
    (tmp_path / "bad.jsonl").write_text("not a dump\n")
    with pytest.raises(BadField):
        dump_table(h.ledger, a.address, "people", tmp_path / "bad.jsonl")


def test_the_audit_names_each_change_of_the_chosen_values(harness: Harness) -> None:
    h = harness
    a, b = _story(h)
    changes = audit_table(h.ledger, a.address, "people", ["salary"], {"id": 1})
    assert [(c["account"], [(x["before"], x["after"]) for x in c["changes"]])
            for c in changes] == [
        (a.address, [(None, 10)]),  # inserted
        (a.address, [(10, 11)]),
        (b.address, [(11, 12)]),  # the same block: judged one transaction at a time
    ]
    names = audit_table(h.ledger, a.address, "people", ["name", "salary"], {"id": 1})
    assert [x["after"] for c in names for x in c["changes"] if x["field"] == "name"] == \
        ["ann", "anne"]
    everyone = audit_table(h.ledger, a.address, "people", ["salary"])
    assert {x["row"] for c in everyone for x in c["changes"]} == {1, 2, 3}
    with pytest.raises(BadField):
        audit_table(h.ledger, a.address, "people", ["nope"])


def test_a_rows_audit_starts_at_its_own_insert(sqlite_harness: Harness) -> None:
    h = sqlite_harness
    a = h.account()
    assert h.create(a, "t", FIELDS).success
    assert h.statement(a, 6, a, "t", [{"id": 1, "name": "x", "salary": 1}]).success
    assert h.statement(a, 9, a, "t", [{"id": 1}]).success
    assert h.statement(a, 6, a, "t", [{"id": 1, "name": "y", "salary": 2}]).success
    # The row now called id 1 is the second one: its history starts at its insert.
    changes = audit_table(h.ledger, a.address, "t", ["salary"], {"id": 1})
    assert [(x["before"], x["after"]) for c in changes for x in c["changes"]] == [(None, 2)]


def test_an_audit_judges_a_transaction_from_the_table_as_it_started(sqlite_harness: Harness
                                                                    ) -> None:
    """Inside one SQLTransaction the table may be renamed before it is changed, or created
    after another table of the same name was dropped: the values before are the audited
    table's as the transaction started (its old name; nothing if the transaction creates it)."""
    h = sqlite_harness
    a = h.account()

    def update(name: str, salary: int) -> dict:
        return {"TransactionType": "SQLStatement", "OpType": 8, "Owner": a.address,
                "Tables": [{"Table": {"TableName": name}}], "Raw": [{"salary": salary},
                                                                    {"id": 1}]}

    assert h.create(a, "t", FIELDS).success
    assert h.statement(a, 6, a, "t", [{"id": 1, "name": "x", "salary": 1}]).success
    assert h.run(a, {"TransactionType": "SQLTransaction", "Statements": [
        _tables(h, "t", 3, TableNewName="u"), update("u", 5)]}).success
    changes = audit_table(h.ledger, a.address, "u", ["salary"], {"id": 1})
    assert [(x["before"], x["after"]) for c in changes for x in c["changes"]] == [
        (None, 1), (1, 5)]
    assert h.run(a, {"TransactionType": "SQLTransaction", "Statements": [
        _tables(h, "u", 2), {**_tables(h, "u", 1), "Raw": FIELDS},
        {"TransactionType": "SQLStatement", "OpType": 6, "Owner": a.address,
         "Tables": [{"Table": {"TableName": "u"}}], "Raw": [{"id": 1, "name": "y",
                                                            "salary": 7}]}]}).success
    changes = audit_table(h.ledger, a.address, "u", ["salary"], {"id": 1})
    assert [(x["before"], x["after"]) for c in changes for x in c["changes"]] == [(None, 7)]


@pytest.mark.parametrize("cut", [1, 40])
def test_a_dump_cut_in_its_last_line_resumes_with_whole_lines(sqlite_harness: Harness,
                                                               tmp_path: Path, cut: int) -> None:
    """A dump interrupted while writing its last line (before the newline, or mid-line)
    resumes without gluing two events into one line or losing the cut one."""
    h = sqlite_harness
    a = h.account()
    assert h.create(a, "t", FIELDS).success
    assert h.statement(a, 6, a, "t", [{"id": 1, "name": "x", "salary": 1}]).success
    out, whole = tmp_path / "t.jsonl", tmp_path / "whole.jsonl"
    assert dump_table(h.ledger, a.address, "t", out) == 2
    out.write_bytes(out.read_bytes()[:-cut])
    assert h.statement(a, 6, a, "t", [{"id": 2, "name": "y", "salary": 2}]).success
    assert dump_table(h.ledger, a.address, "t", out) == (1 if cut == 1 else 2)
    assert dump_table(h.ledger, a.address, "t", whole) == 3
    assert out.read_text() == whole.read_text()
    (tmp_path / "other.txt").write_text("a line\nnot a dump")
    with pytest.raises(BadField):
        dump_table(h.ledger, a.address, "t", tmp_path / "other.txt")
    assert (tmp_path / "other.txt").read_text() == "a line\nnot a dump"  # left alone
