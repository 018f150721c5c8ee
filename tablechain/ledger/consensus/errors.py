"""Errors of the consensus part."""

from __future__ import annotations

from tablechain.errors import TablechainError

__all__ = [
    "ConsensusError",
    "InvalidQuorumCertificate",
    "InvalidValidatorSet",
    "MalformedMessage",
]


class ConsensusError(TablechainError):
    """Consensus cannot proceed as asked (bad configuration or persisted state)."""

    code = "tefCONSENSUS"


class InvalidValidatorSet(ConsensusError):
    """The validator set is empty, has duplicates or does not contain this node."""

    code = "temBAD_VALIDATOR_SET"


class MalformedMessage(ConsensusError):
    """A consensus message has the wrong shape (types, sizes, ranges) or cannot be decoded."""

    code = "temMALFORMED_CONSENSUS_MESSAGE"


class InvalidQuorumCertificate(ConsensusError):
    """A quorum certificate does not prove a commit (too few, unknown, duplicate or bad
    signatures)."""

    code = "temBAD_QUORUM_CERTIFICATE"
