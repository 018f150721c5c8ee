"""Unit tests of the consensus state machine, messages, certificates and single-validator mode."""

from __future__ import annotations

import pickle
from dataclasses import replace

import pytest

from tablechain.crypto import canonical_json, private_key_from_bytes, sha256
from tablechain.ledger.consensus import (
    PRECOMMIT,
    PREVOTE,
    BlockResponse,
    Broadcast,
    Committed,
    CommittedBlock,
    ConsensusConfig,
    ConsensusError,
    ConsensusMachine,
    EquivocationDetected,
    ExecutionResult,
    InvalidQuorumCertificate,
    InvalidValidatorSet,
    MalformedMessage,
    MessageReceived,
    Persist,
    Proposal,
    ProposedBlock,
    QuorumCertificate,
    ScheduleTimer,
    SendTo,
    SignerState,
    SingleValidatorRunner,
    Start,
    StateDivergence,
    Status,
    Timer,
    TimerFired,
    TransactionsAvailable,
    ValidatorSet,
    Vote,
    decode_message,
    encode_message,
    verify_qc,
)
from tablechain.ledger.consensus.messages import (
    proposal_payload,
    sign_block_request,
    sign_proposal,
    sign_vote,
    vote_payload,
)
from tablechain.ledger.consensus.wal import STEP_PREVOTE

CHAIN = "test-chain"


def key(i: int):
    return private_key_from_bytes("ed25519", sha256(f"bft-test-{i}".encode()))


class FakeApp:
    """Blocks are b"block|<height>|<parent hex>|<payload>"; payloads starting with "bad" are
    invalid; the state root is a hash chain over blocks (``salt`` makes a deviant executor)."""

    def __init__(self, pending: list[str] | None = None, salt: bytes = b"") -> None:
        self.pending = list(pending or [])
        self.salt = salt
        self.blocks: list[CommittedBlock] = []
        self.roots = [sha256(b"genesis")]
        self.validated = 0

    def committed_height(self) -> int:
        return len(self.blocks)

    def committed_block(self, height: int) -> CommittedBlock | None:
        return self.blocks[height - 1] if 1 <= height <= len(self.blocks) else None

    def has_pending_transactions(self) -> bool:
        return bool(self.pending)

    def parent(self) -> str:
        return sha256(self.blocks[-1].block).hex() if self.blocks else "0" * 64

    def make_block(self, height: int, payload: str) -> bytes:
        return f"block|{height}|{self.parent()}|{payload}".encode()

    def propose_block(self, height, last_commit):
        if not self.pending:
            return None
        block = self.make_block(height, self.pending[0])
        return ProposedBlock(block, sha256(block))

    def validate_block(self, height, block):
        self.validated += 1
        parts = block.decode().split("|")
        if len(parts) != 4 or parts[0] != "block" or parts[1] != str(height):
            return None
        if parts[2] != self.parent() or parts[3].startswith("bad"):
            return None
        return ExecutionResult(sha256(block), sha256(self.salt + self.roots[-1] + block))

    def commit_block(self, height, block, qc):
        result = self.validate_block(height, block)
        assert result is not None and result.state_root == qc.state_root
        self.blocks.append(CommittedBlock(height, block, qc))
        self.roots.append(result.state_root)
        payload = block.decode().split("|")[3]
        if payload in self.pending:
            self.pending.remove(payload)


def vset(n: int) -> ValidatorSet:
    return ValidatorSet.from_keys(CHAIN, [(f"v{i}", key(i).public_key) for i in range(n)])


FAST = ConsensusConfig(timeout_propose_ms=100, timeout_propose_delta_ms=50,
                       timeout_prevote_ms=100, timeout_prevote_delta_ms=50,
                       timeout_precommit_ms=100, timeout_precommit_delta_ms=50)


def machine(i: int, n: int = 4, app: FakeApp | None = None, persisted=None):
    app = app if app is not None else FakeApp(["tx1"])
    return ConsensusMachine(vset(n), key(i), app, FAST, persisted), app


def sent(outputs, kind=None):
    """Messages broadcast or sent in ``outputs`` (optionally only votes of ``kind``)."""
    msgs = [o.message for o in outputs if isinstance(o, Broadcast | SendTo)]
    if kind == "proposal":
        return [m for m in msgs if isinstance(m, Proposal)]
    if kind is not None:
        return [m for m in msgs if isinstance(m, Vote) and m.kind == kind]
    return msgs


def vote(i: int, kind: str, height: int, round_: int, value) -> Vote:
    return sign_vote(key(i), CHAIN, f"v{i}", kind, height, round_, value)


def proposal(i: int, height: int, round_: int, block: bytes, pol: int = -1) -> Proposal:
    return sign_proposal(key(i), CHAIN, f"v{i}", height, round_, sha256(block), block, pol)


def feed(m: ConsensusMachine, *messages):
    out = []
    for msg in messages:
        out += m.step(MessageReceived(msg))
    return out


def value_of(app: FakeApp, block: bytes, height: int = 1):
    result = app.validate_block(height, block)
    assert result is not None
    return (result.block_hash, result.state_root)


# --- validator set and config ---------------------------------------------------------------


def test_quorum_sizes_and_rotation():
    assert [(vset(n).quorum, vset(n).max_faulty) for n in (1, 2, 3, 4, 7)] == [
        (1, 0), (2, 0), (3, 0), (3, 1), (5, 2)]
    vs = vset(4)
    assert [vs.proposer(1, r) for r in range(4)] == ["v1", "v2", "v3", "v0"]
    assert vs.proposer(2, 0) == "v2"


def test_bad_validator_sets_and_config_are_refused():
    with pytest.raises(InvalidValidatorSet):
        ValidatorSet(CHAIN, ())
    with pytest.raises(InvalidValidatorSet):
        ValidatorSet.from_keys(CHAIN, [("a", key(0).public_key), ("a", key(1).public_key)])
    with pytest.raises(InvalidValidatorSet):
        ValidatorSet.from_keys(CHAIN, [("a", key(0).public_key), ("b", key(0).public_key)])
    with pytest.raises(InvalidValidatorSet):
        ConsensusMachine(vset(4), key(9), FakeApp(), FAST)
    with pytest.raises(ConsensusError):
        ConsensusConfig(timeout_propose_ms=-1)
    err = InvalidQuorumCertificate("x")
    assert pickle.loads(pickle.dumps(err)).code == "temBAD_QUORUM_CERTIFICATE"


# --- single validator -----------------------------------------------------------------------


def test_single_validator_commits_immediately_and_never_empty():
    app = FakeApp([])
    m = ConsensusMachine(vset(1), key(0), app, FAST)
    out = m.step(Start())
    assert not [o for o in out if isinstance(o, Committed)]  # nothing to commit: no block
    assert any(isinstance(o, ScheduleTimer) and o.timer.kind == "idle" for o in out)
    app.pending = ["a", "b"]
    out = m.step(TransactionsAvailable())
    commits = [o for o in out if isinstance(o, Committed)]
    assert [c.height for c in commits] == [1, 2]  # both transactions, one block each
    for c in commits:
        verify_qc(c.qc, vset(1))
        assert c.qc.signers() == ("v0",)
    assert m.height == 3 and app.pending == []
    # Persist precedes every broadcast of a newly signed vote.
    kinds = [type(o).__name__ for o in out]
    first_vote = next(i for i, o in enumerate(out) if isinstance(o, Broadcast)
                      and isinstance(o.message, Vote))
    assert "Persist" in kinds[:first_vote]


def test_single_validator_runner_idle_poll_picks_up_work():
    app = FakeApp([])
    runner = SingleValidatorRunner(CHAIN, key(0), app, FAST)
    assert runner.advance(500) == []
    app.pending = ["late"]
    done = runner.advance(FAST.idle_poll_ms)  # no notification: the idle poll finds it
    assert [c.height for c in done] == [1]
    app.pending = ["now"]
    assert [c.height for c in runner.notify_transactions()] == [2]
    assert len(app.blocks) == 2 and len(runner.committed) == 2


# --- a four-validator network in memory -----------------------------------------------------


class Net:
    """Delivers every message at once in FIFO order; ``down`` validators get nothing."""

    def __init__(self, n: int = 4, apps=None, down=()):
        self.apps = apps or [FakeApp(["tx1"]) for _ in range(n)]
        self.machines = [ConsensusMachine(vset(n), key(i), self.apps[i], FAST)
                         for i in range(n)]
        self.down = set(down)
        self.queue: list[tuple[int, object]] = []
        self.timers: list[tuple[int, Timer]] = []
        self.commits: list[tuple[int, Committed]] = []

    def handle(self, i: int, outputs) -> None:
        for o in outputs:
            if isinstance(o, Broadcast):
                self.queue += [(j, o.message) for j in range(len(self.machines)) if j != i]
            elif isinstance(o, SendTo):
                self.queue.append((int(o.validator[1:]), o.message))
            elif isinstance(o, ScheduleTimer):
                self.timers.append((i, o.timer))
            elif isinstance(o, Committed):
                self.commits.append((i, o))

    def start(self):
        for i, m in enumerate(self.machines):
            if i not in self.down:
                self.handle(i, m.step(Start()))
        self.drain()

    def drain(self):
        while self.queue:
            j, msg = self.queue.pop(0)
            if j not in self.down:
                self.handle(j, self.machines[j].step(MessageReceived(msg)))

    def fire(self, kind: str):
        """Fire every pending timer of ``kind`` once (as if its delay passed)."""
        due = [(i, t) for i, t in self.timers if t.kind == kind]
        self.timers = [(i, t) for i, t in self.timers if t.kind != kind]
        for i, t in due:
            if i not in self.down:
                self.handle(i, self.machines[i].step(TimerFired(t)))
        self.drain()


def test_four_validators_commit_with_a_quorum_certificate():
    net = Net()
    net.start()
    assert sorted(i for i, _ in net.commits) == [0, 1, 2, 3]
    hashes = {c.block_hash for _, c in net.commits}
    assert len(hashes) == 1
    for _, c in net.commits:
        verify_qc(c.qc, vset(4))
        assert c.height == 1 and c.round == 0 and len(c.qc.signatures) >= 3


def test_round_change_on_timeout_when_proposer_is_down():
    net = Net(down={1})  # v1 proposes height 1 round 0
    net.start()
    assert net.commits == []
    net.fire("propose")  # everyone prevotes nil
    net.fire("prevote")
    net.fire("precommit")  # round 1: v2 proposes
    commits = [c for _, c in net.commits]
    assert len(commits) == 3 and {c.round for c in commits} == {1}
    assert {net.machines[i].height for i in (0, 2, 3)} == {2}


def test_idle_validators_run_no_timeouts_without_work():
    net = Net(apps=[FakeApp([]) for _ in range(4)])
    net.start()
    assert not [t for _, t in net.timers if t.kind == "propose"]
    net.fire("idle")
    assert net.commits == [] and all(m.round == 0 for m in net.machines)


# --- locking --------------------------------------------------------------------------------


def test_locking_prevotes_nil_on_other_value_until_a_newer_polka():
    m, app = machine(0)
    m.step(Start())
    block_a = app.make_block(1, "A")
    block_b = app.make_block(1, "B")
    va, vb = value_of(app, block_a), value_of(app, block_b)
    out = feed(m, proposal(1, 1, 0, block_a))
    assert [v.value for v in sent(out, PREVOTE)] == [va]
    out = feed(m, vote(1, PREVOTE, 1, 0, va), vote(2, PREVOTE, 1, 0, va))
    assert [v.value for v in sent(out, PRECOMMIT)] == [va]
    assert (m.locked_round, m.locked_hash) == (0, va[0])
    # Round 0 fails to commit (nil precommits), round 1 proposes a fresh B: locked on A -> nil.
    feed(m, vote(1, PRECOMMIT, 1, 0, None), vote(2, PRECOMMIT, 1, 0, None))
    m.step(TimerFired(Timer("precommit", 1, 0)))
    assert m.round == 1
    out = feed(m, proposal(2, 1, 1, block_b))
    assert [v.value for v in sent(out, PREVOTE)] == [None]
    # A polka for B in round 1 (newer than the lock) lets a round-2 proposal of B through.
    feed(m, vote(1, PREVOTE, 1, 1, vb), vote(2, PREVOTE, 1, 1, vb), vote(3, PREVOTE, 1, 1, vb))
    feed(m, vote(1, PRECOMMIT, 1, 1, None), vote(2, PRECOMMIT, 1, 1, None))
    m.step(TimerFired(Timer("precommit", 1, 1)))
    assert m.round == 2
    out = feed(m, proposal(3, 1, 2, block_b, pol=1))
    assert [v.value for v in sent(out, PREVOTE)] == [vb]


def test_locked_value_reproposed_with_its_pol_round_is_accepted():
    m, app = machine(0)
    m.step(Start())
    block_a = app.make_block(1, "A")
    va = value_of(app, block_a)
    feed(m, proposal(1, 1, 0, block_a), vote(1, PREVOTE, 1, 0, va), vote(2, PREVOTE, 1, 0, va))
    feed(m, vote(1, PRECOMMIT, 1, 0, None), vote(2, PRECOMMIT, 1, 0, None))
    m.step(TimerFired(Timer("precommit", 1, 0)))
    feed(m, vote(1, PRECOMMIT, 1, 1, None))
    out = feed(m, proposal(2, 1, 1, block_a, pol=0))
    assert [v.value for v in sent(out, PREVOTE)] == [va]


def test_proposer_reproposes_its_valid_value():
    # v3 proposes (1, 2); it saw a polka for A in round 0, so it re-proposes A with pol 0.
    m, app = machine(3)
    m.step(Start())
    block_a = app.make_block(1, "A")
    va = value_of(app, block_a)
    feed(m, proposal(1, 1, 0, block_a), vote(1, PREVOTE, 1, 0, va), vote(2, PREVOTE, 1, 0, va))
    for r in (0, 1):
        feed(m, vote(1, PRECOMMIT, 1, r, None), vote(2, PRECOMMIT, 1, r, None))
        if r == 1:
            feed(m, vote(0, PREVOTE, 1, 1, None))
        out = m.step(TimerFired(Timer("precommit", 1, r)))
    props = sent(out, "proposal")
    assert m.round == 2 and len(props) == 1
    assert (props[0].block_hash, props[0].pol_round) == (va[0], 0)


# --- bad input ------------------------------------------------------------------------------


def test_forged_and_outsider_votes_are_not_counted():
    m, app = machine(0)
    m.step(Start())
    block_a = app.make_block(1, "A")
    va = value_of(app, block_a)
    feed(m, proposal(1, 1, 0, block_a))
    forged = replace(vote(2, PREVOTE, 1, 0, va), signature=bytes(64))
    outsider = sign_vote(key(7), CHAIN, "v7", PREVOTE, 1, 0, va)
    impostor = sign_vote(key(7), CHAIN, "v2", PREVOTE, 1, 0, va)  # v2's name, wrong key
    out = feed(m, vote(1, PREVOTE, 1, 0, va), forged, outsider, impostor)
    assert sent(out, PRECOMMIT) == []  # only 2 valid prevotes (v0, v1)
    out = feed(m, vote(2, PREVOTE, 1, 0, va))
    assert [v.value for v in sent(out, PRECOMMIT)] == [va]


def test_forged_proposal_and_wrong_proposer_are_ignored():
    m, app = machine(0)
    m.step(Start())
    block = app.make_block(1, "A")
    out = feed(m, replace(proposal(1, 1, 0, block), signature=bytes(64)),
               proposal(2, 1, 0, block))  # v2 is not the proposer of round 0
    assert sent(out, PREVOTE) == [] and m.step_name == "propose"


def test_equivocation_is_reported_and_counted_at_most_once_per_value():
    m, app = machine(0)
    m.step(Start())
    block_a, block_b = app.make_block(1, "A"), app.make_block(1, "B")
    va, vb = value_of(app, block_a), value_of(app, block_b)
    out = feed(m, proposal(1, 1, 0, block_a), proposal(1, 1, 0, block_b))
    assert [v.value for v in sent(out, PREVOTE)] == [va]
    assert [o.kind for o in out if isinstance(o, EquivocationDetected)] == ["proposal"]
    out = feed(m, vote(1, PREVOTE, 1, 0, vb), vote(1, PREVOTE, 1, 0, va),
               vote(2, PREVOTE, 1, 0, vb))
    assert [o.validator for o in out if isinstance(o, EquivocationDetected)] == ["v1"]
    # A: v0, v1 ; B: v1, v2. Three validators voted (prevote timeout starts), no polka.
    assert sent(out, PRECOMMIT) == []
    assert any(isinstance(o, ScheduleTimer) and o.timer.kind == "prevote" for o in out)
    # A third distinct validator for A makes a polka (the equivocator counts once per value,
    # which is safe: two quorums still share an honest validator).
    out = feed(m, vote(3, PREVOTE, 1, 0, va))
    assert [v.value for v in sent(out, PRECOMMIT)] == [va]
    # Further fakes from the equivocator are dropped once it has two votes in the round.
    vc = (sha256(b"c"), sha256(b"c"))
    assert feed(m, vote(1, PREVOTE, 1, 0, vc)) == []


def test_invalid_block_gets_nil_prevote():
    m, app = machine(0)
    m.step(Start())
    out = feed(m, proposal(1, 1, 0, app.make_block(1, "bad tx")))
    assert [v.value for v in sent(out, PREVOTE)] == [None]
    m2, app2 = machine(0)
    m2.step(Start())
    lie = sign_proposal(key(1), CHAIN, "v1", 1, 0, sha256(b"other"), app2.make_block(1, "A"), -1)
    assert [v.value for v in sent(feed(m2, lie), PREVOTE)] == [None]  # hash does not match


def test_votes_with_another_state_root_do_not_form_a_quorum():
    m, app = machine(0)
    m.step(Start())
    block = app.make_block(1, "A")
    mine = value_of(app, block)
    theirs = value_of(FakeApp(salt=b"deviant"), block)
    feed(m, proposal(1, 1, 0, block))
    out = feed(m, vote(1, PREVOTE, 1, 0, theirs), vote(2, PREVOTE, 1, 0, theirs))
    assert sent(out, PRECOMMIT) == []
    out = feed(m, *(vote(i, PRECOMMIT, 1, 0, theirs) for i in (1, 2, 3)))
    assert not [o for o in out if isinstance(o, Committed)]
    assert [o.local_root for o in out if isinstance(o, StateDivergence)] == [mine[1]]


def test_malformed_messages_are_dropped():
    m, _ = machine(0)
    m.step(Start())
    bad = [Vote("maybe", 1, 0, None, None, "v1", b""), Vote(PREVOTE, True, 0, None, None, "v1"),
           Vote(PREVOTE, 1, -1, None, None, "v1"), Vote(PREVOTE, 1, 0, b"x", None, "v1"),
           Proposal(1, 0, b"h", "not bytes", -1, "v1", b""), "junk", None]
    for msg in bad:
        assert m.step(MessageReceived(msg)) == []  # type: ignore[arg-type]


# --- persistence and restart ----------------------------------------------------------------


def test_restart_resends_signed_vote_and_never_signs_another():
    m, app = machine(0)
    m.step(Start())
    block_a, block_b = app.make_block(1, "A"), app.make_block(1, "B")
    out = feed(m, proposal(1, 1, 0, block_a))
    record = [o.state for o in out if isinstance(o, Persist)][-1]
    stored = SignerState.from_bytes(record.to_bytes())
    assert stored == record
    (prevote_a,) = sent(out, PREVOTE)
    m2 = ConsensusMachine(vset(4), key(0), app, FAST, persisted=stored)
    out = m2.step(Start())
    assert prevote_a in sent(out, PREVOTE)
    out = feed(m2, proposal(1, 1, 0, block_b))  # a different round-0 proposal after restart
    assert all(v == prevote_a for v in sent(out, PREVOTE))


def test_restart_keeps_the_lock_and_its_block():
    m, app = machine(0)
    m.step(Start())
    block_a = app.make_block(1, "A")
    va = value_of(app, block_a)
    out = feed(m, proposal(1, 1, 0, block_a), vote(1, PREVOTE, 1, 0, va),
               vote(2, PREVOTE, 1, 0, va))
    record = SignerState.from_bytes([o.state for o in out if isinstance(o, Persist)][-1]
                                    .to_bytes())
    assert (record.locked_round, record.locked_block) == (0, block_a)
    m2 = ConsensusMachine(vset(4), key(0), app, FAST, persisted=record)
    m2.step(Start())
    assert (m2.locked_round, m2.locked_hash) == (0, va[0])
    # In round 3 v0 proposes: it re-proposes A from the persisted bytes.
    feed(m2, *(vote(i, PRECOMMIT, 1, 2, None) for i in (1, 2)))  # f+1 at round 2: skip
    out = m2.step(TimerFired(Timer("precommit", 1, 2)))
    assert m2.round in (2, 3)
    if m2.round == 2:
        out = m2.step(TimerFired(Timer("precommit", 1, 2)))
    props = sent(out, "proposal")
    assert [(p.block, p.pol_round) for p in props] == [(block_a, 0)]


def test_a_malformed_signer_record_is_refused():
    with pytest.raises(MalformedMessage):
        SignerState.from_bytes(b'{"height": 1}')


def test_a_signer_record_ahead_of_a_lost_chain_holds_signing_until_the_chain_reaches_it():
    """A validator whose chain store was lost (a database deleted to re-sync) while its signer
    record stayed at a higher height was refused at start, for good. It now starts and follows
    the quorum, but signs nothing below the record's height (what it signed there is unknown);
    at the record's height it resumes from the record, as after any restart; above it, it never
    signed anything, so it signs again."""
    source = _chain(4, signers=(1, 2, 3))  # decided while v0 was away
    blocks = source.blocks
    signed = vote(0, PREVOTE, 3, 0, (blocks[2].qc.block_hash, blocks[2].qc.state_root))
    record = SignerState(height=3, round=0, step=STEP_PREVOTE, locked_round=-1, locked_hash=None,
                         valid_round=-1, valid_hash=None, votes=(signed,), proposed=())
    m, app = machine(0, app=FakeApp(["tx1"]), persisted=record)
    out = m.step(Start())
    # Height 1 is decided in front of it: it follows the quorum to the commit, voting nothing.
    value1 = (blocks[0].qc.block_hash, blocks[0].qc.state_root)
    out += feed(m, proposal(1, 1, 0, blocks[0].block),
                *(vote(i, kind, 1, 0, value1) for kind in (PREVOTE, PRECOMMIT) for i in (1, 2, 3)))
    assert m.height == 2
    out += m.step(TimerFired(Timer("propose", 2, 0)))  # would prevote nil
    out += m.step(TimerFired(Timer("propose", 2, 0)))
    assert not [o for o in out if isinstance(o, Persist)]
    assert sent(out, PREVOTE) + sent(out, PRECOMMIT) + sent(out, "proposal") == []
    # Block 2 from a peer, with its certificate: at the record's height, what it signed there
    # is re-sent and nothing else is signed at that height and round.
    out = feed(m, BlockResponse("v1", tuple(blocks[1:2])))
    assert m.height == 3 and sent(out, PREVOTE) == [signed]
    out = feed(m, proposal(3, 3, 0, app.make_block(3, "other")))
    assert sent(out, PREVOTE) == [] and not [o for o in out if isinstance(o, Persist)]
    # Past the record, it votes again.
    out = feed(m, BlockResponse("v2", tuple(blocks[2:])))
    assert m.height == 5 and app.roots == source.roots
    block5 = app.make_block(5, "tx5")
    out = feed(m, proposal(1, 5, 0, block5))
    assert [(v.height, v.value) for v in sent(out, PREVOTE)] == [(5, value_of(app, block5, 5))]
    assert [o.state.height for o in out if isinstance(o, Persist)] == [5]
    # Caught up past the record in one response: nothing is signed at or below its height.
    m, app = machine(0, app=FakeApp(), persisted=record)
    out = m.step(Start()) + feed(m, BlockResponse("v1", tuple(blocks)))
    assert m.height == 5 and sent(out, PREVOTE) + sent(out, PRECOMMIT) == []


# --- future heights, catch-up, certificates -------------------------------------------------


def test_messages_for_the_next_height_are_buffered_and_replayed():
    net = Net()
    m, app = net.machines[0], net.apps[0]
    app.pending = ["tx1", "tx2"]
    m.step(Start())
    # Height 1 decided by the others; v0 gets the height-2 proposal before the precommits.
    block1 = app.make_block(1, "tx1")
    v1 = value_of(app, block1)
    feed(m, proposal(1, 1, 0, block1))
    early = sign_proposal(key(2), CHAIN, "v2", 2, 0, sha256(b"x"), b"x", -1)
    feed(m, early)
    out = feed(m, *(vote(i, PRECOMMIT, 1, 0, v1) for i in (1, 2, 3)))
    assert [c.height for c in out if isinstance(c, Committed)] == [1]
    assert m.height == 2
    assert [v.value for v in sent(out, PREVOTE) if v.height == 2] == [None]  # x is invalid


def _chain(n_blocks: int, signers: tuple[int, ...] = (0, 1, 2)) -> FakeApp:
    """A FakeApp with ``n_blocks`` committed through a real 4-validator quorum."""
    app = FakeApp()
    for h in range(1, n_blocks + 1):
        block = app.make_block(h, f"tx{h}")
        bh, root = value_of(app, block, h)
        sigs = tuple((f"v{i}", vote(i, PRECOMMIT, h, 0, (bh, root)).signature) for i in signers)
        app.commit_block(h, block, QuorumCertificate(h, 0, bh, root, sigs))
    return app


def test_catch_up_from_block_responses_verifies_certificates():
    source = _chain(5)
    m, app = machine(0, app=FakeApp())
    m.step(Start())
    out = feed(m, Status(6, 0, "v1", b""))  # unsigned: ignored
    assert not [o for o in out if isinstance(o, ScheduleTimer) and o.timer.kind == "catchup"]
    status = replace(Status(6, 0, "v1"), signature=key(1).sign(Status(6, 0, "v1").payload(CHAIN)))
    out = feed(m, status)
    (timer,) = [o.timer for o in out if isinstance(o, ScheduleTimer) and o.timer.kind == "catchup"]
    out = m.step(TimerFired(timer))
    (request,) = [o for o in out if isinstance(o, SendTo)]
    assert request.validator == "v1" and request.message.from_height == 1
    blocks = tuple(source.blocks)
    tampered = list(blocks)
    qc = tampered[0].qc
    tampered[0] = CommittedBlock(1, blocks[0].block, replace(qc, signatures=qc.signatures[:2]))
    out = feed(m, BlockResponse("v1", tuple(tampered)))
    assert m.height == 1 and not [o for o in out if isinstance(o, Committed)]
    out = feed(m, BlockResponse("v1", blocks))
    assert [c.height for c in out if isinstance(c, Committed) and c.via_catchup] == [1, 2, 3, 4, 5]
    assert m.height == 6 and app.roots == source.roots


def test_block_requests_are_served_in_bounded_batches():
    app = _chain(5)
    m = ConsensusMachine(vset(4), key(0), app, replace(FAST, catchup_batch_blocks=2))
    m.step(Start())
    out = feed(m, sign_block_request(key(2), CHAIN, "v2", 2, 100))
    (resp,) = [o for o in out if isinstance(o, SendTo)]
    assert resp.validator == "v2" and [b.height for b in resp.message.blocks] == [2, 3]
    forged = replace(sign_block_request(key(2), CHAIN, "v2", 1, 3), signature=bytes(64))
    assert feed(m, forged) == []


def test_verify_qc_rejects_every_kind_of_bad_certificate():
    app = _chain(1)
    qc = app.blocks[0].qc
    vs = vset(4)
    verify_qc(qc, vs)
    sig0 = qc.signatures[0]
    bad = {
        "too few": replace(qc, signatures=qc.signatures[:2]),
        "duplicate": replace(qc, signatures=(sig0, sig0, qc.signatures[1])),
        "unknown": replace(qc, signatures=qc.signatures[:2] + (("v9", sig0[1]),)),
        "bad signature": replace(qc, signatures=qc.signatures[:2] + (("v3", bytes(64)),)),
        "other height": replace(qc, height=2),
        "other root": replace(qc, state_root=sha256(b"x")),
        "malformed": replace(qc, block_hash=b""),
    }
    for name, cert in bad.items():
        with pytest.raises(InvalidQuorumCertificate):
            verify_qc(cert, vs)
        assert name
    with pytest.raises(InvalidQuorumCertificate):
        verify_qc(qc, ValidatorSet.from_keys("other-chain", [(v.validator_id, v.public_key)
                                                             for v in vs.validators]))
    assert QuorumCertificate.from_bytes(qc.to_bytes()) == qc


# --- encodings ------------------------------------------------------------------------------


def test_payloads_are_canonical_json():
    assert vote_payload("c\"h", PREVOTE, 3, 1, b"\x01", None) == canonical_json(
        {"chain": "c\"h", "type": PREVOTE, "height": 3, "round": 1, "block_hash": "01",
         "state_root": None})
    assert proposal_payload("c", 3, 1, b"\x02", 0, b"\x03") == canonical_json(
        {"chain": "c", "type": "proposal", "height": 3, "round": 1, "block_hash": "02",
         "block_digest": "03", "pol_round": 0})


def test_wire_encoding_round_trips_and_rejects_garbage():
    app = _chain(2)
    msgs = [
        vote(1, PREVOTE, 3, 2, (b"\x01" * 32, b"\x02" * 32)),
        vote(1, PRECOMMIT, 3, 2, None),
        proposal(1, 3, 2, b"\x00block bytes\xff" * 10, pol=1),
        Status(4, 1, "v2", b"sig"),
        sign_block_request(key(2), CHAIN, "v2", 1, 9),
        BlockResponse("v3", tuple(app.blocks)),
        BlockResponse("v3", ()),
    ]
    for msg in msgs:
        assert decode_message(encode_message(msg)) == msg
    good = encode_message(msgs[2])
    for junk in (b"", b"XXXX" + good[4:], good[:-1], good + b"x", good[:8] + b"[" + good[9:]):
        with pytest.raises(MalformedMessage):
            decode_message(junk)
    with pytest.raises(MalformedMessage):
        encode_message(Vote(PREVOTE, 0, 0, None, None, "v1"))
