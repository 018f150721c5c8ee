"""BFT consensus: a Tendermint-style protocol as a pure state machine, plus its simulator.

The ledger node implements ``ConsensusApplication`` and drives ``ConsensusMachine.step`` with
events, performing the outputs (send, schedule, persist) through its transport.
"""

from tablechain.ledger.consensus.bft import ConsensusConfig, ConsensusMachine
from tablechain.ledger.consensus.errors import (
    ConsensusError,
    InvalidQuorumCertificate,
    InvalidValidatorSet,
    MalformedMessage,
)
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
    Timer,
    TimerFired,
    TransactionsAvailable,
)
from tablechain.ledger.consensus.interface import (
    ConsensusApplication,
    ExecutionResult,
    ProposedBlock,
)
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
    verify_qc,
)
from tablechain.ledger.consensus.single import SingleValidatorRunner, single_validator_set
from tablechain.ledger.consensus.validators import Validator, ValidatorSet
from tablechain.ledger.consensus.wal import SignerState

__all__ = [
    "PRECOMMIT",
    "PREVOTE",
    "BlockRequest",
    "BlockResponse",
    "Broadcast",
    "Committed",
    "CommittedBlock",
    "ConsensusApplication",
    "ConsensusConfig",
    "ConsensusError",
    "ConsensusMachine",
    "EquivocationDetected",
    "Event",
    "ExecutionResult",
    "InvalidQuorumCertificate",
    "InvalidValidatorSet",
    "MalformedMessage",
    "Message",
    "MessageReceived",
    "Output",
    "Persist",
    "Proposal",
    "ProposedBlock",
    "QuorumCertificate",
    "ScheduleTimer",
    "SendTo",
    "SignerState",
    "SingleValidatorRunner",
    "Start",
    "StateDivergence",
    "Status",
    "Timer",
    "TimerFired",
    "TransactionsAvailable",
    "Validator",
    "ValidatorSet",
    "Vote",
    "decode_message",
    "encode_message",
    "single_validator_set",
    "verify_qc",
]
