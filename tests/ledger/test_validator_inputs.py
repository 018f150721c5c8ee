"""What a faulty or malicious peer can send a validator: each input is refused or ignored and the
validator goes on (no exception out of its loop, no stall, no wrong block, bounded memory).

The validators here are not started: their application and state machine are driven directly,
so every case is deterministic.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tablechain.crypto import PrivateKey, canonical_json, generate_private_key
from tablechain.ledger.chain import Genesis
from tablechain.ledger.consensus import ConsensusConfig, MessageReceived, SendTo, TimerFired
from tablechain.ledger.consensus.events import TIMER_CATCHUP, Timer
from tablechain.ledger.consensus.messages import (
    PRECOMMIT,
    PREVOTE,
    BlockRequest,
    BlockResponse,
    CommittedBlock,
    QuorumCertificate,
    sign_status,
    sign_vote,
)
from tablechain.ledger.node import NodeConfig
from tablechain.ledger.transactions import sign_transaction
from tablechain.ledger.validator import LocalHub, ValidatorNode, decode_block, frame_block

FIELDS = [{"field": "id", "type": "int", "PK": 1}]


class Chain:
    """Four validators' genesis (blocks cut at one transaction) and validators built on it."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.keys = [generate_private_key("ed25519") for _ in range(4)]
        self.genesis = Genesis(network_id=9, max_block_txs=1, max_block_wait_ms=0, validators=tuple(
            {"id": f"v{i}", "scheme": "ed25519", "public_key": k.public_key.to_bytes().hex()}
            for i, k in enumerate(self.keys)))
        self.hub = LocalHub()
        self.nodes: list[ValidatorNode] = []

    def validator(self, i: int, name: str) -> ValidatorNode:
        node = ValidatorNode(f"sqlite:///{self.tmp / name}.db", self.genesis, self.keys[i],
                             f"v{i}", self.hub, NodeConfig(), ConsensusConfig())
        self.nodes.append(node)
        return node

    def certificate(self, height: int, block_hash: bytes, state_root: bytes) -> QuorumCertificate:
        """A real quorum certificate: the precommits of v0, v1 and v2."""
        sigs = tuple(
            (f"v{i}", sign_vote(self.keys[i], self.genesis.hash(), f"v{i}", PRECOMMIT, height, 0,
                                (block_hash, state_root)).signature)
            for i in range(3))
        return QuorumCertificate(height, 0, block_hash, state_root, sigs)

    def close(self) -> None:
        for node in self.nodes:
            node.stop()
        self.hub.close()


@pytest.fixture
def chain(tmp_path):
    c = Chain(tmp_path)
    yield c
    c.close()


def create_table(key: PrivateKey, seq: int = 1) -> dict:
    return sign_transaction({"NetworkID": 9, "Sequence": seq, "TransactionType": "TableListSet",
                             "OpType": 1, "Tables": [{"Table": {"TableName": "t"}}],
                             "Raw": FIELDS}, key)


def _proposed(chain, proposer_index: int):  # type: ignore[no-untyped-def]
    """A validator's real proposal of block 1 (one transaction), a victim at height 0, and the
    header of the proposal with its transactions swapped for none."""
    proposer = chain.validator(proposer_index, "proposer")
    victim = chain.validator(3, "victim")
    proposer.submit(create_table(generate_private_key()))
    real = proposer.app.propose_block(1, None)
    assert real is not None
    header, raw = decode_block(real.block)
    assert len(raw) == 1
    return proposer, victim, real, header, frame_block(canonical_json(header.to_json()), [])


def test_a_header_sent_with_other_transactions_never_hides_the_real_block(chain):
    """A proposal's signature and a quorum certificate cover the header hash, not the block's
    bytes: a peer can send the real header with other transactions. That block is invalid, and
    the verdict must not stick to the header: the real block, from an honest peer, still
    validates and commits (a victim that cached "invalid" by header hash stayed at that height
    for good), and the altered one is refused even while the real one is executed and held."""
    proposer, victim, real, header, altered = _proposed(chain, 0)
    root = bytes.fromhex(header.state_root)

    assert victim.app.validate_block(1, altered) is None
    result = victim.app.validate_block(1, real.block)
    assert result is not None and result.block_hash == real.block_hash
    assert victim.app.validate_block(1, altered) is None  # the real block is the one held

    qc = chain.certificate(1, real.block_hash, root)
    catching_up = chain.validator(3, "catching-up")
    catching_up.machine.step(MessageReceived(BlockResponse("v1", (CommittedBlock(1, altered, qc),))))
    assert catching_up.ledger.height == 0
    catching_up.machine.step(MessageReceived(BlockResponse("v2", (CommittedBlock(1, real.block, qc),))))
    assert catching_up.ledger.height == 1
    assert catching_up.ledger.head.state_root == header.state_root


def test_an_empty_block_response_in_a_peers_name_does_not_stop_catch_up(chain):
    """A block response is not signed (its blocks' certificates prove them), so anyone can send
    one in any validator's name. One that brings nothing must not make the validator forget
    that the named peer is ahead: sent after each of the peer's status messages, it would keep
    the validator from ever asking for the blocks it lacks."""
    behind = chain.validator(3, "behind")
    ahead = sign_status(chain.keys[1], chain.genesis.hash(), "v1", 10, 0)
    behind.machine.step(MessageReceived(ahead))
    behind.machine.step(MessageReceived(BlockResponse("v1", ())))
    out = behind.machine.step(TimerFired(Timer(TIMER_CATCHUP, 1, 0)))
    requests = [o for o in out if isinstance(o, SendTo) and isinstance(o.message, BlockRequest)]
    assert [(o.validator, o.message.from_height) for o in requests] == [("v1", 1)]


def test_a_flood_of_peer_messages_waits_in_a_bounded_queue(chain):
    """A peer can deliver messages faster than the consensus thread verifies them: beyond
    MAX_QUEUED_MESSAGES waiting they are dropped (counted), and room frees as the thread takes
    them."""
    from tablechain.ledger.validator import MAX_QUEUED_MESSAGES

    node = chain.validator(3, "flooded")
    status = sign_status(chain.keys[1], chain.genesis.hash(), "v1", 1, 0)
    for _ in range(MAX_QUEUED_MESSAGES + 5):
        node.deliver(status)
    assert node._events.qsize() == MAX_QUEUED_MESSAGES
    assert node.dropped_messages == 5
    assert node._next_event(0) == MessageReceived(status)
    node.deliver(status)
    assert node._events.qsize() == MAX_QUEUED_MESSAGES
    assert node.dropped_messages == 5


def test_a_proposal_relayed_with_other_block_bytes_is_refused_and_the_real_one_wins(chain):
    """A proposer signs its block's bytes (their digest), not only its header hash: a relay that
    pairs the real signature with other transactions sends an invalidly signed proposal. The
    victim drops it, blames nobody, and prevotes for the real block when that arrives (holding
    the altered copy, it would have voted nil: one faulty relay per round could stall the
    chain). A second proposal the proposer did sign is still equivocation."""
    from tablechain.ledger.consensus import Broadcast, EquivocationDetected
    from tablechain.ledger.consensus.messages import PREVOTE, Proposal, Vote, sign_proposal

    _, victim, real, _, swapped = _proposed(chain, 1)
    cid = chain.genesis.hash()
    signed = sign_proposal(chain.keys[1], cid, "v1", 1, 0, real.block_hash, real.block, -1)
    altered = Proposal(1, 0, real.block_hash, swapped, -1, "v1", signed.signature)
    out = victim.machine.step(MessageReceived(altered))
    assert not [o for o in out if isinstance(o, EquivocationDetected)
                or (isinstance(o, Broadcast) and isinstance(o.message, Vote))]
    out = victim.machine.step(MessageReceived(signed))
    assert not [o for o in out if isinstance(o, EquivocationDetected)]
    prevotes = [o.message for o in out if isinstance(o, Broadcast)
                and isinstance(o.message, Vote) and o.message.kind == PREVOTE]
    assert [v.block_hash for v in prevotes] == [real.block_hash]
    other = sign_proposal(chain.keys[1], cid, "v1", 1, 0, b"\1" * 32, real.block, -1)
    out = victim.machine.step(MessageReceived(other))
    assert [o.validator for o in out if isinstance(o, EquivocationDetected)] == ["v1"]


def test_the_signer_record_is_durable_through_its_directory(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The record is replaced by rename; the directory is fsynced after it, or a power loss
    could bring the older record back (and a restarted validator sign twice)."""
    import os
    import stat

    from tablechain.ledger.consensus.wal import SignerState
    from tablechain.ledger.validator import _SignerStore

    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    store = _SignerStore(tmp_path / "v0.signer")
    state = SignerState(5, 0, 1, -1, None, -1, None, (), ())
    store.save(state)
    assert synced == ["file", "dir"]
    assert store.load() == state


def test_block_requests_never_reach_the_consensus_thread(chain) -> None:  # type: ignore[no-untyped-def]
    """A signed block request can be replayed at will; requests wait in a short queue of their
    own for the block server, and past it they are dropped, so a flood of them neither grows
    memory nor delays consensus messages."""
    from tablechain.ledger.consensus.messages import sign_block_request
    from tablechain.ledger.validator import MAX_QUEUED_REQUESTS

    victim = chain.validator(3, "victim")
    request = sign_block_request(chain.keys[1], chain.genesis.hash(), "v1", 1, 64)
    for _ in range(500):
        victim.deliver(request)
    assert victim._queued_messages == 0  # nothing for the consensus thread
    assert victim._requests.qsize() == MAX_QUEUED_REQUESTS
    assert victim.dropped_requests == 500 - MAX_QUEUED_REQUESTS


class Recorder:
    """A transport that keeps what a validator sends."""

    def __init__(self) -> None:
        self.sent: list = []

    def broadcast(self, sender: str, message) -> None:  # type: ignore[no-untyped-def]
        self.sent.append(message)

    def send(self, sender: str, receiver: str, message) -> None:  # type: ignore[no-untyped-def]
        self.sent.append(message)

    def gossip(self, sender: str, data: bytes, count: int) -> None:
        pass


def turn(node: ValidatorNode, event) -> None:  # type: ignore[no-untyped-def]
    """One turn of the consensus loop (``ValidatorNode._run``): a step that raises is logged
    and the loop goes on with the next event."""
    try:
        node._perform(node.machine.step(event))
    except Exception:  # noqa: S110 - as the loop does (it logs)
        pass


def test_a_signer_record_that_cannot_be_written_halts_the_validator_before_any_vote_leaves(
        chain, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """A full disk (or an unwritable directory) fails the write of the signer record. The vote
    it records was already signed: were it sent later (the stalled validator re-sends its votes)
    and the validator restarted from its older record, it would sign another vote for the same
    height, round and step. A validator that cannot persist stops voting instead."""
    import errno
    import os

    from tablechain.ledger.consensus import Start
    from tablechain.ledger.consensus.events import TIMER_PROPOSE, TIMER_REBROADCAST
    from tablechain.ledger.consensus.messages import Vote, sign_proposal

    _, _, real, _, _ = _proposed(chain, 1)
    cid = chain.genesis.hash()
    signed = sign_proposal(chain.keys[1], cid, "v1", 1, 0, real.block_hash, real.block, -1)
    record = chain.tmp / "v3.signer"
    wire = Recorder()

    def validator() -> ValidatorNode:
        node = ValidatorNode(f"sqlite:///{chain.tmp / 'v3'}.db", chain.genesis, chain.keys[3],
                             "v3", wire, NodeConfig(), ConsensusConfig(), record)
        chain.nodes.append(node)
        return node

    node = validator()
    turn(node, Start())

    def disk_full(src, dst) -> None:  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    turn(node, MessageReceived(signed))  # prevotes the block: the record cannot be written
    assert node.halted is not None and "signer" in node.halted
    for _ in range(3):  # stalled: the loop would re-send its votes
        turn(node, TimerFired(Timer(TIMER_REBROADCAST, 1, 0)))
    monkeypatch.undo()

    node.stop()  # a crash: the restarted validator has the record as it was on disk
    again = validator()
    turn(again, Start())
    turn(again, TimerFired(Timer(TIMER_PROPOSE, 1, 0)))  # the proposal never came: nil
    prevotes = {(m.round, m.block_hash) for m in wire.sent
                if isinstance(m, Vote) and m.kind == PREVOTE and m.validator == "v3"}
    assert prevotes == {(0, None)}


def test_a_key_of_another_validator_is_refused(chain) -> None:  # type: ignore[no-untyped-def]
    """A data directory holding another validator's key (a key file copied or restored into the
    wrong directory) would sign as that validator, beside it and with a signer record of its
    own: two signers for one key. The validator refuses to start."""
    from tablechain.ledger.errors import LedgerError

    with pytest.raises(LedgerError, match="validator 'v1'"):
        ValidatorNode(f"sqlite:///{chain.tmp / 'v2'}.db", chain.genesis, chain.keys[1], "v2",
                      chain.hub, NodeConfig(), ConsensusConfig(), chain.tmp / "v2.signer")
    with pytest.raises(LedgerError, match="no validator's key"):
        ValidatorNode(f"sqlite:///{chain.tmp / 'v9'}.db", chain.genesis, generate_private_key(
            "ed25519"), "v2", chain.hub, NodeConfig(), ConsensusConfig())


def test_a_decided_block_whose_commit_landed_unacknowledged_is_not_a_wedge(
        chain, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """The commit of a decided block raised (the connection dropped as COMMIT was acknowledged)
    though the block landed. The state machine tries the commit again: the block is found
    committed, and the validator moves on instead of failing that commit at every step."""
    from tests.ledger.conftest import lose_commit_acks

    proposer, _, real, header, _ = _proposed(chain, 1)
    qc = chain.certificate(1, real.block_hash, bytes.fromhex(header.state_root))
    lose_commit_acks(monkeypatch)
    with pytest.raises(ConnectionResetError):
        proposer.app.commit_block(1, real.block, qc)
    monkeypatch.undo()
    proposer.app.commit_block(1, real.block, qc)  # the state machine's next attempt
    assert proposer.ledger.height == 1
    assert proposer.ledger.block(1)["hash"] == real.block_hash.hex()
    assert proposer.app.committed_block(1) is not None


@pytest.mark.parametrize("damage", ["empty", "torn", "garbage", "negative round", "unreadable"])
def test_a_damaged_signer_record_is_a_clear_refusal(chain, damage: str) -> None:  # type: ignore[no-untyped-def]
    """The record says what the validator signed; without it a restart could sign twice, so a
    record that cannot be read or makes no sense stops the validator with a stable code that
    names the file (an unreadable one escaped as an OSError traceback; a negative round was
    taken)."""
    from tablechain.errors import TablechainError
    from tablechain.ledger.consensus import ConsensusError
    from tablechain.ledger.consensus.wal import SignerState

    record = chain.tmp / "v3.signer"
    good = SignerState(1, 0, 1, -1, None, -1, None, (), ()).to_bytes()
    if damage == "unreadable":
        record.mkdir()
    else:
        record.write_bytes({"empty": b"", "torn": good[: len(good) // 2], "garbage": b"\0\xff" * 9,
                            "negative round": good.replace(b'"round":0', b'"round":-5')}[damage])
    with pytest.raises(TablechainError) as caught:
        ValidatorNode(f"sqlite:///{chain.tmp / 'v3'}.db", chain.genesis, chain.keys[3], "v3",
                      chain.hub, NodeConfig(), ConsensusConfig(), record)
    assert isinstance(caught.value, ConsensusError) and caught.value.code == "tefCONSENSUS"
    assert str(record) in caught.value.message
