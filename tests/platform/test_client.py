"""tablechain.Client against a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

import tablechain
from tablechain.crypto import generate_private_key
from tablechain.ledger.errors import (
    AssertFailed,
    InvalidTransaction,
    NotFound,
    PermissionDenied,
    RuleViolation,
    StrictModeMismatch,
    TableNotFound,
)
from tablechain.ledger.tables import RowConflict
from tablechain.platform.client import Client, ClientError, Statements, strict_pointer_after
from tablechain.platform.demo import SEED_FIELDS, SEED_RULE
from tablechain.platform.server import BackgroundServer

FIELDS = [{"field": "id", "type": "int", "PK": 1}, {"field": "name", "type": "varchar",
                                                       "length": 32},
          {"field": "age", "type": "int"}]


def ids(rows: list[dict[str, Any]]) -> list[int]:
    return [r["id"] for r in rows]


def test_tablechain_client_is_the_platform_client_and_import_stays_light() -> None:
    assert tablechain.Client is Client
    code = "import sys, tablechain; print('httpx' in sys.modules, 'sqlalchemy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False False"


def test_table_lifecycle(alice: Client, bob: Client) -> None:
    record = alice.create_table("life", FIELDS)
    assert record["result"] == "tesSUCCESS" and record["ledger_index"] >= 1
    assert alice.g_dbname(alice.address, "life") == record["receipt"]["details"]["NameInDB"]
    alice.insert("life", [{"id": 1, "name": "a", "age": 30}, {"id": 2, "name": "b", "age": 40}])
    assert alice.get(alice.address, "life") == [{"id": 1, "name": "a", "age": 30},
                                                {"id": 2, "name": "b", "age": 40}]
    done = alice.update("life", {"age": 31}, {"id": 1})
    assert done["receipt"]["details"]["affected"] == 1
    assert alice.get(alice.address, "life", [["age"], {"id": 1}]) == [{"age": 31}]
    alice.assert_("life", {"age": 31})
    with pytest.raises(ClientError) as exc:
        alice.assert_("life", {"age": 99})
    assert exc.value.code == AssertFailed.code

    with pytest.raises(ClientError) as exc:
        bob.get(alice.address, "life")
    assert exc.value.code == PermissionDenied.code
    with pytest.raises(ClientError) as exc:
        bob.insert("life", [{"id": 5}], owner=alice.address)
    assert exc.value.code == PermissionDenied.code
    alice.grant("life", bob.address, select=True, insert=True)
    assert alice.table_auth(alice.address, "life")["users"] == [
        {"user": bob.address, "select": True, "insert": True, "update": False, "delete": False}]
    bob.insert("life", [{"id": 5, "name": "bob", "age": 1}], owner=alice.address)
    assert ids(bob.get(alice.address, "life")) == [1, 2, 5]
    with pytest.raises(ClientError) as exc:
        bob.delete("life", {"id": 5}, owner=alice.address)
    assert exc.value.code == PermissionDenied.code

    assert alice.delete("life", {"id": 2})["receipt"]["details"]["affected"] == 1
    alice.rename("life", "life2")
    assert ids(alice.get(alice.address, "life2")) == [1, 5]
    with pytest.raises(ClientError) as exc:
        alice.get(alice.address, "life")
    assert exc.value.code == TableNotFound.code
    with pytest.raises(ClientError) as exc:
        bob.drop("life2")  # bob owns no such table
    assert exc.value.code == TableNotFound.code
    alice.drop("life2")
    with pytest.raises(ClientError):
        alice.table_info(alice.address, "life2")


def test_transaction_is_all_or_nothing(alice: Client) -> None:
    alice.transaction([Statements.create("acct", FIELDS),
                       Statements.insert("acct", [{"id": 1, "name": "x", "age": 1}])])
    assert ids(alice.get(alice.address, "acct")) == [1]
    with pytest.raises(ClientError) as exc:
        alice.transaction([Statements.insert("acct", [{"id": 2, "name": "y", "age": 2}]),
                           Statements.insert("acct", [{"id": 1, "name": "dup", "age": 3}])])
    assert exc.value.code == RowConflict.code
    assert ids(alice.get(alice.address, "acct")) == [1]


def test_seed_table_with_rule(alice: Client, bob: Client) -> None:
    alice.create_table("tableWithRule", SEED_FIELDS, SEED_RULE)
    alice.grant("tableWithRule", bob.address, select=True, insert=True, update=True,
                delete=True)
    record = bob.insert("tableWithRule", [{"id": 3, "age": 20, "name": "b"}],
                        owner=alice.address)
    rows = bob.get(alice.address, "tableWithRule")
    assert rows == [{"id": 3, "age": 20, "name": "b", "account": bob.address,
                     "txid": record["hash"]}]
    alice.insert("tableWithRule", [{"id": 1, "age": 50, "name": "a"}])
    assert ids(alice.get(alice.address, "tableWithRule")) == [3]  # Get: id >= 3
    with pytest.raises(ClientError) as exc:
        bob.update("tableWithRule", {"name": "z"}, {"id": 3}, owner=alice.address)
    assert exc.value.code == RuleViolation.code
    with pytest.raises(ClientError) as exc:
        bob.insert("tableWithRule", [{"id": 10 + i} for i in range(5)], owner=alice.address)
    assert exc.value.code == RuleViolation.code


def test_strict_mode_pointer_chain(alice: Client, bob: Client) -> None:
    alice.create_table("strict", FIELDS, strict=True)
    pointer = strict_pointer_after(None, FIELDS)
    assert alice.table_info(alice.address, "strict")["strict_pointer"] == pointer
    rows = [{"id": 1, "name": "s", "age": 1}]
    alice.insert("strict", rows, strict=True)
    pointer = strict_pointer_after(pointer, rows)
    assert alice.table_info(alice.address, "strict")["strict_pointer"] == pointer
    alice.grant("strict", bob.address, insert=True)  # grants do not move the pointer
    assert alice.table_auth(alice.address, "strict")["strict_pointer"] == pointer
    alice.update("strict", {"age": 2}, {"id": 1}, strict=True)
    pointer = strict_pointer_after(pointer, [{"age": 2}, {"id": 1}])
    assert alice.table_info(alice.address, "strict")["strict_pointer"] == pointer

    stale = {**Statements.insert("strict", [{"id": 2, "name": "t", "age": 3}]),
             "StrictMode": True, "TxCheckHash": strict_pointer_after(None, ["stale"])}
    with pytest.raises(ClientError) as exc:
        alice.send(stale)
    assert exc.value.code == StrictModeMismatch.code
    # a transaction chains its statements' pointers locally, including a create and a rename
    alice.transaction([Statements.create("strict2", FIELDS),
                       Statements.insert("strict2", [{"id": 1, "name": "a", "age": 1}]),
                       Statements.rename("strict2", "strict3"),
                       Statements.insert("strict3", [{"id": 2, "name": "b", "age": 2}]),
                       Statements.insert("strict", [{"id": 3, "name": "c", "age": 3}])],
                      strict=True)
    assert ids(alice.get(alice.address, "strict3")) == [1, 2]


def test_sequences_resync_when_another_client_uses_the_key(server: BackgroundServer) -> None:
    key = generate_private_key()
    one, two = Client(server.url, key), Client(server.url, key)
    one.create_table("seq", FIELDS)
    two.insert("seq", [{"id": 1, "name": "a", "age": 1}])  # two fetches sequence 2
    one.insert("seq", [{"id": 2, "name": "b", "age": 2}])  # one holds 2 locally: resyncs to 3
    two.insert("seq", [{"id": 3, "name": "c", "age": 3}])  # two holds 3: resyncs to 4
    assert ids(one.get(one.address, "seq")) == [1, 2, 3]
    assert one.account_info()["sequence"] == 4


def test_queued_submissions_keep_their_order(alice: Client) -> None:
    alice.create_table("burst", FIELDS)
    answers = [alice.insert("burst", [{"id": i, "name": "n", "age": i}], wait=False)
               for i in range(20)]
    assert all(a["engine_result"] == "tesSUCCESS" for a in answers)
    records = [alice.wait(a["hash"]) for a in answers]
    assert all(r["result"] == "tesSUCCESS" for r in records)
    assert len(alice.get(alice.address, "burst")) == 20


def test_client_errors(server: BackgroundServer, alice: Client) -> None:
    with pytest.raises(ClientError) as exc:
        alice.wait("00" * 32, timeout=0.2)
    assert exc.value.code == "timeout"
    with pytest.raises(ClientError) as exc:
        alice.tx("00" * 32)
    assert exc.value.code == NotFound.code
    with pytest.raises(ClientError) as exc:
        Client(server.url).create_table("x", FIELDS)
    assert exc.value.code == "noKey"
    with pytest.raises(ClientError) as exc:
        Statements.grant("t", alice.address, fly=True)
    assert exc.value.code == "invalidParams"
    with pytest.raises(ClientError) as exc:
        alice.create_table("bad name!", FIELDS)
    assert exc.value.code == InvalidTransaction.code
    with pytest.raises(ClientError) as exc:
        alice.insert("t", [{"id": 1.5}])
    assert exc.value.code == InvalidTransaction.code  # floats are not canonical JSON
    unreachable = Client("http://127.0.0.1:9", generate_private_key(), timeout=2)
    with pytest.raises(ClientError) as exc:
        unreachable.server_info()
    assert exc.value.code == "clientTransport"
    info = alice.server_info()
    assert alice.network_id == info["network_id"] and alice.hash_name == "sha256"
    assert alice.ledger(0)["ledger_index"] == 0


def test_national_suite(tmp_path: Any) -> None:
    from tablechain.platform.config import init_datadir, national_available, open_node
    from tablechain.platform.server import serve_in_thread

    assert national_available()  # SM2 ships with tablechain
    settings = init_datadir(tmp_path / "gm", national=True, max_block_wait_ms=5)
    with serve_in_thread(open_node(settings)) as srv:
        gm = Client(srv.url, generate_private_key("sm2"))
        assert gm.server_info()["suite"] == "national" and gm.hash_name == "sm3"
        gm.create_table("gm", FIELDS, strict=True)
        rows = [{"id": 1, "name": "sm", "age": 2}]
        gm.insert("gm", rows, strict=True)
        pointer = strict_pointer_after(strict_pointer_after(None, FIELDS, "sm3"), rows, "sm3")
        assert gm.table_info(gm.address, "gm")["strict_pointer"] == pointer
        assert gm.get(gm.address, "gm") == rows
        with pytest.raises(ClientError) as exc:
            Client(srv.url, generate_private_key()).create_table("x", FIELDS)
        assert exc.value.code == "temBAD_SIGNATURE"  # a secp256k1 key is not of this suite


def test_submit_many_batches_are_checked_together_and_answered_in_order(
    server: BackgroundServer, alice: Client
) -> None:
    alice.create_table("bulk", FIELDS)
    start = alice.resync_sequence()
    body = Statements.insert("bulk", [{"id": 0, "name": "n", "age": 0}], owner=alice.address)
    txs = [alice.sign({**body, "Raw": [{"id": i, "name": "n", "age": i}]}, start + i)
           for i in range(150)]  # two batches: 100 (verified by the worker processes) and 50
    txs[7] = {**txs[7], "TxnSignature": txs[8]["TxnSignature"]}  # forged
    checked: list[int] = []
    check_many = server.node.check_many

    def spy(batch: list[Any], trusted: bool = False) -> list[Any]:
        assert trusted  # the request was decoded by the strict decoder
        checked.append(len(batch))
        return check_many(batch, trusted)

    server.node.check_many = spy  # type: ignore[method-assign]
    try:
        answers = alice.submit_many(txs)
    finally:
        del server.node.check_many
    assert checked == [100, 50]  # each batch's signatures checked together, not one by one
    assert len(answers) == 150
    bad = answers[7]
    assert isinstance(bad, ClientError) and bad.code == "temBAD_SIGNATURE"
    # The forged one never entered the pool, so the account's later Sequences wait for it.
    later = answers[8:]
    assert all(isinstance(a, ClientError) and a.code == "terPRE_SEQ" for a in later)
    assert all(isinstance(a, dict) and a["engine_result"] == "tesSUCCESS" for a in answers[:7])
    assert [a["sequence"] for a in answers[:7]] == list(range(start, start + 7))
    for a in answers[:7]:
        assert isinstance(a, dict) and alice.wait(a["hash"])["result"] == "tesSUCCESS"
    assert sorted(r["id"] for r in alice.get(alice.address, "bulk")) == list(range(7))


def test_verified_tx_proves_an_outcome_and_refuses_a_lie(alice: Client,
                                                         server: BackgroundServer) -> None:
    record = alice.create_table("proved", FIELDS)
    genesis = server.node.ledger.genesis
    block_hash = alice.ledger(record["ledger_index"])["ledger_hash"]
    proven = alice.verified_tx(record["hash"], genesis, trusted_block_hash=block_hash)
    assert proven["result"] == "tesSUCCESS" and proven["block_hash"] == block_hash
    # A single node certifies nothing: without a trusted block hash there is no anchor.
    with pytest.raises(ClientError) as no_anchor:
        alice.verified_tx(record["hash"], genesis)
    assert no_anchor.value.code == "proofInvalid"
    # A node that reports another outcome is caught.
    honest = alice.tx_proof

    def lying(tx_hash: str) -> dict[str, Any]:
        proof = honest(tx_hash)
        proof["receipt"]["result"] = "tefBAD_AUTH_NO"
        return proof

    alice.tx_proof = lying  # type: ignore[method-assign]
    with pytest.raises(ClientError) as lie:
        alice.verified_tx(record["hash"], genesis, trusted_block_hash=block_hash)
    assert lie.value.code == "proofInvalid"
    with pytest.raises(ClientError) as unknown:
        honest("ab" * 32)
    assert unknown.value.code == "txnNotFound"
