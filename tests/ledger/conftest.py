"""A ledger driven directly (no threads, no RPC): sign, execute a block, commit, look."""

from __future__ import annotations

from typing import Any

import pytest

from tablechain.crypto import address_to_text, generate_private_key
from tablechain.ledger.chain import Genesis, Ledger
from tablechain.ledger.reads import sign_read_request
from tablechain.ledger.transactions import parse_transaction, sign_transaction


class Account:
    def __init__(self, scheme: str = "secp256k1") -> None:
        self.key = generate_private_key(scheme)
        self.address = address_to_text(self.key.address())
        self.sequence = 0


class Harness:
    def __init__(self, url: str, suite: str = "international") -> None:
        self.genesis = Genesis(network_id=7, suite=suite)
        self.ledger = Ledger(url, self.genesis)
        self.clock = 1_000

    def account(self, scheme: str = "secp256k1") -> Account:
        return Account(scheme)

    def sign(self, who: Account, fields: dict[str, Any], sequence: int | None = None) -> dict:
        if sequence is None:
            who.sequence += 1
            sequence = who.sequence
        tx = {"NetworkID": 7, "Sequence": sequence, **fields}
        return sign_transaction(tx, who.key)

    def parse(self, tx_json: dict):
        return parse_transaction(tx_json, self.ledger.suite, 7)

    def block(self, *signed: dict):
        self.clock += 1000
        txs = [self.parse(t) for t in signed]
        pending = self.ledger.execute(txs, self.clock, "0x" + "11" * 20)
        return pending.commit()

    def run(self, who: Account, fields: dict[str, Any]):
        """One transaction in its own block; its receipt."""
        return self.block(self.sign(who, fields)).receipts[0]

    def create(self, who: Account, name: str, raw: list, rule: Any = None, **extra: Any):
        fields = {"TransactionType": "TableListSet", "OpType": 1,
                  "Tables": [{"Table": {"TableName": name}}], "Raw": raw, **extra}
        if rule is not None:
            fields["OperationRule"] = rule
        return self.run(who, fields)

    def statement(self, who: Account, op: int, owner: Account, name: str, raw: Any, **extra: Any):
        return self.run(who, {"TransactionType": "SQLStatement", "OpType": op,
                              "Owner": owner.address, "Tables": [{"Table": {"TableName": name}}],
                              "Raw": raw, **extra})

    def grant(self, owner: Account, name: str, user: str, **flags: bool):
        return self.run(owner, {"TransactionType": "TableListSet", "OpType": 11,
                                "Tables": [{"Table": {"TableName": name}}], "User": user,
                                "Raw": [flags]})

    def read(self, who: Account, owner: Account, name: str, raw: Any) -> list[dict]:
        request = sign_read_request(who.key, owner.address, name, raw, self.ledger.height)
        return self.ledger.read(owner.address, name, request["Raw"], who.address)


@pytest.fixture
def harness(db_url: str):
    h = Harness(db_url)
    yield h
    h.ledger.close()


@pytest.fixture
def sqlite_harness(tmp_path):
    h = Harness(f"sqlite:///{tmp_path / 'node.db'}")
    yield h
    h.ledger.close()


def force_into_pool(pool, tx) -> None:  # type: ignore[no-untyped-def]
    """Put a transaction in a mempool past its checks, as a resubmission racing the commit of
    the block that carries it could (its Sequence kept, admission having refused it there)."""
    with pool._lock:
        pool._add_locked(tx, {tx.account: tx.sequence - 1})
    pool.arrived.set()


def lose_commit_acks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every block commit land in the database and then raise, as when the connection
    drops while the server acknowledges COMMIT (``monkeypatch.undo()`` ends it)."""
    from tablechain.ledger.chain import PendingBlock

    real_commit = PendingBlock.commit

    def lost_ack(self: PendingBlock, certificate: Any = None) -> Any:
        real_txn = self._txn

        class Txn:
            def commit(self) -> None:
                real_txn.commit()
                raise ConnectionResetError("server closed the connection unexpectedly")

            def rollback(self) -> None:
                pass  # nothing is left to roll back

        self._txn = Txn()
        return real_commit(self, certificate)

    monkeypatch.setattr(PendingBlock, "commit", lost_ack)
