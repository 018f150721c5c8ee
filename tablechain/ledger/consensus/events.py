"""Inputs (events) and outputs of the consensus state machine.

The host (in-process runner, simulator, Ray actor) feeds events to ``ConsensusMachine.step``
and performs the outputs in order. A ``Persist`` output must be written durably before any
output after it is performed: it records what the validator signed, so that after a crash it
never signs a conflicting message.
"""

from __future__ import annotations

from dataclasses import dataclass

from tablechain.ledger.consensus.messages import Message, QuorumCertificate
from tablechain.ledger.consensus.wal import SignerState

__all__ = [
    "TIMER_PROPOSE",
    "TIMER_PREVOTE",
    "TIMER_PRECOMMIT",
    "TIMER_IDLE",
    "TIMER_REBROADCAST",
    "TIMER_CATCHUP",
    "Timer",
    "Start",
    "MessageReceived",
    "TimerFired",
    "TransactionsAvailable",
    "Event",
    "Broadcast",
    "SendTo",
    "ScheduleTimer",
    "Persist",
    "Committed",
    "EquivocationDetected",
    "StateDivergence",
    "Output",
]

TIMER_PROPOSE = "propose"
TIMER_PREVOTE = "prevote"
TIMER_PRECOMMIT = "precommit"
TIMER_IDLE = "idle"
TIMER_REBROADCAST = "rebroadcast"
TIMER_CATCHUP = "catchup"


@dataclass(frozen=True, slots=True)
class Timer:
    """A timer the machine asked for; it comes back unchanged in ``TimerFired``."""

    kind: str
    height: int
    round: int


# --- events ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    """The first event after construction (or restart)."""


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A message from a peer, exactly as received (it is checked, never trusted)."""

    message: Message


@dataclass(frozen=True, slots=True)
class TimerFired:
    timer: Timer


@dataclass(frozen=True, slots=True)
class TransactionsAvailable:
    """The mempool went from empty to non-empty (or a batch is ready): propose without waiting
    for the idle timer."""


Event = Start | MessageReceived | TimerFired | TransactionsAvailable


# --- outputs ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Send ``message`` to every other validator."""

    message: Message


@dataclass(frozen=True, slots=True)
class SendTo:
    """Send ``message`` to one validator."""

    validator: str
    message: Message


@dataclass(frozen=True, slots=True)
class ScheduleTimer:
    """Deliver ``TimerFired(timer)`` after ``delay_ms`` milliseconds (no cancellation: stale
    timers are ignored by the machine)."""

    timer: Timer
    delay_ms: int


@dataclass(frozen=True, slots=True)
class Persist:
    """Durably store ``state`` (replacing the previous record) before the next outputs."""

    state: SignerState


@dataclass(frozen=True, slots=True)
class Committed:
    """The machine committed ``height`` (``commit_block`` has already been called)."""

    height: int
    round: int
    block_hash: bytes
    state_root: bytes
    qc: QuorumCertificate
    via_catchup: bool


@dataclass(frozen=True, slots=True)
class EquivocationDetected:
    """``validator`` signed two different messages of one kind for one height and round."""

    validator: str
    kind: str
    height: int
    round: int
    first: Message
    second: Message


@dataclass(frozen=True, slots=True)
class StateDivergence:
    """A quorum certified a state root for a block that differs from this node's execution:
    this node's state (or more than f validators) is wrong; the host should halt and alert."""

    height: int
    block_hash: bytes
    local_root: bytes
    quorum_root: bytes


Output = (
    Broadcast
    | SendTo
    | ScheduleTimer
    | Persist
    | Committed
    | EquivocationDetected
    | StateDivergence
)
