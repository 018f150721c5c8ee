"""BFT validators on the real ledger, in-process (LocalHub): agreement, gossip, catch-up."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from tablechain.crypto import address_to_text, generate_private_key
from tablechain.ledger.chain import Genesis
from tablechain.ledger.consensus import (
    ConsensusConfig,
    Proposal,
    QuorumCertificate,
    SignerState,
    Vote,
)
from tablechain.ledger.node import NodeConfig
from tablechain.ledger.transactions import sign_transaction
from tablechain.ledger.validator import LocalHub, ValidatorNode
from tests.ledger.conftest import force_into_pool

FIELDS = [{"field": "id", "type": "int", "PK": 1}, {"field": "who", "type": "varchar", "length": 42}]
FAST = ConsensusConfig(timeout_propose_ms=400, timeout_prevote_ms=200, timeout_precommit_ms=200,
                       idle_poll_ms=20, rebroadcast_ms=500, catchup_delay_ms=100,
                       catchup_retry_ms=500)


class Cluster:
    def __init__(self, tmp_path, n: int = 4) -> None:
        self.tmp = tmp_path
        self.keys = [generate_private_key("ed25519") for _ in range(n)]
        self.genesis = Genesis(network_id=9, max_block_txs=200, max_block_wait_ms=30, validators=tuple(
            {"id": f"v{i}", "scheme": "ed25519", "public_key": k.public_key.to_bytes().hex()}
            for i, k in enumerate(self.keys)))
        self.hub = LocalHub()
        self.nodes: dict[str, ValidatorNode] = {}
        for i in range(n):
            self.start(i)

    def start(self, i: int) -> ValidatorNode:
        vid = f"v{i}"
        node = ValidatorNode(f"sqlite:///{self.tmp / f'{vid}.db'}", self.genesis, self.keys[i], vid,
                             self.hub, NodeConfig(), FAST, self.tmp / f"{vid}.signer")
        self.hub.attach(node)
        node.start()
        self.nodes[vid] = node
        return node

    def stop(self, i: int) -> None:
        vid = f"v{i}"
        self.hub.detach(vid)
        self.nodes.pop(vid).stop()

    def wait_height(self, height: int, timeout: float = 90.0, nodes=None) -> None:
        deadline = time.monotonic() + timeout
        nodes = list(self.nodes.values()) if nodes is None else nodes
        while time.monotonic() < deadline:
            if all(n.ledger.height >= height for n in nodes):
                return
            time.sleep(0.02)
        raise AssertionError(f"heights {[n.ledger.height for n in nodes]} never reached {height}: "
                             f"{[n.status() for n in nodes]}")

    def close(self) -> None:
        for vid in list(self.nodes):
            self.nodes.pop(vid).stop()
        self.hub.close()


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    yield c
    c.close()


def tx(key, seq, **fields):
    return sign_transaction({"NetworkID": 9, "Sequence": seq, **fields}, key)


def rows_of(node, owner):
    return node.ledger.read(owner, "t", [[], {"$limit": {"index": 0, "total": 1000}}], owner)


def test_four_validators_agree_block_by_block(cluster):
    owner = generate_private_key()
    addr = address_to_text(owner.address())
    v = list(cluster.nodes.values())
    v[1].submit(tx(owner, 1, TransactionType="TableListSet", OpType=1,
                   Tables=[{"Table": {"TableName": "t"}}], Raw=FIELDS))
    # One account's transactions go to one validator, in order (another validator would see a
    # skipped Sequence until gossip brings the first).
    v[1].submit(tx(owner, 2, TransactionType="TableListSet", OpType=11, User="everyone",
                   Tables=[{"Table": {"TableName": "t"}}], Raw=[{"insert": True}]))
    cluster.wait_height(1)
    writers = [generate_private_key() for _ in range(4)]
    last = None
    for i in range(40):
        w = writers[i % 4]
        last = v[i % 4].submit(tx(w, i // 4 + 1, TransactionType="SQLStatement", OpType=6, Owner=addr,
                                  Tables=[{"Table": {"TableName": "t"}}],
                                  Raw=[{"id": i, "who": address_to_text(w.address())}]))
    record = v[0].wait_for(last.hash_hex, timeout=90)
    assert record["result"] == "tesSUCCESS"
    target = v[0].ledger.height
    cluster.wait_height(target)
    headers = {vid: [n.ledger.block(h)["header"] for h in range(1, target + 1)]
               for vid, n in cluster.nodes.items()}
    assert len({str(h) for h in headers.values()}) == 1  # identical chains
    for node in v:
        assert len(rows_of(node, addr)) == 40
        cert = node.ledger.block(target)["certificate"]
        assert "qc" in cert
    assert all(h["tx_count"] > 0 for h in headers["v0"])  # no empty blocks
    # A client proves the last transaction with genesis alone: the block's certificate anchors
    # it; a certificate of another block does not.
    from tablechain.ledger.proofs import ProofError, tx_proof, verify_tx_proof

    proof = tx_proof(v[2].ledger, last.hash_hex)
    assert verify_tx_proof(proof, cluster.genesis)["result"] == "tesSUCCESS"
    proof["certificate"] = v[2].ledger.block(1)["certificate"]
    with pytest.raises(ProofError, match="another block"):
        verify_tx_proof(proof, cluster.genesis)
    # Every validator's database recomputes to its chain, certificates included; a
    # certificate moved onto another block is found.
    from tablechain.ledger.integrity import verify_ledger

    for node in v:
        report = verify_ledger(node.ledger)
        assert report.ok, report.problems
    blocks = v[3].ledger.t.blocks
    with v[3].ledger.engine.begin() as conn:
        moved = conn.execute(sa.select(blocks.c.certificate)
                             .where(blocks.c.height == target)).scalar_one()
        conn.execute(sa.update(blocks).where(blocks.c.height == 1).values(certificate=moved))
    assert [(p.kind, p.where) for p in verify_ledger(v[3].ledger).problems] == \
        [("certificate", "block 1")]


def test_a_validator_that_was_down_catches_up(cluster, tmp_path):
    owner = generate_private_key()
    addr = address_to_text(owner.address())
    nodes = cluster.nodes
    nodes["v0"].submit(tx(owner, 1, TransactionType="TableListSet", OpType=1,
                          Tables=[{"Table": {"TableName": "t"}}], Raw=FIELDS))
    cluster.wait_height(1)
    cluster.stop(3)  # f = 1: the other three keep committing
    for i in range(30):
        last = nodes["v1"].submit(tx(owner, i + 2, TransactionType="SQLStatement", OpType=6, Owner=addr,
                                     Tables=[{"Table": {"TableName": "t"}}], Raw=[{"id": i}]))
        if i % 10 == 9:
            nodes["v1"].wait_for(last.hash_hex, timeout=90)
    head = nodes["v1"].ledger.height
    assert head >= 3
    back = cluster.start(3)
    cluster.wait_height(head, nodes=[back])
    assert back.ledger.head.state_root == nodes["v1"].ledger.block(back.ledger.height)["header"]["state_root"]
    assert rows_of(back, addr) == rows_of(nodes["v1"], addr)


def test_a_validator_whose_database_was_lost_catches_up_before_it_signs(cluster, tmp_path):
    """A validator whose database was deleted (to re-sync from peers) while its signer record
    stayed was refused at start, with no safe way back. It now catches up from its peers'
    certified blocks, signs nothing below its record's height meanwhile (at that height only
    what the record holds), and then votes again: the network commits without another
    validator but with it."""
    owner = generate_private_key()
    addr = address_to_text(owner.address())
    nodes = cluster.nodes
    seq = iter(range(1, 1000))

    def insert_rows(via, count):
        for i in range(count):
            last = via.submit(tx(owner, next(seq), TransactionType="SQLStatement", OpType=6,
                                 Owner=addr, Tables=[{"Table": {"TableName": "t"}}],
                                 Raw=[{"id": next(ids)}]))
            via.wait_for(last.hash_hex, timeout=90)

    ids = iter(range(1000))
    nodes["v0"].submit(tx(owner, next(seq), TransactionType="TableListSet", OpType=1,
                          Tables=[{"Table": {"TableName": "t"}}], Raw=FIELDS))
    insert_rows(nodes["v0"], 3)
    cluster.wait_height(nodes["v0"].ledger.height)
    cluster.stop(3)
    record = SignerState.from_bytes((tmp_path / "v3.signer").read_bytes())
    assert record.height >= 2 and record.votes
    for db_file in tmp_path.glob("v3.db*"):
        db_file.unlink()
    insert_rows(nodes["v1"], 3)  # the others go on past the record's height
    assert nodes["v1"].ledger.height > record.height
    signed: list[tuple[str, object]] = []
    hub = cluster.hub
    real_broadcast, real_send = hub.broadcast, hub.send
    hub.broadcast = lambda sender, message: (signed.append((sender, message)),  # type: ignore
                                             real_broadcast(sender, message))
    hub.send = lambda sender, receiver, message: (signed.append((sender, message)),  # type: ignore
                                                  real_send(sender, receiver, message))
    back = cluster.start(3)
    head = nodes["v1"].ledger.height
    cluster.wait_height(head, nodes=[back])
    assert back.ledger.block(head)["header"] == nodes["v1"].ledger.block(head)["header"]
    assert rows_of(back, addr) == rows_of(nodes["v1"], addr)
    cluster.stop(0)  # v1, v2 and v3 are a quorum only with v3's votes
    insert_rows(nodes["v1"], 2)
    top = nodes["v1"].ledger.height
    cluster.wait_height(top)
    qc = QuorumCertificate.from_bytes(bytes.fromhex(back.ledger.block(top)["certificate"]["qc"]))
    assert "v3" in [vid for vid, _ in qc.signatures]
    mine = [m for sender, m in signed if sender == "v3" and isinstance(m, Vote | Proposal)]
    assert mine and max(m.height for m in mine) > record.height
    assert [m for m in mine if m.height < record.height] == []
    assert all(m in record.votes for m in mine if m.height == record.height)
    assert SignerState.from_bytes((tmp_path / "v3.signer").read_bytes()).height > record.height


@pytest.fixture
def lone(tmp_path):
    """One validator of a one-validator chain, not started (its application is driven directly)."""
    key = generate_private_key("ed25519")
    genesis = Genesis(network_id=9, validators=(
        {"id": "v0", "scheme": "ed25519", "public_key": key.public_key.to_bytes().hex()},))
    hub = LocalHub()
    node = ValidatorNode(f"sqlite:///{tmp_path / 'v0.db'}", genesis, key, "v0", hub, NodeConfig(),
                         FAST)
    yield node
    node.stop()
    hub.close()


def test_a_block_with_a_deeply_nested_unknown_transaction_is_invalid_not_a_crash(lone):
    """A transaction the validator does not hold is decoded strictly and its nesting checked
    before anything walks it, so a Byzantine proposer's deep JSON only makes the block invalid;
    so do frames that do not add up and transactions not in canonical form."""
    from tablechain.crypto import canonical_json
    from tablechain.ledger.blocks import BlockHeader
    from tablechain.ledger.validator import frame_block

    node = lone
    head = node.ledger.head
    header = BlockHeader(head.height + 1, head.hash(node.ledger.suite), head.timestamp_ms + 1,
                         "v0", "00" * 32, "00" * 32, "00" * 32, 1)
    header_bytes = canonical_json(header.to_json())
    deep: object = 1
    for _ in range(500):
        deep = [deep]
    signer = generate_private_key()
    good = tx(signer, 1, TransactionType="SQLStatement", OpType=6,
              Owner=address_to_text(signer.address()),
              Tables=[{"Table": {"TableName": "t"}}], Raw=[{"id": 1}])
    for bad_tx in (canonical_json({**good, "Raw": deep}), b'{"Account": 1}', b"[1]", b"\xff",
                   b'{"a":1.5}', canonical_json(good).replace(b'"Raw"', b' "Raw"')):
        block = frame_block(header_bytes, [bad_tx])
        assert node.app.validate_block(head.height + 1, block) is None, bad_tx[:30]
    for broken in (b"", b"TCB1", b"TCB1\x00\x00\x00\x09{}",
                   b"XXXX" + frame_block(header_bytes, [])[4:],
                   frame_block(header_bytes, [canonical_json(good)])[:-3],
                   frame_block(b'{"height":1}', [])):
        assert node.app.validate_block(head.height + 1, broken) is None, broken[:30]


def test_encode_block_frames_header_and_canonical_transactions():
    from tablechain.crypto import canonical_json
    from tablechain.ledger.blocks import BlockHeader
    from tablechain.ledger.transactions import CryptoSuite, parse_transaction
    from tablechain.ledger.validator import decode_block, encode_block

    signer = generate_private_key()
    owner = address_to_text(signer.address())
    txs = [parse_transaction(tx(signer, i + 1, TransactionType="SQLStatement", OpType=6,
                                Owner=owner, Tables=[{"Table": {"TableName": "t"}}],
                                Raw=[{"id": i, "who": "ü\\\"<>", "n": 2**70}]),
                             CryptoSuite("international"), 9) for i in range(3)]
    header = BlockHeader(2, "ab" * 32, 5, "v0", "cd" * 32, "ef" * 32, "01" * 32, 3)
    data = encode_block(header, txs)
    assert decode_block(data) == (header, [canonical_json(dict(t.json)) for t in txs])
    assert decode_block(encode_block(header, [])) == (header, [])


def test_malformed_gossip_is_dropped_and_good_gossip_admitted(lone):
    """Gossip is a canonical JSON array of signed transactions; anything else changes nothing."""
    from tablechain.crypto import canonical_json

    node = lone
    signer = generate_private_key()
    good = tx(signer, 1, TransactionType="TableListSet", OpType=1,
              Tables=[{"Table": {"TableName": "t"}}], Raw=FIELDS)
    deep: object = 1
    for _ in range(100):
        deep = [deep]
    for bad in (b"not json", b'{"a":1}', b"[1.5]", b'[{"a": 1}]', b"[" * 2000 + b"]" * 2000,
                canonical_json([{**good, "Raw": deep}]),
                canonical_json([{**good, "TxnSignature": "00" * 64}]),
                canonical_json([{**good, "Sequence": 2}])):
        node.deliver_transactions(bad)
        assert len(node.mempool) == 0, bad[:40]
    node.deliver_transactions(canonical_json([good, good]))  # the duplicate is skipped
    assert len(node.mempool) == 1


def _propose(node):
    """The application's proposal once the block-cutting wait is over (None if it has none)."""
    time.sleep(node.max_block_wait_ms / 1000 + 0.01)
    return node.app.propose_block(node.ledger.height + 1, None)


def test_a_proposer_leaves_out_a_committed_transaction_its_pool_still_holds(lone):
    node = lone
    signer = generate_private_key()
    create = node.submit(tx(signer, 1, TransactionType="TableListSet", OpType=1,
                            Tables=[{"Table": {"TableName": "t"}}], Raw=FIELDS))
    proposed = _propose(node)
    assert proposed is not None
    node.app.commit_block(node.ledger.height + 1, proposed.block, _qc_stub())
    assert node.ledger.committed_among([create.hash_hex]) == {create.hash_hex}
    force_into_pool(node.mempool, create)
    # Alone, it yields no block (never an empty one) and leaves the pool.
    assert _propose(node) is None
    assert len(node.mempool) == 0
    # Beside a fresh one, the block carries the fresh one only.
    force_into_pool(node.mempool, create)
    insert = node.submit(tx(signer, 2, TransactionType="SQLStatement", OpType=6,
                            Owner=address_to_text(signer.address()),
                            Tables=[{"Table": {"TableName": "t"}}], Raw=[{"id": 1}]))
    proposed = _propose(node)
    assert proposed is not None
    from tablechain.ledger.validator import decode_block

    _, raw = decode_block(proposed.block)
    assert raw == [insert.encoded]
    assert node.app.validate_block(node.ledger.height + 1, proposed.block) is not None


def _qc_stub():
    from tablechain.ledger.consensus.messages import QuorumCertificate

    return QuorumCertificate(0, 0, b"\0" * 32, b"\0" * 32, ())


def test_a_proposal_whose_validation_raises_is_invalid_and_the_validator_goes_on(lone, monkeypatch):
    """A validator that let an unexpected exception out of validation would fail the same step
    again at every message and timer of that height (stalled for good): it is an invalid block
    instead, and a later proposal validates as usual."""
    node = lone
    signer = generate_private_key()
    node.submit(tx(signer, 1, TransactionType="TableListSet", OpType=1,
                   Tables=[{"Table": {"TableName": "t"}}], Raw=FIELDS))
    proposed = _propose(node)
    assert proposed is not None
    node.app._abort_pending()  # as if another validator had proposed it
    node.app._results.clear()
    real = node.ledger.execute

    def broken(*args, **kwargs):
        raise RuntimeError("a bug that some input reaches")

    monkeypatch.setattr(node.ledger, "execute", broken)
    assert node.app.validate_block(node.ledger.height + 1, proposed.block) is None
    monkeypatch.setattr(node.ledger, "execute", real)
    result = node.app.validate_block(node.ledger.height + 1, proposed.block)
    assert result is not None and result.block_hash == proposed.block_hash


def test_a_proposal_that_fails_to_execute_is_skipped_not_a_stalled_proposer(lone, monkeypatch):
    node = lone
    signer = generate_private_key()
    node.submit(tx(signer, 1, TransactionType="TableListSet", OpType=1,
                   Tables=[{"Table": {"TableName": "t"}}], Raw=FIELDS))
    real = node.ledger.execute

    def broken(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(node.ledger, "execute", broken)
    assert _propose(node) is None
    monkeypatch.setattr(node.ledger, "execute", real)
    assert _propose(node) is not None
