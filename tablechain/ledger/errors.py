"""Errors of the ledger, each with a stable ChainSQL-style code."""

from __future__ import annotations

from tablechain.errors import TablechainError

__all__ = [
    "LedgerError", "InvalidTransaction", "BadSignature", "TooLarge", "BadNonce", "FutureNonce",
    "TableNotFound", "TableExists", "PermissionDenied", "RuleViolation", "BadRule",
    "StrictModeMismatch", "AssertFailed", "BadField", "BadCondition", "QueryTooComplex",
    "TypeMismatch", "MempoolFull", "NotFound", "BadRequest",
]


class LedgerError(TablechainError):
    code = "tefFAILURE"


class InvalidTransaction(LedgerError):
    code = "temMALFORMED"


class BadSignature(LedgerError):
    code = "temBAD_SIGNATURE"


class TooLarge(LedgerError):
    code = "temTOO_LARGE"


class BadNonce(LedgerError):
    """The Sequence was already used (a replay)."""

    code = "tefPAST_SEQ"


class FutureNonce(LedgerError):
    """The Sequence skips ahead of the account's next one."""

    code = "terPRE_SEQ"


class TableNotFound(LedgerError):
    code = "tefTABLE_NOTEXIST"


class TableExists(LedgerError):
    code = "tefTABLE_EXISTANDNOTDEL"


class PermissionDenied(LedgerError):
    code = "tefBAD_AUTH_NO"


class RuleViolation(LedgerError):
    code = "tefTABLE_RULEDISSATISFIED"


class BadRule(LedgerError):
    code = "temBAD_OPERATIONRULE"


class StrictModeMismatch(LedgerError):
    code = "tefTABLE_TXCHECKHASH"


class AssertFailed(LedgerError):
    code = "tefASSERT_FAILED"


class BadField(LedgerError):
    code = "temBAD_RAW"


class BadCondition(LedgerError):
    code = "temBAD_CONDITION"


class QueryTooComplex(LedgerError):
    code = "temQUERY_TOO_COMPLEX"


class TypeMismatch(LedgerError):
    code = "temBAD_VALUE_TYPE"


class MempoolFull(LedgerError):
    code = "telQUEUE_FULL"


class NotFound(LedgerError):
    code = "txnNotFound"


class BadRequest(LedgerError):
    code = "invalidParams"
