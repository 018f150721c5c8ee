"""Errors of the ledger: each kind a subclass of ``LedgerError`` with a stable ChainSQL-style code.

Codes follow ChainSQL's families: ``tem`` (malformed: the transaction can never succeed as
written), ``tef`` (failed against the current state), ``ter`` (retry later, e.g. a nonce from
the future). Every constructor passes all of its arguments to ``super().__init__`` so that the
errors pickle across Ray.
"""

from __future__ import annotations

from tablechain.errors import TablechainError

__all__ = [
    "AssertFailed",
    "BadRequest",
    "BadRule",
    "FutureNonce",
    "MempoolFull",
    "NotFound",
    "BadCondition",
    "BadField",
    "BadNonce",
    "BadSignature",
    "ConfidentialTable",
    "InvalidTransaction",
    "LedgerError",
    "PermissionDenied",
    "QueryTooComplex",
    "RuleViolation",
    "StrictModeMismatch",
    "TableExists",
    "TableNotFound",
    "TooLarge",
    "TypeMismatch",
]


class LedgerError(TablechainError):
    """Base class of every ledger error."""

    code = "tefFAILURE"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message, code)


class InvalidTransaction(LedgerError):
    """The transaction is malformed: wrong shape, missing or unknown fields, bad values."""

    code = "temMALFORMED"


class BadField(InvalidTransaction):
    """A field definition (create / add / modify fields) or a field name is invalid."""

    code = "temBAD_FIELD"


class BadCondition(InvalidTransaction):
    """A query condition, field list, ``$limit`` or ``$order`` is malformed."""

    code = "temBAD_CONDITION"


class TypeMismatch(InvalidTransaction):
    """A value does not fit the type of its field (wrong JSON type, range, length, scale)."""

    code = "temBAD_VALUE_TYPE"


class QueryTooComplex(InvalidTransaction):
    """A condition nests too deeply, has too many terms, or a list or pattern is too long."""

    code = "temQUERY_TOO_COMPLEX"


class TooLarge(InvalidTransaction):
    """A value, row, table definition or transaction exceeds a size limit."""

    code = "temTOO_LARGE"


class BadSignature(InvalidTransaction):
    """The signature does not verify against the signing public key."""

    code = "temBAD_SIGNATURE"


class TableNotFound(LedgerError):
    """The named table does not exist for that owner."""

    code = "tefTABLE_NOTEXIST"


class TableExists(LedgerError):
    """A table of that name already exists for that owner."""

    code = "tefTABLE_EXISTANDNOTDEL"


class ConfidentialTable(LedgerError):
    """The operation needs what validators of a confidential table never see (its rows in
    clear, its key), or a grant on one lacks the grantee's Token."""

    code = "tefTABLE_CONFIDENTIAL"


class PermissionDenied(LedgerError):
    """The signer lacks the permission the operation needs."""

    code = "tefBAD_AUTH_NO"


class RuleViolation(LedgerError):
    """A row-level operation rule of the table is not satisfied."""

    code = "tefTABLE_RULEDISSATISFIED"


class StrictModeMismatch(LedgerError):
    """A strict-mode transaction's TxCheckHash differs from the table's current pointer."""

    code = "tefTABLE_TXCHECKHASH"


class BadNonce(LedgerError):
    """The Sequence is already used (``tefPAST_SEQ``) or skips ahead (``terPRE_SEQ``)."""

    code = "tefPAST_SEQ"


class AssertFailed(LedgerError):
    """An assert statement (OpType 10) found its condition false."""

    code = "tefTABLE_ASSERTFAILED"


class FutureNonce(LedgerError):
    """The Sequence skips ahead of the account's next one."""

    code = "terPRE_SEQ"


class BadRule(InvalidTransaction):
    """An OperationRule is malformed or does not fit the table."""

    code = "temBAD_OPERATIONRULE"


class MempoolFull(LedgerError):
    """Backpressure: the node's queue is full; retry later."""

    code = "telQUEUE_FULL"


class NotFound(LedgerError):
    code = "txnNotFound"


class BadRequest(LedgerError):
    code = "invalidParams"
