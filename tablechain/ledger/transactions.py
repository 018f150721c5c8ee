"""Transactions: ChainSQL-style table transactions, parsed and validated at the edge.

A signed transaction arrives as a JSON object with ChainSQL's field names. ``parse_transaction``
checks the envelope (type, account, sequence, network, key, signature, size) and hands the body
to the parser registered for its ``TransactionType``; what comes out is a frozen dataclass. No
loose dict travels past this module.

The signature covers the canonical JSON of the object without ``TxnSignature``; the transaction
hash is the chain's hash of those same bytes, so it is known before signing and no signature
malleability can change it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from tablechain.crypto import (
    CanonicalJSONError,
    PrivateKey,
    PublicKey,
    address_to_text,
    canonical_json,
    hash_by_name,
    public_key_from_bytes,
)
from tablechain.crypto.keys import CryptoError
from tablechain.ledger.errors import BadSignature, InvalidTransaction, TooLarge

__all__ = [
    "EVERYONE",
    "MAX_TX_BYTES",
    "TableRef",
    "TableListSet",
    "SQLStatement",
    "SQLTransaction",
    "Statement",
    "SignedTransaction",
    "TxBodyParser",
    "CryptoSuite",
    "TABLE_OPS",
    "STATEMENT_OPS",
    "parse_transaction",
    "register_transaction_type",
    "sign_transaction",
    "signing_bytes",
]

MAX_TX_BYTES = 1 << 20
EVERYONE = "everyone"
TABLE_OPS = {
    1: "create",
    2: "drop",
    3: "rename",
    11: "grant",
    12: "recreate",
    14: "add_fields",
    15: "delete_fields",
    16: "modify_fields",
    17: "create_index",
    18: "delete_index",
}
STATEMENT_OPS = {6: "insert", 8: "update", 9: "delete", 10: "assert"}
# Operation types a statement inside an SQLTransaction may carry.
TRANSACTION_STATEMENT_OPS = {1, 2, 3, 6, 8, 9, 10, 11}

_ENVELOPE = {
    "TransactionType",
    "Account",
    "Sequence",
    "NetworkID",
    "SigningPubKey",
    "TxnSignature",
    "Certificate",
    "Fee",
    "Memos",
}
_TABLE_NAME_MAX = 64


@dataclass(frozen=True)
class CryptoSuite:
    """The chain's cryptographic suite, fixed in genesis."""

    name: str  # "international" or "national"

    @property
    def hash_name(self) -> str:
        return "sm3" if self.name == "national" else "sha256"

    def __post_init__(self) -> None:
        # Resolved once: the suite hash runs several times per transaction in every block.
        object.__setattr__(self, "_hasher", hash_by_name(self.hash_name))

    def hash(self, data: bytes) -> bytes:
        return self._hasher(data)  # type: ignore[attr-defined,no-any-return]

    @property
    def schemes(self) -> tuple[str, ...]:
        return ("sm2",) if self.name == "national" else ("secp256k1", "ed25519")

    def scheme_for_key(self, key: bytes) -> str:
        """Which scheme a public key belongs to, by its encoding length."""
        if self.name == "national":
            if len(key) == 65 and key[0] == 4:
                return "sm2"
        elif len(key) == 33 and key[0] in (2, 3):
            return "secp256k1"
        elif len(key) == 32:
            return "ed25519"
        raise BadSignature(
            f"SigningPubKey of {len(key)} bytes is no key of the {self.name} suite "
            f"({', '.join(self.schemes)})"
        )


@dataclass(frozen=True)
class TableRef:
    """One entry of ``Tables``: ``{"Table": {"TableName", "NameInDB", "TableNewName"}}``."""

    name: str
    name_in_db: str | None = None
    new_name: str | None = None


@dataclass(frozen=True)
class TableListSet:
    """Table definition and control: create, drop, rename, grant, fields, indexes."""

    op_type: int
    tables: tuple[TableRef, ...]
    raw: Any = None
    owner: str | None = None
    user: str | None = None
    operation_rule: Any = None
    token: str | None = None
    flags: int = 0
    strict_mode: bool = False
    tx_check_hash: str | None = None

    transaction_type = "TableListSet"

    @property
    def table(self) -> TableRef:
        return self.tables[0]


@dataclass(frozen=True)
class SQLStatement:
    """Row operations: insert, update, delete, assert."""

    op_type: int
    tables: tuple[TableRef, ...]
    owner: str
    raw: Any
    flags: int = 0
    strict_mode: bool = False
    tx_check_hash: str | None = None
    auto_fill_field: str | None = None

    transaction_type = "SQLStatement"

    @property
    def table(self) -> TableRef:
        return self.tables[0]


Statement = TableListSet | SQLStatement


@dataclass(frozen=True)
class SQLTransaction:
    """Several statements applied all or nothing."""

    statements: tuple[Statement, ...]
    strict_mode: bool = False

    transaction_type = "SQLTransaction"


@dataclass(frozen=True)
class SignedTransaction:
    """A verified transaction: envelope fields, typed body, hash and the exact signed JSON."""

    transaction_type: str
    account: str
    sequence: int
    body: Any
    hash: bytes
    public_key: PublicKey
    signature: bytes
    json: Mapping[str, Any] = field(repr=False, compare=False, hash=False)
    size: int = 0
    certificate: str | None = None

    @cached_property
    def hash_hex(self) -> str:
        return self.hash.hex()

    @cached_property
    def encoded(self) -> bytes:
        """The whole transaction (signature included) as canonical JSON: how blocks carry it
        and the chain stores it. Its JSON passed the strict checks when it was parsed."""
        body = self.json if type(self.json) is dict else dict(self.json)
        return canonical_json(body, trusted=True)


TxBodyParser = Callable[[Mapping[str, Any]], Any]
_PARSERS: dict[str, tuple[TxBodyParser, frozenset[str]]] = {}


def register_transaction_type(name: str, parser: TxBodyParser, fields: set[str]) -> None:
    """Register the body parser of a transaction type and the body fields it accepts."""
    _PARSERS[name] = (parser, frozenset(fields) | _ENVELOPE)


# --- field helpers ---------------------------------------------------------------------------


def _require(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    if key not in obj:
        raise InvalidTransaction(f"{what}: missing field {key}")
    value = obj[key]
    if type(value) is kind:  # the common case, without building the message's place name
        return value
    return _typed(value, kind, f"{what}.{key}")


def _typed(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    if isinstance(value, bool) and kind is int:
        raise InvalidTransaction(f"{where} must be an integer, got a boolean")
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise InvalidTransaction(f"{where} must be {names}, got {type(value).__name__}")
    return value


def _optional(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = obj.get(key)
    if value is None or type(value) is kind:
        return value
    return _typed(value, kind, f"{what}.{key}")


_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_TABLE_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
_NAME_IN_DB = re.compile(r"[0-9a-f]*")
_HEX = re.compile(r"[0-9a-fA-F]+")


def check_address(text: Any, where: str) -> str:
    """An address as ``0x`` + 40 hex digits, returned in lowercase."""
    if not isinstance(text, str) or _ADDRESS.fullmatch(text) is None:
        raise InvalidTransaction(
            f"{where} is not an address (0x + 40 hex digits): {str(text)[:60]!r}"
        )
    return text.lower()


def check_table_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidTransaction(f"{where} must be a non-empty string")
    if len(name) > _TABLE_NAME_MAX:
        raise InvalidTransaction(f"{where} is longer than {_TABLE_NAME_MAX} characters")
    if _TABLE_NAME.fullmatch(name) is None:
        raise InvalidTransaction(
            f"{where} {name!r} may hold only ASCII letters, digits, '_', '-' and '.'"
        )
    return name


_TABLE_KEYS = frozenset({"TableName", "NameInDB", "TableNewName"})


def _parse_tables(obj: Mapping[str, Any], what: str) -> tuple[TableRef, ...]:
    tables = _require(obj, "Tables", list, what)
    if len(tables) != 1:
        raise InvalidTransaction(f"{what}.Tables must hold exactly one table")
    entry = tables[0]
    if type(entry) is not dict:
        entry = _typed(entry, dict, f"{what}.Tables[0]")
    if len(entry) != 1 or "Table" not in entry:
        raise InvalidTransaction(f'{what}.Tables[0] must be {{"Table": {{...}}}}')
    table = entry["Table"]
    if type(table) is not dict:
        table = _typed(table, dict, f"{what}.Tables[0].Table")
    # Most tables carry only a TableName: no set arithmetic for them.
    if not (len(table) == 1 and "TableName" in table):
        unknown = table.keys() - _TABLE_KEYS
        if unknown:
            raise InvalidTransaction(f"{what}.Tables[0].Table: unknown fields {sorted(unknown)}")
    name = check_table_name(table.get("TableName"), f"{what}.TableName")
    name_in_db = table.get("NameInDB")
    if name_in_db is not None and (
        not isinstance(name_in_db, str)
        or len(name_in_db) > 64
        or _NAME_IN_DB.fullmatch(name_in_db) is None
    ):
        raise InvalidTransaction(f"{what}.NameInDB must be lowercase hex")
    new_name = table.get("TableNewName")
    if new_name is not None:
        new_name = check_table_name(new_name, f"{what}.TableNewName")
    return (TableRef(name, name_in_db, new_name),)


_STATEMENT_FIELDS = {
    "TransactionType",
    "OpType",
    "Tables",
    "Raw",
    "Owner",
    "User",
    "OperationRule",
    "Token",
    "Flags",
    "StrictMode",
    "TxCheckHash",
    "AutoFillField",
}


def parse_statement(
    obj: Mapping[str, Any], what: str, account: str, allowed_ops: Set[int] | None = None
) -> Statement:
    """Parse a TableListSet or SQLStatement body (top level or inside an SQLTransaction)."""
    op = _require(obj, "OpType", int, what)
    if allowed_ops is not None and op not in allowed_ops:
        raise InvalidTransaction(f"{what}: OpType {op} is not allowed here")
    tables = _parse_tables(obj, what)
    flags = _optional(obj, "Flags", int, what) or 0
    strict = bool(_optional(obj, "StrictMode", bool, what) or False)
    check = _optional(obj, "TxCheckHash", str, what)
    if strict and check is None:
        raise InvalidTransaction(f"{what}: StrictMode needs TxCheckHash")
    if op in TABLE_OPS:
        user = obj.get("User")
        if user is not None and user != EVERYONE:
            user = check_address(user, f"{what}.User")
        owner = obj.get("Owner")
        owner = check_address(owner, f"{what}.Owner") if owner is not None else None
        token = _optional(obj, "Token", str, what)
        body = TableListSet(
            op,
            tables,
            obj.get("Raw"),
            owner,
            user,
            obj.get("OperationRule"),
            token,
            flags,
            strict,
            check,
        )
        if op == 11 and user is None:
            raise InvalidTransaction(f"{what}: a grant needs User")
        if op == 3 and tables[0].new_name is None:
            raise InvalidTransaction(f"{what}: a rename needs Tables[0].Table.TableNewName")
        if op == 1 and "Raw" not in obj:
            raise InvalidTransaction(f"{what}: a create needs Raw (the field definitions)")
        return body
    if op in STATEMENT_OPS:
        owner = check_address(obj.get("Owner", account), f"{what}.Owner")
        if "Raw" not in obj:
            raise InvalidTransaction(f"{what}: OpType {op} needs Raw")
        auto = _optional(obj, "AutoFillField", str, what)
        return SQLStatement(op, tables, owner, obj["Raw"], flags, strict, check, auto)
    raise InvalidTransaction(f"{what}: unknown OpType {op}")


_TABLE_OP_SET = frozenset(TABLE_OPS)
_STATEMENT_OP_SET = frozenset(STATEMENT_OPS)


def _parse_table_list_set(obj: Mapping[str, Any]) -> TableListSet:
    body = parse_statement(obj, "TableListSet", obj["Account"], _TABLE_OP_SET)
    if not isinstance(body, TableListSet):
        raise InvalidTransaction("TableListSet carries a table OpType")
    return body


def _parse_sql_statement(obj: Mapping[str, Any]) -> SQLStatement:
    body = parse_statement(obj, "SQLStatement", obj["Account"], _STATEMENT_OP_SET)
    if not isinstance(body, SQLStatement):
        raise InvalidTransaction("SQLStatement carries a row OpType")
    return body


_MAX_STATEMENTS = 256


def _parse_sql_transaction(obj: Mapping[str, Any]) -> SQLTransaction:
    statements = _require(obj, "Statements", list, "SQLTransaction")
    if not statements:
        raise InvalidTransaction("SQLTransaction.Statements is empty")
    if len(statements) > _MAX_STATEMENTS:
        raise TooLarge(f"SQLTransaction holds more than {_MAX_STATEMENTS} statements")
    parsed = []
    for i, st in enumerate(statements):
        where = f"SQLTransaction.Statements[{i}]"
        st = _typed(st, dict, where)
        unknown = set(st) - _STATEMENT_FIELDS
        if unknown:
            raise InvalidTransaction(f"{where}: unknown fields {sorted(unknown)}")
        parsed.append(parse_statement(st, where, obj["Account"], TRANSACTION_STATEMENT_OPS))
    strict = bool(_optional(obj, "StrictMode", bool, "SQLTransaction") or False)
    return SQLTransaction(tuple(parsed), strict)


register_transaction_type(
    "TableListSet", _parse_table_list_set, _STATEMENT_FIELDS - {"AutoFillField"}
)
register_transaction_type("SQLStatement", _parse_sql_statement, _STATEMENT_FIELDS)
register_transaction_type(
    "SQLTransaction",
    _parse_sql_transaction,
    {"TransactionType", "Statements", "StrictMode", "Flags"},
)


# --- envelope --------------------------------------------------------------------------------


def signing_bytes(tx_json: Mapping[str, Any], trusted: bool = False) -> bytes:
    """The bytes that are signed and hashed: canonical JSON without ``TxnSignature``.

    ``trusted``: ``tx_json`` came from the strict decoder (see ``canonical_json``)."""
    return canonical_json({k: v for k, v in tx_json.items() if k != "TxnSignature"}, trusted)


def _hex_field(obj: Mapping[str, Any], key: str) -> bytes:
    value = obj.get(key)
    if not isinstance(value, str):
        raise BadSignature(f"{key} must be a hex string")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise BadSignature(f"{key} is not hex") from None


def parse_transaction(
    tx_json: Any,
    suite: CryptoSuite,
    network_id: int,
    size: int | None = None,
    verify: bool = True,
    trusted: bool = False,
) -> SignedTransaction:
    """Validate a signed transaction's shape and signature and return it typed.

    Raises an ``InvalidTransaction`` / ``BadSignature`` / ``TooLarge`` with a stable code.
    ``verify=False`` skips only the signature check (for re-parsing already verified blocks).
    ``trusted=True``: ``tx_json`` came from the strict decoders (``parse_json``, or
    ``parse_relayed`` with its nesting checked), so it holds JSON types only and no float.
    """
    if not isinstance(tx_json, dict):
        raise InvalidTransaction("a transaction is a JSON object")
    try:
        signed = signing_bytes(tx_json, trusted)
    except CanonicalJSONError as exc:
        raise InvalidTransaction(exc.message) from None
    size = len(signed) if size is None else size
    if size > MAX_TX_BYTES:
        raise TooLarge(f"transaction of {size} bytes exceeds the limit of {MAX_TX_BYTES}")
    tx_type = tx_json.get("TransactionType")
    if not isinstance(tx_type, str) or tx_type not in _PARSERS:
        raise InvalidTransaction(
            f"unknown TransactionType {str(tx_type)[:40]!r}; known: {', '.join(sorted(_PARSERS))}"
        )
    parser, allowed_fields = _PARSERS[tx_type]
    unknown = tx_json.keys() - allowed_fields
    if unknown:
        raise InvalidTransaction(f"{tx_type}: unknown fields {sorted(unknown)}")
    account = check_address(tx_json.get("Account"), "Account")
    sequence = _require(tx_json, "Sequence", int, tx_type)
    if not 1 <= sequence < 1 << 63:
        raise InvalidTransaction("Sequence must be a positive 63-bit integer")
    net = _require(tx_json, "NetworkID", int, tx_type)
    if net != network_id:
        raise InvalidTransaction(f"NetworkID {net} is not this chain's ({network_id})")
    certificate = _optional(tx_json, "Certificate", str, tx_type)
    key_bytes = _hex_field(tx_json, "SigningPubKey")
    scheme = suite.scheme_for_key(key_bytes)
    try:
        public_key = public_key_from_bytes(scheme, key_bytes)
    except CryptoError as exc:
        raise BadSignature(exc.message) from None
    if address_to_text(public_key.address()) != account:
        raise BadSignature("SigningPubKey does not belong to Account")
    body = parser(tx_json)  # shape before signature: cheaper, and the more useful error
    signature = _hex_field(tx_json, "TxnSignature")
    if verify and not public_key.verify(signed, signature):
        raise BadSignature("TxnSignature does not verify")
    tx = SignedTransaction(
        tx_type,
        account,
        sequence,
        body,
        suite.hash(signed),
        public_key,
        signature,
        tx_json,
        size,
        certificate,
    )
    # The whole encoding is the signed one with the signature entry added: when no top-level
    # key sorts after "TxnSignature" that entry comes last (canonical keys are sorted), and a
    # plain hex string needs no escaping. Otherwise ``encoded`` encodes it when first asked.
    text = tx_json["TxnSignature"]
    if max(tx_json) == "TxnSignature" and _HEX.fullmatch(text) is not None:
        tx.__dict__["encoded"] = b"".join((signed[:-1], b',"TxnSignature":"', text.encode(), b'"}'))
    return tx


def sign_transaction(tx_json: Mapping[str, Any], key: PrivateKey) -> dict[str, Any]:
    """Fill ``Account`` and ``SigningPubKey`` from ``key`` and add ``TxnSignature``."""
    out = dict(tx_json)
    out["Account"] = address_to_text(key.address())
    out["SigningPubKey"] = key.public_key.to_bytes().hex()
    out.pop("TxnSignature", None)
    out["TxnSignature"] = key.sign(signing_bytes(out)).hex()
    return out
