"""Signed reads: the reader proves who they are, so permissions and Get rules apply to them.

A read request is a JSON object signed by the reader like a transaction (canonical JSON without
``Signature``) and names a recent ledger height so that it cannot be replayed much later:

```
{"Account": "0x..", "PublicKey": "hex", "LedgerIndex": 42, "Owner": "0x..",
 "Tables": [{"Table": {"TableName": "t"}}], "Raw": [[], {"id": 1}], "Signature": "hex"}
```
No secret ever travels to the node.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tablechain.crypto import PrivateKey, address_to_text, canonical_json, public_key_from_bytes
from tablechain.crypto.keys import CryptoError
from tablechain.ledger.errors import BadRequest, BadSignature
from tablechain.ledger.transactions import CryptoSuite, check_address, check_table_name

__all__ = ["ReadRequest", "verify_read_request", "sign_read_request", "READ_WINDOW"]

READ_WINDOW = 100  # blocks a signed read stays valid
_FIELDS = {"Account", "PublicKey", "LedgerIndex", "Owner", "Tables", "Raw", "Signature"}


@dataclass(frozen=True)
class ReadRequest:
    reader: str
    owner: str
    table: str
    raw: Any


def _signed_part(obj: Mapping[str, Any]) -> bytes:
    return b"tablechain-read\x00" + canonical_json(
        {k: v for k, v in obj.items() if k != "Signature"}
    )


def verify_read_request(obj: Any, suite: CryptoSuite, head_height: int) -> ReadRequest:
    """Check a signed read request's shape, freshness and signature."""
    if not isinstance(obj, dict):
        raise BadRequest("a read request is a JSON object")
    unknown = set(obj) - _FIELDS
    missing = _FIELDS - set(obj)
    if unknown or missing:
        raise BadRequest(
            f"read request: unknown fields {sorted(unknown)}, missing {sorted(missing)}"
        )
    reader = check_address(obj["Account"], "Account")
    owner = check_address(obj["Owner"], "Owner")
    tables = obj["Tables"]
    if (
        not isinstance(tables, list)
        or len(tables) != 1
        or not isinstance(tables[0], dict)
        or not isinstance(tables[0].get("Table"), dict)
    ):
        raise BadRequest('Tables is [{"Table": {"TableName": name}}]')
    name = check_table_name(tables[0]["Table"].get("TableName"), "TableName")
    index = obj["LedgerIndex"]
    if not isinstance(index, int) or isinstance(index, bool):
        raise BadRequest("LedgerIndex must be an integer")
    if not head_height - READ_WINDOW <= index <= head_height:
        raise BadRequest(
            f"LedgerIndex {index} is not within the last {READ_WINDOW} blocks "
            f"(head {head_height}); sign the request again"
        )
    try:
        key_bytes = bytes.fromhex(obj["PublicKey"])
        signature = bytes.fromhex(obj["Signature"])
        key = public_key_from_bytes(suite.scheme_for_key(key_bytes), key_bytes)
    except (ValueError, TypeError, CryptoError):
        raise BadSignature(
            "PublicKey / Signature must be hex of a valid key and signature"
        ) from None
    if address_to_text(key.address()) != reader:
        raise BadSignature("PublicKey does not belong to Account")
    if not key.verify(_signed_part(obj), signature):
        raise BadSignature("the read request's Signature does not verify")
    return ReadRequest(reader, owner, name, obj["Raw"])


def sign_read_request(
    key: PrivateKey, owner: str, table: str, raw: Any, ledger_index: int
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "Account": address_to_text(key.address()),
        "PublicKey": key.public_key.to_bytes().hex(),
        "LedgerIndex": ledger_index,
        "Owner": owner,
        "Tables": [{"Table": {"TableName": table}}],
        "Raw": raw,
    }
    obj["Signature"] = key.sign(_signed_part(obj)).hex()
    return obj
