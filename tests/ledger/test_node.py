"""The single-validator node: admission, block cutting, events, bad input."""

from __future__ import annotations

import json

import pytest

from tablechain.crypto import address_to_text, generate_private_key
from tablechain.errors import TablechainError
from tablechain.ledger.chain import Genesis
from tablechain.ledger.node import Node, NodeConfig
from tablechain.ledger.transactions import MAX_TX_BYTES, sign_transaction
from tests.ledger.conftest import force_into_pool, lose_commit_acks

FIELDS = [{"field": "id", "type": "int", "PK": 1}, {"field": "name", "type": "varchar", "length": 32}]


@pytest.fixture
def node(tmp_path):
    n = Node(f"sqlite:///{tmp_path / 'node.db'}", Genesis(network_id=3, max_block_txs=50,
                                                         max_block_wait_ms=20),
             generate_private_key(), NodeConfig(mempool_size=500))
    yield n
    n.stop()


def tx(key, seq, **fields):
    return sign_transaction({"NetworkID": 3, "Sequence": seq, **fields}, key)


def create(key, seq=1, name="t"):
    return tx(key, seq, TransactionType="TableListSet", OpType=1,
              Tables=[{"Table": {"TableName": name}}], Raw=FIELDS)


def insert(key, seq, i, owner=None):
    return tx(key, seq, TransactionType="SQLStatement", OpType=6,
              Owner=owner or address_to_text(key.address()),
              Tables=[{"Table": {"TableName": "t"}}], Raw=[{"id": i, "name": f"n{i}"}])


def test_blocks_are_cut_by_count_and_time_and_never_empty(node):
    key = generate_private_key()
    node.submit(create(key))
    assert node.produce_block().header.tx_count == 1
    assert node.produce_block() is None  # nothing waiting: no empty block
    for i in range(120):
        node.submit(insert(key, i + 2, i))
    sizes = []
    while (b := node.produce_block()) is not None:
        sizes.append(b.header.tx_count)
    assert sizes == [50, 50, 20]
    node.start()
    last = node.submit(insert(key, 122, 500))
    record = node.wait_for(last.hash_hex, timeout=10)
    assert record["result"] == "tesSUCCESS"
    assert node.ledger.height == 5


def test_events_reach_subscribers(node):
    key = generate_private_key()
    events = []
    node.subscribe(events.append)
    blocks = []
    node.on_commit(lambda block: 1 / 0)  # a failing listener harms nobody else
    node.on_commit(blocks.append)
    t = node.submit(create(key))
    node.produce_block()
    bad = node.submit(tx(key, 2, TransactionType="SQLStatement", OpType=6,
                         Owner=address_to_text(key.address()), Tables=[{"Table": {"TableName": "nope"}}],
                         Raw=[{"id": 1}]))
    node.produce_block()
    kinds = [(e.kind, e.status, e.tx_hash) for e in events]
    assert ("singleTransaction", "validate_success", t.hash_hex) in kinds
    assert ("singleTransaction", "db_success", t.hash_hex) in kinds
    assert ("table", "db_success", t.hash_hex) in kinds
    assert ("singleTransaction", "validate_fail", bad.hash_hex) in kinds
    failed = [e for e in events if e.tx_hash == bad.hash_hex and e.status == "db_error"][0]
    assert failed.to_json()["result"] == "tefTABLE_NOTEXIST"
    node.submit(insert(key, 3, 7))
    last = node.produce_block()
    assert [b.header.height for b in blocks] == [1, 2, 3] and blocks[-1] is last
    assert [tx.hash_hex for tx in blocks[0].transactions] == [t.hash_hex]


def expect_code(node, payload, code, size=None):
    before = (node.ledger.height, len(node.mempool))
    with pytest.raises(TablechainError) as err:
        if isinstance(payload, bytes):
            node.submit_blob(payload)
        else:
            node.submit(payload, size)
    assert err.value.code == code, err.value
    assert (node.ledger.height, len(node.mempool)) == before
    return err.value


def test_bad_input_gets_stable_codes_and_changes_nothing(node):
    key = generate_private_key()
    good = create(key)
    expect_code(node, b"{not json", "temMALFORMED")
    expect_code(node, b"\xff\xfe", "temMALFORMED")
    expect_code(node, b"[" * 50_000 + b"]" * 50_000, "temMALFORMED")
    expect_code(node, [], "temMALFORMED")
    expect_code(node, {**good, "Bogus": 1}, "temMALFORMED")
    expect_code(node, {k: v for k, v in good.items() if k != "Sequence"}, "temMALFORMED")
    expect_code(node, {**good, "Sequence": "1"}, "temMALFORMED")
    expect_code(node, {**good, "Sequence": True}, "temMALFORMED")
    expect_code(node, {**good, "OpType": 99}, "temMALFORMED")
    for tables in (
        [{"Table": {"TableName": "t", "Extra": 1}}],
        [{"Table": {"TableName": "t"}, "More": {}}],
        [{}],
        ["t"],
        [{"Table": "t"}],
        [{"Table": {"TableName": "t", "NameInDB": "NOT-HEX"}}],
        [{"Table": {"NameInDB": "ab"}}],
        [{"Table": {"TableName": "t"}}, {"Table": {"TableName": "u"}}],
    ):
        expect_code(node, {**good, "Tables": tables}, "temMALFORMED")
    expect_code(node, {**good, "TransactionType": "Nope"}, "temMALFORMED")
    expect_code(node, {**good, "NetworkID": 4}, "temMALFORMED")
    expect_code(node, {**good, "Raw": [{"field": "x", "type": "int"}]}, "temBAD_SIGNATURE")
    expect_code(node, {**good, "TxnSignature": "zz"}, "temBAD_SIGNATURE")
    other = generate_private_key()
    expect_code(node, {**good, "SigningPubKey": other.public_key.to_bytes().hex()}, "temBAD_SIGNATURE")
    big = tx(key, 1, TransactionType="SQLStatement", OpType=6, Owner=address_to_text(key.address()),
             Tables=[{"Table": {"TableName": "t"}}], Raw=[{"id": 1, "name": "x" * (MAX_TX_BYTES + 10)}])
    expect_code(node, big, "temTOO_LARGE")
    expect_code(node, json.dumps({**big, "Raw": [{"x" * (MAX_TX_BYTES + 9000): 1}]}).encode(), "temTOO_LARGE")
    expect_code(node, {**good, "Tables": [{"Table": {"TableName": "a'; DROP TABLE tc_kv;--"}}]},
                "temMALFORMED")
    # Replay and skipped nonces.
    node.submit(good)
    expect_code(node, good, "tefALREADY")
    expect_code(node, insert(key, 3, 1), "terPRE_SEQ")
    expect_code(node, create(key, 1, "u"), "tefPAST_SEQ")
    node.produce_block()
    expect_code(node, good, "tefPAST_SEQ")
    [again] = node.submit_many([good])
    assert getattr(again, "code", None) == "tefPAST_SEQ" and len(node.mempool) == 0
    # The node keeps serving.
    node.submit(insert(key, 2, 1))
    assert node.produce_block().receipts[0].success


def test_mempool_backpressure(tmp_path):
    n = Node(f"sqlite:///{tmp_path / 'n.db'}", Genesis(network_id=3), generate_private_key(),
             NodeConfig(mempool_size=5))
    keys = [generate_private_key() for _ in range(6)]
    for k in keys[:5]:
        n.submit(create(k))
    err = expect_code(n, create(keys[5]), "telQUEUE_FULL")
    assert "retry" in err.message
    n.produce_block()
    n.submit(create(keys[5]))
    n.stop()


def test_one_account_cannot_fill_the_pool(tmp_path):
    """Past its per-account limit an account is told to retry; others still get in."""
    n = Node(f"sqlite:///{tmp_path / 'n.db'}", Genesis(network_id=3), generate_private_key(),
             NodeConfig(mempool_size=50, mempool_per_account=4))
    busy, other = generate_private_key(), generate_private_key()
    n.submit(create(busy))
    n.produce_block()
    results = n.submit_many([insert(busy, i + 2, i) for i in range(6)])
    assert [getattr(r, "code", None) for r in results] == [None] * 4 + ["telQUEUE_FULL"] * 2
    assert "per account" in results[4].message
    n.submit(create(other))  # another account is not shut out
    assert len(n.produce_block().transactions) == 5
    n.submit(insert(busy, 6, 4))  # room again once its transactions are in a block
    n.stop()


def test_a_dead_verification_worker_costs_no_batch(node):
    """A worker killed (say, out of memory) breaks a process pool for good: the batch is
    checked in the node instead, and the next batch gets a new pool."""
    import os
    import signal

    key = generate_private_key()
    node.submit(create(key))
    node.produce_block()
    node.verifier.workers = 2
    node.warm_up()
    pool = node.verifier._pool
    assert pool is not None
    for pid in list(pool._processes):  # type: ignore[union-attr]
        os.kill(pid, signal.SIGKILL)
    first = node.submit_many([insert(key, i + 2, i) for i in range(70)])
    assert not [r for r in first if isinstance(r, TablechainError)]
    second = node.submit_many([insert(key, i + 72, i + 70) for i in range(70)])
    assert not [r for r in second if isinstance(r, TablechainError)]
    assert node.verifier._pool is not None and node.verifier._pool is not pool


def test_submit_many_verifies_in_parallel_and_reports_each(node):
    key = generate_private_key()
    node.submit(create(key))
    node.produce_block()
    batch = [insert(key, i + 2, i) for i in range(80)]
    batch[10] = {**batch[10], "TxnSignature": batch[11]["TxnSignature"]}
    results = node.submit_many(batch)
    assert isinstance(results[10], TablechainError) and results[10].code == "temBAD_SIGNATURE"
    # Everything after the bad one is a skipped nonce now.
    assert all(not isinstance(r, TablechainError) for r in results[:10])
    assert all(isinstance(r, TablechainError) and r.code == "terPRE_SEQ" for r in results[11:])
    node.produce_block()
    assert node.ledger.account_sequence(address_to_text(key.address())) == 11


def test_hostile_conditions_fail_cleanly(node):
    key = generate_private_key()
    owner = address_to_text(key.address())
    node.submit(create(key))
    node.produce_block()
    deep: dict = {"id": 1}
    for _ in range(40):
        deep = {"$and": [deep]}
    too_deep = tx(key, 2, TransactionType="SQLStatement", OpType=9, Owner=owner,
                  Tables=[{"Table": {"TableName": "t"}}], Raw=[deep])
    node.submit(too_deep)  # fits the JSON limits; the query language refuses it at execution
    huge_in = tx(key, 3, TransactionType="SQLStatement", OpType=9, Owner=owner,
                 Tables=[{"Table": {"TableName": "t"}}], Raw=[{"id": {"$in": list(range(50_000))}}])
    node.submit(huge_in)
    block = node.produce_block()
    codes = [r.result for r in block.receipts]
    assert codes == ["temQUERY_TOO_COMPLEX", "temQUERY_TOO_COMPLEX"], codes
    # Thousands deep is refused before anything parses it.
    nested = "[" * 5000 + "]" * 5000
    expect_code(node, ('{"TransactionType":"SQLStatement","Raw":' + nested + "}").encode(), "temMALFORMED")
    node.submit(insert(key, 4, 1))
    assert node.produce_block().receipts[0].success


def test_mempool_finds_a_queued_transaction_by_its_canonical_encoding(node):
    from tablechain.crypto import canonical_json

    key = generate_private_key()
    first = node.submit(create(key))
    second = node.submit(insert(key, 2, 1))
    assert node.mempool.by_encoding(canonical_json(first.json)) is first
    assert node.mempool.by_encoding(canonical_json(second.json)) is second
    assert node.mempool.by_encoding(canonical_json(insert(key, 3, 2))) is None
    node.produce_block()
    assert node.mempool.by_encoding(first.encoded) is None
    assert node.mempool.by_encoding(second.encoded) is None
    assert len(node.mempool) == 0


def test_committed_among_finds_exactly_the_committed_hashes(harness):
    """``existing`` (precompiled IN of 100 binds, the last chunk padded) on every backend."""
    owner = harness.account()
    receipts = [harness.create(owner, "t", [{"field": "id", "type": "int", "PK": 1}])]
    receipts += [harness.statement(owner, 6, owner, "t", [{"id": i}]) for i in range(3)]
    committed = [r.tx_hash for r in receipts]
    others = [f"{i:064x}" for i in range(257)]  # three chunks: 100, 100, 57 padded
    assert harness.ledger.committed_among(committed + others) == set(committed)
    assert harness.ledger.committed_among(others[:1] + committed[:1]) == set(committed[:1])
    assert harness.ledger.committed_among([]) == set()


def test_addresses_and_table_names_are_checked_exactly():
    from tablechain.ledger.errors import InvalidTransaction
    from tablechain.ledger.transactions import check_address, check_table_name

    assert check_address("0x" + "AB" * 20, "Owner") == "0x" + "ab" * 20
    for bad in ("0x" + "ab" * 19, "0x" + "ab " * 13 + "a", "0X" + "ab" * 20, "0x" + "ab" * 20 + "\n",
                "0x" + "gg" * 20, 42, None):
        with pytest.raises(InvalidTransaction):
            check_address(bad, "Owner")
    assert check_table_name("a.b-c_D9", "TableName") == "a.b-c_D9"
    for bad in ("", "a b", "a;drop", "t\n", "tä", "a" * 65, 5):
        with pytest.raises(InvalidTransaction):
            check_table_name(bad, "TableName")


def test_a_parsed_transactions_encoding_is_its_canonical_json():
    """``encoded`` is filled at parse time from the signed bytes where that is exact; either
    way it equals the canonical JSON of the whole transaction."""
    from tablechain.crypto import canonical_json
    from tablechain.ledger.transactions import CryptoSuite, parse_transaction

    key = generate_private_key()
    owner = address_to_text(key.address())
    samples = [
        create(key),
        insert(key, 2, 7),
        tx(key, 3, TransactionType="TableListSet", OpType=11, Tables=[{"Table": {"TableName": "t"}}],
           User="everyone", Raw=[{"select": True}]),  # "User" sorts after "TxnSignature"
        tx(key, 4, TransactionType="SQLStatement", OpType=6, Owner=owner,
           Tables=[{"Table": {"TableName": "t"}}], Raw=[{"id": 1, "name": "é\"\n\u2028"}]),
    ]
    spaced = dict(samples[1])
    spaced["TxnSignature"] = " ".join(spaced["TxnSignature"][i:i + 2]
                                      for i in range(0, len(spaced["TxnSignature"]), 2))
    samples.append(spaced)  # hex with spaces: still a signature, encoded the long way
    for sample in samples:
        parsed = parse_transaction(sample, CryptoSuite("international"), 3)
        assert parsed.encoded == canonical_json(sample)
    assert "encoded" in parse_transaction(samples[1], CryptoSuite("international"), 3).__dict__


def test_block_production_survives_a_committed_transaction_left_in_the_pool(node):
    """A pool can come to hold a committed transaction (a resubmission racing the commit of the
    block that carries it, admission having refused it there so its Sequence was kept): block
    production leaves it out instead of failing on it forever."""
    key = generate_private_key()
    good = node.submit(create(key))
    node.produce_block()
    force_into_pool(node.mempool, good)
    assert node.produce_block() is None  # no empty block
    assert len(node.mempool) == 0
    force_into_pool(node.mempool, good)
    node.submit(insert(key, 2, 1))
    block = node.produce_block()
    assert [tx.sequence for tx in block.transactions] == [2] and block.receipts[0].success
    assert len(node.mempool) == 0


def test_a_failure_quoting_a_large_transaction_still_commits_on_every_backend(db_url):
    """An error message may quote the transaction (here 3,000 unknown field names, ~150 KB):
    its receipt keeps a bounded message, so the block stores on every backend (MariaDB's TEXT
    holds 64 KiB) and the node goes on; before, every block attempt failed on it."""
    from tablechain.ledger.execution import MAX_RECEIPT_MESSAGE

    n = Node(db_url, Genesis(network_id=3), generate_private_key(), NodeConfig())
    try:
        key = generate_private_key()
        n.submit(create(key))
        assert n.produce_block().receipts[0].success
        row = {f"f{i:06d}" + "x" * 40: 1 for i in range(3000)}
        n.submit(tx(key, 2, TransactionType="SQLStatement", OpType=6,
                    Owner=address_to_text(key.address()), Tables=[{"Table": {"TableName": "t"}}],
                    Raw=[row]))
        [receipt] = n.produce_block().receipts
        assert not receipt.success, receipt.result
        assert MAX_RECEIPT_MESSAGE < len(receipt.message) < MAX_RECEIPT_MESSAGE + 60
        assert "characters in all" in receipt.message
        assert len(n.mempool) == 0
        n.submit(insert(key, 3, 1))
        assert n.produce_block().receipts[0].success
        stored = n.ledger.block(n.ledger.height - 1)["receipts"][0]
        assert stored["message"] == receipt.message
    finally:
        n.stop()


def test_an_admission_check_that_raises_refuses_one_transaction_not_the_block(tmp_path):
    """Whatever an admission hook raises at execution, the transaction is refused with a code
    (its Sequence kept, as for any refusal by admission) and the rest of the block commits."""

    class Flaky:
        def __init__(self, bad: str) -> None:
            self.bad = bad

        def check(self, ctx, tx) -> None:
            if tx.account == self.bad:
                raise RuntimeError("a bug in a hook")

        def check_submissions(self, ledger, txs):
            return [None for _ in txs]

    good_key, bad_key = generate_private_key(), generate_private_key()
    n = Node(f"sqlite:///{tmp_path / 'n.db'}", Genesis(network_id=3), generate_private_key(),
             NodeConfig(), admission=Flaky(address_to_text(bad_key.address())))
    try:
        n.submit(create(good_key))
        n.produce_block()
        n.submit(tx(good_key, 2, TransactionType="TableListSet", OpType=11,
                    Tables=[{"Table": {"TableName": "t"}}], User="everyone",
                    Raw=[{"insert": True}]))
        n.produce_block()
        owner = address_to_text(good_key.address())
        n.submit_many([insert(good_key, 3, 1), insert(bad_key, 1, 2, owner=owner),
                       insert(good_key, 4, 3)])
        block = n.produce_block()
        assert [r.result for r in block.receipts] == ["tesSUCCESS", "tefEXCEPTION", "tesSUCCESS"]
        assert n.ledger.account_sequence(address_to_text(bad_key.address())) == 0
        assert [row["id"] for row in n.ledger.read(owner, "t", [[]], owner)] == [1, 3]
    finally:
        n.stop()


def test_stored_values_reads_exactly_the_stored_keys(harness):
    """``stored_value`` (one state key) and ``stored_values`` (the state prefetch: precompiled
    IN of 100 binds, the last chunk padded) on every backend: present keys with their exact
    bytes, absent ones left out."""
    from tablechain.ledger.storage import insert_many, stored_value, stored_values

    kv = harness.ledger.t.kv
    rows = [{"key": f"test/{i:04d}", "value": bytes([i % 256]) * (i % 7 + 1)} for i in range(250)]
    with harness.ledger.engine.begin() as conn:
        insert_many(conn, kv, rows)
    wanted = [f"test/{i:04d}" for i in range(0, 300, 2)] + ["test/nope", "test/0001"]
    with harness.ledger.engine.connect() as conn:
        found = stored_values(conn, kv.c.key, kv.c.value, wanted)
        assert stored_values(conn, kv.c.key, kv.c.value, []) == {}
        assert stored_value(conn, kv.c.key, kv.c.value, "test/0002") == rows[2]["value"]
        assert stored_value(conn, kv.c.key, kv.c.value, "test/nope") is None
        assert stored_value(conn, kv.c.key, kv.c.value, "TEST/0002") is None  # exact keys
    expected = {r["key"]: r["value"] for r in rows if r["key"] in set(wanted)}
    assert found == expected and all(type(v) is bytes for v in found.values())


def test_a_commit_that_reports_failure_after_landing_does_not_wedge_the_node(node, monkeypatch):
    """A database connection lost while it acknowledges COMMIT raises, though the block may have
    landed. The node re-reads its head then, as a restart would: it goes on from the block in
    the database (not above the one it had, which failed every later block on its height)."""
    key = generate_private_key()
    node.submit(create(key))
    lose_commit_acks(monkeypatch)
    with pytest.raises(ConnectionResetError):
        node.produce_block()
    monkeypatch.undo()
    node.submit(insert(key, 2, 1))
    block = node.produce_block()
    assert block is not None and block.header.height == 2
    assert [t.sequence for t in block.transactions] == [2]
    assert node.ledger.height == 2
    assert len(node.ledger.read(address_to_text(key.address()), "t", [[]],
                                address_to_text(key.address()))) == 1


def test_sqlite_commits_are_durable_across_power_loss(tmp_path):
    """WAL with synchronous=FULL: each commit fsyncs the log (NORMAL survives a process crash,
    not a power loss, which could take back blocks clients were told were committed)."""
    from tablechain.ledger.storage import create_ledger_engine

    engine = create_ledger_engine(f"sqlite:///{tmp_path / 'd.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    finally:
        engine.dispose()
