"""A deterministic network simulator for the consensus state machine.

One seeded ``random.Random`` drives everything: the scenario (validator count, Byzantine
validators and what they do, partitions, crashes, drop/duplication rates, the global
stabilisation time GST, the transactions clients submit) and every delay. Simulated time is an
integer number of milliseconds; no wall clock is read, so a seed replays exactly.

Before GST the network delays, drops, duplicates and reorders messages and partitions the
validators; honest validators crash and restart with only their persisted record (committed
chain and ``SignerState``). After GST every message arrives within a bound and everyone is up.

Properties checked on every run: agreement (no two honest validators commit different blocks at
a height), validity (every committed block is valid), QC validity, no honest double-signing,
and liveness (every submitted transaction is committed by every honest validator within a
bounded time after GST).
"""

from __future__ import annotations

import heapq
import os
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tablechain.crypto import (
    PrivateKey,
    PublicKey,
    canonical_json,
    parse_json,
    private_key_from_bytes,
    sha256,
)
from tablechain.errors import TablechainError
from tablechain.ledger.consensus.bft import ConsensusConfig, ConsensusMachine
from tablechain.ledger.consensus.errors import InvalidQuorumCertificate
from tablechain.ledger.consensus.events import (
    Broadcast,
    Committed,
    EquivocationDetected,
    Event,
    MessageReceived,
    Output,
    Persist,
    ScheduleTimer,
    SendTo,
    Start,
    StateDivergence,
    TimerFired,
    TransactionsAvailable,
)
from tablechain.ledger.consensus.interface import ExecutionResult, ProposedBlock
from tablechain.ledger.consensus.messages import (
    PRECOMMIT,
    PREVOTE,
    BlockRequest,
    BlockResponse,
    CommittedBlock,
    Message,
    Proposal,
    QuorumCertificate,
    Status,
    Vote,
    decode_message,
    encode_message,
    sign_proposal,
    sign_vote,
    verify_qc,
)
from tablechain.ledger.consensus.validators import ValidatorSet
from tablechain.ledger.consensus.wal import SignerState

__all__ = [
    "BYZANTINE_BEHAVIOURS",
    "Scenario",
    "SimResult",
    "SimulationFailure",
    "ToyApp",
    "ToyChain",
    "make_scenario",
    "replay_command",
    "run_scenario",
    "run_seed",
]

REPLAY_TEST = "tests/ledger/test_consensus_sim.py"

BYZANTINE_BEHAVIOURS = (
    "silent",  # sends nothing at all
    "equivocate_votes",  # conflicting prevotes/precommits to different peers
    "equivocate_proposals",  # a different valid block to half of the peers
    "invalid_blocks",  # proposes blocks with invalid transactions or a wrong parent
    "wrong_root",  # executes "correctly" but votes with a wrong state root
    "unknown_votes",  # extra votes for blocks nobody proposed, in current and future rounds
    "forge",  # messages naming other validators with bad signatures, and from non-validators
    "bad_catchup",  # answers block requests with tampered blocks and certificates
    "fork_attack",  # precommits to one peer only, and proposes fresh twins ignoring locks
)


class SimulationFailure(TablechainError):
    """A simulated run broke a property; the message says which and how to replay it."""

    code = "tecSIMULATION_FAILED"


def replay_command(seed: int) -> str:
    return f"TABLECHAIN_SIM_SEED={seed} pytest {REPLAY_TEST} -k replay"


# --- the toy application ---------------------------------------------------------------------


def encode_block(height: int, parent: bytes, txs: list[str], proposer: str = "") -> bytes:
    """A toy block. The proposer's name is in it (as a real header's proposer and timestamp
    are), so blocks proposed in different rounds differ even with the same transactions."""
    return canonical_json(
        {"height": height, "parent": parent.hex(), "proposer": proposer, "txs": txs}
    )


def decode_block(block: bytes) -> tuple[int, bytes, list[str]]:
    data = parse_json(block)
    if not isinstance(data, dict) or set(data) != {"height", "parent", "proposer", "txs"}:
        raise TablechainError("toy block has the wrong fields", "temMALFORMED")
    txs = data["txs"]
    if not isinstance(txs, list) or not all(isinstance(t, str) for t in txs):
        raise TablechainError("toy block transactions must be strings", "temMALFORMED")
    if type(data["height"]) is not int or not isinstance(data["parent"], str):
        raise TablechainError("toy block header is malformed", "temMALFORMED")
    return data["height"], bytes.fromhex(data["parent"]), txs


def next_root(root: bytes, txs: list[str]) -> bytes:
    """The toy state root: a hash chain over every applied transaction."""
    for tx in txs:
        root = sha256(root + sha256(tx.encode()))
    return root


GENESIS_HASH = b"\x00" * 32
GENESIS_ROOT = sha256(b"toy-genesis")


@dataclass
class ToyChain:
    """What a validator keeps on disk: its committed blocks with their certificates."""

    blocks: list[CommittedBlock] = field(default_factory=list)
    hashes: list[bytes] = field(default_factory=list)
    roots: list[bytes] = field(default_factory=list)
    txs: set[str] = field(default_factory=set)

    @property
    def height(self) -> int:
        return len(self.blocks)

    def last_hash(self) -> bytes:
        return self.hashes[-1] if self.hashes else GENESIS_HASH

    def last_root(self) -> bytes:
        return self.roots[-1] if self.roots else GENESIS_ROOT


class ToyMempool:
    """Client transactions as they reach one validator: ``(arrival_ms, tx)`` in arrival order."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[int, str]] = []

    def add(self, arrival_ms: int, tx: str) -> None:
        self.arrivals.append((arrival_ms, tx))
        self.arrivals.sort()


class ToyApp:
    """A toy ledger: blocks are lists of client transactions; the state root is a hash chain.

    A block is valid when it extends the committed chain (height and parent hash), holds 1 to
    ``max_block_txs`` distinct transactions that clients really signed (they are in
    ``universe``) and that are not committed yet.
    """

    def __init__(
        self,
        chain: ToyChain,
        mempool: ToyMempool,
        universe: frozenset[str],
        max_block_txs: int,
        wrong_root: bool = False,
        name: str = "",
    ) -> None:
        self.name = name
        self.chain = chain
        self.mempool = mempool
        self.universe = universe
        self.max_block_txs = max_block_txs
        self.wrong_root = wrong_root
        self.now = 0

    def committed_height(self) -> int:
        return self.chain.height

    def committed_block(self, height: int) -> CommittedBlock | None:
        if 1 <= height <= self.chain.height:
            return self.chain.blocks[height - 1]
        return None

    def pending(self) -> list[str]:
        out = []
        for arrival, tx in self.mempool.arrivals:
            if arrival > self.now:
                break
            if tx not in self.chain.txs:
                out.append(tx)
        return out

    def has_pending_transactions(self) -> bool:
        return bool(self.pending())

    def propose_block(
        self, height: int, last_commit: QuorumCertificate | None
    ) -> ProposedBlock | None:
        txs = self.pending()[: self.max_block_txs]
        if not txs:
            return None
        block = encode_block(height, self.chain.last_hash(), txs, self.name)
        return ProposedBlock(block, sha256(block))

    def check_block(self, height: int, block: bytes) -> list[str] | None:
        """The block's transactions when it is valid on top of the chain, else None."""
        try:
            block_height, parent, txs = decode_block(block)
        except (TablechainError, ValueError):
            return None
        if block_height != height or height != self.chain.height + 1:
            return None
        if parent != self.chain.last_hash() or not 1 <= len(txs) <= self.max_block_txs:
            return None
        if len(set(txs)) != len(txs):
            return None
        for tx in txs:
            if tx not in self.universe or tx in self.chain.txs:
                return None
        return txs

    def validate_block(self, height: int, block: bytes) -> ExecutionResult | None:
        txs = self.check_block(height, block)
        if txs is None:
            return None
        root = next_root(self.chain.last_root(), txs)
        if self.wrong_root:
            root = sha256(b"wrong" + root)
        return ExecutionResult(sha256(block), root)

    def commit_block(self, height: int, block: bytes, qc: QuorumCertificate) -> None:
        txs = self.check_block(height, block)
        if txs is None:
            raise SimulationFailure(f"commit_block called with an invalid block at {height}")
        chain = self.chain
        chain.blocks.append(CommittedBlock(height, block, qc))
        chain.hashes.append(sha256(block))
        chain.roots.append(next_root(chain.last_root(), txs))
        chain.txs.update(txs)


class MemoVerifyKey(PublicKey):
    """A public key that remembers verification results.

    In the simulator every validator verifies the same broadcast signature; the answer is a
    pure function of (key, message, signature), so computing it once per run instead of once
    per receiver changes nothing but the run time. (Real validators verify for themselves.)
    """

    def __init__(self, inner: PublicKey) -> None:
        self.inner = inner
        self.scheme = inner.scheme  # type: ignore[misc]
        self.cache: dict[tuple[bytes, bytes], bool] = {}

    def to_bytes(self) -> bytes:
        return self.inner.to_bytes()

    def address(self) -> bytes:
        return self.inner.address()

    def verify(self, message: bytes, signature: bytes) -> bool:
        key = (message, signature)
        known = self.cache.get(key)
        if known is None:
            known = self.inner.verify(message, signature)
            self.cache[key] = known
        return known


# --- scenarios -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """Everything a run does, drawn from the seed (so a seed is the whole reproduction)."""

    seed: int
    n: int
    byzantine: tuple[tuple[int, tuple[str, ...]], ...]
    gst_ms: int
    deadline_ms: int
    max_delay_ms: int
    post_gst_max_delay_ms: int
    drop_permille: int
    dup_permille: int
    partitions: tuple[tuple[int, int, tuple[int, ...]], ...]  # start, end, group of node indexes
    crashes: tuple[tuple[int, int, int, bool], ...]  # node, crash at, restart at, mid-step
    txs: tuple[tuple[int, str], ...]
    mempool_delay_ms: int
    max_block_txs: int
    wire_encoding: bool
    config: ConsensusConfig

    def describe(self) -> str:
        byz = ", ".join(f"v{i}:{'+'.join(b)}" for i, b in self.byzantine) or "none"
        return (
            f"seed={self.seed} n={self.n} byzantine=[{byz}] gst={self.gst_ms}ms "
            f"delay<={self.max_delay_ms}ms drop={self.drop_permille}/1000 "
            f"dup={self.dup_permille}/1000 partitions={len(self.partitions)} "
            f"crashes={len(self.crashes)} txs={len(self.txs)} block<={self.max_block_txs} "
            f"wire={self.wire_encoding}"
        )


SIM_CONFIG = ConsensusConfig(
    timeout_propose_ms=400,
    timeout_propose_delta_ms=100,
    timeout_prevote_ms=200,
    timeout_prevote_delta_ms=100,
    timeout_precommit_ms=200,
    timeout_precommit_delta_ms=100,
    timeout_max_ms=5000,
    idle_poll_ms=100,
    rebroadcast_ms=500,
    catchup_delay_ms=150,
    catchup_retry_ms=600,
    catchup_batch_blocks=8,
)


def make_scenario(seed: int) -> Scenario:
    rng = random.Random(seed)
    n = rng.choice((1, 2, 3, 4, 4, 4, 4, 4, 5, 7))
    f = (n - 1) // 3
    n_byz = rng.randint(0, f)
    byz_nodes = sorted(rng.sample(range(n), n_byz))
    byzantine = tuple(
        (i, tuple(sorted(rng.sample(BYZANTINE_BEHAVIOURS, rng.randint(1, 3))))) for i in byz_nodes
    )
    honest = [i for i in range(n) if i not in byz_nodes]
    gst = rng.randint(300, 5000)
    partitions = []
    for _ in range(rng.choice((0, 0, 1, 2, 3))):
        start = rng.randint(0, gst)
        end = min(gst, start + rng.randint(100, 3000))
        group = tuple(sorted(rng.sample(range(n), rng.randint(1, max(1, n - 1)))))
        partitions.append((start, end, group))
    crashes = []
    for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
        node = rng.choice(honest)
        at = rng.randint(0, gst)
        crashes.append((node, at, rng.randint(at + 1, gst + 1), rng.random() < 0.5))
    n_txs = rng.randint(1, 40)
    txs = tuple(sorted((rng.randint(0, gst + 1500), f"tx-{seed}-{i}") for i in range(n_txs)))
    return Scenario(
        seed=seed,
        n=n,
        byzantine=byzantine,
        gst_ms=gst,
        deadline_ms=gst + 1500 + 25_000,
        max_delay_ms=rng.choice((5, 20, 100, 300, 800)),
        post_gst_max_delay_ms=rng.choice((5, 20, 50)),
        drop_permille=rng.choice((0, 0, 50, 100, 250, 500)),
        dup_permille=rng.choice((0, 0, 20, 100, 300)),
        partitions=tuple(partitions),
        crashes=tuple(sorted(crashes, key=lambda c: c[1])),
        txs=txs,
        mempool_delay_ms=rng.choice((0, 50, 300)),
        max_block_txs=rng.choice((1, 3, 10, 50)),
        wire_encoding=rng.randrange(100) < 5,
        config=SIM_CONFIG,
    )


# --- the simulation --------------------------------------------------------------------------


@dataclass
class SimNode:
    index: int
    validator_id: str
    key: PrivateKey
    behaviours: tuple[str, ...]
    chain: ToyChain = field(default_factory=ToyChain)
    mempool: ToyMempool = field(default_factory=ToyMempool)
    persisted: bytes | None = None
    machine: ConsensusMachine | None = None
    app: ToyApp | None = None
    alive: bool = False
    incarnation: int = 0
    crash_mid_step: bool = False

    @property
    def honest(self) -> bool:
        return not self.behaviours


@dataclass
class SimResult:
    scenario: Scenario
    failures: list[str]
    end_ms: int
    heights: dict[str, int]
    delivered: int
    equivocations: int
    max_round: int
    trace: list[str]

    @property
    def ok(self) -> bool:
        return not self.failures

    def report(self) -> str:
        lines = [f"consensus simulation {self.scenario.describe()}"]
        lines += [f"  FAILED: {f}" for f in self.failures]
        lines.append(f"  replay: {replay_command(self.scenario.seed)}")
        return "\n".join(lines)


class Simulation:
    """Runs one scenario to completion (all transactions committed everywhere) or deadline."""

    def __init__(self, scenario: Scenario, trace: bool = False) -> None:
        self.sc = scenario
        self.rng = random.Random(scenario.seed * 7919 + 17)
        self.now = 0
        self.queue: list[tuple[int, int, str, Any]] = []
        self.seq = 0
        self.keep_trace = trace
        self.trace: deque[str] = deque(maxlen=400)
        byz = dict(scenario.byzantine)
        self.nodes = [
            SimNode(i, f"v{i}", private_key_from_bytes(
                "ed25519", sha256(f"tablechain-sim:{scenario.seed}:{i}".encode())),
                byz.get(i, ()))
            for i in range(scenario.n)
        ]
        self.outsider = private_key_from_bytes("ed25519", sha256(b"not-a-validator"))
        self.validators = ValidatorSet.from_keys(
            f"sim-{scenario.seed}",
            [(n.validator_id, MemoVerifyKey(n.key.public_key)) for n in self.nodes],
        )
        self.by_id = {n.validator_id: n for n in self.nodes}
        self.universe = frozenset(tx for _, tx in scenario.txs)
        self.failures: list[str] = []
        self.canonical: dict[int, bytes] = {}
        self.signed: dict[tuple[str, str, int, int], object] = {}
        self.delivered = 0
        self.equivocations = 0
        self.max_round = 0
        self.committed_since_check = True

    # scheduling ----------------------------------------------------------------------------

    def push(self, at: int, kind: str, data: Any) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (at, self.seq, kind, data))

    def log(self, text: str) -> None:
        if self.keep_trace:
            self.trace.append(f"{self.now:>7}ms {text}")

    def fail(self, text: str) -> None:
        if text not in self.failures:
            self.failures.append(text)
            self.log("FAIL " + text)

    # network -------------------------------------------------------------------------------

    def partitioned(self, a: int, b: int) -> bool:
        for start, end, group in self.sc.partitions:
            if start <= self.now < end and ((a in group) != (b in group)):
                return True
        return False

    def send(self, src: int, dst: int, message: Message) -> None:
        if src == dst:
            return
        sc = self.sc
        if self.now >= sc.gst_ms:
            self.push(self.now + self.rng.randint(1, sc.post_gst_max_delay_ms), "deliver",
                      (dst, message))
            return
        if self.partitioned(src, dst) or self.rng.randrange(1000) < sc.drop_permille:
            return
        copies = 2 if self.rng.randrange(1000) < sc.dup_permille else 1
        for _ in range(copies):
            self.push(self.now + self.rng.randint(1, sc.max_delay_ms), "deliver", (dst, message))

    # nodes ---------------------------------------------------------------------------------

    def boot(self, node: SimNode) -> None:
        node.alive = True
        node.incarnation += 1
        node.app = ToyApp(node.chain, node.mempool, self.universe, self.sc.max_block_txs,
                          wrong_root="wrong_root" in node.behaviours,
                          name=f"{node.validator_id}/{node.incarnation}")
        node.app.now = self.now
        persisted = SignerState.from_bytes(node.persisted) if node.persisted else None
        node.machine = ConsensusMachine(self.validators, node.key, node.app, self.sc.config,
                                        persisted)
        self.log(f"v{node.index} boot height={node.machine.height} round={node.machine.round}")
        self.step(node, Start())

    def crash(self, node: SimNode) -> None:
        self.log(f"v{node.index} crash")
        node.alive = False
        node.machine = None
        node.app = None
        node.incarnation += 1

    def step(self, node: SimNode, event: Event) -> None:
        if not node.alive or node.machine is None or node.app is None:
            return
        node.app.now = self.now
        outputs = node.machine.step(event)
        if self.keep_trace:
            m = node.machine
            self.log(f"v{node.index} {describe(event)} -> h={m.height} r={m.round} "
                     f"{m.step_name} lock={m.locked_round} | "
                     + " ".join(describe(o) for o in outputs))
        self.max_round = max(self.max_round, node.machine.round)
        crash_after_persist = node.crash_mid_step and any(isinstance(o, Persist) for o in outputs)
        for out in outputs:
            self.perform(node, out)
            if crash_after_persist and isinstance(out, Persist):
                node.crash_mid_step = False
                self.crash(node)
                return

    def perform(self, node: SimNode, out: Output) -> None:
        if isinstance(out, Persist):
            node.persisted = out.state.to_bytes()
        elif isinstance(out, Broadcast):
            if node.honest:
                self.record_signed(node, out.message)
            for other in self.nodes:
                if other.index != node.index:
                    self.transmit(node, other.index, out.message)
        elif isinstance(out, SendTo):
            if node.honest:
                self.record_signed(node, out.message)
            dst = self.by_id.get(out.validator)
            if dst is not None:
                self.transmit(node, dst.index, out.message)
        elif isinstance(out, ScheduleTimer):
            self.push(self.now + out.delay_ms, "timer", (node.index, node.incarnation, out.timer))
        elif isinstance(out, Committed):
            self.on_commit(node, out)
        elif isinstance(out, EquivocationDetected):
            self.equivocations += 1
            if self.by_id[out.validator].honest:
                self.fail(f"honest {out.validator} reported as equivocating at "
                          f"{out.height}/{out.round}")
        elif isinstance(out, StateDivergence):
            if node.honest:
                self.fail(f"honest v{node.index} diverged at height {out.height}")

    def transmit(self, node: SimNode, dst: int, message: Message) -> None:
        if node.honest:
            self.send(node.index, dst, message)
            return
        for msg in self.byzantine_rewrite(node, dst, message):
            self.send(node.index, dst, msg)

    def record_signed(self, node: SimNode, message: Message) -> None:
        """Honest validators never sign two different votes/proposals for one slot."""
        if isinstance(message, Vote):
            key = (message.validator, message.kind, message.height, message.round)
            value: object = message.value
        elif isinstance(message, Proposal):
            key = (message.validator, "proposal", message.height, message.round)
            value = message.block_hash
        else:
            return
        signer = self.by_id.get(message.validator)
        if signer is None or not signer.honest:
            return  # relaying a Byzantine validator's vote is fine
        if key in self.signed and self.signed[key] != value:
            self.fail(f"honest {key[0]} double-signed {key[1]} at {key[2]}/{key[3]}")
        self.signed.setdefault(key, value)

    def on_commit(self, node: SimNode, out: Committed) -> None:
        self.log(f"v{node.index} commit h={out.height} r={out.round} "
                 f"{out.block_hash.hex()[:8]} catchup={out.via_catchup}")
        if not node.honest:
            return
        self.committed_since_check = True
        first = self.canonical.setdefault(out.height, out.block_hash)
        if first != out.block_hash:
            self.fail(f"agreement: height {out.height} committed as {first.hex()[:12]} and "
                      f"{out.block_hash.hex()[:12]} (v{node.index})")

    # Byzantine behaviour --------------------------------------------------------------------

    def byzantine_rewrite(self, node: SimNode, dst: int, message: Message) -> list[Message]:
        b = node.behaviours
        rng = self.rng
        chain_id = self.validators.chain_id
        if "silent" in b:
            return []
        out: list[Message] = [message]
        if isinstance(message, Vote):
            if "fork_attack" in b and message.kind == PRECOMMIT and (
                dst != (message.height + message.round) % len(self.nodes)
            ):
                out = []
            if "equivocate_votes" in b and dst % 2 == 1:
                value = None if rng.random() < 0.3 else (sha256(rng.randbytes(8)),
                                                         sha256(rng.randbytes(8)))
                out = [sign_vote(node.key, chain_id, node.validator_id, message.kind,
                                 message.height, message.round, value)]
            if "unknown_votes" in b:
                for kind in (PREVOTE, PRECOMMIT):
                    out.append(sign_vote(node.key, chain_id, node.validator_id, kind,
                                         message.height, message.round + rng.randint(0, 40),
                                         (sha256(rng.randbytes(8)), sha256(rng.randbytes(8)))))
        elif isinstance(message, Proposal):
            alt = self.alternative_block(node, message, dst)
            if alt is not None:
                pol = -1 if "fork_attack" in b else message.pol_round
                out = [sign_proposal(node.key, chain_id, node.validator_id, message.height,
                                     message.round, sha256(alt), alt, pol)]
        elif isinstance(message, BlockResponse) and "bad_catchup" in b and message.blocks:
            tampered = []
            for item in message.blocks:
                qc = item.qc
                if rng.random() < 0.5:
                    sigs = tuple((vid, rng.randbytes(64)) for vid, _ in qc.signatures)
                    tampered.append(CommittedBlock(item.height, item.block,
                                                   QuorumCertificate(qc.height, qc.round,
                                                                     qc.block_hash, qc.state_root,
                                                                     sigs)))
                else:
                    tampered.append(CommittedBlock(item.height, item.block + b" ", qc))
            out = [BlockResponse(node.validator_id, tuple(tampered))]
        if "forge" in b and isinstance(message, (Vote, Proposal, Status)):
            victim = self.nodes[rng.randrange(len(self.nodes))].validator_id
            h = message.height
            r = message.round
            fake_value = (sha256(rng.randbytes(8)), sha256(rng.randbytes(8)))
            out.append(Vote(PRECOMMIT, h, r, fake_value[0], fake_value[1], victim,
                            rng.randbytes(64)))
            out.append(sign_vote(self.outsider, chain_id, "outsider", PREVOTE, h, r, fake_value))
            out.append(Proposal(h, r, fake_value[0], b"forged", -1,
                                self.validators.proposer(h, r), rng.randbytes(64)))
            out.append(BlockRequest(1, 10**6, victim, rng.randbytes(64)))
            out.append(Status(h + 1000, r, victim, rng.randbytes(64)))
        return out

    def alternative_block(self, node: SimNode, proposal: Proposal, dst: int) -> bytes | None:
        b = node.behaviours
        if "invalid_blocks" in b:
            try:
                height, parent, txs = decode_block(proposal.block)
            except (TablechainError, ValueError):
                return None
            if self.rng.random() < 0.5:
                return encode_block(height, parent, txs + ["bad-tx"], node.validator_id)
            return encode_block(height, sha256(parent), txs, node.validator_id)
        if "fork_attack" in b or ("equivocate_proposals" in b and dst % 2 == 0):
            try:
                height, parent, txs = decode_block(proposal.block)
            except (TablechainError, ValueError):
                return None
            return encode_block(height, parent, txs, f"{node.validator_id}/twin")
        return None

    # the run -------------------------------------------------------------------------------

    def all_committed(self) -> bool:
        for node in self.nodes:
            if node.honest and len(node.chain.txs) != len(self.universe):
                return False
        return True

    def run(self) -> SimResult:
        sc = self.sc
        for node in self.nodes:
            for submit, tx in sc.txs:
                arrival = submit + (self.rng.randint(0, sc.mempool_delay_ms)
                                    if sc.mempool_delay_ms else 0)
                node.mempool.add(arrival, tx)
                self.push(arrival, "txs", node.index)
            self.push(0, "boot", node.index)
        for index, at, restart, mid in sc.crashes:
            self.push(at, "crash", (index, mid))
            self.push(restart, "restart", index)
        last_submit = max(t for t, _ in sc.txs)
        while self.queue:
            at, _, kind, data = heapq.heappop(self.queue)
            if at > sc.deadline_ms:
                break
            self.now = at
            if kind == "deliver":
                dst, message = data
                node = self.nodes[dst]
                if not node.alive:
                    continue
                if sc.wire_encoding:
                    message = decode_message(encode_message(message))
                self.delivered += 1
                self.step(node, MessageReceived(message))
            elif kind == "timer":
                index, incarnation, timer = data
                node = self.nodes[index]
                if node.alive and node.incarnation == incarnation:
                    self.step(node, TimerFired(timer))
            elif kind == "txs":
                self.step(self.nodes[data], TransactionsAvailable())
            elif kind == "boot":
                self.boot(self.nodes[data])
            elif kind == "crash":
                index, mid = data
                node = self.nodes[index]
                if node.alive:
                    if mid:
                        node.crash_mid_step = True
                    else:
                        self.crash(node)
            elif kind == "restart":
                node = self.nodes[data]
                node.crash_mid_step = False
                if not node.alive:
                    self.boot(node)
            if self.failures:
                break
            if self.committed_since_check and at >= last_submit:
                self.committed_since_check = False
                if self.all_committed():
                    break
        self.check_final()
        return SimResult(
            scenario=sc,
            failures=list(self.failures),
            end_ms=self.now,
            heights={n.validator_id: n.chain.height for n in self.nodes},
            delivered=self.delivered,
            equivocations=self.equivocations,
            max_round=self.max_round,
            trace=list(self.trace),
        )

    def check_final(self) -> None:
        honest = [n for n in self.nodes if n.honest]
        for node in honest:
            self.check_chain(node)
        missing = {n.validator_id: len(self.universe - n.chain.txs) for n in honest}
        if any(missing.values()) and not self.failures:
            self.fail(f"liveness: transactions still uncommitted at {self.now}ms "
                      f"(GST {self.sc.gst_ms}ms) per validator: {missing}")

    def check_chain(self, node: SimNode) -> None:
        """Re-check a whole committed chain independently of the node's own checks."""
        reference = ToyApp(ToyChain(), ToyMempool(), self.universe, self.sc.max_block_txs)
        for height, item in enumerate(node.chain.blocks, start=1):
            result = reference.validate_block(height, item.block)
            if result is None:
                self.fail(f"validity: v{node.index} committed an invalid block at {height}")
                return
            qc = item.qc
            try:
                verify_qc(qc, self.validators)
            except InvalidQuorumCertificate as exc:
                self.fail(f"qc: v{node.index} height {height}: {exc.message}")
                return
            if (qc.height, qc.block_hash, qc.state_root) != (height, result.block_hash,
                                                              result.state_root):
                self.fail(f"qc: v{node.index} height {height} certificate names another block")
                return
            if self.canonical.setdefault(height, result.block_hash) != result.block_hash:
                self.fail(f"agreement: v{node.index} height {height} differs from the others")
                return
            reference.commit_block(height, item.block, qc)


def describe(item: object) -> str:
    """A short text for a trace line."""
    if isinstance(item, MessageReceived | Broadcast | SendTo):
        prefix = {MessageReceived: "recv", Broadcast: "bcast", SendTo: "send"}[type(item)]
        if isinstance(item, SendTo):
            prefix += f"->{item.validator}"
        return f"{prefix}:{describe(item.message)}"
    if isinstance(item, Vote):
        value = "nil" if item.block_hash is None else item.block_hash.hex()[:6]
        return f"{item.kind}({item.validator},{item.height}/{item.round},{value})"
    if isinstance(item, Proposal):
        return (f"proposal({item.validator},{item.height}/{item.round},"
                f"{item.block_hash.hex()[:6]},pol={item.pol_round})")
    if isinstance(item, Status):
        return f"status({item.validator},{item.height}/{item.round})"
    if isinstance(item, BlockRequest):
        return f"blockreq({item.validator},{item.from_height}..{item.to_height})"
    if isinstance(item, BlockResponse):
        return f"blockresp({item.validator},{[b.height for b in item.blocks]})"
    if isinstance(item, TimerFired | ScheduleTimer):
        t = item.timer
        verb = "fire" if isinstance(item, TimerFired) else "timer"
        return f"{verb}:{t.kind}@{t.height}/{t.round}"
    if isinstance(item, Committed):
        return f"COMMIT({item.height})"
    return type(item).__name__


def run_scenario(scenario: Scenario, trace: bool = False) -> SimResult:
    return Simulation(scenario, trace=trace).run()


def run_seed(seed: int, trace: bool | None = None) -> SimResult:
    """Run the scenario of ``seed``; ``trace`` (default: $TABLECHAIN_SIM_VERBOSE) keeps a log."""
    if trace is None:
        trace = bool(os.environ.get("TABLECHAIN_SIM_VERBOSE"))
    return run_scenario(make_scenario(seed), trace=trace)


def run_seeds(seeds: list[int], on_result: Callable[[SimResult], None] | None = None) -> list[
        SimResult]:
    """Run many seeds; return the failing results."""
    failed = []
    for seed in seeds:
        result = run_seed(seed, trace=False)
        if on_result is not None:
            on_result(result)
        if not result.ok:
            failed.append(result)
    return failed
