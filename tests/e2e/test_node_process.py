"""A real node process: SIGKILL in the middle of a load, restart from its data directory."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from tablechain.crypto import generate_private_key
from tablechain.ledger.chain import Ledger
from tablechain.platform.cli import app
from tablechain.platform.client import Client, ClientError
from tablechain.platform.config import init_datadir, load_genesis, load_settings
from tablechain.platform.demo import NodeProcess

FIELDS = [{"field": "id", "type": "int", "PK": 1}, {"field": "who", "type": "varchar",
                                                       "length": 42}]


def _all_rows(client: Client, owner: str, name: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    while True:
        page = client.get(owner, name, [[], {"$order": [{"id": 1}]},
                                        {"$limit": {"index": len(rows), "total": 1000}}])
        rows.extend(page)
        if len(page) < 1000:
            return rows


def test_sigkill_mid_load_recovers_to_the_last_committed_block(tmp_path: Path) -> None:
    datadir = tmp_path / "node"
    init_datadir(datadir, max_block_wait_ms=100, max_block_txs=1000)
    node = NodeProcess(datadir)
    url = node.start()
    try:
        owner = Client(url, generate_private_key())
        owner.create_table("load", FIELDS)
        owner.grant("load", "everyone", insert=True)
        start_height = owner.ledger_closed()["ledger_index"]

        writers = [Client(url, generate_private_key()) for _ in range(3)]
        submitted: dict[str, list[int]] = {}  # tx hash -> row ids
        stop = threading.Event()

        def load(w: int, client: Client) -> None:
            i = 0
            while not stop.is_set():
                row_ids = [w * 1_000_000 + 2 * i, w * 1_000_000 + 2 * i + 1]
                try:
                    answer = client.insert("load", [{"id": r, "who": client.address}
                                                    for r in row_ids],
                                           owner=owner.address, wait=False)
                except ClientError:
                    return  # the node is gone
                submitted[answer["hash"]] = row_ids
                i += 1

        threads = [threading.Thread(target=load, args=(w, c)) for w, c in enumerate(writers)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while (owner.ledger_closed()["ledger_index"] < start_height + 6 or len(submitted) < 40):
            assert time.monotonic() < deadline, "the load did not get going"
            time.sleep(0.02)
        assert node.proc is not None
        os.kill(node.proc.pid, signal.SIGKILL)  # mid-load: more transactions are in flight
        node.proc.wait()
        node.proc = None
        stop.set()
        for t in threads:
            t.join(10)

        url = node.start()  # recover from the data directory
        owner = Client(url, owner.key)
        head = owner.ledger_closed()["ledger_index"]
        assert head >= start_height + 6

        committed: set[str] = set()
        expected: list[int] = []
        accounts = {w.address for w in writers}
        for height in range(start_height + 1, head + 1):
            block = owner.ledger(height, expand=True)
            for receipt, tx in zip(block["receipts"], block["transactions"], strict=True):
                assert receipt["result"] == "tesSUCCESS", receipt
                assert tx["Account"] in accounts
                committed.add(receipt["tx_hash"])
                expected.extend(row["id"] for row in tx["Raw"])
        # (a transaction may have committed just before the kill without its answer arriving)
        assert len(committed - set(submitted)) <= len(writers)
        rows = _all_rows(owner, owner.address, "load")
        assert [r["id"] for r in rows] == sorted(expected)  # every committed row, nothing else
        lost = set(submitted) - committed  # queued but not yet in a block when killed
        for tx_hash in lost:
            with_error = None
            try:
                owner.tx(tx_hash)
            except ClientError as exc:
                with_error = exc.code
            assert with_error == "txnNotFound"

        # the chain replays to the same state root, block by block
        result = CliRunner().invoke(app, ["node", "rebuild", str(datadir), "--json"])
        assert result.exit_code == 0, result.output
        rebuilt = json.loads(result.stdout)
        head_block = owner.ledger(rebuilt["height"])
        assert rebuilt["height"] >= head
        assert rebuilt["matches_chain"] is True
        assert rebuilt["state_root"] == head_block["header"]["state_root"]
        assert rebuilt["ledger_hash"] == head_block["ledger_hash"]

        # and it keeps serving: the writers' sequences resynchronise after the lost queue
        for client in writers:
            again = Client(url, client.key)
            again._next_sequence = 10_000  # a stale local counter is repaired by a resync
            record = again.insert("load", [{"id": -1 - writers.index(client),
                                            "who": again.address}], owner=owner.address)
            assert record["result"] == "tesSUCCESS"

        # a second node on the same data directory is refused while this one runs
        second = CliRunner().invoke(app, ["node", "start", str(datadir), "--port", "0"])
        assert second.exit_code == 1 and "tecDATADIR_LOCKED" in second.stderr

        # a clean stop (SIGINT, as Ctrl-C) commits what is still queued
        queued = [owner.insert("load", [{"id": -100 - i, "who": owner.address}],
                               owner=owner.address, wait=False)["hash"] for i in range(3)]
    finally:
        code = node.stop(sig=signal.SIGINT)
    assert code == 0, node.log_text()[-3000:]
    settings = load_settings(datadir)
    ledger = Ledger(settings.resolved_db_url, load_genesis(settings))
    try:
        assert [ledger.transaction(h)["result"] for h in queued] == ["tesSUCCESS"] * 3
    finally:
        ledger.close()
