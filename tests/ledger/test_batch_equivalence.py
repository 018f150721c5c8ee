"""Batched execution of inserts gives exactly what one-by-one execution gives.

Runs of plain inserts take a fast path (one lookup per table and signer, one ``executemany``,
Sequences and strict-mode pointers written once per run) and fall back to the general path
for anything unusual. These tests execute the same random blocks twice, once with batching
and once with it switched off, and require the same receipts, state root and rows.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tablechain.ledger.chain import Genesis, Ledger
from tablechain.ledger.execution import ExecutorRegistry, TableExecutor
from tablechain.ledger.transactions import parse_transaction, sign_transaction
from tests.ledger.conftest import Account

NET = 7
PLAIN = [
    {"field": "id", "type": "int", "PK": 1},
    {"field": "name", "type": "varchar", "length": 8},
    {"field": "n", "type": "int", "AI": 1},
    {"field": "note", "type": "varchar", "length": 70},
]
RULED = [
    {"field": "id", "type": "int", "PK": 1},
    {"field": "account", "type": "varchar", "length": 64},
]
RULE = {"Insert": {"Condition": {"account": "$account"}}}


class _OneByOne(TableExecutor):
    @staticmethod
    def batchable(tx: Any) -> bool:
        return False


def _ledger(url: str, batched: bool) -> Ledger:
    genesis = Genesis(network_id=NET)
    if batched:
        return Ledger(url, genesis)
    registry = ExecutorRegistry()
    for name in ("TableListSet", "SQLStatement", "SQLTransaction"):
        registry.register(name, _OneByOne())
    return Ledger(url, genesis, registry)


def _run(url: str, batched: bool, blocks: list[list[dict]]) -> tuple[list, list, dict]:
    ledger = _ledger(url, batched)
    try:
        headers, receipts = [], []
        for i, block in enumerate(blocks):
            txs = [parse_transaction(t, ledger.suite, NET) for t in block]
            committed = ledger.execute(txs, 1000 * (i + 1), "0x" + "11" * 20).commit()
            headers.append(committed.header)
            receipts.append([(r.result, dict(r.details)) for r in committed.receipts])
        owner = blocks[0][0]["Account"] if "Account" in blocks[0][0] else None
        tables = {
            name: ledger.read(owner, name, [[]], owner) for name in ("plain", "ruled")
        }
        return headers, receipts, tables
    finally:
        ledger.close()


def _setup(a: Account, b: Account) -> list[dict]:
    def tx(fields: dict) -> dict:
        a.sequence += 1
        return sign_transaction({"NetworkID": NET, "Sequence": a.sequence, **fields}, a.key)

    return [
        tx({"TransactionType": "TableListSet", "OpType": 1,
            "Tables": [{"Table": {"TableName": "plain"}}], "Raw": PLAIN}),
        tx({"TransactionType": "TableListSet", "OpType": 1, "OperationRule": RULE,
            "Tables": [{"Table": {"TableName": "ruled"}}], "Raw": RULED}),
        tx({"TransactionType": "TableListSet", "OpType": 11, "User": b.address,
            "Tables": [{"Table": {"TableName": "plain"}}], "Raw": [{"insert": True}]}),
        tx({"TransactionType": "TableListSet", "OpType": 11, "User": b.address,
            "Tables": [{"Table": {"TableName": "ruled"}}], "Raw": [{"insert": True}]}),
    ]


row = st.fixed_dictionaries(
    {"id": st.integers(0, 6)},
    optional={
        "name": st.sampled_from(["x", "yy", "toolongname", 5]),
        "n": st.integers(-2, 3),
        "bogus": st.just(1),
        "account": st.sampled_from(["0xnobody"]),
    },
)
step = st.tuples(
    st.integers(0, 2),  # signer: owner, granted, stranger
    st.sampled_from(["plain", "plain", "plain", "ruled", "missing"]),
    st.lists(row, min_size=1, max_size=3),
    st.sampled_from(["next", "next", "next", "next", "skip", "replay"]),
    st.sampled_from([None, None, "note"]),  # AutoFillField
    st.booleans(),  # strict mode (with a stale TxCheckHash)
)


def _statement(signer: Account, owner: Account, spec: tuple) -> dict:
    _, table, rows, nonce, auto, strict = spec
    if nonce == "next":
        signer.sequence += 1
        seq = signer.sequence
    elif nonce == "skip":
        seq = signer.sequence + 2
    else:
        seq = max(signer.sequence, 1)
    fields: dict[str, Any] = {"TransactionType": "SQLStatement", "OpType": 6,
                              "Owner": owner.address, "Tables": [{"Table": {"TableName": table}}],
                              "Raw": rows}
    if auto:
        fields["AutoFillField"] = auto
    if strict:
        fields["StrictMode"] = True
        fields["TxCheckHash"] = "00" * 32
    return sign_transaction({"NetworkID": NET, "Sequence": seq, **fields}, signer.key)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(step, min_size=1, max_size=12), min_size=1, max_size=3))
def test_batched_inserts_equal_one_by_one(tmp_path_factory, blocks_spec):
    a, b, c = Account(), Account(), Account()
    blocks = [_setup(a, b)]
    seen: list[dict] = []
    for spec_block in blocks_spec:
        block: list[dict] = []
        for s in spec_block:
            tx = _statement((a, b, c)[s[0]], a, s)
            if tx not in seen:  # the chain never carries one transaction twice
                seen.append(tx)
                block.append(tx)
        if block:
            blocks.append(block)
    d = tmp_path_factory.mktemp("eq")
    one = _run(f"sqlite:///{d / 'batched.db'}", True, blocks)
    two = _run(f"sqlite:///{d / 'single.db'}", False, blocks)
    assert one[1] == two[1]  # receipts: codes and details
    assert one[0] == two[0]  # headers: state roots, receipt roots
    assert one[2] == two[2]  # rows


def test_batched_inserts_equal_one_by_one_on_every_backend(db_url, tmp_path):
    a, b, c = Account(), Account(), Account()
    specs = [
        (0, "plain", [{"id": 1, "name": "x"}], "next", "note", False),
        (1, "plain", [{"id": 2}, {"id": 3, "n": 9}], "next", None, False),
        (2, "plain", [{"id": 4}], "next", None, False),  # no grant
        (1, "ruled", [{"id": 1}], "next", None, False),  # rule fills the account
        (0, "plain", [{"id": 5, "name": "toolongname"}], "next", None, False),
        (0, "plain", [{"id": 6}], "skip", None, False),
        (0, "plain", [{"id": 7}], "next", None, True),  # stale strict-mode hash
        (1, "missing", [{"id": 8}], "next", None, False),
        (0, "plain", [{"id": 9, "bogus": 1}], "next", None, False),
        (1, "plain", [{"id": 10}], "next", "note", False),
    ]
    replayed = [  # a duplicate key: the batch cannot tell whose, and replays one by one
        (1, "plain", [{"id": 11}], "next", None, False),
        (1, "plain", [{"id": 1}], "next", None, False),
    ]
    blocks = [_setup(a, b)] + [
        [_statement((a, b, c)[s[0]], a, s) for s in group] for group in (specs, replayed)
    ]
    expected = _run(f"sqlite:///{tmp_path / 'single.db'}", False, blocks)
    got = _run(db_url, True, blocks)
    assert got[1] == expected[1]
    assert got[0] == expected[0]
    assert got[2] == expected[2]
