"""The root of every tablechain error.

Each error carries a stable machine-readable ``code`` (ChainSQL-style where one exists) and a
message a person can act on. Errors survive pickling across Ray because every constructor
argument reaches ``super().__init__``.
"""

from __future__ import annotations

__all__ = ["TablechainError"]


class TablechainError(Exception):
    """Base class of all tablechain errors."""

    code: str = "tecINTERNAL"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message, code)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}
