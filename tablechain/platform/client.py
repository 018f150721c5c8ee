"""``tablechain.Client``: build, sign and submit table transactions; wait; signed reads.

```python
from tablechain import Client
from tablechain.crypto import generate_private_key

alice = Client("http://127.0.0.1:5005", generate_private_key())
alice.create_table("t", [{"field": "id", "type": "int", "PK": 1}, {"field": "name",
                   "type": "varchar", "length": 32}])
alice.insert("t", [{"id": 1, "name": "a"}])
alice.get(alice.address, "t")            # -> [{"id": 1, "name": "a"}]
```

Every write method builds the transaction with ChainSQL's field names, fills ``Account``,
``Sequence`` and ``NetworkID``, signs it with the client's key (the key never leaves the
process), submits it and, unless ``wait=False``, waits for its block and raises ``ClientError``
(with the node's code, e.g. ``tefTABLE_RULEDISSATISFIED``) when the transaction failed.

Sequences: fetched once from ``account_info``, then counted locally; a ``terPRE_SEQ`` /
``tefPAST_SEQ`` answer (another process used the key, or the node restarted and lost its
queue) resynchronises and retries once.

Strict mode (``strict=True``): the client computes ``TxCheckHash`` from the table's current
strict-mode pointer (fetched with ``table_info``): ``H(canonical(create Raw))`` at create, then
``H(previous || canonical(statement Raw))``, H being the chain's hash (SHA-256, or SM3 for the
national suite).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from tablechain.crypto import PrivateKey, address_to_text, canonical_json, hash_by_name
from tablechain.errors import TablechainError
from tablechain.platform.errors import ClientError

__all__ = ["Client", "ClientError", "Statements", "strict_pointer_after"]

_SEQ_ERRORS = frozenset({"terPRE_SEQ", "tefPAST_SEQ"})
SUBMIT_BATCH = 100  # calls per JSON-RPC batch (the node's limit)
_GRANT_FLAGS = ("select", "insert", "update", "delete")


def _client_error(error: Any) -> ClientError:
    """The ``ClientError`` of a JSON-RPC error object (the node's code when it gave one)."""
    data = error.get("data") if isinstance(error, dict) else None
    if isinstance(data, dict) and "code" in data:
        return ClientError(str(data.get("message", "")), str(data["code"]))
    return ClientError(str(error), "clientTransport")


def _object(answer: Any, what: str, *fields: str) -> dict[str, Any]:
    """``answer`` if it is an object holding ``fields``: a node that breaks the protocol gets a
    ``ClientError``, not a ``KeyError`` or ``TypeError`` from deep inside the client."""
    if not isinstance(answer, dict):
        raise ClientError(f"the node's answer to {what} is not an object", "clientTransport")
    missing = [f for f in fields if f not in answer]
    if missing:
        raise ClientError(f"the node's answer to {what} lacks {', '.join(missing)}",
                          "clientTransport")
    return answer


def _integer(answer: Mapping[str, Any], field: str, what: str) -> int:
    """An integer field of a node's answer (``ClientError`` if it is not one)."""
    value = answer[field]
    if not isinstance(value, int) or isinstance(value, bool):
        raise ClientError(f"the node's {field} in its answer to {what} is not an integer",
                          "clientTransport")
    return value



def _sealed_fields(key: bytes, info: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A confidential table's field definitions, opened from its ``table_info``."""
    from tablechain.crypto import parse_json
    from tablechain.crypto.envelope import open_sealed

    sealed = _object(info, "table_info", "sealed")["sealed"]
    try:
        fields = parse_json(open_sealed(key, bytes.fromhex(sealed)))
    except (TablechainError, TypeError, ValueError) as exc:
        raise ClientError(f"the sealed field definitions do not open: "
                          f"{getattr(exc, 'message', exc)}", "clientTransport") from None
    if not isinstance(fields, list):
        raise ClientError("the sealed field definitions are not a list", "clientTransport")
    return fields


def _canonical(value: Any) -> bytes:
    """``value``'s canonical JSON; what has none (a float, NaN, a non-string key) is refused
    with a ``ClientError`` before anything is sent."""
    try:
        return canonical_json(value)
    except TablechainError as exc:
        raise ClientError(exc.message, exc.code) from None


def _table(name: str, new_name: str | None = None) -> list[dict[str, Any]]:
    table: dict[str, Any] = {"TableName": name}
    if new_name is not None:
        table["TableNewName"] = new_name
    return [{"Table": table}]


def strict_pointer_after(previous: str | None, raw: Any, hash_name: str = "sha256") -> str:
    """A table's strict-mode pointer after a statement with ``raw`` (``previous=None``: create)."""
    h = hash_by_name(hash_name)
    data = canonical_json(raw)
    if previous is None:
        return h(data).hex()  # type: ignore[no-any-return]
    return h(bytes.fromhex(previous) + data).hex()  # type: ignore[no-any-return]


class Statements:
    """Builders of the statement objects an ``SQLTransaction`` carries (and single txs use)."""

    @staticmethod
    def create(name: str, fields: Sequence[Mapping[str, Any]],
               rule: Mapping[str, Any] | None = None) -> dict[str, Any]:
        st: dict[str, Any] = {"TransactionType": "TableListSet", "OpType": 1,
                              "Tables": _table(name), "Raw": [dict(f) for f in fields]}
        if rule is not None:
            st["OperationRule"] = dict(rule)
        return st

    @staticmethod
    def drop(name: str) -> dict[str, Any]:
        return {"TransactionType": "TableListSet", "OpType": 2, "Tables": _table(name)}

    @staticmethod
    def rename(name: str, new_name: str) -> dict[str, Any]:
        return {"TransactionType": "TableListSet", "OpType": 3,
                "Tables": _table(name, new_name)}

    @staticmethod
    def grant(name: str, user: str, **flags: bool) -> dict[str, Any]:
        bad = sorted(set(flags) - set(_GRANT_FLAGS))
        if bad or not flags:
            raise ClientError(f"grant flags are {', '.join(_GRANT_FLAGS)} (got {bad or 'none'})",
                              "invalidParams")
        return {"TransactionType": "TableListSet", "OpType": 11, "Tables": _table(name),
                "User": user, "Raw": [{k: bool(v) for k, v in flags.items()}]}

    @staticmethod
    def insert(name: str, rows: Sequence[Mapping[str, Any]],
               owner: str | None = None) -> dict[str, Any]:
        return Statements._sql(6, name, [dict(r) for r in rows], owner)

    @staticmethod
    def update(name: str, changes: Mapping[str, Any], *conditions: Mapping[str, Any],
               owner: str | None = None) -> dict[str, Any]:
        return Statements._sql(8, name, [dict(changes), *(dict(c) for c in conditions)], owner)

    @staticmethod
    def delete(name: str, *conditions: Mapping[str, Any],
               owner: str | None = None) -> dict[str, Any]:
        raw = [dict(c) for c in conditions] or [{}]
        return Statements._sql(9, name, raw, owner)

    @staticmethod
    def assert_(name: str, *conditions: Mapping[str, Any],
                owner: str | None = None) -> dict[str, Any]:
        return Statements._sql(10, name, [dict(c) for c in conditions], owner)

    @staticmethod
    def _sql(op: int, name: str, raw: list[Any], owner: str | None) -> dict[str, Any]:
        st: dict[str, Any] = {"TransactionType": "SQLStatement", "OpType": op,
                              "Tables": _table(name), "Raw": raw}
        if owner is not None:
            st["Owner"] = owner
        return st


class Client:
    """A synchronous client of one node, acting as the account of ``key``."""

    def __init__(self, url: str, key: PrivateKey | None = None, *, timeout: float = 10.0,
                 wait_timeout: float = 30.0, certificate: str | None = None,
                 transport: httpx.BaseTransport | None = None, genesis: Any = None) -> None:
        self.url = url.rstrip("/") + "/"
        self.key = key
        # The chain's genesis (``tablechain.ledger.chain.Genesis``), when the client should
        # check what it relies on against certified blocks rather than believe its node: the
        # Tokens of confidential tables (see ``confidential_key``).
        self.genesis = genesis
        # Where the chain requires admission: the signer's certificate chain (PEM, leaf first)
        # or, once registered, its leaf's SHA-256 fingerprint; sent with every transaction.
        self.certificate = certificate
        self.wait_timeout = wait_timeout
        self._http = httpx.Client(timeout=timeout, transport=transport)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._next_sequence: int | None = None
        self._info: dict[str, Any] | None = None

    # --- plumbing ----------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def address(self) -> str:
        return address_to_text(self._key().address())

    def _key(self) -> PrivateKey:
        if self.key is None:
            raise ClientError("this client has no key; pass one to sign", "noKey")
        return self.key

    def call(self, method: str, params: Any = None) -> Any:
        """One JSON-RPC call; its result, or ``ClientError`` carrying the node's code."""
        request: dict[str, Any] = {"jsonrpc": "2.0", "id": next(self._ids), "method": method}
        if params is not None:
            request["params"] = params
        body = self._post(request)
        if not isinstance(body, dict):
            raise ClientError("the node's answer is not a JSON-RPC response", "clientTransport")
        error = body.get("error")
        if error is not None:
            raise _client_error(error)
        if "result" not in body:
            raise ClientError(f"the node's answer to {method} has neither result nor error",
                              "clientTransport")
        return body["result"]

    def _result(self, method: str, params: Any = None, *fields: str) -> dict[str, Any]:
        """A call whose result the protocol says is an object (holding ``fields``)."""
        return _object(self.call(method, params), method, *fields)

    def _post(self, request: Any) -> Any:
        body = _canonical(request)
        try:
            response = self._http.post(self.url, content=body,
                                       headers={"content-type": "application/json"})
        except httpx.HTTPError as exc:
            raise ClientError(f"cannot reach the node at {self.url}: {exc}",
                              "clientTransport") from None
        try:
            return response.json()
        except ValueError:
            raise ClientError(f"the node answered HTTP {response.status_code} without JSON",
                              "clientTransport") from None

    # --- node information --------------------------------------------------------------------

    def server_info(self) -> dict[str, Any]:
        info = _object(self._result("server_info", None, "info")["info"], "server_info",
                       "network_id", "suite")
        self._info = info
        return info

    def _chain(self) -> dict[str, Any]:
        return self._info if self._info is not None else self.server_info()

    @property
    def network_id(self) -> int:
        return int(self._chain()["network_id"])

    @property
    def hash_name(self) -> str:
        return "sm3" if self._chain()["suite"] == "national" else "sha256"

    def ledger_closed(self) -> dict[str, Any]:
        return self._result("ledger_closed")

    def ledger(self, index: int | str = "closed", expand: bool = False) -> dict[str, Any]:
        return self._result("ledger", {"ledger_index": index, "expand": expand})

    def account_info(self, account: str | None = None) -> dict[str, Any]:
        return self._result("account_info", {"account": account or self.address})

    def tx(self, tx_hash: str) -> dict[str, Any]:
        return self._result("tx", {"transaction": tx_hash}, "result")

    def tx_proof(self, tx_hash: str) -> dict[str, Any]:
        """The node's proof of a committed transaction (unchecked: see ``verified_tx``)."""
        answer = self.call("tx_proof", {"transaction": tx_hash})
        if not isinstance(answer, dict):
            raise ClientError("the node's proof is not an object", "proofInvalid")
        return answer

    def verified_tx(self, tx_hash: str, genesis: Any,
                    trusted_block_hash: str | None = None) -> dict[str, Any]:
        """A committed transaction's outcome, proven rather than believed: its signature, its
        place in its block and its receipt's are checked against the block header, and the
        header against the block's quorum certificate and ``genesis``' validators (or against
        ``trusted_block_hash`` on a chain without validators). Raises ``ClientError`` with code
        ``proofInvalid`` if the node's answer does not hold."""
        from tablechain.ledger.proofs import verify_tx_proof

        try:
            return verify_tx_proof(self.tx_proof(tx_hash), genesis, trusted_block_hash)
        except ClientError:
            raise
        except TablechainError as exc:
            raise ClientError(exc.message, exc.code) from None

    def table_info(self, owner: str, name: str) -> dict[str, Any]:
        return self._result("table_info", {"owner": owner, "tablename": name})

    def table_auth(self, owner: str, name: str) -> dict[str, Any]:
        return self._result("table_auth", {"owner": owner, "tablename": name})

    def g_dbname(self, owner: str, name: str) -> str:
        return str(self._result("g_dbname", {"owner": owner, "tablename": name},
                                "nameInDB")["nameInDB"])

    # --- submitting --------------------------------------------------------------------------

    def submit(self, tx_json: Mapping[str, Any]) -> dict[str, Any]:
        """Submit an already signed transaction; ``{"hash", "engine_result", ...}``."""
        return self._result("submit", dict(tx_json), "hash")

    def submit_many(self, txs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any] | ClientError]:
        """Submit already signed transactions in JSON-RPC batches (the node verifies a batch's
        signatures in parallel). One answer or ``ClientError`` per transaction, in order: a
        batch refused as a whole (too large, node unreachable) gives its error to each of its
        transactions, so the answers of the batches already queued are not lost."""
        out: list[dict[str, Any] | ClientError] = []
        for start in range(0, len(txs), SUBMIT_BATCH):
            chunk = txs[start : start + SUBMIT_BATCH]
            ids = [next(self._ids) for _ in chunk]
            try:
                body = self._post([{"jsonrpc": "2.0", "id": i, "method": "submit",
                                    "params": dict(tx)} for i, tx in zip(ids, chunk, strict=True)])
                if isinstance(body, dict) and body.get("error") is not None:
                    raise _client_error(body["error"])
                if not isinstance(body, list):
                    raise ClientError("the node's answer to a batch is not a list",
                                      "clientTransport")
            except ClientError as exc:
                out.extend(exc for _ in chunk)
                continue
            by_id = {a.get("id"): a for a in body
                     if isinstance(a, dict) and isinstance(a.get("id"), int)}
            for i in ids:
                answer = by_id.get(i)
                if answer is None:
                    out.append(ClientError("the node did not answer this call", "clientTransport"))
                elif answer.get("error") is not None:
                    out.append(_client_error(answer["error"]))
                else:
                    try:
                        out.append(_object(answer.get("result"), "submit", "hash"))
                    except ClientError as exc:
                        out.append(exc)
        return out

    def sign(self, body: Mapping[str, Any], sequence: int) -> dict[str, Any]:
        from tablechain.ledger.transactions import sign_transaction

        tx = dict(body)
        tx["Sequence"] = sequence
        tx["NetworkID"] = self.network_id
        if self.certificate is not None:
            tx.setdefault("Certificate", self.certificate)
        try:
            return sign_transaction(tx, self._key())
        except ClientError:
            raise
        except TablechainError as exc:  # e.g. a float: not canonical JSON
            raise ClientError(exc.message, exc.code) from None

    def resync_sequence(self) -> int:
        """Forget the local Sequence and take the node's next one."""
        with self._lock:
            self._next_sequence = self._node_next_sequence()
            return self._next_sequence

    def _node_next_sequence(self) -> int:
        return _integer(_object(self.account_info(), "account_info", "next_sequence"),
                        "next_sequence", "account_info")

    def send(self, body: Mapping[str, Any], *, wait: bool = True,
             timeout: float | None = None) -> dict[str, Any]:
        """Sign ``body`` with the next Sequence, submit it and (by default) wait for its block.

        Returns the committed record (``hash``, ``ledger_index``, ``result``, ``receipt``) or,
        with ``wait=False``, the submit answer. Raises ``ClientError`` when it fails.
        """
        for attempt in range(2):
            with self._lock:
                if self._next_sequence is None:
                    self._next_sequence = self._node_next_sequence()
                sequence = self._next_sequence
                tx = self.sign(body, sequence)
                try:
                    answer = self.submit(tx)
                except ClientError as exc:
                    if exc.code in _SEQ_ERRORS and attempt == 0:
                        self._next_sequence = None
                        continue
                    raise
                self._next_sequence = sequence + 1
            break
        if not wait:
            return answer
        return self.wait(answer["hash"], timeout, check=True)

    def wait(self, tx_hash: str, timeout: float | None = None,
             check: bool = False) -> dict[str, Any]:
        """Poll ``tx`` until the transaction is in a block; with ``check``, raise if it failed."""
        deadline = time.monotonic() + (self.wait_timeout if timeout is None else timeout)
        delay = 0.005
        while True:
            try:
                record = self.tx(tx_hash)
                break
            except ClientError as exc:
                if exc.code != "txnNotFound":
                    raise
                if time.monotonic() >= deadline:
                    raise ClientError(f"transaction {tx_hash} was not committed in time",
                                      "timeout") from None
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        if check and record["result"] != "tesSUCCESS":
            receipt = record.get("receipt")
            message = receipt.get("message") if isinstance(receipt, dict) else None
            raise ClientError(str(message or record["result"]), str(record["result"]))
        return record

    # --- strict mode -------------------------------------------------------------------------

    def _pointer(self, owner: str, name: str) -> str:
        pointer = _object(self.table_info(owner, name), "table_info",
                          "strict_pointer")["strict_pointer"]
        try:
            bytes.fromhex(pointer)
        except (TypeError, ValueError):
            raise ClientError("the node's strict_pointer is not hex", "clientTransport") from None
        return str(pointer)

    def _with_check(self, statement: dict[str, Any],
                    pointers: dict[tuple[str, str], str]) -> dict[str, Any]:
        """Add ``TxCheckHash`` to a statement and advance the local pointer cache."""
        op = statement["OpType"]
        name = statement["Tables"][0]["Table"]["TableName"]
        owner = statement.get("Owner") or self.address
        key = (owner, name)
        if op in (2, 11):  # drop and grant do not move the pointer
            return statement
        if op == 3:  # rename keeps the pointer under the new name
            current = pointers.pop(key) if key in pointers else self._pointer(owner, name)
            pointers[(owner, statement["Tables"][0]["Table"]["TableNewName"])] = current
            return statement
        _canonical(statement["Raw"])  # a float in Raw: ClientError, as without strict mode
        if op == 1:
            new = strict_pointer_after(None, statement["Raw"], self.hash_name)
        else:
            if key not in pointers:
                pointers[key] = self._pointer(owner, name)
            new = strict_pointer_after(pointers[key], statement["Raw"], self.hash_name)
        pointers[key] = new
        return {**statement, "StrictMode": True, "TxCheckHash": new}

    def _one(self, statement: dict[str, Any], strict: bool, wait: bool) -> dict[str, Any]:
        if strict:
            statement = self._with_check(statement, {})
        return self.send(statement, wait=wait)

    # --- table operations --------------------------------------------------------------------

    def create_table(self, name: str, fields: Sequence[Mapping[str, Any]],
                     rule: Mapping[str, Any] | None = None, *, strict: bool = False,
                     wait: bool = True) -> dict[str, Any]:
        return self._one(Statements.create(name, fields, rule), strict, wait)

    def grant(self, name: str, user: str, *, wait: bool = True, **flags: bool) -> dict[str, Any]:
        """Grant ``user`` (an address, or ``"everyone"``) the given select/insert/update/delete."""
        return self.send(Statements.grant(name, user, **flags), wait=wait)

    def insert(self, name: str, rows: Sequence[Mapping[str, Any]], *, owner: str | None = None,
               strict: bool = False, wait: bool = True) -> dict[str, Any]:
        return self._one(Statements.insert(name, rows, owner), strict, wait)

    def update(self, name: str, changes: Mapping[str, Any], *conditions: Mapping[str, Any],
               owner: str | None = None, strict: bool = False, wait: bool = True
               ) -> dict[str, Any]:
        return self._one(Statements.update(name, changes, *conditions, owner=owner), strict, wait)

    def delete(self, name: str, *conditions: Mapping[str, Any], owner: str | None = None,
               strict: bool = False, wait: bool = True) -> dict[str, Any]:
        """Delete rows matching any of ``conditions`` (no condition: every row)."""
        return self._one(Statements.delete(name, *conditions, owner=owner), strict, wait)

    def assert_(self, name: str, *conditions: Mapping[str, Any], owner: str | None = None,
                strict: bool = False, wait: bool = True) -> dict[str, Any]:
        return self._one(Statements.assert_(name, *conditions, owner=owner), strict, wait)

    def drop(self, name: str, *, wait: bool = True) -> dict[str, Any]:
        return self.send(Statements.drop(name), wait=wait)

    def rename(self, name: str, new_name: str, *, wait: bool = True) -> dict[str, Any]:
        return self.send(Statements.rename(name, new_name), wait=wait)

    def transaction(self, statements: Sequence[Mapping[str, Any]], *, strict: bool = False,
                    wait: bool = True) -> dict[str, Any]:
        """Several statements (see ``Statements``) applied all or nothing."""
        items = []
        pointers: dict[tuple[str, str], str] = {}
        for st in statements:
            item = {k: v for k, v in st.items() if k != "TransactionType"}
            item["TransactionType"] = st.get("TransactionType", "SQLStatement")
            if strict:
                item = self._with_check(item, pointers)
            items.append(item)
        body: dict[str, Any] = {"TransactionType": "SQLTransaction", "Statements": items}
        if strict:
            body["StrictMode"] = True
        return self.send(body, wait=wait)

    # --- reads -------------------------------------------------------------------------------

    def get(self, owner: str, name: str, raw: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        """A signed read: ``raw`` is ``[[fields], {cond}, ..., {"$limit": ..}]`` (all rows if None).

        Permissions and the table's Get rule apply to this client's account.
        """
        from tablechain.ledger.reads import sign_read_request

        query = [[]] if raw is None else list(raw)
        attempt = 0
        while True:
            index = _integer(_object(self.ledger_closed(), "ledger_closed", "ledger_index"),
                             "ledger_index", "ledger_closed")
            try:
                request = sign_read_request(self._key(), owner, name, query, index)
            except ClientError:
                raise
            except TablechainError as exc:
                raise ClientError(exc.message, exc.code) from None
            try:
                rows = self._result("r_get", request, "rows")["rows"]
            except ClientError as exc:  # the head moved past the read window meanwhile
                attempt += 1
                if exc.code != "invalidParams" or "LedgerIndex" not in exc.message or attempt > 1:
                    raise
                continue
            if not isinstance(rows, list):
                raise ClientError("the node's rows in its answer to r_get are not a list",
                                  "clientTransport")
            return rows

    # --- confidential tables -----------------------------------------------------------------
    # The table key is made, wrapped and used here only: validators keep ciphertext, sealed
    # field definitions and per-account Tokens (see tablechain.crypto.envelope).

    def create_confidential_table(self, name: str, fields: Sequence[Mapping[str, Any]], *,
                                  strict: bool = False, wait: bool = True) -> dict[str, Any]:
        """Create a table whose field definitions and rows only key holders can read: a fresh
        key, sealed ``fields`` as ``Raw``, the key wrapped to this account as ``Token``."""
        from tablechain.crypto.envelope import new_table_key, seal, wrap_key
        from tablechain.ledger.schema import parse_fields

        fields = [dict(f) for f in fields]
        try:
            parse_fields(fields)  # validators cannot check sealed definitions: check them here
        except TablechainError as exc:
            raise ClientError(exc.message, exc.code) from None
        suite = str(self._chain()["suite"])
        key = new_table_key(suite)
        statement = {
            "TransactionType": "TableListSet", "OpType": 1, "Tables": _table(name),
            "Raw": seal(key, canonical_json(fields)).hex(),
            "Token": wrap_key(key, self._key().public_key).hex(),
        }
        return self._one(statement, strict, wait)

    def confidential_key(self, owner: str, name: str) -> bytes:
        """The table key of a confidential table, unwrapped from this account's Token."""
        return self._opened(owner, name)[0]

    def _opened(self, owner: str, name: str) -> tuple[bytes, dict[str, Any]]:
        """The table key and the ``table_info`` it came from (one read, one Token check)."""
        from tablechain.crypto.envelope import unwrap_key

        info = self.table_info(owner, name)
        if info.get("token") is None:
            raise ClientError(f"table {name!r} is not confidential", "clientNotConfidential")
        if owner == self.address:
            token, token_tx = info["token"], info.get("token_tx")
        else:
            grants = info.get("grants")
            grant = grants.get(self.address) if isinstance(grants, dict) else None
            grant = grant if isinstance(grant, dict) else {}
            token, token_tx = grant.get("token"), grant.get("token_tx")
        if token is not None and not isinstance(token, str):
            raise ClientError("the node's Token is not hex", "clientTransport")
        if token is None:
            raise ClientError(f"{self.address} holds no Token for table {name!r}",
                              "tefBAD_AUTH_NO")
        self._check_token(owner, str(token), token_tx)
        try:
            return unwrap_key(bytes.fromhex(token), self._key()), info
        except (TablechainError, ValueError) as exc:
            raise ClientError(getattr(exc, "message", "the Token is not hex"),
                              getattr(exc, "code", "proofInvalid")) from None

    def _check_token(self, owner: str, token: str, token_tx: Any) -> None:
        """With ``genesis`` on a chain of validators: the Token must come from a certified,
        successful transaction signed by the table's owner (the create, or a grant to this
        account), so the node cannot hand over a key of its own choosing (anyone can wrap a key
        to a public key). Without state proofs the Token is not bound to the table itself: a
        node could still swap in a Token the same owner gave this account for another table."""
        from tablechain.ledger.proofs import certified_chain, verify_tx_proof

        if self.genesis is None or not certified_chain(self.genesis):
            return
        if not isinstance(token_tx, str):
            raise ClientError("the node names no transaction for this Token", "proofInvalid")
        proof = self.tx_proof(token_tx)
        try:
            proven = verify_tx_proof(proof, self.genesis)
        except TablechainError as exc:
            raise ClientError(exc.message, exc.code) from None
        tx = proof["tx"]
        statements = tx.get("Statements") or [tx]
        me = self.address
        if proven["result"] != "tesSUCCESS" or tx.get("Account") != owner or not any(
            isinstance(st, dict) and st.get("Token") == token and (
                (st.get("OpType") == 1 and me == owner)
                or (st.get("OpType") == 11 and st.get("User") == me))
            for st in statements
        ):
            raise ClientError("the Token is not one the table's owner gave this account in a "
                              "certified transaction", "proofInvalid")

    def confidential_fields(self, owner: str, name: str) -> list[dict[str, Any]]:
        """The field definitions of a confidential table, opened with this account's key."""
        return _sealed_fields(*self._opened(owner, name))

    def _public_key(self, public_key: Any) -> Any:
        """A ``PublicKey``, or one from its hex (the scheme told by the chain's suite)."""
        from tablechain.crypto import public_key_from_bytes
        from tablechain.crypto.keys import PublicKey
        from tablechain.ledger.transactions import CryptoSuite

        if isinstance(public_key, PublicKey):
            return public_key
        try:
            raw = bytes.fromhex(str(public_key))
            scheme = CryptoSuite(str(self._chain()["suite"])).scheme_for_key(raw)
            return public_key_from_bytes(scheme, raw)
        except (ValueError, TablechainError):
            raise ClientError("public_key is not a public key (hex)",
                              "clientBadPublicKey") from None

    def seal_value(self, value: Any, readers: Sequence[Any] = ()) -> str:
        """Field-level encryption: ``value`` (any JSON value) sealed for this account and
        ``readers`` (public keys or their hex), as hex for a ``blob`` field of any table.
        Nodes store and order it but cannot read it; ``open_value`` opens it."""
        from tablechain.crypto.envelope import seal_for

        keys = [self._key().public_key, *(self._public_key(r) for r in readers)]
        try:
            return seal_for(canonical_json(value), keys, str(self._chain()["suite"])).hex()
        except TablechainError as exc:
            raise ClientError(exc.message, exc.code) from None

    def open_value(self, sealed: str) -> Any:
        """The value of ``seal_value``'s hex, opened with this account's key."""
        from tablechain.crypto import parse_json
        from tablechain.crypto.envelope import open_for

        try:
            return parse_json(open_for(bytes.fromhex(sealed), self._key()))
        except ValueError:
            raise ClientError("a sealed value is hex", "clientBadSealedValue") from None
        except TablechainError as exc:
            raise ClientError(exc.message, exc.code) from None

    def grant_confidential(self, name: str, user: str, public_key: Any, *, wait: bool = True,
                           **flags: bool) -> dict[str, Any]:
        """Grant ``user`` on a confidential table of this account, with the table key wrapped to
        ``user``'s ``public_key`` (a ``PublicKey`` or its hex; it must be ``user``'s)."""
        from tablechain.crypto.envelope import wrap_key

        public_key = self._public_key(public_key)
        if address_to_text(public_key.address()) != user:
            raise ClientError(f"that public key does not belong to {user}", "clientBadPublicKey")
        token = wrap_key(self.confidential_key(self.address, name), public_key)
        statement = {**Statements.grant(name, user, **flags), "Token": token.hex()}
        return self.send(statement, wait=wait)

    def insert_confidential(self, name: str, rows: Sequence[Mapping[str, Any]], *,
                            owner: str | None = None, strict: bool = False,
                            wait: bool = True) -> dict[str, Any]:
        """Seal ``rows`` with the table key and insert them as one record. The rows are checked
        here against the sealed field definitions (validators cannot check them)."""
        from tablechain.crypto.envelope import seal
        from tablechain.ledger.schema import coerce_value, parse_fields

        owner = owner or self.address
        key, info = self._opened(owner, name)
        fields = {f.name: f for f in parse_fields(_sealed_fields(key, info))}
        clean: list[dict[str, Any]] = []
        for row in rows:
            unknown = sorted(set(row) - set(fields))
            if unknown:
                raise ClientError(f"unknown fields {unknown} for table {name!r}", "temBAD_FIELD")
            try:
                clean.append({k: coerce_value(fields[k], v) for k, v in row.items()})
            except TablechainError as exc:
                raise ClientError(exc.message, exc.code) from None
        if not clean:
            raise ClientError("an insert holds at least one row", "temBAD_FIELD")
        sealed = seal(key, canonical_json(clean)).hex()
        statement = {"TransactionType": "SQLStatement", "OpType": 6, "Tables": _table(name),
                     "Owner": owner, "Raw": sealed}
        return self._one(statement, strict, wait)

    def get_confidential(self, owner: str, name: str, raw: Sequence[Any] | None = None, *,
                         records: bool = False) -> list[dict[str, Any]]:
        """Read a confidential table and open its records with this account's key.

        ``raw`` queries the records (fields ``account``, ``tx_hash``; default limit 200
        records); the result is their rows in insertion order or, with ``records=True``, one
        ``{"account", "tx_hash", "rows"}`` per record."""
        from tablechain.crypto import parse_json
        from tablechain.crypto.envelope import open_sealed

        key = self.confidential_key(owner, name)
        query = [["account", "tx_hash", "sealed"]] + list(raw or [[]])[1:]
        out: list[dict[str, Any]] = []
        for record in self.get(owner, name, query):
            record = _object(record, "r_get", "account", "tx_hash", "sealed")
            try:
                opened = parse_json(open_sealed(key, bytes.fromhex(record["sealed"])))
            except TablechainError as exc:
                raise ClientError(f"record of {record['tx_hash']}: {exc.message}",
                                  exc.code) from None
            except (TypeError, ValueError):
                raise ClientError(f"record of {record['tx_hash']} is not sealed hex",
                                  "clientTransport") from None
            if not isinstance(opened, list):
                raise ClientError(f"record of {record['tx_hash']} does not hold rows",
                                  "clientTransport")
            rows = opened
            if records:
                out.append({"account": record["account"], "tx_hash": record["tx_hash"],
                            "rows": rows})
            else:
                out.extend(rows)
        return out
