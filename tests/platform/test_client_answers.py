"""The client against a node that breaks the protocol, and on input it cannot send."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tablechain.crypto import generate_private_key
from tablechain.platform.client import Client, ClientError

GOOD: dict[str, Any] = {
    "server_info": {"info": {"network_id": 4242, "suite": "international"}},
    "account_info": {"account": "0x", "sequence": 0, "next_sequence": 1, "ledger_index": 1},
    "submit": {"engine_result": "tesSUCCESS", "hash": "ab" * 32, "sequence": 1},
    "tx": {"hash": "ab" * 32, "ledger_index": 2, "result": "tesSUCCESS", "receipt": {}},
    "ledger_closed": {"ledger_index": 2, "ledger_hash": "cd" * 32},
    "r_get": {"rows": []},
    "table_info": {"strict_pointer": "00" * 32},
    "g_dbname": {"nameInDB": "x"},
}


def fake_node(answer: Callable[[str, dict[str, Any]], dict[str, Any]]) -> httpx.MockTransport:
    """A node answering each call with ``answer(method, well_formed_response)``."""

    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        method = body["method"]
        good = {"jsonrpc": "2.0", "id": body["id"], "result": GOOD[method]}
        return httpx.Response(200, json=answer(method, good))

    return httpx.MockTransport(handle)


CALLS: dict[str, Callable[[Client], Any]] = {
    "server_info": lambda c: c.network_id,
    "account_info": lambda c: c.resync_sequence(),
    "submit": lambda c: c.insert("t", [{"id": 1}], wait=False),
    "tx": lambda c: c.wait("ab" * 32),
    "ledger_closed": lambda c: c.get(c.address, "t"),
    "r_get": lambda c: c.get(c.address, "t"),
    "table_info": lambda c: c.insert("t", [{"id": 1}], strict=True, wait=False),
    "g_dbname": lambda c: c.g_dbname(c.address, "t"),
}
BROKEN: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "result is a list": lambda good: {**good, "result": [1]},
    "result is a string": lambda good: {**good, "result": "x"},
    "no result": lambda good: {k: v for k, v in good.items() if k != "result"},
    "result is empty": lambda good: {**good, "result": {}},
}


@pytest.mark.parametrize("broken", sorted(BROKEN))
@pytest.mark.parametrize("method", sorted(CALLS))
def test_an_answer_that_breaks_the_protocol_is_a_client_error(method: str, broken: str) -> None:
    """Not a KeyError / TypeError / ValueError from inside the client."""

    breaking = False

    def answer(called: str, good: dict[str, Any]) -> dict[str, Any]:
        return BROKEN[broken](good) if breaking and called == method else good

    CALLS[method](Client("http://node", generate_private_key(), transport=fake_node(answer)))
    breaking = True  # the well-formed answers worked; now the one answer breaks the protocol
    client = Client("http://node", generate_private_key(), transport=fake_node(answer))
    with pytest.raises(ClientError) as exc:
        CALLS[method](client)
    assert exc.value.code == "clientTransport"


@pytest.mark.parametrize("row", [{"id": 1.5}, {"id": float("nan")}, {1: "a"}],
                         ids=["float", "nan", "int key"])
def test_input_without_canonical_json_is_a_client_error_and_nothing_is_sent(
    row: dict[Any, Any]
) -> None:
    """Strict mode hashes Raw before signing, and ``call`` encodes its params: both refuse what
    has no canonical JSON with the ``ClientError`` a plain insert gives."""
    submitted: list[str] = []

    def answer(method: str, good: dict[str, Any]) -> dict[str, Any]:
        if method == "submit":
            submitted.append(method)
        return good

    client = Client("http://node", generate_private_key(), transport=fake_node(answer))
    for send in (lambda: client.insert("t", [row], wait=False),
                 lambda: client.insert("t", [row], strict=True, wait=False),
                 lambda: client.call("submit", {"Raw": [row]})):
        with pytest.raises(ClientError) as exc:
            send()
        assert exc.value.code == "temMALFORMED"
    assert submitted == []


def test_submit_many_keeps_the_answers_of_batches_before_one_refused_whole(
    tmp_path: Any,
) -> None:
    """The first batch is queued; the second exceeds the node's body limit (HTTP 413): its
    transactions get the node's code, and the first batch's answers are still returned."""
    from tablechain.platform.client import SUBMIT_BATCH, Statements
    from tablechain.platform.config import open_node
    from tablechain.platform.server import serve_in_thread

    from .conftest import FIELDS, make_settings

    with serve_in_thread(open_node(make_settings(tmp_path / "n")),
                         max_body_bytes=200_000) as srv:
        alice = Client(srv.url, generate_private_key())
        alice.create_table("bulk", FIELDS)
        start = alice.resync_sequence()
        body = Statements.insert("bulk", [], owner=alice.address)
        txs = [alice.sign({**body, "Raw": [{"id": i, "name": "n"}]}, start + i)
               for i in range(SUBMIT_BATCH + 10)]
        big = {**body, "Raw": [{"id": SUBMIT_BATCH, "name": "n" * 300_000}]}
        txs[SUBMIT_BATCH] = alice.sign(big, start + SUBMIT_BATCH)
        answers = alice.submit_many(txs)
        assert len(answers) == len(txs)
        first, second = answers[:SUBMIT_BATCH], answers[SUBMIT_BATCH:]
        assert [a["sequence"] for a in first if isinstance(a, dict)] == [
            start + i for i in range(SUBMIT_BATCH)]
        assert all(isinstance(a, ClientError) and a.code == "requestTooLarge" for a in second)
        assert alice.account_info()["next_sequence"] == start + SUBMIT_BATCH
