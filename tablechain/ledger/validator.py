"""A BFT validator: the ledger as a ``ConsensusApplication``, driven by ``ConsensusMachine``.

``LedgerApplication`` answers the protocol's questions from the ledger and the mempool: it
proposes a block (cut at ``max_block_txs`` transactions or ``max_block_wait_ms`` after the first
one waited, never empty), executes competing proposals speculatively (execute-then-vote: the
vote carries the state root) and commits the decided block with its quorum certificate, in the
same database commit as its rows.

``ValidatorNode`` is a ``Node`` whose blocks come from consensus among the validators named in
genesis. One thread runs the state machine (it is not thread-safe) over a queue of events:
messages from peers, timers, new transactions. A ``Transport`` carries messages and gossips
transactions, so a transaction submitted to any validator reaches the proposer; the in-process
``LocalHub`` serves tests, the Ray transport serves clusters (``tablechain.platform``).
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import os
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from tablechain.ca import CertificateVerifier
from tablechain.crypto import (
    MAX_DEPTH,
    PrivateKey,
    canonical_json,
    parse_canonical,
    parse_relayed,
    public_key_from_bytes,
    too_deep,
)
from tablechain.errors import TablechainError
from tablechain.ledger.admission import CertificateRequired
from tablechain.ledger.blocks import BlockHeader
from tablechain.ledger.chain import ChainMismatch, Genesis, PendingBlock
from tablechain.ledger.consensus import (
    BlockRequest,
    Broadcast,
    CommittedBlock,
    ConsensusConfig,
    ConsensusError,
    ConsensusMachine,
    EquivocationDetected,
    Event,
    ExecutionResult,
    Message,
    MessageReceived,
    Persist,
    ProposedBlock,
    QuorumCertificate,
    ScheduleTimer,
    SendTo,
    SignerState,
    Start,
    StateDivergence,
    Timer,
    TimerFired,
    TransactionsAvailable,
    ValidatorSet,
)
from tablechain.ledger.consensus.bft import serve_block_request
from tablechain.ledger.consensus.errors import MalformedMessage
from tablechain.ledger.consensus.messages import (
    block_digest,
    check_message_shape,
    verify_signature,
)
from tablechain.ledger.errors import InvalidTransaction, LedgerError
from tablechain.ledger.execution import AdmissionHook, ExecutorRegistry
from tablechain.ledger.node import Node, NodeConfig
from tablechain.ledger.transactions import SignedTransaction, parse_transaction

__all__ = [
    "LedgerApplication",
    "ValidatorNode",
    "Transport",
    "LocalHub",
    "validator_set_from_genesis",
    "encode_block",
    "decode_block",
]

log = logging.getLogger(__name__)
MAX_BLOCK_BYTES = 64 * 1024 * 1024
# Peer messages waiting for the consensus thread. Beyond this a message is dropped: a peer that
# sends faster than the thread verifies cannot grow memory without bound, and the protocol
# re-sends what matters (stalled validators rebroadcast their votes and status).
MAX_QUEUED_MESSAGES = 10_000
MAX_QUEUED_REQUESTS = 16  # peers' block requests waiting for the block server


class Transport(Protocol):
    """How a validator reaches the others."""

    def broadcast(self, sender: str, message: Message) -> None:
        """Deliver ``message`` to every other validator."""
        ...

    def send(self, sender: str, receiver: str, message: Message) -> None:
        """Deliver ``message`` to one validator."""
        ...

    def gossip(self, sender: str, data: bytes, count: int) -> None:
        """Hand submitted transactions to every other validator: ``data`` is a canonical JSON
        array of ``count`` signed transactions."""
        ...


def validator_set_from_genesis(genesis: Genesis) -> ValidatorSet:
    """The validators genesis names, in its order: ``{"id", "scheme", "public_key"}`` each.

    When genesis enables admission, each validator must also carry ``certificate``: a PEM chain
    to one of the trusted roots, with the role ``validator``, for that very key, valid at the
    genesis time. Votes are signed by these keys, so only certified validators can vote.
    """
    admission = genesis.admission if genesis.admission.get("enabled") else None
    verifier = None
    if admission is not None:
        verifier = CertificateVerifier([r.encode() for r in admission.get("trusted_roots", [])])
    keys = []
    for v in genesis.validators:
        key = public_key_from_bytes(v["scheme"], bytes.fromhex(v["public_key"]))
        if verifier is not None:
            chain = v.get("certificate")
            if not isinstance(chain, str):
                raise CertificateRequired(f"validator {v['id']} has no certificate in genesis")
            verifier.check_signer(chain.encode(), key.to_bytes(), key.scheme,
                                  genesis.timestamp_ms // 1000, role="validator")
        keys.append((str(v["id"]), key))
    return ValidatorSet.from_keys(genesis.hash(), keys)


_BLOCK_MAGIC = b"TCB1"


def frame_block(header: bytes, transactions: Sequence[bytes]) -> bytes:
    """A block as validators send it to each other: ``TCB1``, then the header's canonical JSON
    and each transaction's canonical JSON, each after its length (4 bytes, big-endian).

    Framed rather than one JSON document so that a validator can take the transactions it
    already holds by their bytes, without decoding and re-encoding the whole block."""
    parts = [_BLOCK_MAGIC, len(header).to_bytes(4, "big"), header]
    for tx in transactions:
        parts.append(len(tx).to_bytes(4, "big"))
        parts.append(tx)
    return b"".join(parts)


def _relayable(tx_json: Any) -> bool:
    """A relayed transaction (gossip, or a block's that this node does not hold) is a JSON
    object within ``MAX_DEPTH``: checked before anything walks it."""
    return isinstance(tx_json, dict) and not too_deep(tx_json)


def encode_block(header: BlockHeader, txs: Sequence[SignedTransaction]) -> bytes:
    return frame_block(canonical_json(header.to_json()), [tx.encoded for tx in txs])


def decode_block(data: bytes) -> tuple[BlockHeader, list[bytes]]:
    """The header and each transaction's bytes (not decoded: see ``_parse_block_txs``)."""
    if len(data) > MAX_BLOCK_BYTES:
        raise ChainMismatch(f"a block of {len(data)} bytes exceeds {MAX_BLOCK_BYTES}")
    if data[:4] != _BLOCK_MAGIC:
        raise ChainMismatch("not a block (no TCB1 frame)")
    parts = []
    at, end = 4, len(data)
    while at < end:
        if at + 4 > end:
            raise ChainMismatch("a block frame is cut short")
        size = int.from_bytes(data[at : at + 4], "big")
        at += 4
        if at + size > end:
            raise ChainMismatch("a block frame is cut short")
        parts.append(data[at : at + size])
        at += size
    if not parts:
        raise ChainMismatch("a block has a header")
    try:
        header = BlockHeader.from_json(parse_canonical(parts[0]))
    except (TablechainError, KeyError, TypeError, ValueError, AttributeError):
        raise ChainMismatch("malformed block header") from None
    return header, parts[1:]


class LedgerApplication:
    """The ledger seen from consensus (see ``ConsensusApplication``)."""

    def __init__(self, node: Node, clock: Callable[[], int]) -> None:
        self.node = node
        self.ledger = node.ledger
        self.clock = clock
        # The block executed and held open for a vote: (its hash, the pending commit, its bytes).
        self._pending: tuple[bytes, PendingBlock, bytes] | None = None
        # Verdicts by the digest of the block's bytes, not by its header hash: a header does not
        # bind the transactions until they are executed, and a peer may send a header with
        # other transactions than the ones that make it (a proposal's signature and a quorum
        # certificate cover the header hash only).
        self._results: OrderedDict[bytes, ExecutionResult | None] = OrderedDict()
        self._verified: OrderedDict[bytes, None] = OrderedDict()  # tx hashes checked here
        self._first_wait: float | None = None
        self.committed_txs: list[SignedTransaction] = []  # of the last commit, for the node

    # --- reading ---------------------------------------------------------------------------

    def committed_height(self) -> int:
        return self.ledger.height

    def committed_block(self, height: int) -> CommittedBlock | None:
        if not 1 <= height <= self.ledger.height:
            return None
        stored = self.ledger.block(height)
        cert = stored["certificate"]
        if not cert or "qc" not in cert:
            return None
        header = BlockHeader.from_json(stored["header"])
        data = frame_block(
            canonical_json(header.to_json()),
            [canonical_json(t, trusted=True) for t in stored["transactions"]],
        )
        return CommittedBlock(height, data, QuorumCertificate.from_bytes(bytes.fromhex(cert["qc"])))

    def has_pending_transactions(self) -> bool:
        return len(self.node.mempool) > 0

    # --- proposing and validating ---------------------------------------------------------

    def _abort_pending(self) -> None:
        if self._pending is not None:
            self._pending[1].abort()
            self._pending = None

    def propose_block(
        self, height: int, last_commit: QuorumCertificate | None
    ) -> ProposedBlock | None:
        if height != self.ledger.height + 1:
            return None
        waiting = len(self.node.mempool)
        if waiting == 0:
            self._first_wait = None
            return None
        now = time.monotonic()
        if self._first_wait is None:
            # The wait runs from the first transaction's arrival (it may have waited through
            # the previous height already), or from now if the pool cannot tell.
            first = self.node.mempool.first_arrival
            self._first_wait = now if first is None else min(first, now)
        if (
            waiting < self.node.max_block_txs
            and (now - self._first_wait) * 1000 < self.node.max_block_wait_ms
        ):
            return None  # the block-cutting policy waits for more
        txs = self.node.mempool.take(self.node.max_block_txs)
        self._abort_pending()
        try:
            pending = self.node.execute_proposal(txs, self.clock())
        except Exception:  # no proposal this time (the round moves on to another proposer)
            log.exception("executing a proposal at height %s failed", height)
            return None
        if pending is None:
            return None
        txs = list(pending.block.transactions)
        block_hash = bytes.fromhex(pending.hash)
        data = encode_block(pending.header, txs)
        self._pending = (block_hash, pending, data)
        self._first_wait = None
        for tx in txs:
            self._remember_verified(tx.hash)
        result = ExecutionResult(block_hash, bytes.fromhex(pending.header.state_root))
        self._remember_result(block_digest(data), result)
        return ProposedBlock(data, block_hash)

    def _remember_verified(self, tx_hash: bytes) -> None:
        self._verified[tx_hash] = None
        if len(self._verified) > 200_000:
            self._verified.popitem(last=False)

    def _remember_result(self, block_digest: bytes, result: ExecutionResult | None) -> None:
        self._results[block_digest] = result
        if len(self._results) > 64:
            self._results.popitem(last=False)

    def _parse_block_txs(self, raw: list[bytes]) -> list[SignedTransaction]:
        """Parse a block's transactions, verifying only signatures this node has not seen.

        A transaction this node holds in its mempool (the usual case: gossip got there first)
        is taken from there by its canonical encoding: the same bytes, without decoding them.
        Any other is decoded strictly and parsed, and must be in canonical form too.
        """
        suite, net = self.ledger.suite, self.ledger.genesis.network_id
        parsed = []
        unseen = []  # decoded here and not verified here yet (the pool holds verified ones)
        pool = self.node.mempool
        for data in raw:
            held = pool.by_encoding(data)
            if held is None:
                t = parse_relayed(data)
                if not _relayable(t):
                    raise InvalidTransaction(
                        f"a block's transaction is a JSON object nested at most {MAX_DEPTH} deep"
                    )
                held = parse_transaction(t, suite, net, verify=False, trusted=True)
                if held.encoded != data:
                    raise InvalidTransaction("a block's transaction is not in canonical form")
                if held.hash not in self._verified and held.hash not in pool:
                    unseen.append(t)
            parsed.append(held)
        if unseen:
            for verdict in self.node.verifier.verify(unseen, suite, net, trusted=True):
                if isinstance(verdict, TablechainError):
                    raise verdict
        for tx in parsed:
            self._remember_verified(tx.hash)
        return parsed

    def _held(self, block: bytes) -> tuple[bytes, PendingBlock] | None:
        """The pending block when ``block`` is its encoding: no need to decode it again (the
        proposer validates its own proposal, and every validator commits what it executed)."""
        if self._pending is not None and self._pending[2] == block:
            return self._pending[0], self._pending[1]
        return None

    def _execute(
        self,
        height: int,
        block: bytes,
        decoded: tuple[BlockHeader, list[bytes]] | None = None,
    ) -> tuple[bytes, PendingBlock] | None:
        held = self._held(block)
        if held is not None:
            return held
        header, raw = decoded if decoded is not None else decode_block(block)
        block_hash = bytes.fromhex(header.hash(self.ledger.suite))
        if self._pending is not None and self._pending[0] == block_hash:
            # The executed block's header: the same block only with the same transactions (the
            # header's tx_root binds them, but only execution checks that).
            if raw == [tx.encoded for tx in self._pending[1].block.transactions]:
                return self._pending[0], self._pending[1]
            return None
        if header.height != height or height != self.ledger.height + 1:
            return None
        if header.parent_hash != self.ledger.head.hash(self.ledger.suite):
            return None
        if header.timestamp_ms <= self.ledger.head.timestamp_ms:
            return None
        txs = self._parse_block_txs(raw)
        self._abort_pending()
        pending = self.ledger.execute(txs, header.timestamp_ms, header.proposer)
        if pending.header != header:
            pending.abort()
            return None
        self._pending = (block_hash, pending, block)
        return block_hash, pending

    def validate_block(self, height: int, block: bytes) -> ExecutionResult | None:
        held = self._held(block)
        if held is not None:
            return ExecutionResult(held[0], bytes.fromhex(held[1].header.state_root))
        try:
            decoded = decode_block(block)
            block_hash = bytes.fromhex(decoded[0].hash(self.ledger.suite))
            digest = block_digest(block)
            if digest in self._results and (
                self._pending is None or self._pending[0] != block_hash
            ):
                return self._results[digest]
            executed = self._execute(height, block, decoded)
        except TablechainError as exc:
            log.info("invalid block at height %s: %s", height, exc)
            return None
        except Exception:  # whatever a proposal provokes, it is not a valid block
            # (a validator that stopped here would stall at this height for good)
            log.exception("validating the block proposed at height %s raised", height)
            return None
        result = None
        if executed is not None:
            result = ExecutionResult(executed[0], bytes.fromhex(executed[1].header.state_root))
        self._remember_result(digest, result)
        return result

    def commit_block(self, height: int, block: bytes, qc: QuorumCertificate) -> None:
        if height == self.ledger.height and self._is_head(block):
            return  # committed by an earlier attempt whose acknowledgement was lost
        executed = self._execute(height, block)
        if executed is None:
            raise ChainMismatch(f"the decided block at height {height} does not execute here")
        self._pending = None
        committed = executed[1].commit({"qc": qc.to_bytes().hex()})
        self._results.clear()
        self.node.mempool.remove(list(committed.transactions))
        self.node.notify_committed(committed)

    def _is_head(self, block: bytes) -> bool:
        try:
            header, _ = decode_block(block)
        except ChainMismatch:
            return False
        return header.hash(self.ledger.suite) == self.ledger.head.hash(self.ledger.suite)

    def close(self) -> None:
        self._abort_pending()


class _SignerStore:
    """The signer's record (what it voted), written durably before any later output."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def load(self) -> SignerState | None:
        if self.path is None:
            return None
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConsensusError(f"cannot read the signer record {self.path}: {exc.strerror}; "
                                 "without it this validator could sign twice") from None
        try:
            return SignerState.from_bytes(data)
        except MalformedMessage as exc:
            raise ConsensusError(f"the signer record {self.path} is damaged ({exc.message}); "
                                 "without it this validator could sign twice") from None

    def save(self, state: SignerState) -> None:
        if self.path is None:
            return
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(state.to_bytes())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        # The rename is durable only once the directory is: after a power loss the old record
        # could come back otherwise, and a validator restarted from it could sign twice.
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


class ValidatorNode(Node):
    """A node whose blocks are decided by BFT consensus among genesis' validators."""

    def __init__(
        self,
        db_url: str,
        genesis: Genesis,
        key: PrivateKey,
        validator_id: str,
        transport: Transport,
        config: NodeConfig | None = None,
        consensus: ConsensusConfig | None = None,
        signer_state_path: str | Path | None = None,
        registry: ExecutorRegistry | None = None,
        admission: AdmissionHook | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        validators = validator_set_from_genesis(genesis)
        me = validators.get(validator_id)
        if me is None:
            raise LedgerError(f"{validator_id!r} is not a validator of this chain")
        if me.public_key != key.public_key:
            # Another validator's key would sign as that validator, beside it and with a signer
            # record of its own: two signers for one key.
            owner = validators.find_key(key.public_key)
            whose = ("no validator's key" if owner is None
                     else f"the key of validator {owner.validator_id!r}")
            raise LedgerError(f"the key given to validator {validator_id!r} is {whose}")
        super().__init__(db_url, genesis, key, config, registry, admission, clock)
        self.validator_id = validator_id
        self.validators = validators
        self.transport = transport
        self._signer = _SignerStore(None if signer_state_path is None else Path(signer_state_path))
        self.app = LedgerApplication(self, self._clock)
        self.consensus_config = consensus or ConsensusConfig()
        record = self._signer.load()
        if record is not None and record.height > self.ledger.height + 1:
            log.warning("%s: the signer record %s is at height %d but the chain ends at %d; "
                        "catching up from peers, signing nothing below height %d",
                        validator_id, self._signer.path, record.height, self.ledger.height,
                        record.height)
        self.machine = ConsensusMachine(
            self.validators, key, self.app, self.consensus_config, record
        )
        self._events: queue.Queue[Event | None] = queue.Queue()
        # Peers' block requests are served on their own thread from a short queue: serving
        # reads up to 64 blocks, and a signed request carries nothing that stops it being
        # replayed, so a flood of them must not reach (or slow) the consensus thread.
        self._requests: queue.Queue[BlockRequest | None] = queue.Queue(MAX_QUEUED_REQUESTS)
        self._server: threading.Thread | None = None
        self.dropped_requests = 0
        self._inbox_lock = threading.Lock()
        self._queued_messages = 0  # MessageReceived events in self._events
        self.dropped_messages = 0
        self._timers: list[tuple[float, int, Timer]] = []
        self._timer_seq = 0
        self.halted: str | None = None

    # --- inputs ----------------------------------------------------------------------------

    def deliver(self, message: Message) -> None:
        """A consensus message from a peer (any thread); dropped when ``MAX_QUEUED_MESSAGES``
        already wait for the consensus thread. Block requests go to the block server."""
        if isinstance(message, BlockRequest):
            try:
                self._requests.put_nowait(message)
            except queue.Full:
                self.dropped_requests += 1  # the requester retries, or asks another peer
            return
        with self._inbox_lock:
            if self._queued_messages >= MAX_QUEUED_MESSAGES:
                self.dropped_messages += 1
                if self.dropped_messages % MAX_QUEUED_MESSAGES == 1:
                    log.warning("%s dropped %d peer messages: %d already wait", self.validator_id,
                                self.dropped_messages, MAX_QUEUED_MESSAGES)
                return
            self._queued_messages += 1
        self._events.put(MessageReceived(message))

    def _next_event(self, timeout: float) -> Event | None:
        """The next queued event for the consensus thread (None when none came in time)."""
        try:
            event = self._events.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(event, MessageReceived):
            with self._inbox_lock:
                self._queued_messages -= 1
        return event

    def deliver_transactions(self, data: bytes) -> None:
        """Transactions gossiped by a peer (a canonical JSON array of signed transactions):
        admitted here too (duplicates are skipped, anything malformed is dropped)."""
        try:
            transactions = parse_relayed(data, max_bytes=MAX_BLOCK_BYTES)
        except TablechainError as exc:
            log.info("dropped malformed gossip on %s: %s", self.validator_id, exc.message)
            return
        if not isinstance(transactions, list):
            return
        # Duplicates are recognised by (Account, Sequence) without parsing: a transaction whose
        # Sequence this node already holds or has committed is dropped; the rest are verified
        # (once) by submit_many, which also refuses anything malformed.
        nonces = []
        expected: dict[str, int] = {}
        for tx_json in transactions:
            if not _relayable(tx_json):
                continue
            account, sequence = tx_json.get("Account"), tx_json.get("Sequence")
            if not isinstance(account, str) or type(sequence) is not int:
                continue
            nonces.append((tx_json, account, sequence))
            if account not in expected:
                pending = self.mempool.next_sequence(account)
                if pending is not None:
                    expected[account] = pending
        unknown = {account for _, account, _ in nonces if account not in expected}
        if unknown:  # one read for the accounts the pool holds nothing from
            for account, last in self.ledger.account_sequences(sorted(unknown)).items():
                expected[account] = last + 1
        fresh = [tx_json for tx_json, account, sequence in nonces if sequence >= expected[account]]
        if fresh:  # decoded strictly above: JSON types only, no float, nesting checked
            self.submit_many(fresh, gossip=False, trusted=True)

    def _gossip(self, txs: Sequence[SignedTransaction]) -> None:
        data = b"[" + b",".join(tx.encoded for tx in txs) + b"]"
        self.transport.gossip(self.validator_id, data, len(txs))

    def submit_checked(self, checked: SignedTransaction | TablechainError) -> SignedTransaction:
        tx = super().submit_checked(checked)
        self._gossip([tx])
        self._events.put(TransactionsAvailable())
        return tx

    def submit_many(self, txs: list[Any], trusted: bool = False, gossip: bool = True) -> list[Any]:
        results = super().submit_many(txs, trusted)
        admitted = [r for r in results if isinstance(r, SignedTransaction)]
        if admitted:
            if gossip:
                self._gossip(admitted)
            self._events.put(TransactionsAvailable())
        return results

    # --- the consensus loop ----------------------------------------------------------------

    def _perform(self, outputs: list[Any]) -> None:
        for out in outputs:
            if self.halted is not None:
                return  # nothing more leaves a halted validator
            if isinstance(out, Persist):
                try:
                    self._signer.save(out.state)
                except OSError as exc:
                    # What it records is signed already: sent later (a stalled validator
                    # re-sends its votes) and the record lost in a restart, another could be
                    # signed for the same height, round and step. Stop here instead.
                    self.halted = f"cannot write the signer record {self._signer.path}: {exc}"
                    log.critical("%s; consensus halted on %s", self.halted, self.validator_id)
            elif isinstance(out, Broadcast):
                self.transport.broadcast(self.validator_id, out.message)
            elif isinstance(out, SendTo):
                self.transport.send(self.validator_id, out.validator, out.message)
            elif isinstance(out, ScheduleTimer):
                self._timer_seq += 1
                due = time.monotonic() + out.delay_ms / 1000
                heapq.heappush(self._timers, (due, self._timer_seq, out.timer))
            elif isinstance(out, StateDivergence):
                self.halted = (
                    f"state diverged at height {out.height}: the quorum certified "
                    f"{out.quorum_root.hex()}, this node computed {out.local_root.hex()}"
                )
                log.critical("%s; consensus halted on %s", self.halted, self.validator_id)
            elif isinstance(out, EquivocationDetected):
                log.warning(
                    "validator %s equivocated at %s/%s (%s)",
                    out.validator,
                    out.height,
                    out.round,
                    out.kind,
                )

    def _run(self) -> None:
        self._perform(self.machine.step(Start()))
        while not self._stop.is_set() and self.halted is None:
            timeout = 0.05
            if self._timers:
                timeout = max(0.0, min(timeout, self._timers[0][0] - time.monotonic()))
            event = self._next_event(timeout)
            try:
                if event is not None:
                    self._perform(self.machine.step(event))
                now = time.monotonic()
                while self._timers and self._timers[0][0] <= now:
                    _, _, timer = heapq.heappop(self._timers)
                    self._perform(self.machine.step(TimerFired(timer)))
                if event is None and len(self.mempool):
                    self._perform(self.machine.step(TransactionsAvailable()))
            except Exception:
                log.exception("consensus step failed on %s", self.validator_id)

    def _serve_requests(self) -> None:
        """The block server: answer checked block requests from committed blocks."""
        cfg = self.consensus_config
        while True:
            request = self._requests.get()
            if request is None:
                return
            try:
                check_message_shape(request, cfg.max_block_bytes)
                if (request.validator == self.validator_id
                        or self.validators.get(request.validator) is None
                        or not verify_signature(request, self.validators)):
                    continue
                response = serve_block_request(request, self.validator_id, self.ledger.height,
                                               self.app, cfg)
                self.transport.send(self.validator_id, request.validator, response)
            except MalformedMessage:
                continue
            except Exception:  # keep serving: one bad read must not stop catch-up for all
                log.exception("serving blocks to %s failed", request.validator)

    def start(self) -> None:
        super().start()
        if self._server is None:
            self._server = threading.Thread(target=self._serve_requests, name="block-server",
                                            daemon=True)
            self._server.start()

    def stop(self) -> None:
        self._stop.set()
        self._events.put(None)
        if self._server is not None:
            while True:  # make room for the stop signal
                try:
                    self._requests.put_nowait(None)
                    break
                except queue.Full:
                    with contextlib.suppress(queue.Empty):
                        self._requests.get_nowait()
            self._server.join(timeout=10)
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.app.close()
        super().stop()

    def produce_block(self) -> None:  # type: ignore[override]
        raise LedgerError("a validator's blocks come from consensus, not produce_block()")

    def status(self) -> dict[str, Any]:
        proposer = self.machine.proposer()
        return {
            "validator": self.validator_id,
            "height": self.ledger.height,
            "consensus_height": self.machine.height,
            "round": self.machine.round,
            "step": self.machine.step_name,
            "proposer": getattr(proposer, "validator_id", proposer),
            "mempool": len(self.mempool),
            "halted": self.halted,
        }

    def server_info(self) -> dict[str, Any]:
        return {**super().server_info(), "consensus": self.status()}


class LocalHub:
    """In-process transport among ``ValidatorNode``s (tests, single-machine development).

    Delivery happens on a hub thread so that no validator's consensus thread ever runs
    another's code; ``partition`` drops traffic to and from the named validators.
    """

    def __init__(self) -> None:
        self.nodes: dict[str, ValidatorNode] = {}
        self.cut: set[str] = set()
        self._queue: queue.Queue[tuple[str, str | None, Any] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="local-hub", daemon=True)
        self._thread.start()

    def attach(self, node: ValidatorNode) -> None:
        self.nodes[node.validator_id] = node

    def detach(self, validator_id: str) -> None:
        self.nodes.pop(validator_id, None)

    def broadcast(self, sender: str, message: Message) -> None:
        self._queue.put((sender, None, message))

    def send(self, sender: str, receiver: str, message: Message) -> None:
        self._queue.put((sender, receiver, message))

    def gossip(self, sender: str, data: bytes, count: int) -> None:
        self._queue.put((sender, None, data))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            sender, receiver, payload = item
            if sender in self.cut:
                continue
            for vid, node in list(self.nodes.items()):
                if vid == sender or vid in self.cut or (receiver is not None and vid != receiver):
                    continue
                try:
                    if isinstance(payload, bytes):
                        node.deliver_transactions(payload)
                    else:
                        node.deliver(payload)
                except Exception:
                    log.exception("delivery to %s failed", vid)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)
