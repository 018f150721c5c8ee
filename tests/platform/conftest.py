"""A node on a temporary SQLite data directory, served in-process (Starlette TestClient) or by
a real uvicorn server on 127.0.0.1 on a free port."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from tablechain.crypto import PrivateKey, address_to_text, generate_private_key
from tablechain.ledger.node import Node
from tablechain.ledger.transactions import sign_transaction
from tablechain.platform.client import Client
from tablechain.platform.config import NodeSettings, init_datadir, open_node
from tablechain.platform.rpc import create_app
from tablechain.platform.server import BackgroundServer, serve_in_thread

NETWORK_ID = 4242
FIELDS = [{"field": "id", "type": "int", "PK": 1}, {"field": "name", "type": "varchar",
                                                       "length": 32}]


def make_settings(path: Any) -> NodeSettings:
    return init_datadir(path, network_id=NETWORK_ID, max_block_wait_ms=5, timestamp_ms=1)


class Rpc:
    """JSON-RPC over a Starlette TestClient."""

    def __init__(self, http: TestClient) -> None:
        self.http = http
        self.ids = 0

    def raw(self, body: bytes | str, **headers: str):  # type: ignore[no-untyped-def]
        return self.http.post("/", content=body, headers={"content-type": "application/json",
                                                          **headers})

    def __call__(self, method: str, params: Any = None) -> dict[str, Any]:
        self.ids += 1
        req: dict[str, Any] = {"jsonrpc": "2.0", "id": self.ids, "method": method}
        if params is not None:
            req["params"] = params
        response = self.http.post("/", json=req)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["id"] == self.ids
        return body

    def result(self, method: str, params: Any = None) -> Any:
        body = self(method, params)
        assert "error" not in body, body
        return body["result"]

    def error(self, method: str, params: Any = None) -> dict[str, Any]:
        body = self(method, params)
        assert "error" in body, body
        return body["error"]


class Signer:
    def __init__(self, key: PrivateKey | None = None) -> None:
        self.key = key or generate_private_key()
        self.address = address_to_text(self.key.address())
        self.sequence = 0

    def sign(self, body: dict[str, Any], sequence: int | None = None) -> dict[str, Any]:
        if sequence is None:
            self.sequence += 1
            sequence = self.sequence
        return sign_transaction({"NetworkID": NETWORK_ID, "Sequence": sequence, **body},
                                self.key)


def create_tx(name: str, fields: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"TransactionType": "TableListSet", "OpType": 1,
            "Tables": [{"Table": {"TableName": name}}], "Raw": fields or FIELDS}


def insert_tx(name: str, rows: list[dict[str, Any]], owner: str | None = None) -> dict[str, Any]:
    tx: dict[str, Any] = {"TransactionType": "SQLStatement", "OpType": 6,
                          "Tables": [{"Table": {"TableName": name}}], "Raw": rows}
    if owner:
        tx["Owner"] = owner
    return tx


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Node:
    return open_node(make_settings(tmp_path_factory.mktemp("node")))


@pytest.fixture(scope="module")
def http(node: Node) -> Iterator[TestClient]:
    with TestClient(create_app(node)) as client:
        yield client


@pytest.fixture(scope="module")
def rpc(http: TestClient) -> Rpc:
    return Rpc(http)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    node = open_node(make_settings(tmp_path_factory.mktemp("served")))
    with serve_in_thread(node) as srv:
        yield srv


@pytest.fixture()
def alice(server: BackgroundServer) -> Client:
    """A client with a fresh key, on the module's real server."""
    return Client(server.url, generate_private_key())


@pytest.fixture()
def bob(server: BackgroundServer) -> Client:
    return Client(server.url, generate_private_key())
