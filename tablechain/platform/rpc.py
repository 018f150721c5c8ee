"""The node's JSON-RPC 2.0 API over HTTP (POST ``/``) and its WebSocket subscriptions (``/ws``).

Methods (params are one JSON object, or a one-element array holding it):

==============  =====================================================================
submit          a signed transaction (or ``{"tx_json": tx}``) -> queued, with its hash
tx              ``{"transaction": hash}`` -> the committed record, or txnNotFound
tx_proof        ``{"transaction": hash}`` -> the record with its block header, Merkle paths and
                certificate, for ``tablechain.ledger.proofs.verify_tx_proof``
ledger          ``{"ledger_index": n | "closed", "expand": bool}`` -> one block
ledger_closed   -> the head's hash and index
server_info     -> chain, suite, network id, head, mempool size, block cutting
account_info    ``{"account": addr}`` -> last committed and next usable Sequence
r_get           a signed read request (``tablechain.ledger.reads``) -> rows
table_auth      ``{"owner", "tablename"}`` -> the table's grants
table_info      ``{"owner", "tablename"}`` -> fields, rule, NameInDB, strict pointer, grants
g_dbname        ``{"owner", "tablename"}`` -> NameInDB
==============  =====================================================================

A tablechain error becomes a JSON-RPC error whose ``data`` is ``{"code", "message"}`` with the
error's stable code. The request body is bounded (2 MB by default) before it is parsed, the JSON
dialect is strict (no floats, no duplicate keys, nesting at most 64 deep), and every blocking
node call runs in the threadpool, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from tablechain import __version__
from tablechain.crypto import parse_json
from tablechain.errors import TablechainError
from tablechain.platform.config import DEFAULT_MAX_BODY_BYTES
from tablechain.platform.errors import RpcParamsError
from tablechain.platform.subscriptions import TOO_MANY_CONNECTIONS, EventHub, Subscriber

if TYPE_CHECKING:
    from tablechain.ledger.node import Node

__all__ = ["create_app", "RpcMethods", "METHODS", "PARSE_ERROR", "INVALID_REQUEST",
           "METHOD_NOT_FOUND", "INVALID_PARAMS", "INTERNAL_ERROR", "SERVER_ERROR"]

log = logging.getLogger(__name__)

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_ERROR = -32000  # a tablechain error; data.code says which

MAX_BATCH = 100
MAX_WS_MESSAGE = 64 * 1024
MAX_WS_CONNECTIONS = 1000  # open at once; each may hold 1000 subscriptions and 1000 events
_THREAD_PARSE_BYTES = 64 * 1024
_PARAM_CODES = frozenset({"invalidParams", "temMALFORMED"})
_MISSING = object()

METHODS = ("submit", "tx", "tx_proof", "ledger", "ledger_closed", "server_info", "account_info",
           "r_get", "table_auth", "table_info", "g_dbname")


# --- params ----------------------------------------------------------------------------------


def _object_params(params: Any, method: str) -> dict[str, Any]:
    if params is None:
        return {}
    if isinstance(params, list):
        if len(params) == 0:
            return {}
        if len(params) == 1 and isinstance(params[0], dict):
            return params[0]
    if isinstance(params, dict):
        return params
    raise RpcParamsError(f"{method}: params must be an object (or a one-element array of one)")


def _hash_param(params: Mapping[str, Any], method: str, *keys: str) -> str:
    for key in keys:
        if key in params:
            value = params[key]
            if (isinstance(value, str) and len(value) == 64
                    and all(c in "0123456789abcdefABCDEF" for c in value)):
                return value.lower()
            raise RpcParamsError(f"{method}: {key} must be a 64-digit hex hash")
    raise RpcParamsError(f"{method}: missing {keys[0]}")


def _table_params(params: Mapping[str, Any], method: str) -> tuple[str, str]:
    from tablechain.ledger.errors import InvalidTransaction
    from tablechain.ledger.transactions import check_address, check_table_name

    owner = params.get("owner", params.get("account"))
    name = params.get("tablename", params.get("table"))
    if owner is None or name is None:
        raise RpcParamsError(f"{method}: params need owner and tablename")
    try:
        return check_address(owner, "owner"), check_table_name(name, "tablename")
    except InvalidTransaction as exc:
        raise RpcParamsError(f"{method}: {exc.message}") from None


def _flag(params: Mapping[str, Any], key: str, method: str) -> bool:
    value = params.get(key, False)
    if not isinstance(value, bool):
        raise RpcParamsError(f"{method}: {key} must be true or false")
    return value


class RpcMethods:
    """The JSON-RPC methods over one node; each is a blocking call (run in the threadpool)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.table: dict[str, Callable[[Any], Any]] = {
            name: getattr(self, name) for name in METHODS
        }

    @staticmethod
    def submitted_tx(params: Any) -> dict[str, Any]:
        """The signed transaction object of ``submit``'s params."""
        if isinstance(params, list) and len(params) == 1:
            params = params[0]
        if isinstance(params, dict) and "tx_json" in params:
            params = params["tx_json"]
        if not isinstance(params, dict):
            raise RpcParamsError("submit: params is the signed transaction object")
        return params

    def submit(self, params: Any) -> dict[str, Any]:
        # Requests are decoded by the strict decoder: JSON types only, no float, bounded depth.
        return self._queued(self.node.submit(self.submitted_tx(params), trusted=True))

    def submit_checked(self, checked: Any) -> dict[str, Any]:
        """``submit`` of a transaction already checked with the rest of its batch."""
        return self._queued(self.node.submit_checked(checked))

    @staticmethod
    def _queued(tx: Any) -> dict[str, Any]:
        return {"engine_result": "tesSUCCESS", "engine_result_message": "queued for the next block",
                "hash": tx.hash_hex, "account": tx.account, "sequence": tx.sequence}

    def tx(self, params: Any) -> dict[str, Any]:
        from tablechain.ledger.errors import NotFound

        p = _object_params(params, "tx")
        tx_hash = _hash_param(p, "tx", "transaction", "hash")
        try:
            return self.node.ledger.transaction(tx_hash)
        except NotFound:
            if bytes.fromhex(tx_hash) in self.node.mempool:
                raise NotFound(f"transaction {tx_hash} is queued, not yet in a block") from None
            raise

    def tx_proof(self, params: Any) -> dict[str, Any]:
        from tablechain.ledger.proofs import tx_proof

        p = _object_params(params, "tx_proof")
        return tx_proof(self.node.ledger, _hash_param(p, "tx_proof", "transaction", "hash"))

    def ledger(self, params: Any) -> dict[str, Any]:
        from tablechain.ledger.errors import NotFound

        p = _object_params(params, "ledger")
        index = p.get("ledger_index", "closed")
        if index in ("closed", "validated", "current"):
            index = self.node.ledger.height
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise RpcParamsError('ledger: ledger_index must be a height or "closed"')
        expand = _flag(p, "expand", "ledger") or _flag(p, "transactions", "ledger")
        try:
            block = self.node.ledger.block(index)
        except NotFound as exc:
            raise NotFound(exc.message, "lgrNotFound") from None
        out: dict[str, Any] = {
            "ledger_index": index, "ledger_hash": block["hash"], "header": block["header"],
            "certificate": block["certificate"],
            "tx_hashes": [r["tx_hash"] for r in block["receipts"]],
            "receipts": block["receipts"],
        }
        if expand:
            out["transactions"] = block["transactions"]
        return out

    def ledger_closed(self, params: Any) -> dict[str, Any]:
        _object_params(params, "ledger_closed")
        head = self.node.ledger.head
        return {"ledger_index": head.height, "ledger_hash": head.hash(self.node.ledger.suite)}

    def server_info(self, params: Any) -> dict[str, Any]:
        _object_params(params, "server_info")
        info = self.node.server_info()
        info["version"] = __version__
        info["complete_ledgers"] = f"0-{info['ledger_index']}"
        return {"info": info}

    def account_info(self, params: Any) -> dict[str, Any]:
        from tablechain.ledger.errors import InvalidTransaction
        from tablechain.ledger.transactions import check_address

        p = _object_params(params, "account_info")
        try:
            account = check_address(p.get("account"), "account")
        except InvalidTransaction as exc:
            raise RpcParamsError(f"account_info: {exc.message}") from None
        # The pool first: a block committing in between removes the account's transactions
        # from the pool only after the database holds them, so one of the two reads sees them.
        pending = self.node.mempool.next_sequence(account)
        committed = self.node.ledger.account_sequence(account)
        return {"account": account, "sequence": committed,
                "next_sequence": max(committed + 1, pending or 0),
                "ledger_index": self.node.ledger.height}

    def r_get(self, params: Any) -> dict[str, Any]:
        from tablechain.ledger.reads import verify_read_request

        if isinstance(params, list) and len(params) == 1:
            params = params[0]
        ledger = self.node.ledger
        request = verify_read_request(params, ledger.suite, ledger.height)
        rows = ledger.read(request.owner, request.table, request.raw, request.reader)
        return {"owner": request.owner, "tablename": request.table, "reader": request.reader,
                "rows": rows, "ledger_index": ledger.height}

    def table_info(self, params: Any) -> dict[str, Any]:
        owner, name = _table_params(_object_params(params, "table_info"), "table_info")
        return self.node.ledger.table_info(owner, name)

    def table_auth(self, params: Any) -> dict[str, Any]:
        owner, name = _table_params(_object_params(params, "table_auth"), "table_auth")
        info = self.node.ledger.table_info(owner, name)
        users = [{"user": user, **dict(flags)} for user, flags in sorted(info["grants"].items())]
        return {"owner": owner, "tablename": name, "name_in_db": info["name_in_db"],
                "users": users, "strict_pointer": info["strict_pointer"]}

    def g_dbname(self, params: Any) -> dict[str, Any]:
        owner, name = _table_params(_object_params(params, "g_dbname"), "g_dbname")
        return {"nameInDB": self.node.ledger.table_info(owner, name)["name_in_db"]}


# --- JSON-RPC framing ------------------------------------------------------------------------


def _error(req_id: Any, code: int, message: str, data: Mapping[str, Any] | None = None
           ) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = dict(data)
    return {"jsonrpc": "2.0", "id": req_id, "error": err}


def _valid_id(value: Any) -> bool:
    """An id the answer can echo: JSON's escapes let a string hold a lone surrogate
    (``"\\ud800"``), which no UTF-8 response can carry, so such an id is refused."""
    if isinstance(value, str):
        return _utf8_encodable(value)
    return value is None or (isinstance(value, int) and not isinstance(value, bool))


def _utf8_encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


async def _dispatch(
    methods: RpcMethods, obj: Any, checked: Any = _MISSING
) -> dict[str, Any] | None:
    """Answer one request object; None for a notification (no ``id``). ``checked``: for a
    ``submit`` in a batch, its transaction as already checked with the batch's others."""
    if not isinstance(obj, dict):
        return _error(None, INVALID_REQUEST, "Invalid Request",
                      {"code": "invalidRequest", "message": "a request is a JSON object"})
    req_id = obj.get("id", _MISSING)
    if req_id is not _MISSING and not _valid_id(req_id):
        return _error(None, INVALID_REQUEST, "Invalid Request",
                      {"code": "invalidRequest", "message": "id must be a string, integer or "
                       "null (a string without lone surrogates)"})
    reply_id = None if req_id is _MISSING else req_id
    method = obj.get("method")
    unknown = set(obj) - {"jsonrpc", "method", "params", "id"}
    if obj.get("jsonrpc") != "2.0" or not isinstance(method, str) or unknown:
        return _error(reply_id, INVALID_REQUEST, "Invalid Request", {
            "code": "invalidRequest",
            "message": 'a request is {"jsonrpc": "2.0", "method": name, "params": ..., "id": ...}'
                       + (f"; unknown members {sorted(unknown)}" if unknown else "")})
    params = obj.get("params")
    if params is not None and not isinstance(params, (dict, list)):
        return _error(reply_id, INVALID_REQUEST, "Invalid Request",
                      {"code": "invalidRequest", "message": "params must be an object or array"})
    handler = methods.table.get(method)
    if handler is None:
        return _error(reply_id, METHOD_NOT_FOUND, "Method not found", {
            "code": "unknownCmd",
            "message": f"unknown method {method[:60]!r}; known: {', '.join(METHODS)}"})
    if checked is not _MISSING and method == "submit":
        def handler(_params: Any) -> Any:
            return methods.submit_checked(checked)
    try:
        result = await run_in_threadpool(handler, params)
    except TablechainError as exc:
        code = INVALID_PARAMS if exc.code in _PARAM_CODES else SERVER_ERROR
        response = _error(reply_id, code, exc.message, exc.to_dict())
    except Exception:
        log.exception("RPC method %s failed", method)
        response = _error(reply_id, INTERNAL_ERROR, "Internal error",
                          {"code": "tecINTERNAL", "message": "the node failed to answer; "
                           "see its log"})
    else:
        response = {"jsonrpc": "2.0", "id": reply_id, "result": result}
    return None if req_id is _MISSING else response


async def _check_submissions(methods: RpcMethods, batch: list[Any]) -> dict[int, Any]:
    """The submits of a batch checked together (signatures verified in parallel worker
    processes) ahead of answering the batch's calls in order; by position in the batch."""
    found: list[tuple[int, dict[str, Any]]] = []
    for i, item in enumerate(batch):
        if isinstance(item, dict) and item.get("method") == "submit":
            try:
                found.append((i, RpcMethods.submitted_tx(item.get("params"))))
            except RpcParamsError:
                continue  # answered as a bad request when its turn comes
    if len(found) < 2:
        return {}
    verdicts = await run_in_threadpool(methods.node.check_many, [tx for _, tx in found], True)
    return {i: verdict for (i, _), verdict in zip(found, verdicts, strict=True)}


class _BodyTooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None:
        try:
            if int(length) > limit:
                raise _BodyTooLarge
        except ValueError:
            pass  # the server's HTTP parser decides; we still count the bytes below
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _json(content: Any, status: int = 200) -> Response:
    return JSONResponse(content, status_code=status)


async def _rpc_endpoint(request: Request) -> Response:
    app_state = request.app.state
    methods: RpcMethods = app_state.methods
    limit: int = app_state.max_body_bytes
    try:
        body = await _read_body(request, limit)
    except _BodyTooLarge:
        return _json(_error(None, INVALID_REQUEST, "Request too large", {
            "code": "requestTooLarge", "message": f"the request body exceeds {limit} bytes"}), 413)
    try:
        if len(body) > _THREAD_PARSE_BYTES:
            obj = await run_in_threadpool(parse_json, body)
        else:
            obj = parse_json(body)
    except TablechainError as exc:
        return _json(_error(None, PARSE_ERROR, "Parse error",
                            {"code": "invalidJson", "message": exc.message}))
    if isinstance(obj, list):
        if not obj:
            return _json(_error(None, INVALID_REQUEST, "Invalid Request",
                                {"code": "invalidRequest", "message": "an empty batch"}))
        if len(obj) > MAX_BATCH:
            return _json(_error(None, INVALID_REQUEST, "Invalid Request", {
                "code": "invalidRequest", "message": f"a batch holds at most {MAX_BATCH} calls"}))
        checked = await _check_submissions(methods, obj)
        answers = [await _dispatch(methods, item, checked.get(i, _MISSING))
                   for i, item in enumerate(obj)]
        replies = [a for a in answers if a is not None]
        return _json(replies) if replies else Response(status_code=204)
    answer = await _dispatch(methods, obj)
    return _json(answer) if answer is not None else Response(status_code=204)


# --- WebSocket -------------------------------------------------------------------------------


def _ws_error(req_id: Any, code: str, message: str) -> dict[str, Any]:
    out = {"type": "response", "status": "error", "error": code, "error_message": message}
    if req_id is not None:
        out["id"] = req_id
    return out


def _ws_success(req_id: Any, result: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "response", "status": "success", "result": dict(result)}
    if req_id is not None:
        out["id"] = req_id
    return out


def _committed_events(node: Node, tx_hash: str) -> list[dict[str, Any]]:
    """The events of a transaction that was committed before its subscription arrived."""
    from tablechain.ledger.errors import NotFound

    try:
        record = node.ledger.transaction(tx_hash)
    except NotFound:
        return []
    ok = record["result"] == "tesSUCCESS"
    base = {"type": "singleTransaction", "transaction": tx_hash,
            "ledger_index": record["ledger_index"], "result": record["result"]}
    message = record["receipt"].get("message") or ""
    if message:
        base["error_message"] = message
    return [{**base, "status": "validate_success" if ok else "validate_fail"},
            {**base, "status": "db_success" if ok else "db_error"}]


async def _ws_command(websocket: WebSocket, hub: EventHub, sub: Subscriber, text: str) -> None:
    from tablechain.ledger.errors import InvalidTransaction
    from tablechain.ledger.transactions import check_address, check_table_name

    try:
        msg = parse_json(text)
    except TablechainError as exc:
        sub.reply(_ws_error(None, "invalidJson", exc.message))
        return
    if not isinstance(msg, dict):
        sub.reply(_ws_error(None, "invalidRequest", "a command is a JSON object"))
        return
    req_id = msg.get("id")
    if not _valid_id(req_id):
        req_id = None
    command = msg.get("command")
    if command not in ("subscribe", "unsubscribe"):
        sub.reply(_ws_error(req_id, "unknownCmd",
                            "command must be subscribe or unsubscribe"))
        return
    tx_hash = msg.get("transaction")
    has_table = "owner" in msg or "tablename" in msg
    if tx_hash is None and not has_table:
        sub.reply(_ws_error(req_id, "invalidParams",
                            'name a "transaction" hash, or an "owner" and a "tablename"'))
        return
    try:
        if tx_hash is not None:
            tx_hash = _hash_param(msg, command, "transaction")
        table = None
        if has_table:
            table = (check_address(msg.get("owner"), "owner"),
                     check_table_name(msg.get("tablename"), "tablename"))
    except (RpcParamsError, InvalidTransaction) as exc:
        sub.reply(_ws_error(req_id, "invalidParams", exc.message))
        return
    if command == "unsubscribe":
        if tx_hash is not None:
            hub.unsubscribe_transaction(sub, tx_hash)
        if table is not None:
            hub.unsubscribe_table(sub, *table)
        sub.reply(_ws_success(req_id, {}))
        return
    if ((tx_hash is not None and not hub.subscribe_transaction(sub, tx_hash))
            or (table is not None and not hub.subscribe_table(sub, *table))):
        sub.reply(_ws_error(req_id, "tooManySubscriptions",
                            f"a connection holds at most {hub.max_subscriptions} subscriptions"))
        return
    sub.reply(_ws_success(req_id, {}))
    if tx_hash is not None:
        for event in await run_in_threadpool(_committed_events, hub.node, tx_hash):
            sub.deliver(event)


async def _ws_receive(websocket: WebSocket, hub: EventHub, sub: Subscriber) -> None:
    while True:
        await sub.wait_for_room()
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is None:
            data = message.get("bytes") or b""
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                sub.reply(_ws_error(None, "invalidJson", "a command is UTF-8 JSON text"))
                continue
        if len(text) > MAX_WS_MESSAGE:
            sub.reply(_ws_error(None, "requestTooLarge",
                                f"a command is at most {MAX_WS_MESSAGE} bytes"))
            continue
        await _ws_command(websocket, hub, sub, text)


async def _ws_send(websocket: WebSocket, sub: Subscriber) -> None:
    from tablechain.platform.subscriptions import OVERFLOW

    while True:
        message = await sub.next_message()
        await websocket.send_json(message)
        if message is OVERFLOW:
            await websocket.close(code=1008)
            return


async def _ws_endpoint(websocket: WebSocket) -> None:
    hub: EventHub = websocket.app.state.hub
    await websocket.accept()
    sub = hub.connect()
    if sub is None:
        await websocket.send_json(TOO_MANY_CONNECTIONS)
        await websocket.close(code=1013)  # try again later
        return
    tasks = [asyncio.create_task(_ws_receive(websocket, hub, sub)),
             asyncio.create_task(_ws_send(websocket, sub))]
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                await task
    finally:
        hub.disconnect(sub)
        for task in tasks:
            task.cancel()


# --- the application -------------------------------------------------------------------------


def _drain(node: Node, timeout: float) -> None:
    """Wait (bounded) until the block producer has committed every queued transaction."""
    deadline = time.monotonic() + timeout
    while len(node.mempool) and time.monotonic() < deadline:
        time.sleep(0.01)


def create_app(node: Node, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               manage_node: bool = True, ws_queue_size: int = 1000,
               ws_max_subscriptions: int = 1000, ws_max_connections: int = MAX_WS_CONNECTIONS,
               drain_timeout: float = 5.0) -> Starlette:
    """The ASGI application serving ``node``.

    With ``manage_node`` the app starts the node's block production on startup and, on
    shutdown, lets it commit what is queued (up to ``drain_timeout`` seconds) and stops the
    node (closing its database).
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        hub = EventHub(node, asyncio.get_running_loop(), ws_queue_size, ws_max_subscriptions,
                       ws_max_connections)
        hub.start()
        app.state.hub = hub
        if manage_node:
            node.start()
        try:
            yield
        finally:
            if manage_node:  # requests have stopped: commit what is queued, then stop
                await run_in_threadpool(_drain, node, drain_timeout)
            hub.stop()
            if manage_node:
                await run_in_threadpool(node.stop)

    app = Starlette(routes=[Route("/", _rpc_endpoint, methods=["POST"]),
                            WebSocketRoute("/ws", _ws_endpoint)],
                    lifespan=lifespan)
    app.state.methods = RpcMethods(node)
    app.state.max_body_bytes = max_body_bytes
    app.state.node = node
    return app
