"""A Tendermint-style BFT consensus protocol as a pure, deterministic state machine.

``ConsensusMachine.step(event) -> list[Output]``: events are received messages, timer expiries,
"transactions available" and the start signal; outputs are messages to broadcast or send,
timers to schedule, records to persist, and commit decisions. The machine has no clock, no
threads and no randomness; the application is called synchronously (see ``interface.py``).

The algorithm follows Buchman, Kwon and Milosevic, "The latest gossip on BFT consensus" (2018):
heights and rounds, a proposer rotating with height and round, propose / prevote / precommit,
lockedValue/lockedRound and validValue/validRound, timeouts growing with the round, round
skipping on f+1 messages of a higher round, and commit on 2f+1 precommits for a block in any
round of the current height. Three changes suit a permissioned ledger:

* Execute-then-vote: a vote is for ``(block_hash, state_root)`` where the state root is the
  voter's own result of executing the block, so validators that disagree about the resulting
  state cannot form a quorum together. The quorum certificate of a commit is the set of 2f+1
  precommit signatures.
* No empty blocks: a proposer whose application has nothing to propose waits (polling on an
  idle timer or woken by ``TransactionsAvailable``) instead of proposing an empty block, and
  validators do not run round timeouts at an idle height until there is activity (pending
  transactions or a message at the height from another validator).
* Reliable progress over lossy links: a stalled validator re-sends its signed messages of the
  current round and a ``Status``; a validator that learns a peer is at a higher height fetches
  the committed blocks with their certificates (``BlockRequest``/``BlockResponse``), checks the
  certificate and re-executes each block before committing it.
"""

from __future__ import annotations

from dataclasses import dataclass

from tablechain.crypto import PrivateKey
from tablechain.errors import TablechainError
from tablechain.ledger.consensus.errors import (
    ConsensusError,
    InvalidQuorumCertificate,
    InvalidValidatorSet,
    MalformedMessage,
)
from tablechain.ledger.consensus.events import (
    TIMER_CATCHUP,
    TIMER_IDLE,
    TIMER_PRECOMMIT,
    TIMER_PREVOTE,
    TIMER_PROPOSE,
    TIMER_REBROADCAST,
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
    Timer,
    TimerFired,
    TransactionsAvailable,
)
from tablechain.ledger.consensus.interface import ConsensusApplication, ExecutionResult
from tablechain.ledger.consensus.messages import (
    PRECOMMIT,
    PREVOTE,
    BlockRequest,
    BlockResponse,
    CommittedBlock,
    Message,
    Proposal,
    QuorumCertificate,
    SignedMessage,
    Status,
    Vote,
    check_message_shape,
    sign_block_request,
    sign_proposal,
    sign_status,
    sign_vote,
    verify_qc,
    verify_signature,
)
from tablechain.ledger.consensus.validators import ValidatorSet
from tablechain.ledger.consensus.wal import STEP_PRECOMMIT, STEP_PREVOTE, STEP_PROPOSE, SignerState

__all__ = ["ConsensusConfig", "ConsensusMachine", "serve_block_request"]

Value = tuple[bytes, bytes]  # (block_hash, state_root); None stands for nil


@dataclass(frozen=True)
class ConsensusConfig:
    """Timeouts (milliseconds) and bounds. Round ``r`` waits ``base + r * delta`` (capped)."""

    timeout_propose_ms: int = 1000
    timeout_propose_delta_ms: int = 500
    timeout_prevote_ms: int = 500
    timeout_prevote_delta_ms: int = 500
    timeout_precommit_ms: int = 500
    timeout_precommit_delta_ms: int = 500
    timeout_max_ms: int = 60_000
    idle_poll_ms: int = 50
    rebroadcast_ms: int = 2000
    catchup_delay_ms: int = 300
    catchup_retry_ms: int = 2000
    catchup_batch_blocks: int = 64
    catchup_batch_bytes: int = 16 * 1024 * 1024
    future_heights: int = 2
    future_round_window: int = 8
    max_buffered_per_sender: int = 32
    max_block_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if type(value) is not int or value < 0:
                raise ConsensusError(f"consensus config {name} must be a non-negative integer")
        for name in ("idle_poll_ms", "rebroadcast_ms", "catchup_retry_ms", "catchup_batch_blocks",
                     "timeout_max_ms"):
            if getattr(self, name) < 1:
                raise ConsensusError(f"consensus config {name} must be at least 1")

    def timeout(self, kind: str, round_: int) -> int:
        if kind == TIMER_PROPOSE:
            base, delta = self.timeout_propose_ms, self.timeout_propose_delta_ms
        elif kind == TIMER_PREVOTE:
            base, delta = self.timeout_prevote_ms, self.timeout_prevote_delta_ms
        else:
            base, delta = self.timeout_precommit_ms, self.timeout_precommit_delta_ms
        return min(base + round_ * delta, self.timeout_max_ms)


class ConsensusMachine:
    """One validator's consensus state machine. Not thread-safe: feed events from one thread.

    ``persisted`` is the last ``SignerState`` the host stored from a ``Persist`` output (None on
    a fresh node). The application's committed chain gives the height to work on; a record
    above it (the chain store lost blocks) holds back all signing until the chain reaches it.
    """

    def __init__(
        self,
        validators: ValidatorSet,
        private_key: PrivateKey,
        app: ConsensusApplication,
        config: ConsensusConfig | None = None,
        persisted: SignerState | None = None,
    ) -> None:
        me = validators.find_key(private_key.public_key)
        if me is None:
            raise InvalidValidatorSet("this node's key is not in the validator set")
        self._vs = validators
        self._key = private_key
        self._app = app
        self._cfg = config or ConsensusConfig()
        self._me = me.validator_id
        self._chain = validators.chain_id
        self._quorum = validators.quorum
        self._skip_threshold = validators.max_faulty + 1
        self._out: list[Output] = []
        self._started = False

        committed = app.committed_height()
        if type(committed) is not int or committed < 0:
            raise ConsensusError("application committed_height() must be a non-negative int")
        self._height = committed + 1
        self._last_commit: QuorumCertificate | None = None
        if committed >= 1:
            last = app.committed_block(committed)
            self._last_commit = last.qc if last is not None else None
        self._reset_height()

        # Across heights: what peers told us, catch-up progress, buffered future messages.
        self._peer_heights: dict[str, int] = {}
        self._catchup_armed = False
        self._catchup_peer: str | None = None
        self._catchup_mark = 0
        self._catchup_attempt = 0
        self._future: dict[int, dict[tuple[object, ...], Proposal | Vote]] = {}
        self._future_count: dict[tuple[int, str], int] = {}
        self._idle_armed = False
        self._stall_mark: tuple[int, int, int] | None = None
        self._restored = False
        # A record above the chain's next height: the chain store lost committed blocks (a
        # database deleted to re-sync from peers). What this validator signed below the
        # record's height is not known, so it signs nothing there (see ``_signing_held``); the
        # quorum's certified blocks bring its chain up, and at the record's height it resumes
        # from the record as after any restart. Above it, it never signed anything.
        self._record_ahead: SignerState | None = None

        if persisted is not None:
            if persisted.height > self._height:
                self._record_ahead = persisted
            elif persisted.height == self._height:
                self._restore(persisted)

    # --- introspection ---------------------------------------------------------------------

    @property
    def validator_id(self) -> str:
        return self._me

    @property
    def height(self) -> int:
        """The height being decided (one above the last committed block)."""
        return self._height

    @property
    def round(self) -> int:
        return self._round

    @property
    def step_name(self) -> str:
        return ("propose", "prevote", "precommit")[self._step]

    @property
    def locked_round(self) -> int:
        return self._locked_round

    @property
    def locked_hash(self) -> bytes | None:
        return self._locked_hash

    @property
    def last_commit(self) -> QuorumCertificate | None:
        return self._last_commit

    def proposer(self, height: int | None = None, round_: int | None = None) -> str:
        h = self._height if height is None else height
        r = self._round if round_ is None else round_
        return self._vs.proposer(h, r)

    def signer_state(self) -> SignerState:
        """The record a ``Persist`` output would carry now."""
        return SignerState(
            height=self._height,
            round=self._round,
            step=self._step,
            locked_round=self._locked_round,
            locked_hash=self._locked_hash,
            valid_round=self._valid_round,
            valid_hash=self._valid_hash,
            votes=tuple(self._my_votes.values()),
            proposed=tuple(self._my_proposals.items()),
            locked_block=self._block_bytes(self._locked_hash),
            valid_block=(None if self._valid_hash == self._locked_hash
                         else self._block_bytes(self._valid_hash)),
        )

    def _block_bytes(self, block_hash: bytes | None) -> bytes | None:
        if block_hash is None:
            return None
        known = self._executed.get(block_hash)
        if known is not None:
            return known[0]
        return self._restored_blocks.get(block_hash)

    # --- the one entry point ---------------------------------------------------------------

    def step(self, event: Event) -> list[Output]:
        """Apply one event; return the outputs to perform, in order."""
        self._out = []
        if not self._started:
            self._on_start()
        if isinstance(event, MessageReceived):
            self._on_message(event.message)
        elif isinstance(event, TimerFired):
            self._on_timer(event.timer)
        elif isinstance(event, TransactionsAvailable):
            self._idle_check()
        elif not isinstance(event, Start):
            raise ConsensusError(f"unknown consensus event {type(event).__name__}")
        self._progress()
        out, self._out = self._out, []
        return out

    # --- per-height state ------------------------------------------------------------------

    def _reset_height(self) -> None:
        self._round = 0
        self._step = STEP_PROPOSE
        self._locked_round = -1
        self._locked_hash: bytes | None = None
        self._valid_round = -1
        self._valid_hash: bytes | None = None
        self._proposals: dict[int, Proposal] = {}
        # kind -> round -> validator -> value -> vote. A validator normally has one vote per
        # round; an equivocating one may have more (each value's tally counts it once).
        self._votes: dict[str, dict[int, dict[str, dict[Value | None, Vote]]]] = {
            PREVOTE: {}, PRECOMMIT: {}}
        self._tally: dict[str, dict[int, dict[Value | None, int]]] = {PREVOTE: {}, PRECOMMIT: {}}
        self._total: dict[str, dict[int, int]] = {PREVOTE: {}, PRECOMMIT: {}}
        self._verdicts: dict[int, ExecutionResult | None] = {}
        self._executed: dict[bytes, tuple[bytes, bytes]] = {}
        self._timeouts_set: set[tuple[str, int]] = set()
        self._polka_seen: set[int] = set()
        self._max_round: dict[str, int] = {}
        self._my_votes: dict[tuple[str, int], Vote] = {}
        self._my_proposals: dict[int, bytes] = {}
        self._signed_proposals: dict[int, Proposal] = {}
        self._equivocation_checked: set[tuple[str, str, int]] = set()
        self._divergence_reported: set[Value] = set()
        self._restored_blocks: dict[bytes, bytes] = {}
        self._active = False
        self._waiting_for_block = False

    def _restore(self, state: SignerState) -> None:
        self._round = state.round
        self._step = state.step
        self._locked_round = state.locked_round
        self._locked_hash = state.locked_hash
        self._valid_round = state.valid_round
        self._valid_hash = state.valid_hash
        for vote in state.votes:
            if vote.validator == self._me and vote.height == self._height:
                self._my_votes[(vote.kind, vote.round)] = vote
                self._add_vote(vote)
        self._my_proposals = dict(state.proposed)
        if state.locked_hash is not None and state.locked_block is not None:
            self._restored_blocks[state.locked_hash] = state.locked_block
        if state.valid_hash is not None and state.valid_block is not None:
            self._restored_blocks[state.valid_hash] = state.valid_block
        self._active = True
        self._restored = True

    # --- start, timers, idle ---------------------------------------------------------------

    def _resume(self) -> None:
        """Carry on from a restored record: re-send what it signed, never sign it again."""
        for vote in self._my_votes.values():
            self._emit(Broadcast(vote))
        if self._step == STEP_PROPOSE:
            self._start_round(self._round)

    def _signing_held(self) -> bool:
        """Below the height of a signer record that is ahead of the chain: sign nothing."""
        return self._record_ahead is not None and self._height < self._record_ahead.height

    def _on_start(self) -> None:
        self._started = True
        self._schedule(TIMER_REBROADCAST, self._cfg.rebroadcast_ms)
        if self._restored:
            self._resume()
        else:
            self._start_round(0)
        self._emit(Broadcast(sign_status(self._key, self._chain, self._me, self._height,
                                         self._round)))

    def _schedule(self, kind: str, delay_ms: int) -> None:
        self._emit(ScheduleTimer(Timer(kind, self._height, self._round), delay_ms))

    def _schedule_timeout(self, kind: str) -> None:
        key = (kind, self._round)
        if key in self._timeouts_set:
            return
        self._timeouts_set.add(key)
        self._schedule(kind, self._cfg.timeout(kind, self._round))

    def _arm_idle(self) -> None:
        if not self._idle_armed:
            self._idle_armed = True
            self._schedule(TIMER_IDLE, self._cfg.idle_poll_ms)

    def _on_timer(self, timer: Timer) -> None:
        kind = timer.kind
        current = timer.height == self._height and timer.round == self._round
        if kind == TIMER_PROPOSE:
            if current and self._step == STEP_PROPOSE:
                self._waiting_for_block = False
                self._step = STEP_PREVOTE
                self._vote(PREVOTE, None)
        elif kind == TIMER_PREVOTE:
            if current and self._step == STEP_PREVOTE:
                self._step = STEP_PRECOMMIT
                self._vote(PRECOMMIT, None)
        elif kind == TIMER_PRECOMMIT:
            if current:
                self._start_round(self._round + 1)
        elif kind == TIMER_IDLE:
            self._idle_armed = False
            self._idle_check()
        elif kind == TIMER_REBROADCAST:
            self._on_rebroadcast()
        elif kind == TIMER_CATCHUP:
            self._catchup_armed = False
            self._catchup_tick()

    def _idle_check(self) -> None:
        if (
            self._waiting_for_block
            and self._step == STEP_PROPOSE
            and self._vs.proposer(self._height, self._round) == self._me
        ):
            self._propose()
        if not self._active and self._app.has_pending_transactions():
            self._activate()
        if self._waiting_for_block or not self._active:
            self._arm_idle()

    def _activate(self) -> None:
        """Something is happening at this height: run round timeouts from now on."""
        if not self._active:
            self._active = True
            if self._step == STEP_PROPOSE:
                self._schedule_timeout(TIMER_PROPOSE)

    def _on_rebroadcast(self) -> None:
        self._schedule(TIMER_REBROADCAST, self._cfg.rebroadcast_ms)
        mark = (self._height, self._round, self._step)
        if mark != self._stall_mark:
            self._stall_mark = mark
            return
        # No progress for a whole interval: messages may have been lost. Re-send ours.
        self._emit(Broadcast(sign_status(self._key, self._chain, self._me, self._height,
                                         self._round)))
        proposal = self._signed_proposals.get(self._round)
        if proposal is not None:
            self._emit(Broadcast(proposal))
        # All our votes at this height: a proposal's POL round may be any earlier round.
        for vote in self._my_votes.values():
            self._emit(Broadcast(vote))
        self._relay_polka()

    def _relay_polka(self) -> None:
        """Relay the prevotes that justify our valid value (others' signed votes), so that
        validators who missed some of them can accept its re-proposal with that POL round."""
        if self._valid_hash is None:
            return
        for vid, votes in self._votes[PREVOTE].get(self._valid_round, {}).items():
            if vid == self._me:
                continue
            for value, vote in votes.items():
                if value is not None and value[0] == self._valid_hash:
                    self._emit(Broadcast(vote))

    # --- rounds ----------------------------------------------------------------------------

    def _start_round(self, round_: int) -> None:
        self._round = round_
        self._step = STEP_PROPOSE
        self._waiting_for_block = False
        if round_ > 0:
            self._active = True
        elif not self._active and self._app.has_pending_transactions():
            self._active = True
        if self._vs.proposer(self._height, round_) == self._me:
            self._propose()
        if self._active:
            # The proposer too: if its own proposal cannot be prevoted (a POL it lost), it must
            # still move on.
            self._schedule_timeout(TIMER_PROPOSE)
        if self._waiting_for_block or not self._active:
            self._arm_idle()

    def _propose(self) -> None:
        if self._signing_held():
            self._waiting_for_block = False
            return
        round_ = self._round
        if round_ in self._my_proposals:
            # Already signed a proposal for this round (before a restart): never sign another.
            self._waiting_for_block = False
            signed = self._signed_proposals.get(round_)
            if signed is not None:
                self._emit(Broadcast(signed))
            return
        valid_block = self._block_bytes(self._valid_hash)
        if valid_block is not None and self._valid_hash is not None:
            block, block_hash, pol_round = valid_block, self._valid_hash, self._valid_round
        else:
            proposed = self._app.propose_block(self._height, self._last_commit)
            if proposed is None:
                self._waiting_for_block = True
                return
            if type(proposed.block) is not bytes or type(proposed.block_hash) is not bytes:
                raise ConsensusError("propose_block must return bytes for block and block_hash")
            block, block_hash, pol_round = proposed.block, proposed.block_hash, -1
        self._waiting_for_block = False
        proposal = sign_proposal(self._key, self._chain, self._me, self._height, round_,
                                 block_hash, block, pol_round)
        self._my_proposals[round_] = block_hash
        self._signed_proposals[round_] = proposal
        self._proposals[round_] = proposal
        self._emit(Persist(self.signer_state()))
        self._emit(Broadcast(proposal))
        if pol_round >= 0:
            self._relay_polka()

    def _vote(self, kind: str, value: Value | None) -> None:
        if self._signing_held():
            return
        key = (kind, self._round)
        existing = self._my_votes.get(key)
        if existing is not None:
            # Signed before (restart): re-send it; never sign a conflicting vote.
            self._emit(Broadcast(existing))
            return
        vote = sign_vote(self._key, self._chain, self._me, kind, self._height, self._round, value)
        self._my_votes[key] = vote
        self._add_vote(vote)
        self._emit(Persist(self.signer_state()))
        self._emit(Broadcast(vote))

    def _add_vote(self, vote: Vote) -> None:
        kind, round_, value = vote.kind, vote.round, vote.value
        by_validator = self._votes[kind].setdefault(round_, {})
        votes = by_validator.get(vote.validator)
        if votes is None:
            by_validator[vote.validator] = votes = {}
            self._total[kind][round_] = self._total[kind].get(round_, 0) + 1
        if value in votes:
            return
        votes[value] = vote
        tally = self._tally[kind].setdefault(round_, {})
        tally[value] = tally.get(value, 0) + 1

    def _verdict(self, round_: int) -> ExecutionResult | None:
        """Execute the proposal of ``round_`` once (cached); None when invalid."""
        if round_ in self._verdicts:
            return self._verdicts[round_]
        proposal = self._proposals[round_]
        known = self._executed.get(proposal.block_hash)
        result: ExecutionResult | None
        if known is not None and known[0] == proposal.block:
            result = ExecutionResult(proposal.block_hash, known[1])
        else:
            result = self._execute(proposal.block)
            if result is not None and result.block_hash != proposal.block_hash:
                result = None
            if result is not None:
                self._executed[proposal.block_hash] = (proposal.block, result.state_root)
        self._verdicts[round_] = result
        return result

    def _execute(self, block: bytes) -> ExecutionResult | None:
        try:
            result = self._app.validate_block(self._height, block)
        except TablechainError:
            return None
        if result is None:
            return None
        if type(result.block_hash) is not bytes or type(result.state_root) is not bytes:
            raise ConsensusError("validate_block must return bytes for block_hash and state_root")
        return result

    # --- the rules -------------------------------------------------------------------------

    def _progress(self) -> None:
        while (
            self._try_commit()
            or self._try_round_rules()
            or self._update_valid_value()
            or self._try_round_skip()
        ):
            pass

    def _try_commit(self) -> bool:
        for round_ in sorted(self._tally[PRECOMMIT]):
            for value, count in list(self._tally[PRECOMMIT][round_].items()):
                if value is None or count < self._quorum:
                    continue
                block_hash, root = value
                known = self._executed.get(block_hash)
                if known is None:
                    for pr, proposal in sorted(self._proposals.items()):
                        if proposal.block_hash == block_hash and pr not in self._verdicts:
                            self._verdict(pr)
                    known = self._executed.get(block_hash)
                    if known is None:
                        continue  # block unknown here: a peer's BlockResponse will bring it
                if known[1] != root:
                    if value not in self._divergence_reported:
                        self._divergence_reported.add(value)
                        self._emit(StateDivergence(self._height, block_hash, known[1], root))
                    continue
                self._commit(round_, value, known[0])
                return True
        return False

    def _try_round_rules(self) -> bool:
        round_ = self._round
        quorum = self._quorum
        proposal = self._proposals.get(round_)
        prevotes = self._tally[PREVOTE].get(round_, {})
        if self._step == STEP_PROPOSE and proposal is not None:
            if proposal.pol_round == -1:
                result = self._verdict(round_)
                if result is not None and (
                    self._locked_round == -1 or self._locked_hash == proposal.block_hash
                ):
                    self._prevote((result.block_hash, result.state_root))
                else:
                    self._prevote(None)
                return True
            pol = proposal.pol_round
            result = self._verdict(round_)
            if result is not None:
                value = (result.block_hash, result.state_root)
                if self._tally[PREVOTE].get(pol, {}).get(value, 0) >= quorum:
                    if self._locked_round <= pol or self._locked_hash == proposal.block_hash:
                        self._prevote(value)
                    else:
                        self._prevote(None)
                    return True
        if self._step >= STEP_PREVOTE:
            if (
                self._step == STEP_PREVOTE
                and self._total[PREVOTE].get(round_, 0) >= quorum
                and (TIMER_PREVOTE, round_) not in self._timeouts_set
            ):
                self._schedule_timeout(TIMER_PREVOTE)
                return True
            if proposal is not None and round_ not in self._polka_seen and any(
                v is not None and v[0] == proposal.block_hash and c >= quorum
                for v, c in prevotes.items()
            ):
                result = self._verdict(round_)
                if result is not None:
                    value = (result.block_hash, result.state_root)
                    if prevotes.get(value, 0) >= quorum:
                        self._polka_seen.add(round_)
                        self._valid_round, self._valid_hash = round_, result.block_hash
                        if self._step == STEP_PREVOTE:
                            self._locked_round, self._locked_hash = round_, result.block_hash
                            self._step = STEP_PRECOMMIT
                            self._vote(PRECOMMIT, value)
                        return True
            if self._step == STEP_PREVOTE and prevotes.get(None, 0) >= quorum:
                self._step = STEP_PRECOMMIT
                self._vote(PRECOMMIT, None)
                return True
        if (
            self._total[PRECOMMIT].get(round_, 0) >= quorum
            and (TIMER_PRECOMMIT, round_) not in self._timeouts_set
        ):
            self._schedule_timeout(TIMER_PRECOMMIT)
            return True
        return False

    def _update_valid_value(self) -> bool:
        """A polka for a block we hold in any round above validRound (up to the current one)
        makes it the valid value, so a later proposer re-proposes it. Safety does not depend
        on validValue; this only helps liveness when messages arrived late or a node lost its
        memory (Tendermint updates it only in the current round)."""
        quorum = self._quorum
        for round_ in sorted(self._tally[PREVOTE], reverse=True):
            if round_ <= self._valid_round:
                break
            if round_ > self._round:
                continue
            for value, count in self._tally[PREVOTE][round_].items():
                if value is None or count < quorum:
                    continue
                proposal = self._proposals.get(round_)
                if proposal is not None and proposal.block_hash == value[0]:
                    self._verdict(round_)
                known = self._executed.get(value[0])
                if known is not None and known[1] == value[1]:
                    self._valid_round, self._valid_hash = round_, value[0]
                    return True
        return False

    def _prevote(self, value: Value | None) -> None:
        self._step = STEP_PREVOTE
        self._waiting_for_block = False
        self._vote(PREVOTE, value)

    def _try_round_skip(self) -> bool:
        """f+1 validators are at a higher round: at least one honest one is; follow it."""
        if len(self._max_round) < self._skip_threshold:
            return False
        rounds = sorted(self._max_round.values(), reverse=True)
        target = rounds[self._skip_threshold - 1]
        if target > self._round:
            self._start_round(target)
            return True
        return False

    # --- commit and heights ----------------------------------------------------------------

    def _commit(self, round_: int, value: Value, block: bytes) -> None:
        block_hash, root = value
        precommits = self._votes[PRECOMMIT][round_]
        signatures = []
        for vid in self._vs.ids:
            vote = precommits.get(vid, {}).get(value)
            if vote is not None:
                signatures.append((vid, vote.signature))
        qc = QuorumCertificate(self._height, round_, block_hash, root, tuple(signatures))
        self._app.commit_block(self._height, block, qc)
        self._emit(Committed(self._height, round_, block_hash, root, qc, False))
        self._advance(qc)
        self._enter_height()

    def _advance(self, qc: QuorumCertificate) -> None:
        self._last_commit = qc
        self._height += 1
        self._reset_height()
        for height in [h for h in self._future if h < self._height]:
            self._drop_future(height)

    def _drop_future(self, height: int) -> dict[tuple[object, ...], Proposal | Vote]:
        buffered = self._future.pop(height, {})
        for key in [k for k in self._future_count if k[0] == height]:
            del self._future_count[key]
        return buffered

    def _enter_height(self) -> None:
        record = self._record_ahead
        resumed = False
        if record is not None and self._height >= record.height:
            self._record_ahead = None  # the chain has caught up with the record
            if self._height == record.height:
                self._restore(record)
                resumed = True
        for message in self._drop_future(self._height).values():
            if isinstance(message, Proposal):
                self._accept_proposal(message, verified=True)
            else:
                self._accept_vote(message, verified=True)
        if resumed:
            self._resume()
        else:
            self._start_round(0)

    # --- receiving -------------------------------------------------------------------------

    def _on_message(self, message: Message) -> None:
        try:
            check_message_shape(message, self._cfg.max_block_bytes)
        except MalformedMessage:
            return
        if isinstance(message, BlockResponse):
            self._on_block_response(message)
            return
        sender = message.validator
        if sender == self._me or self._vs.get(sender) is None:
            return
        if isinstance(message, BlockRequest):
            if verify_signature(message, self._vs):
                self._serve_blocks(message)
        elif isinstance(message, Status):
            self._on_status(message)
        else:
            self._on_consensus_message(message)

    def _verify(self, message: SignedMessage) -> bool:
        return verify_signature(message, self._vs)

    def _on_status(self, status: Status) -> None:
        if not self._verify(status):
            return
        if status.height > self._height:
            self._note_peer_height(status.validator, status.height)
        elif status.height < self._height:
            self._emit(SendTo(status.validator, sign_status(
                self._key, self._chain, self._me, self._height, self._round)))
        else:
            self._note_round(status.validator, status.round)

    def _on_consensus_message(self, message: Proposal | Vote) -> None:
        height = message.height
        sender = message.validator
        if height < self._height:
            return  # late message for a decided height
        if height > self._height:
            if height > self._height + self._cfg.future_heights:
                if self._verify(message):
                    self._note_peer_height(sender, height)
                return
            if isinstance(message, Proposal):
                key: tuple[object, ...] = ("proposal", message.round, sender)
            else:
                key = (message.kind, message.round, sender)
            buffered = self._future.setdefault(height, {})
            count_key = (height, sender)
            if key in buffered or self._future_count.get(count_key, 0) >= (
                self._cfg.max_buffered_per_sender
            ):
                return
            if not self._verify(message):
                return
            buffered[key] = message
            self._future_count[count_key] = self._future_count.get(count_key, 0) + 1
            self._note_peer_height(sender, height)
            return
        if isinstance(message, Proposal):
            self._accept_proposal(message, verified=False)
        else:
            self._accept_vote(message, verified=False)

    def _accept_proposal(self, proposal: Proposal, verified: bool) -> None:
        round_ = proposal.round
        sender = proposal.validator
        if self._vs.proposer(self._height, round_) != sender:
            return
        existing = self._proposals.get(round_)
        if existing is not None:
            # A proposal already checked and stored wins; a different one from the proposer
            # (its signature covers the block's bytes as well) is equivocation.
            if existing != proposal:
                key = (sender, "proposal", round_)
                if key not in self._equivocation_checked and (verified or self._verify(proposal)):
                    self._report_equivocation("proposal", existing, proposal)
            return
        if not verified and not self._verify(proposal):
            return
        self._note_round(sender, round_)
        if round_ > self._round + self._cfg.future_round_window:
            return
        self._proposals[round_] = proposal
        self._activate()

    def _accept_vote(self, vote: Vote, verified: bool) -> None:
        by_sender = self._votes[vote.kind].get(vote.round)
        existing = by_sender.get(vote.validator) if by_sender is not None else None
        if existing is not None:
            if vote.value in existing:
                return  # duplicate
            # Equivocation. Keep a second vote, and beyond that only votes for values that
            # f+1 others support (they might be needed for a quorum): honest validators that
            # relay a real vote must not be blocked by fakes the equivocator sent us first.
            support = self._tally[vote.kind].get(vote.round, {}).get(vote.value, 0)
            if len(existing) >= 2 and support < self._skip_threshold:
                return
            if not verified and not self._verify(vote):
                return
            first = next(iter(existing.values()))
            self._report_equivocation(vote.kind, first, vote)
            if vote.round <= self._round + self._cfg.future_round_window:
                self._add_vote(vote)
            return
        if not verified and not self._verify(vote):
            return
        self._note_round(vote.validator, vote.round)
        if vote.round > self._round + self._cfg.future_round_window:
            return
        self._add_vote(vote)
        self._activate()

    def _report_equivocation(
        self, kind: str, first: Proposal | Vote, second: Proposal | Vote
    ) -> None:
        """Report a (verified) second message once per validator, kind and round."""
        key = (first.validator, kind, first.round)
        if key not in self._equivocation_checked:
            self._equivocation_checked.add(key)
            self._emit(EquivocationDetected(first.validator, kind, self._height, first.round,
                                            first, second))

    def _note_round(self, sender: str, round_: int) -> None:
        if round_ > self._max_round.get(sender, -1):
            self._max_round[sender] = round_

    # --- catch-up --------------------------------------------------------------------------

    def _note_peer_height(self, peer: str, height: int) -> None:
        if height > self._peer_heights.get(peer, 0):
            self._peer_heights[peer] = height
        if height > self._height and not self._catchup_armed:
            self._catchup_armed = True
            self._schedule(TIMER_CATCHUP, self._cfg.catchup_delay_ms)

    def _peers_ahead(self) -> list[str]:
        ahead = [(-h, self._vs.index_of(p), p) for p, h in self._peer_heights.items()
                 if h > self._height]
        return [p for _, _, p in sorted(ahead)]

    def _catchup_tick(self) -> None:
        if self._catchup_peer is not None and self._height == self._catchup_mark:
            # The last request brought nothing: forget that peer's claim until it repeats it.
            if self._peer_heights.get(self._catchup_peer, 0) > self._height:
                self._peer_heights[self._catchup_peer] = self._height
            self._catchup_attempt += 1
        ahead = self._peers_ahead()
        if not ahead:
            self._catchup_peer = None
            return
        self._request_blocks(ahead[self._catchup_attempt % len(ahead)])
        self._catchup_armed = True
        self._schedule(TIMER_CATCHUP, self._cfg.catchup_retry_ms)

    def _request_blocks(self, peer: str) -> None:
        self._catchup_peer = peer
        self._catchup_mark = self._height
        request = sign_block_request(self._key, self._chain, self._me, self._height,
                                     self._height + self._cfg.catchup_batch_blocks - 1)
        self._emit(SendTo(peer, request))

    def _serve_blocks(self, request: BlockRequest) -> None:
        self._emit(SendTo(request.validator, serve_block_request(
            request, self._me, self._height - 1, self._app, self._cfg)))

    def _on_block_response(self, response: BlockResponse) -> None:
        """Apply the certified blocks at our height onwards. A response is not signed (each
        block's certificate proves it), so its ``validator`` may be anyone's claim: a response
        that brings nothing changes nothing here (the catch-up timer moves on from a peer that
        does not answer), else anyone could make us forget that an honest peer is ahead."""
        applied = 0
        for item in response.blocks:
            if item.height < self._height:
                continue
            if item.height > self._height or not self._apply_certified(item):
                break
            applied += 1
        responder = response.validator
        if applied:
            self._enter_height()
            if responder == self._catchup_peer and self._peer_heights.get(responder, 0) > (
                self._height
            ):
                self._request_blocks(responder)

    def _apply_certified(self, item: CommittedBlock) -> bool:
        qc = item.qc
        if qc.height != item.height:
            return False
        try:
            verify_qc(qc, self._vs)
        except InvalidQuorumCertificate:
            return False
        result = self._execute(item.block)
        if result is None or result.block_hash != qc.block_hash:
            return False
        if result.state_root != qc.state_root:
            value = (qc.block_hash, qc.state_root)
            if value not in self._divergence_reported:
                self._divergence_reported.add(value)
                self._emit(StateDivergence(self._height, qc.block_hash, result.state_root,
                                           qc.state_root))
            return False
        self._app.commit_block(self._height, item.block, qc)
        self._emit(Committed(self._height, qc.round, qc.block_hash, qc.state_root, qc, True))
        self._advance(qc)
        return True

    def _emit(self, output: Output) -> None:
        self._out.append(output)


def serve_block_request(request: BlockRequest, me: str, committed: int,
                        app: ConsensusApplication, cfg: ConsensusConfig) -> BlockResponse:
    """The answer to a checked block request: our committed blocks (up to ``committed``) from
    ``request.from_height``, at most ``catchup_batch_blocks`` of them and about
    ``catchup_batch_bytes``. A host may serve requests off its consensus thread with this."""
    top = min(request.to_height, committed,
              request.from_height + cfg.catchup_batch_blocks - 1)
    blocks: list[CommittedBlock] = []
    size = 0
    for height in range(request.from_height, top + 1):
        item = app.committed_block(height)
        if item is None:
            break
        if blocks and size + len(item.block) > cfg.catchup_batch_bytes:
            break
        blocks.append(item)
        size += len(item.block)
    return BlockResponse(me, tuple(blocks))
