"""Errors of the privacy-computing library (``tablechain.mpc``)."""

from __future__ import annotations

from tablechain.errors import TablechainError

__all__ = [
    "MPCError",
    "FixedPointRangeError",
    "ShapeMismatch",
    "PartyError",
    "ProtocolMismatch",
]


class MPCError(TablechainError):
    """Base class of errors raised by the secure-computation protocols."""

    code = "tecMPC"


class FixedPointRangeError(MPCError):
    """A value cannot be encoded: not finite, or outside the fixed-point range."""

    code = "tecMPC_RANGE"


class ShapeMismatch(MPCError):
    """Operands of a secure operation have incompatible shapes."""

    code = "tecMPC_SHAPE"


class PartyError(MPCError):
    """A party index is not part of the computation, or a role is assigned wrongly."""

    code = "tecMPC_PARTY"


class ProtocolMismatch(MPCError):
    """Shares of one protocol instance (or trust model) were given to another."""

    code = "tecMPC_PROTOCOL"
