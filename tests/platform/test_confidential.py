"""Confidential tables end to end: a real node over HTTP, clients holding the keys.

Validators keep only ciphertext: the sealed field definitions, sealed batches of rows and each
account's wrapped Token. The tests check that a key holder reads the rows back, that what the
node stores never contains them in clear, and that the operations validators cannot perform on
ciphertext are refused with a stable code and change nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tablechain.crypto import generate_private_key
from tablechain.platform.client import Client, ClientError
from tablechain.platform.server import BackgroundServer

FIELDS = [
    {"field": "id", "type": "int", "PK": 1},
    {"field": "patient", "type": "varchar", "length": 64},
    {"field": "diagnosis", "type": "text"},
]
SECRET = "hypertension-stage-2-confidential-marker"


def _db_bytes(server: BackgroundServer) -> bytes:
    """Everything the node's SQLite files hold (database and write-ahead log)."""
    path = Path(server.node.ledger.url.removeprefix("sqlite:///"))
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def test_owner_and_grantee_read_rows_the_node_never_sees(
    server: BackgroundServer, alice: Client, bob: Client
) -> None:
    created = alice.create_confidential_table("records", FIELDS)
    assert created["receipt"]["details"]["confidential"] is True
    alice.insert_confidential("records", [{"id": 1, "patient": "p1", "diagnosis": SECRET}])
    alice.insert_confidential("records", [{"id": 2, "patient": "p2", "diagnosis": "ok"},
                                          {"id": 3, "patient": "p3", "diagnosis": "ok"}])
    assert alice.confidential_fields(alice.address, "records") == FIELDS
    assert [r["id"] for r in alice.get_confidential(alice.address, "records")] == [1, 2, 3]

    # Bob has no grant: the node refuses the read, and he holds no Token anyway.
    with pytest.raises(ClientError) as denied:
        bob.get(alice.address, "records")
    assert denied.value.code == "tefBAD_AUTH_NO"
    with pytest.raises(ClientError) as no_token:
        bob.confidential_key(alice.address, "records")
    assert no_token.value.code == "tefBAD_AUTH_NO"

    alice.grant_confidential("records", bob.address, bob._key().public_key,
                             select=True, insert=True)
    rows = bob.get_confidential(alice.address, "records")
    assert rows[0] == {"id": 1, "patient": "p1", "diagnosis": SECRET}
    bob.insert_confidential("records", [{"id": 4, "patient": "p4", "diagnosis": "flu"}],
                            owner=alice.address)
    records = alice.get_confidential(alice.address, "records", records=True)
    assert [r["account"] for r in records] == [alice.address] * 2 + [bob.address]
    # The records are queryable by their clear columns (who inserted, which transaction).
    mine = alice.get_confidential(alice.address, "records", [[], {"account": bob.address}])
    assert mine == [{"id": 4, "patient": "p4", "diagnosis": "flu"}]

    # What the node keeps: ciphertext. Neither the rows nor the field names appear in clear.
    stored = _db_bytes(server)
    assert alice.address.encode() in stored  # the reader sees the clear columns
    assert SECRET.encode() not in stored
    assert b"diagnosis" not in stored
    raw_records = alice.get(alice.address, "records")
    assert set(raw_records[0]) == {"tx_hash", "account", "sealed"}


def test_what_validators_cannot_do_on_ciphertext_is_refused(
    server: BackgroundServer, alice: Client, bob: Client
) -> None:
    alice.create_confidential_table("vault", FIELDS)
    alice.insert_confidential("vault", [{"id": 1, "patient": "p", "diagnosis": "x"}])
    head = alice.ledger_closed()["ledger_index"]
    for call in (
        lambda: alice.update("vault", {"diagnosis": "y"}, {"id": 1}),
        lambda: alice.delete("vault"),
        lambda: alice.assert_("vault", {"id": 1}),
    ):
        with pytest.raises(ClientError) as refused:
            call()
        assert refused.value.code == "tefTABLE_CONFIDENTIAL"
    # A grant to everyone cannot carry one Token per account; a grant without a Token leaves
    # the grantee unable to read, so it is refused too.
    with pytest.raises(ClientError) as everyone:
        alice.grant("vault", "everyone", select=True)
    assert everyone.value.code == "tefTABLE_CONFIDENTIAL"
    with pytest.raises(ClientError) as tokenless:
        alice.grant("vault", bob.address, select=True)
    assert tokenless.value.code == "tefTABLE_CONFIDENTIAL"
    # A clear-text insert is not a sealed record.
    with pytest.raises(ClientError) as clear:
        alice.insert("vault", [{"id": 2, "patient": "p", "diagnosis": "x"}])
    assert clear.value.code == "temBAD_FIELD"
    # Nothing changed: the one record is still the only one; failed transactions are recorded.
    assert alice.ledger_closed()["ledger_index"] > head
    assert [r["id"] for r in alice.get_confidential(alice.address, "vault")] == [1]
    assert alice.table_info(alice.address, "vault")["grants"] == {}


def test_a_grant_for_another_key_is_refused_by_the_client_and_tokens_are_per_account(
    alice: Client, bob: Client
) -> None:
    alice.create_confidential_table("notes", FIELDS)
    carol_key = generate_private_key()
    with pytest.raises(ClientError) as wrong:
        alice.grant_confidential("notes", bob.address, carol_key.public_key, select=True)
    assert wrong.value.code == "clientBadPublicKey"
    # Bob's Token opens only with Bob's key.
    alice.grant_confidential("notes", bob.address, bob._key().public_key.to_bytes().hex(),
                             select=True)
    token = alice.table_info(alice.address, "notes")["grants"][bob.address]["token"]
    from tablechain.crypto import CryptoError
    from tablechain.crypto.envelope import unwrap_key

    with pytest.raises(CryptoError):
        unwrap_key(bytes.fromhex(token), carol_key)
    # Revoking select and insert drops the Token; re-granting update alone needs none.
    alice.grant("notes", bob.address, select=False)
    assert "token" not in alice.table_info(alice.address, "notes")["grants"][bob.address]
    # The client checks rows against the sealed definitions (validators cannot).
    with pytest.raises(ClientError) as bad_row:
        alice.insert_confidential("notes", [{"id": "one"}])
    assert bad_row.value.code == "temBAD_VALUE_TYPE"
    with pytest.raises(ClientError) as unknown:
        alice.insert_confidential("notes", [{"nope": 1}])
    assert unknown.value.code == "temBAD_FIELD"



def test_field_level_encryption_in_an_ordinary_table(alice: Client, bob: Client) -> None:
    """One column sealed for chosen readers; the other columns stay queryable in clear."""
    fields = [{"field": "id", "type": "int", "PK": 1},
              {"field": "secret", "type": "blob", "length": 4096}]
    alice.create_table("mixed", fields)
    alice.grant("mixed", "everyone", select=True)
    sealed = alice.seal_value({"salary": 12000}, [bob._key().public_key.to_bytes().hex()])
    alice.insert("mixed", [{"id": 1, "secret": sealed}])
    [row] = bob.get(alice.address, "mixed", [[], {"id": 1}])
    assert bob.open_value(row["secret"]) == {"salary": 12000}
    assert alice.open_value(row["secret"]) == {"salary": 12000}
    carol = Client(alice.url, generate_private_key())
    with pytest.raises(ClientError) as shut_out:
        carol.open_value(carol.get(alice.address, "mixed")[0]["secret"])
    assert "not sealed for this key" in shut_out.value.message
    with pytest.raises(ClientError) as not_hex:
        bob.open_value("zz")
    assert not_hex.value.code == "clientBadSealedValue"


def test_on_a_chain_of_validators_a_client_checks_its_token(tmp_path: Path) -> None:
    """With genesis, a client takes a Token only from a certified transaction signed by the
    table's owner: a serving node that hands over a key of its own is caught."""
    from tablechain.crypto.envelope import new_table_key, wrap_key
    from tablechain.platform.server import serve_in_thread
    from tests.ledger.test_validator import Cluster

    cluster = Cluster(tmp_path)
    try:
        with serve_in_thread(cluster.nodes["v0"], manage_node=False) as srv:
            alice = Client(srv.url, generate_private_key(), genesis=cluster.genesis)
            bob = Client(srv.url, generate_private_key(), genesis=cluster.genesis)
            alice.create_confidential_table("vault", FIELDS)
            alice.insert_confidential("vault", [{"id": 1, "patient": "p", "diagnosis": SECRET}])
            alice.grant_confidential("vault", bob.address, bob._key().public_key, select=True)
            assert bob.get_confidential(alice.address, "vault")[0]["diagnosis"] == SECRET
            honest = bob.table_info

            def lying(owner: str, name: str) -> dict:
                info = honest(owner, name)
                chosen = new_table_key("international")  # the node's own key
                info["grants"][bob.address]["token"] = wrap_key(chosen,
                                                                bob._key().public_key).hex()
                return info

            bob.table_info = lying  # type: ignore[method-assign]
            with pytest.raises(ClientError) as caught:
                bob.insert_confidential("vault", [{"id": 2}], owner=alice.address)
            assert caught.value.code == "proofInvalid"
            bob.table_info = honest  # type: ignore[method-assign]
            trusting = Client(srv.url, bob._key())  # no genesis: believes its node
            trusting.table_info = lying  # type: ignore[method-assign]
            assert len(trusting.confidential_key(alice.address, "vault")) == 32
    finally:
        cluster.close()


def test_malformed_answers_on_confidential_paths_are_client_errors(alice: Client,
                                                                   bob: Client) -> None:
    """A node that breaks the protocol on a confidential table gets a ClientError, never a
    KeyError or TypeError from inside the client."""
    alice.create_confidential_table("odd", FIELDS)
    alice.insert_confidential("odd", [{"id": 1, "patient": "p", "diagnosis": "d"}])
    alice.grant_confidential("odd", bob.address, bob._key().public_key, select=True)
    honest_info, honest_get = bob.table_info, bob.get
    breakages = [
        ("table_info", lambda o, n: {**honest_info(o, n), "grants": ["x"]}),
        ("table_info", lambda o, n: {**honest_info(o, n), "grants": {bob.address: "x"}}),
        ("table_info", lambda o, n: {**honest_info(o, n), "grants": {
            bob.address: {"select": True, "token": 5}}}),
        ("table_info", lambda o, n: {k: v for k, v in honest_info(o, n).items()
                                     if k != "sealed"}),
        ("table_info", lambda o, n: {**honest_info(o, n), "sealed": "zz"}),
        ("get", lambda o, n, q=None: [{"account": "x"}]),
        ("get", lambda o, n, q=None: [{"account": "x", "tx_hash": "y", "sealed": 5}]),
        ("get", lambda o, n, q=None: ["x"]),
    ]
    for method, broken in breakages:
        setattr(bob, method, broken)
        with pytest.raises(ClientError):
            bob.confidential_fields(alice.address, "odd")
            bob.get_confidential(alice.address, "odd")
        bob.table_info, bob.get = honest_info, honest_get  # type: ignore[method-assign]
    assert bob.get_confidential(alice.address, "odd")[0]["id"] == 1
