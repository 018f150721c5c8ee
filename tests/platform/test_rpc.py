"""The JSON-RPC API and the WebSocket subscriptions: every method, every error path, garbage."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from tablechain.ledger.node import Node
from tablechain.ledger.reads import sign_read_request
from tablechain.platform.config import open_node
from tablechain.platform.rpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    METHODS,
    PARSE_ERROR,
    SERVER_ERROR,
    create_app,
)
from tablechain.platform.server import serve_in_thread

from .conftest import NETWORK_ID, Rpc, Signer, create_tx, insert_tx, make_settings


def _commit(node: Node, rpc: Rpc, tx: dict[str, Any]) -> dict[str, Any]:
    answer = rpc.result("submit", tx)
    assert answer["engine_result"] == "tesSUCCESS"
    return dict(node.wait_for(answer["hash"], 10))


@pytest.fixture(scope="module")
def table(node: Node, rpc: Rpc) -> tuple[Signer, str]:
    owner = Signer()
    record = _commit(node, rpc, owner.sign(create_tx("people")))
    assert record["result"] == "tesSUCCESS"
    record = _commit(node, rpc, owner.sign(insert_tx("people", [{"id": 1, "name": "ann"},
                                                                {"id": 2, "name": "bo"}])))
    assert record["result"] == "tesSUCCESS"
    return owner, "people"


# --- methods -----------------------------------------------------------------------------------


def test_server_info_and_ledger_closed(rpc: Rpc, node: Node) -> None:
    info = rpc.result("server_info")["info"]
    assert info["network_id"] == NETWORK_ID
    assert info["suite"] == "international"
    assert info["chain"] == node.genesis.hash()
    assert info["validator"] == node.address
    assert info["complete_ledgers"] == f"0-{info['ledger_index']}"
    closed = rpc.result("ledger_closed", [])
    assert closed["ledger_index"] == node.ledger.height
    assert closed["ledger_hash"] == node.ledger.head.hash(node.ledger.suite)


def test_submit_tx_ledger_account_info(rpc: Rpc, node: Node) -> None:
    alice = Signer()
    info = rpc.result("account_info", {"account": alice.address})
    assert (info["sequence"], info["next_sequence"]) == (0, 1)
    tx = alice.sign(create_tx("t_submit"))
    answer = rpc.result("submit", {"tx_json": tx})  # ChainSQL's wrapper is accepted too
    assert answer["engine_result"] == "tesSUCCESS"
    assert answer["account"] == alice.address and answer["sequence"] == 1
    record = node.wait_for(answer["hash"], 10)
    got = rpc.result("tx", {"transaction": answer["hash"]})
    assert got == json.loads(json.dumps(record))
    assert got["result"] == "tesSUCCESS" and got["tx"]["TxnSignature"] == tx["TxnSignature"]
    assert rpc.result("tx", [{"hash": answer["hash"].upper()}])["hash"] == answer["hash"]
    info = rpc.result("account_info", {"account": alice.address})
    assert (info["sequence"], info["next_sequence"]) == (1, 2)

    block = rpc.result("ledger", {"ledger_index": got["ledger_index"]})
    assert answer["hash"] in block["tx_hashes"]
    assert "transactions" not in block
    assert block["header"]["height"] == got["ledger_index"]
    assert block["ledger_hash"] == node.ledger.block(got["ledger_index"])["hash"]
    full = rpc.result("ledger", {"ledger_index": got["ledger_index"], "expand": True})
    assert tx in full["transactions"]
    assert rpc.result("ledger", {})["ledger_index"] == node.ledger.height
    genesis = rpc.result("ledger", {"ledger_index": 0})
    assert genesis["tx_hashes"] == [] and genesis["header"]["height"] == 0


def test_account_info_counts_the_mempool(rpc: Rpc, node: Node) -> None:
    bob = Signer()
    txs = [bob.sign(create_tx(f"t_mp{i}")) for i in range(3)]
    hashes = [rpc.result("submit", tx)["hash"] for tx in txs]
    info = rpc.result("account_info", {"account": bob.address})
    assert info["next_sequence"] == 4  # whether the three are queued or already committed
    for h in hashes:
        assert node.wait_for(h, 10)["result"] == "tesSUCCESS"
    assert rpc.result("account_info", {"account": bob.address})["sequence"] == 3


def test_submit_errors_keep_stable_codes(rpc: Rpc, node: Node) -> None:
    carol = Signer()
    good = carol.sign(create_tx("t_err"))
    bad_sig = dict(good, Raw=[{"field": "x", "type": "int"}])
    assert rpc.error("submit", bad_sig)["data"]["code"] == "temBAD_SIGNATURE"
    err = rpc.error("submit", carol.sign(create_tx("t_err2"), sequence=5))
    assert (err["code"], err["data"]["code"]) == (SERVER_ERROR, "terPRE_SEQ")
    node.wait_for(rpc.result("submit", good)["hash"], 10)
    err = rpc.error("submit", good)  # replay of a committed transaction
    assert err["data"]["code"] == "tefPAST_SEQ"
    other_net = dict(good)
    other_net["NetworkID"] = NETWORK_ID + 1
    err = rpc.error("submit", other_net)
    assert (err["code"], err["data"]["code"]) == (INVALID_PARAMS, "temMALFORMED")
    err = rpc.error("submit", {"TransactionType": "Nope"})
    assert err["data"]["code"] == "temMALFORMED"
    err = rpc.error("submit", "not an object")
    assert err["code"] == INVALID_REQUEST  # params must be an object or array
    err = rpc.error("submit", [1, 2])
    assert (err["code"], err["data"]["code"]) == (INVALID_PARAMS, "invalidParams")
    # over the 1 MB transaction limit, under the 2 MB request limit
    too_big = carol.sign(insert_tx("t_err", [{"id": i, "name": "x" * 30} for i in range(25000)]))
    err = rpc.error("submit", too_big)
    assert err["data"]["code"] == "temTOO_LARGE"
    # a SQL injection attempt in a table name is refused at the edge
    err = rpc.error("submit", carol.sign(create_tx('x"; DROP TABLE blocks; --')))
    assert err["data"]["code"] == "temMALFORMED"


def test_tx_errors(rpc: Rpc) -> None:
    err = rpc.error("tx", {"transaction": "ab" * 32})
    assert (err["code"], err["data"]["code"]) == (SERVER_ERROR, "txnNotFound")
    for bad in ({"transaction": "xyz"}, {"transaction": 5}, {}, {"hash": "a" * 63}):
        err = rpc.error("tx", bad)
        assert (err["code"], err["data"]["code"]) == (INVALID_PARAMS, "invalidParams"), bad


def test_ledger_errors(rpc: Rpc, node: Node) -> None:
    for beyond in (node.ledger.height + 1000, 2**63, 2**70):  # the last two: no column holds them
        err = rpc.error("ledger", {"ledger_index": beyond})
        assert err["data"]["code"] == "lgrNotFound", err
    for bad in ({"ledger_index": -1}, {"ledger_index": "x"}, {"ledger_index": True},
                {"expand": "yes"}, [1]):
        assert rpc.error("ledger", bad)["data"]["code"] == "invalidParams", bad


def test_r_get_applies_permissions(rpc: Rpc, node: Node, table: tuple[Signer, str]) -> None:
    owner, name = table
    height = rpc.result("ledger_closed")["ledger_index"]
    req = sign_read_request(owner.key, owner.address, name, [[], {"id": 2}], height)
    result = rpc.result("r_get", req)
    assert result["rows"] == [{"id": 2, "name": "bo"}]
    assert result["reader"] == owner.address and result["owner"] == owner.address
    assert rpc.result("r_get", [req])["rows"] == [{"id": 2, "name": "bo"}]

    stranger = Signer()
    req = sign_read_request(stranger.key, owner.address, name, [[]], height)
    assert rpc.error("r_get", req)["data"]["code"] == "tefBAD_AUTH_NO"
    req = sign_read_request(owner.key, owner.address, "missing", [[]], height)
    assert rpc.error("r_get", req)["data"]["code"] == "tefTABLE_NOTEXIST"
    req = sign_read_request(owner.key, owner.address, name, [[]], height)
    req["Raw"] = [["name"]]  # changed after signing
    assert rpc.error("r_get", req)["data"]["code"] == "temBAD_SIGNATURE"
    req = sign_read_request(owner.key, owner.address, name, [[]], height + 5)
    err = rpc.error("r_get", req)
    assert (err["code"], err["data"]["code"]) == (INVALID_PARAMS, "invalidParams")
    req = sign_read_request(owner.key, owner.address, name, [[], {"id": {"$bogus": 1}}], height)
    assert rpc.error("r_get", req)["data"]["code"] == "temBAD_CONDITION"
    assert rpc.error("r_get", {"Account": 1})["data"]["code"] == "invalidParams"
    assert rpc.error("r_get", None)["data"]["code"] == "invalidParams"


def test_table_auth_info_and_dbname(rpc: Rpc, node: Node, table: tuple[Signer, str]) -> None:
    owner, name = table
    reader = Signer()
    grant = {"TransactionType": "TableListSet", "OpType": 11,
             "Tables": [{"Table": {"TableName": name}}], "User": reader.address,
             "Raw": [{"select": True}]}
    assert _commit(node, rpc, owner.sign(grant))["result"] == "tesSUCCESS"
    auth = rpc.result("table_auth", {"owner": owner.address, "tablename": name})
    assert auth["users"] == [{"user": reader.address, "select": True, "insert": False,
                              "update": False, "delete": False}]
    info = rpc.result("table_info", {"owner": owner.address, "tablename": name})
    assert info["rows"] == 2 and info["name"] == name
    assert auth["strict_pointer"] == info["strict_pointer"]
    dbname = rpc.result("g_dbname", {"account": owner.address, "tablename": name})["nameInDB"]
    assert dbname == info["name_in_db"] and len(dbname) == 40
    height = node.ledger.height
    req = sign_read_request(reader.key, owner.address, name, [["name"]], height)
    assert rpc.result("r_get", req)["rows"] == [{"name": "ann"}, {"name": "bo"}]
    for method in ("table_auth", "table_info", "g_dbname"):
        assert rpc.error(method, {"owner": owner.address, "tablename": "nope"}
                         )["data"]["code"] == "tefTABLE_NOTEXIST"
        assert rpc.error(method, {"owner": "0x12", "tablename": name}
                         )["data"]["code"] == "invalidParams"
        assert rpc.error(method, {"owner": owner.address, "tablename": "a b"}
                         )["data"]["code"] == "invalidParams"
        assert rpc.error(method, {})["data"]["code"] == "invalidParams"


def test_account_info_errors(rpc: Rpc) -> None:
    for bad in ({}, {"account": "bob"}, {"account": 12}, ["x"]):
        assert rpc.error("account_info", bad)["data"]["code"] == "invalidParams"


# --- framing -----------------------------------------------------------------------------------


def test_framing_errors(rpc: Rpc) -> None:
    def err(body: bytes | str, req_id: Any = None) -> dict[str, Any]:
        response = rpc.raw(body)
        assert response.status_code == 200
        out = response.json()
        assert out["jsonrpc"] == "2.0" and out["id"] == req_id
        return out["error"]

    assert err(b"{not json")["code"] == PARSE_ERROR
    assert err(b"\xff\xfe{}")["code"] == PARSE_ERROR
    assert err(b"")["code"] == PARSE_ERROR
    assert err('{"jsonrpc":"2.0","id":1,"method":"server_info","params":{"x":1.5}}'
               )["data"]["code"] == "invalidJson"  # floats are outside the strict dialect
    assert err(b'{"a":1,"a":2}')["code"] == PARSE_ERROR
    assert err(b"[" * 50_000 + b"]" * 50_000)["code"] == PARSE_ERROR
    assert err(b"[" * 50_000)["code"] == PARSE_ERROR
    assert err(b"5")["code"] == INVALID_REQUEST
    assert err(b"[]")["code"] == INVALID_REQUEST
    assert err(json.dumps([{"jsonrpc": "2.0", "id": i, "method": "ledger_closed"}
                           for i in range(101)]))["code"] == INVALID_REQUEST
    assert err('{"jsonrpc":"1.0","id":1,"method":"server_info"}', 1)["code"] == INVALID_REQUEST
    assert err('{"jsonrpc":"2.0","id":{"a":1},"method":"server_info"}')["code"] == INVALID_REQUEST
    assert err('{"jsonrpc":"2.0","id":true,"method":"server_info"}')["code"] == INVALID_REQUEST

    out = rpc.raw('{"jsonrpc":"2.0","id":"x","method":"server_info","extra":1}').json()
    assert out["error"]["code"] == INVALID_REQUEST and out["id"] == "x"
    out = rpc.raw('{"jsonrpc":"2.0","id":"x","method":"nope"}').json()
    assert out["error"]["code"] == METHOD_NOT_FOUND and out["error"]["data"]["code"] == "unknownCmd"
    out = rpc.raw('{"jsonrpc":"2.0","id":7,"method":"server_info","params":3}').json()
    assert out["error"]["code"] == INVALID_REQUEST and out["id"] == 7


def test_an_id_no_utf8_answer_can_echo_is_refused(rpc: Rpc) -> None:
    # JSON's escapes can spell a lone surrogate, which no UTF-8 answer can carry back: the
    # request is refused with id null instead of failing as an HTTP 500 when answered.
    for body in ('{"jsonrpc":"2.0","id":"\\ud800","method":"server_info"}',
                 '[{"jsonrpc":"2.0","id":"a\\udfff","method":"ledger_closed"}]'):
        response = rpc.raw(body)
        assert response.status_code == 200
        out = response.json()
        out = out[0] if isinstance(out, list) else out
        assert out["id"] is None and out["error"]["code"] == INVALID_REQUEST
    out = rpc.raw('{"jsonrpc":"2.0","id":"\\ud83d\\ude00","method":"ledger_closed"}').json()
    assert out["id"] == "\U0001f600" and "result" in out  # a surrogate pair is one character


def test_batches_and_notifications(rpc: Rpc) -> None:
    body = json.dumps([
        {"jsonrpc": "2.0", "id": 1, "method": "ledger_closed"},
        {"jsonrpc": "2.0", "method": "ledger_closed"},  # a notification: no answer
        {"jsonrpc": "2.0", "id": 2, "method": "nope"},
        7,
    ])
    answers = rpc.raw(body).json()
    assert [a.get("id") for a in answers] == [1, 2, None]
    assert "result" in answers[0]
    assert answers[1]["error"]["code"] == METHOD_NOT_FOUND
    assert answers[2]["error"]["code"] == INVALID_REQUEST
    response = rpc.raw('{"jsonrpc":"2.0","method":"server_info"}')
    assert response.status_code == 204 and response.content == b""


def test_oversize_body_is_refused_before_parsing(rpc: Rpc) -> None:
    response = rpc.raw(b"[" + b"1," * 5_000_000 + b"1]")  # 10 MB
    assert response.status_code == 413
    assert response.json()["error"]["data"]["code"] == "requestTooLarge"
    assert rpc.result("ledger_closed")["ledger_index"] >= 0


def test_streamed_oversize_body_without_length(http: TestClient, rpc: Rpc) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(40):
            yield b" " * 100_000

    response = http.post("/", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert rpc.result("ledger_closed")["ledger_index"] >= 0


QUIET = [HealthCheck.function_scoped_fixture]
_json_leaf = (st.none() | st.booleans() | st.integers() | st.text(max_size=20)
              | st.sampled_from([2**63, -(2**63) - 1, 2**70, 10**30, "closed", "everyone",
                                 "0x" + "ab" * 20, "ab" * 32]))
# Keys are often the methods' own parameter names, so that odd values reach the handlers.
_PARAM_NAMES = ["ledger_index", "expand", "transactions", "hash", "transaction", "tx_json",
                "tx_blob", "owner", "account", "tablename", "raw", "user", "publicKey",
                "signature", "signingData", "ledger_hash", "binary"]
_json = st.recursive(_json_leaf, lambda c: st.lists(c, max_size=4) |
                     st.dictionaries(st.sampled_from(_PARAM_NAMES) | st.text(max_size=8), c,
                                     max_size=4), max_leaves=20)


@settings(max_examples=150, deadline=None, suppress_health_check=QUIET)
@given(body=st.binary(max_size=300))
def test_garbage_bytes_never_crash(rpc: Rpc, body: bytes) -> None:
    response = rpc.raw(body)
    assert response.status_code in (200, 204)
    if response.status_code == 200:
        out = response.json()
        answers = out if isinstance(out, list) else [out]
        for a in answers:
            assert a["jsonrpc"] == "2.0"
            if "error" in a:
                assert a["error"]["code"] != INTERNAL_ERROR


@settings(max_examples=300, deadline=None, suppress_health_check=QUIET)
@given(method=st.sampled_from(METHODS), params=_json)
def test_garbage_params_never_crash(rpc: Rpc, method: str, params: Any) -> None:
    response = rpc.raw(json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                                   "params": params}))
    assert response.status_code == 200
    out = response.json()
    assert out["id"] == 1
    if "error" in out:
        assert out["error"]["code"] != INTERNAL_ERROR, out
        assert isinstance(out["error"]["data"]["code"], str)


@settings(max_examples=80, deadline=None, suppress_health_check=QUIET)
@given(tx=st.dictionaries(st.sampled_from(["TransactionType", "Account", "Sequence", "NetworkID",
                                           "SigningPubKey", "TxnSignature", "OpType", "Tables",
                                           "Raw", "Statements", "Owner"]), _json, max_size=8))
def test_garbage_transactions_never_crash(rpc: Rpc, tx: dict[str, Any]) -> None:
    err = rpc.error("submit", tx)
    assert err["code"] in (INVALID_PARAMS, SERVER_ERROR, INVALID_REQUEST)


def test_node_still_serves_after_garbage(rpc: Rpc, node: Node) -> None:
    dave = Signer()
    record = _commit(node, rpc, dave.sign(create_tx("after_garbage")))
    assert record["result"] == "tesSUCCESS"


def test_blocking_calls_do_not_block_the_event_loop(tmp_path: Any) -> None:
    node = open_node_for(tmp_path)
    release = threading.Event()
    original = node.ledger.transaction

    def slow(tx_hash: str) -> dict[str, Any]:
        release.wait(10)
        return original(tx_hash)

    node.ledger.transaction = slow  # type: ignore[method-assign]
    with serve_in_thread(node) as srv:
        body = {"jsonrpc": "2.0", "id": 1, "method": "tx", "params": {"transaction": "00" * 32}}
        slow_call = threading.Thread(target=httpx.post, args=(srv.url,), kwargs={"json": body,
                                                                                  "timeout": 20})
        slow_call.start()
        time.sleep(0.2)
        started = time.monotonic()
        answer = httpx.post(srv.url, json={"jsonrpc": "2.0", "id": 2, "method": "ledger_closed"},
                            timeout=5).json()
        assert answer["result"]["ledger_index"] == 0
        assert slow_call.is_alive()  # the slow call is still parked in the threadpool
        release.set()
        slow_call.join(10)
        assert time.monotonic() - started < 5


def open_node_for(path: Any) -> Node:
    return open_node(make_settings(path / "n"))


# --- WebSocket ---------------------------------------------------------------------------------


def _recv_until(ws: Any, predicate: Any, limit: int = 20) -> list[dict[str, Any]]:
    seen = []
    for _ in range(limit):
        msg = ws.receive_json()
        seen.append(msg)
        if predicate(msg):
            return seen
    raise AssertionError(f"no matching message in {seen}")


def test_ws_transaction_and_table_subscriptions(http: TestClient, rpc: Rpc, node: Node) -> None:
    erin = Signer()
    tx = erin.sign(create_tx("ws_table"))
    tx_hash = node.check_transaction(tx).hash_hex
    with http.websocket_connect("/ws") as ws:
        ws.send_json({"command": "subscribe", "transaction": tx_hash, "id": 1})
        assert ws.receive_json() == {"type": "response", "status": "success", "result": {},
                                     "id": 1}
        ws.send_json({"command": "subscribe", "owner": erin.address, "tablename": "ws_table",
                      "id": 2})
        assert ws.receive_json()["status"] == "success"
        rpc.result("submit", tx)
        events = _recv_until(ws, lambda m: m.get("type") == "table")
        statuses = [(e["type"], e["status"]) for e in events]
        assert statuses == [("singleTransaction", "validate_success"),
                            ("singleTransaction", "db_success"), ("table", "db_success")]
        assert events[0]["transaction"] == tx_hash and events[0]["result"] == "tesSUCCESS"
        assert events[2]["owner"] == erin.address and events[2]["tablename"] == "ws_table"

        # a failing transaction: validate_fail then db_error with its code
        dup = erin.sign(create_tx("ws_table"))
        dup_hash = node.check_transaction(dup).hash_hex
        ws.send_json({"command": "subscribe", "transaction": dup_hash})
        assert ws.receive_json()["status"] == "success"
        rpc.result("submit", dup)
        events = _recv_until(ws, lambda m: m.get("status") == "db_error")
        assert [e["status"] for e in events] == ["validate_fail", "db_error"]
        assert events[1]["result"] == "tefTABLE_EXISTANDNOTDEL" and events[1]["error_message"]

        # unsubscribe from the table: an insert no longer produces a table event
        ws.send_json({"command": "unsubscribe", "owner": erin.address,
                      "tablename": "ws_table", "id": 3})
        assert ws.receive_json()["id"] == 3
        ins = erin.sign(insert_tx("ws_table", [{"id": 1, "name": "x"}]))
        ins_hash = node.check_transaction(ins).hash_hex
        ws.send_json({"command": "subscribe", "transaction": ins_hash})
        assert ws.receive_json()["status"] == "success"
        rpc.result("submit", ins)
        events = _recv_until(ws, lambda m: m.get("status") == "db_success")
        assert all(e["type"] == "singleTransaction" for e in events)


def test_ws_subscribing_to_a_committed_transaction(http: TestClient, rpc: Rpc,
                                                   node: Node) -> None:
    fay = Signer()
    record = _commit(node, rpc, fay.sign(create_tx("ws_late")))
    with http.websocket_connect("/ws") as ws:
        ws.send_json({"command": "subscribe", "transaction": record["hash"]})
        assert ws.receive_json()["status"] == "success"
        events = [ws.receive_json(), ws.receive_json()]
        assert [e["status"] for e in events] == ["validate_success", "db_success"]
        assert events[1]["ledger_index"] == record["ledger_index"]


def test_ws_bad_commands(http: TestClient) -> None:
    with http.websocket_connect("/ws") as ws:
        for message, code in [
            ("{nope", "invalidJson"),
            ("[1]", "invalidRequest"),
            ('{"command":"fly"}', "unknownCmd"),
            ('{"command":"subscribe"}', "invalidParams"),
            ('{"command":"subscribe","transaction":"zz"}', "invalidParams"),
            ('{"command":"subscribe","owner":"0x1","tablename":"t"}', "invalidParams"),
            ('{"command":"subscribe","owner":"0x' + "1" * 40 + '","tablename":"a;b"}',
             "invalidParams"),
            ("[" * 10_000, "invalidJson"),
            ('"' + "x" * 70_000 + '"', "requestTooLarge"),
        ]:
            ws.send_text(message)
            reply = ws.receive_json()
            assert (reply["status"], reply["error"]) == ("error", code), message
        ws.send_bytes(b"\xff\xff")
        assert ws.receive_json()["error"] == "invalidJson"
        ws.send_text('{"command":"subscribe","transaction":"' + "ab" * 32 + '","id":9}')
        assert ws.receive_json() == {"type": "response", "status": "success", "result": {},
                                     "id": 9}


def test_ws_an_id_no_utf8_answer_can_echo_is_left_out(http: TestClient) -> None:
    with http.websocket_connect("/ws") as ws:
        ws.send_text('{"command":"subscribe","transaction":"' + "cd" * 32 + '","id":"\\ud800"}')
        assert ws.receive_json() == {"type": "response", "status": "success", "result": {}}
        ws.send_text('{"command":"fly","id":"\\udc00"}')
        assert ws.receive_json()["error"] == "unknownCmd"


def test_ws_commands_are_not_read_while_their_answers_wait(node: Node) -> None:
    # A client that sends commands and never reads: its send blocks (a full TCP window), so
    # the node must stop reading its commands rather than queue an answer to each of them.
    queue_size, offered = 10, 200
    consumed = 0

    async def scenario() -> None:
        nonlocal consumed
        app = create_app(node, manage_node=False, ws_queue_size=queue_size)
        never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        command = json.dumps({"command": "unsubscribe", "transaction": "ab" * 32})

        async def receive() -> dict[str, Any]:
            nonlocal consumed
            if consumed == 0:
                consumed = 1
                return {"type": "websocket.connect"}
            if consumed > offered:
                await never
            consumed += 1
            return {"type": "websocket.receive", "text": command}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "websocket.send":
                await never  # the client does not read

        scope = {"type": "websocket", "path": "/ws", "root_path": "", "scheme": "ws",
                 "query_string": b"", "headers": [], "client": ("127.0.0.1", 1),
                 "server": ("127.0.0.1", 2), "subprotocols": [], "asgi": {"version": "3.0"}}
        async with app.router.lifespan_context(app):
            task = asyncio.create_task(app(scope, receive, send))
            for _ in range(20 * offered):  # ample turns of the loop to read every command
                await asyncio.sleep(0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(scenario())
    assert consumed - 1 <= queue_size // 2 + 1  # the connect, then commands up to half


def test_ws_subscription_limit(tmp_path: Any) -> None:
    node = open_node_for(tmp_path)
    app = create_app(node, ws_max_subscriptions=2)
    with TestClient(app) as http:
        gus = Signer()
        with http.websocket_connect("/ws") as ws:
            for name in ("a", "b", "c"):
                ws.send_json({"command": "subscribe", "owner": gus.address, "tablename": name})
            replies = [ws.receive_json() for _ in range(3)]
            assert [r["status"] for r in replies] == ["success", "success", "error"]
            assert replies[2]["error"] == "tooManySubscriptions"
            ws.send_json({"command": "unsubscribe", "owner": gus.address, "tablename": "a"})
            assert ws.receive_json()["status"] == "success"
            ws.send_json({"command": "subscribe", "owner": gus.address, "tablename": "c"})
            assert ws.receive_json()["status"] == "success"


def test_ws_connection_limit(node: Node) -> None:
    # The per-connection subscription limit bounds nothing if one client can open
    # connections without end: past the limit a connection is told so and closed (1013).
    from starlette.websockets import WebSocketDisconnect

    app = create_app(node, manage_node=False, ws_max_connections=2)
    subscribe = {"command": "subscribe", "transaction": "ef" * 32, "id": 1}
    with TestClient(app) as http:
        with http.websocket_connect("/ws") as first, http.websocket_connect("/ws") as second:
            with http.websocket_connect("/ws") as third:
                assert third.receive_json()["error"] == "tooManyConnections"
                with pytest.raises(WebSocketDisconnect) as closed:
                    third.receive_json()
                assert closed.value.code == 1013
            for ws in (first, second):
                ws.send_json(subscribe)
                assert ws.receive_json()["status"] == "success"
        with http.websocket_connect("/ws") as again:  # the closed ones no longer count
            again.send_json(subscribe)
            assert again.receive_json()["status"] == "success"


def test_a_clean_shutdown_commits_the_queue(tmp_path: Any) -> None:
    from tablechain.ledger.chain import Ledger
    from tablechain.platform.config import init_datadir, load_genesis

    settings = init_datadir(tmp_path / "slow", network_id=NETWORK_ID, max_block_wait_ms=2000)
    node = open_node(settings)
    hank = Signer()
    with serve_in_thread(node) as srv:
        hashes = []
        for i in range(3):
            body = {"jsonrpc": "2.0", "id": i, "method": "submit",
                    "params": hank.sign(create_tx(f"q{i}"))}
            hashes.append(httpx.post(srv.url, json=body).json()["result"]["hash"])
        assert node.ledger.height == 0  # still waiting for the block to be cut
    ledger = Ledger(settings.resolved_db_url, load_genesis(settings))
    try:
        assert [ledger.transaction(h)["result"] for h in hashes] == ["tesSUCCESS"] * 3
    finally:
        ledger.close()


_EXTREMES = [None, True, -1, 2**63, 2**70, -(2**70), "", "x" * 300, [], {}, [{}]]


def test_each_parameter_with_extreme_values_gets_a_coded_error_or_an_answer(rpc: Rpc) -> None:
    """Every method, every parameter name, each extreme value (integers beyond 64 bits among
    them: `ledger` once answered an internal error for ledger_index 2**70)."""
    for method in METHODS:
        for name in _PARAM_NAMES:
            for value in _EXTREMES:
                out = rpc(method, {name: value})
                if "error" in out:
                    assert out["error"]["code"] != INTERNAL_ERROR, (method, name, value, out)
                    assert isinstance(out["error"]["data"]["code"], str)


def test_idle_connections_past_the_limit_get_503_not_the_node(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Connections that never send a request (slow-loris) count against a limit: past it, a
    new request is answered 503 at once, and once they go the node serves again."""
    import socket

    import httpx

    from tablechain.platform.config import open_node
    from tablechain.platform.server import serve_in_thread
    from tests.platform.conftest import make_settings

    with serve_in_thread(open_node(make_settings(tmp_path / "n")), max_connections=3) as srv:
        host, port = srv.sock.getsockname()[:2]
        idle = [socket.create_connection((host, port)) for _ in range(3)]
        try:
            import time

            deadline = time.monotonic() + 10
            while len(srv.server.server_state.connections) < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            busy = httpx.post(srv.url, json={"jsonrpc": "2.0", "id": 1,
                                             "method": "server_info"}, timeout=10)
            assert busy.status_code == 503
        finally:
            for s in idle:
                s.close()
        deadline = time.monotonic() + 10
        while srv.server.server_state.connections and time.monotonic() < deadline:
            time.sleep(0.01)
        ok = httpx.post(srv.url, json={"jsonrpc": "2.0", "id": 1, "method": "server_info"},
                        timeout=10)
        assert ok.status_code == 200 and "result" in ok.json()
