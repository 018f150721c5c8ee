"""Read replicas: a follower re-executes what a node serves into its own database (any backend),
checking certificates, signatures and every header, and stops at the first lie."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tablechain.crypto import generate_private_key
from tablechain.ledger.chain import Ledger
from tablechain.ledger.integrity import verify_ledger
from tablechain.platform.cli import app
from tablechain.platform.client import Client
from tablechain.platform.follow import Follower, FollowError
from tablechain.platform.server import BackgroundServer

FIELDS = [{"field": "id", "type": "int", "PK": 1}, {"field": "name", "type": "varchar",
                                                       "length": 32}]


def _load(server: BackgroundServer, name: str) -> Client:
    alice = Client(server.url, generate_private_key())
    alice.create_table(name, FIELDS)
    for i in range(3):
        alice.insert(name, [{"id": i, "name": f"n{i}"}, {"id": 10 + i, "name": "x"}])
    alice.update(name, {"name": "changed"}, {"id": 1})
    alice.delete(name, {"id": 2})
    return alice


def test_a_replica_on_every_backend_matches_the_chain(server: BackgroundServer,
                                                      db_url: str) -> None:
    alice = _load(server, "rep")
    source = server.node.ledger
    replica = Ledger(db_url, source.genesis)
    try:
        with Client(server.url) as client:
            follower = Follower(replica, client)
            assert follower.sync() == source.height
            assert follower.sync() == 0  # nothing new
        assert replica.head == source.head
        query = [[], {"$order": [{"id": 1}]}]
        assert replica.read(alice.address, "rep", query, alice.address) == \
            source.read(alice.address, "rep", query, alice.address)
        assert verify_ledger(replica, signatures=True).ok
    finally:
        replica.close()


class _Lying:
    """A client that serves a node's blocks with one change."""

    def __init__(self, inner: Client, change: Any) -> None:
        self.inner = inner
        self.change = change
        self.url = inner.url

    def server_info(self) -> dict[str, Any]:
        return self.inner.server_info()

    def ledger_closed(self) -> dict[str, Any]:
        return self.inner.ledger_closed()

    def ledger(self, index: int, expand: bool = False) -> dict[str, Any]:
        block = copy.deepcopy(self.inner.ledger(index, expand))
        if block["transactions"]:
            self.change(block)
        return block


def _drop_tx(b: dict) -> None:
    b["transactions"].pop()


def _edit_row(b: dict) -> None:
    b["transactions"][0]["Raw"] = [{"id": 99, "name": "forged"}]


def _edit_root(b: dict) -> None:
    b["header"]["state_root"] = "00" * 32


def _swap_tx(b: dict) -> None:
    b["transactions"][0]["Sequence"] += 1


def _not_a_list(b: dict) -> None:
    b["transactions"] = "txs"


def _header_types(b: dict) -> None:
    b["header"]["timestamp_ms"] = "soon"


def _twice(b: dict) -> None:
    b["transactions"].append(b["transactions"][0])


def _no_header(b: dict) -> None:
    del b["header"]


@pytest.mark.parametrize("change", [_drop_tx, _edit_row, _edit_root, _swap_tx, _not_a_list,
                                    _header_types, _twice, _no_header])
def test_a_lying_source_is_caught_at_its_first_altered_block(server: BackgroundServer,
                                                             tmp_path: Path, change: Any) -> None:
    _load(server, f"lie{change.__name__}")
    replica = Ledger(f"sqlite:///{tmp_path / 'replica.db'}", server.node.ledger.genesis)
    try:
        with Client(server.url) as client:
            follower = Follower(replica, _Lying(client, change))  # type: ignore[arg-type]
            with pytest.raises(FollowError):
                follower.sync()
        assert replica.height == 0  # the first block already lied: nothing applied
        assert verify_ledger(replica).ok
    finally:
        replica.close()


def test_another_chain_is_refused_and_the_cli_follows_and_resumes(server: BackgroundServer,
                                                                  tmp_path: Path) -> None:
    from tablechain.ledger.chain import Genesis

    other = Ledger(f"sqlite:///{tmp_path / 'other.db'}", Genesis(network_id=1))
    try:
        with Client(server.url) as client, pytest.raises(FollowError, match="serves chain"):
            Follower(other, client)
    finally:
        other.close()
    _load(server, "cli_follow")
    genesis = tmp_path / "genesis.json"
    genesis.write_text(json.dumps(server.node.ledger.genesis.to_json()))
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    first = runner.invoke(app, ["node", "follow", server.url, "--genesis", str(genesis),
                                "--db", db, "--once", "--json"])
    assert first.exit_code == 0, first.output
    done = json.loads(first.stdout)
    assert done["ledger_index"] == server.node.ledger.height and done["applied"] > 0
    Client(server.url, generate_private_key()).create_table("later", FIELDS)
    again = json.loads(runner.invoke(app, ["node", "follow", server.url, "--genesis",
                                           str(genesis), "--db", db, "--once",
                                           "--json"]).stdout)
    assert again["applied"] >= 1 and again["ledger_index"] == server.node.ledger.height
    bad = runner.invoke(app, ["node", "follow", server.url, "--genesis",
                              str(tmp_path / "missing.json"), "--db", db, "--once"])
    assert bad.exit_code == 1 and "cannot read" in bad.stderr


class _FromLedger:
    """A client over a validator's ledger (no RPC server needed)."""

    url = "local"

    def __init__(self, ledger: Ledger, certificate_of: dict[int, int] | None = None) -> None:
        self.l = ledger
        self.certificate_of = certificate_of or {}

    def server_info(self) -> dict[str, Any]:
        return {"chain": self.l.genesis.hash()}

    def ledger_closed(self) -> dict[str, Any]:
        return {"ledger_index": self.l.height}

    def ledger(self, index: int, expand: bool = False) -> dict[str, Any]:
        block = self.l.block(index)
        if index in self.certificate_of:
            block["certificate"] = self.l.block(self.certificate_of[index])["certificate"]
        return block


def test_a_bft_replica_checks_every_certificate(tmp_path: Path) -> None:
    from tablechain.crypto import address_to_text
    from tests.ledger.test_validator import FIELDS as VFIELDS
    from tests.ledger.test_validator import Cluster, tx

    cluster = Cluster(tmp_path)
    try:
        owner = generate_private_key()
        addr = address_to_text(owner.address())
        v0 = cluster.nodes["v0"]
        created = v0.submit(tx(owner, 1, TransactionType="TableListSet", OpType=1,
                               Tables=[{"Table": {"TableName": "t"}}], Raw=VFIELDS))
        v0.wait_for(created.hash_hex, timeout=60)  # the inserts go in a later block
        last = None
        for i in range(3):
            last = v0.submit(tx(owner, i + 2, TransactionType="SQLStatement", OpType=6,
                                Owner=addr, Tables=[{"Table": {"TableName": "t"}}],
                                Raw=[{"id": i, "who": addr}]))
        assert last is not None
        v0.wait_for(last.hash_hex, timeout=60)
        height = v0.ledger.height
        assert height >= 2
        good = Ledger(f"sqlite:///{tmp_path / 'good.db'}", cluster.genesis)
        bad = Ledger(f"sqlite:///{tmp_path / 'bad.db'}", cluster.genesis)
        try:
            assert Follower(good, _FromLedger(v0.ledger)).sync() == height  # type: ignore[arg-type]
            assert good.head == v0.ledger.head
            liar = Follower(bad, _FromLedger(v0.ledger, {2: 1}))  # type: ignore[arg-type]
            with pytest.raises(FollowError, match="certificate"):
                liar.sync()
            assert bad.height == 1
        finally:
            good.close()
            bad.close()
    finally:
        cluster.close()


class _Odd(_FromLedger):
    """A source that sends ``closed`` as its ledger_closed answer and changes each block."""

    def __init__(self, ledger: Ledger, closed: Any = None, change: Any = None) -> None:
        super().__init__(ledger)
        self.closed, self.change = closed, change

    def ledger_closed(self) -> dict[str, Any]:
        return super().ledger_closed() if self.closed is None else self.closed

    def ledger(self, index: int, expand: bool = False) -> dict[str, Any]:
        block = super().ledger(index, expand)
        if self.change is not None:
            self.change(block)
        return block


@pytest.mark.parametrize("closed, change", [
    ({"ledger_index": "abc"}, None),
    ([1], None),
    (None, lambda b: b["header"].__setitem__("height", float("inf"))),  # JSON 1e999
])
def test_odd_answers_stop_the_follower_with_follow_error(tmp_path: Path, closed: Any,
                                                         change: Any) -> None:
    from tests.ledger.conftest import Harness

    h = Harness(f"sqlite:///{tmp_path / 'source.db'}")
    a = h.account()
    assert h.create(a, "t", FIELDS).success
    replica = Ledger(f"sqlite:///{tmp_path / 'replica.db'}", h.genesis)
    try:
        with pytest.raises(FollowError):
            Follower(replica, _Odd(h.ledger, closed, change)).sync()  # type: ignore[arg-type]
        assert replica.height == 0
    finally:
        replica.close()
        h.ledger.close()


def test_a_replica_stores_no_certificate_a_source_made_up(tmp_path: Path) -> None:
    """On a chain without validators a block has no certificate: whatever a source sends in
    its place is not stored (it would make the replica's own tamper check fail)."""
    from tests.ledger.conftest import Harness

    h = Harness(f"sqlite:///{tmp_path / 'source.db'}")
    a = h.account()
    assert h.create(a, "t", FIELDS).success
    replica = Ledger(f"sqlite:///{tmp_path / 'replica.db'}", h.genesis)
    try:
        source = _Odd(h.ledger, change=lambda b: b.__setitem__("certificate", {"junk": "x"}))
        assert Follower(replica, source).sync() == 1  # type: ignore[arg-type]
        assert replica.block(1)["certificate"] is None
        assert verify_ledger(replica).ok
    finally:
        replica.close()
        h.ledger.close()
