"""Errors of the homomorphic-encryption, PSI and differential-privacy protocols.

Each error has a stable ``code`` and a message a person can act on; every constructor argument
reaches ``TablechainError.__init__`` so the errors pickle across process (and Ray) boundaries.
"""

from __future__ import annotations

from tablechain.errors import TablechainError

__all__ = [
    "HEError",
    "KeyMismatch",
    "PlaintextOutOfRange",
    "InvalidCiphertext",
    "ProtocolInputError",
    "PSIError",
    "GroupUnavailable",
    "DPError",
    "InvalidPrivacyParameter",
    "PrivacyBudgetExhausted",
]


class HEError(TablechainError):
    """Base of the Paillier errors."""

    code = "tecMPC_HE"


class KeyMismatch(HEError):
    """Ciphertexts or keys of different Paillier keys were combined."""

    code = "tecMPC_KEY_MISMATCH"


class PlaintextOutOfRange(HEError):
    """A value does not fit the plaintext space or the fixed-point / packing layout."""

    code = "tecMPC_PLAINTEXT_RANGE"


class InvalidCiphertext(HEError):
    """A ciphertext is not an element of Z*_{n^2} for the key at hand."""

    code = "tecMPC_BAD_CIPHERTEXT"


class ProtocolInputError(TablechainError):
    """A protocol was called with inputs that do not fit (roles, shapes, parties)."""

    code = "tecMPC_BAD_INPUT"


class PSIError(TablechainError):
    """Private set intersection failed (bad points, bad inputs)."""

    code = "tecMPC_PSI"


class GroupUnavailable(PSIError):
    """The requested elliptic-curve group has no usable implementation on this machine."""

    code = "tecMPC_GROUP_UNAVAILABLE"


class DPError(TablechainError):
    """Base of the differential-privacy errors."""

    code = "tecMPC_DP"


class InvalidPrivacyParameter(DPError):
    """Epsilon, delta, sensitivity or bounds are not valid."""

    code = "tecMPC_DP_PARAMETER"


class PrivacyBudgetExhausted(DPError):
    """Answering would exceed the privacy budget of a data set; nothing was spent."""

    code = "tecMPC_DP_BUDGET_EXHAUSTED"
