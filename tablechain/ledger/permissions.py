"""Table grants: the owner may do everything; others what a grant allows.

A grant to a specific user takes precedence over the grant to everyone; a new grant to the same
user overrides the old one, and a flag it leaves out keeps its previous value. Only the owner
drops, renames or grants.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tablechain.ledger.errors import InvalidTransaction, PermissionDenied
from tablechain.ledger.state import StateOverlay
from tablechain.ledger.transactions import EVERYONE

__all__ = ["ACTIONS", "grant_key", "require", "merge_grant"]

ACTIONS = ("select", "insert", "update", "delete")


def grant_key(name_in_db: str, user: str) -> str:
    return f"grant/{name_in_db}/{user}"


def require(
    state: StateOverlay, owner: str, name_in_db: str, table: str, account: str, action: str
) -> None:
    """Raise ``PermissionDenied`` unless ``account`` may ``action`` the table."""
    if account == owner:
        return
    grant = state.get(grant_key(name_in_db, account))  # the user's own grant takes precedence
    if grant is None:
        grant = state.get(grant_key(name_in_db, EVERYONE))
    if grant is None or not grant.get(action, False):
        raise PermissionDenied(f"{account} has no {action} permission on table {table!r}")


def merge_grant(previous: Mapping[str, Any] | None, raw: Any) -> dict[str, bool]:
    """The grant after applying a grant transaction's ``Raw`` to the previous one."""
    if isinstance(raw, list):
        if len(raw) != 1:
            raise InvalidTransaction("a grant's Raw is one object of flags")
        raw = raw[0]
    if not isinstance(raw, dict) or not raw:
        raise InvalidTransaction('a grant\'s Raw is {"select": true, "insert": false, ...}')
    unknown = sorted(set(raw) - set(ACTIONS))
    if unknown:
        raise InvalidTransaction(f"unknown grant flags {unknown}; known: {list(ACTIONS)}")
    out = {a: bool((previous or {}).get(a, False)) for a in ACTIONS}
    for action, flag in raw.items():
        if not isinstance(flag, bool):
            raise InvalidTransaction(f"grant flag {action!r} must be true or false")
        out[action] = flag
    return out
