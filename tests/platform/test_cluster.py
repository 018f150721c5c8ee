"""Four validators as Ray actors: any validator serves clients, gossip does not amplify, status
shows who leads and who is behind, and a validator SIGKILLed under load restarts and catches up
to the same state root and the same rows."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tablechain.crypto import PrivateKey, address_to_text, generate_private_key
from tablechain.ledger.transactions import sign_transaction
from tablechain.platform.cli import app
from tablechain.platform.client import Client
from tablechain.platform.cluster import RayCluster, cluster_status, cluster_urls
from tablechain.platform.config import init_cluster, load_cluster

pytestmark = pytest.mark.ray

NETWORK_ID = 5151
FIELDS = [{"field": "id", "type": "int", "PK": 1}, {"field": "who", "type": "varchar",
                                                     "length": 42}]
CONSENSUS = {"timeout_propose_ms": 1500, "catchup_delay_ms": 100, "rebroadcast_ms": 500,
             "catchup_retry_ms": 1000}


@pytest.fixture(scope="module")
def cluster(ray_session: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    layout = init_cluster(tmp_path_factory.mktemp("cluster") / "c", 4, network_id=NETWORK_ID,
                          max_block_wait_ms=30, timestamp_ms=1, consensus=CONSENSUS)
    c = RayCluster(layout)
    try:
        c.start()
        yield c
    finally:
        c.shutdown()


@pytest.fixture(scope="module")
def table(cluster: RayCluster) -> tuple[PrivateKey, str]:
    """A table ``t`` that everyone may insert into, created through v0."""
    owner = generate_private_key()
    with Client(cluster.endpoints()["v0"], owner) as client:
        client.create_table("t", FIELDS)
        client.grant("t", "everyone", insert=True)
    return owner, address_to_text(owner.address())


def insert_tx(key: PrivateKey, seq: int, owner: str, row_id: int) -> dict[str, Any]:
    return sign_transaction({"NetworkID": NETWORK_ID, "Sequence": seq,
                             "TransactionType": "SQLStatement", "OpType": 6, "Owner": owner,
                             "Tables": [{"Table": {"TableName": "t"}}],
                             "Raw": [{"id": row_id, "who": address_to_text(key.address())}]},
                            key)


def submit_all(cluster: RayCluster, vid: str, txs: list[dict[str, Any]]) -> list[str]:
    results = cluster.call(vid, "submit_many", txs)
    assert all(code is None for _, code in results), results
    return [h for h, _ in results]


def wait_committed(cluster: RayCluster, vid: str, hashes: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        times = cluster.call(vid, "commit_times", hashes)
        if all(t is not None for t in times):
            return
        if time.monotonic() > deadline:
            missing = sum(t is None for t in times)
            raise AssertionError(f"{missing} of {len(hashes)} transactions never committed on "
                                 f"{vid}: {cluster.status()[vid]}")
        time.sleep(0.1)


def test_a_transaction_sent_to_one_validator_is_read_from_another(
        cluster: RayCluster, table: tuple[PrivateKey, str]) -> None:
    owner, owner_addr = table
    urls = cluster.endpoints()
    assert sorted(urls) == ["v0", "v1", "v2", "v3"]
    assert all(u.startswith("http://127.0.0.1:") for u in urls.values())
    writer = generate_private_key()
    with Client(urls["v1"], writer) as client:
        record = client.insert("t", [{"id": 1, "who": "through v1"}], owner=owner_addr)
    assert record["result"] == "tesSUCCESS"
    cluster.wait_height(record["ledger_index"])
    with Client(urls["v3"], owner) as reader:
        rows = reader.get(owner_addr, "t", [[], {"id": 1}])
        committed = reader.tx(record["hash"])
    assert rows == [{"id": 1, "who": "through v1"}]
    assert committed["ledger_index"] == record["ledger_index"]
    block = cluster.call("v2", "block", record["ledger_index"])
    assert "qc" in block["certificate"]  # the quorum certificate is stored with the block


def test_gossip_is_not_amplified(cluster: RayCluster, table: tuple[PrivateKey, str]) -> None:
    _, owner_addr = table
    before = cluster.status()
    writers = [generate_private_key() for _ in range(5)]
    txs = [insert_tx(w, seq, owner_addr, 1000 + 10 * i + seq)
           for i, w in enumerate(writers) for seq in range(1, 9)]
    hashes = submit_all(cluster, "v2", txs)
    for vid in cluster.ids:
        wait_committed(cluster, vid, hashes)
    after = cluster.status()
    for vid in cluster.ids:
        originated = after[vid]["transport"]["gossiped_txs"] - before[vid]["transport"]["gossiped_txs"]
        assert originated == (len(txs) if vid == "v2" else 0), (vid, originated)
        for peer, link in after[vid]["transport"]["gossip"].items():
            sent = link["sent"] - before[vid]["transport"]["gossip"][peer]["sent"]
            assert sent == (len(txs) if vid == "v2" else 0), (vid, peer, sent)


def test_status_shows_heights_leaders_and_who_is_behind(cluster: RayCluster,
                                                        table: tuple[PrivateKey, str]) -> None:
    rows = cluster_status(cluster_urls(cluster.layout))
    assert [r["validator"] for r in rows] == ["v0", "v1", "v2", "v3"]
    for r in rows:
        assert "error" not in r, r
        assert r["height"] >= 1 and r["behind"] >= 0
        assert r["proposer"] in cluster.ids
        assert r["step"] in ("propose", "prevote", "precommit")
    result = CliRunner().invoke(app, ["cluster", "status", "--dir", str(cluster.layout.root),
                                      "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert [r["validator"] for r in shown] == ["v0", "v1", "v2", "v3"]
    assert all(isinstance(r["height"], int) for r in shown)
    text = CliRunner().invoke(app, ["cluster", "status", "--dir", str(cluster.layout.root)])
    assert text.exit_code == 0 and "proposer" in text.stdout and "v3" in text.stdout


def test_status_of_a_directory_without_a_cluster_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["cluster", "status", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "tecBAD_CONFIG" in result.output
    # the hint names the command that makes cluster.json, not `node init`
    assert "run `tablechain cluster init` first" in " ".join(result.output.split())


def test_sigkill_mid_block_restarts_and_catches_up(cluster: RayCluster,
                                                   table: tuple[PrivateKey, str]) -> None:
    _, owner_addr = table
    writers = [generate_private_key() for _ in range(4)]
    sent: list[str] = []
    stop = threading.Event()

    def load() -> None:  # a steady stream of small blocks through v0 and v1
        seq = 0
        while not stop.is_set() and seq < 400:
            seq += 1
            for i, w in enumerate(writers):
                vid = "v0" if i % 2 == 0 else "v1"
                sent.extend((vid, h) for h in submit_all(
                    cluster, vid, [insert_tx(w, seq, owner_addr, 10_000 + 1000 * i + seq)]))
            time.sleep(0.01)

    loader = threading.Thread(target=load)
    loader.start()
    try:
        time.sleep(1.0)
        # SIGKILL the worker process mid-block: while it holds an executed, uncommitted block
        # (it has voted on a proposal), if that is seen within a few seconds.
        deadline = time.monotonic() + 5
        while cluster.call("v3", "status")["step"] == "propose" and time.monotonic() < deadline:
            pass
        old = cluster.kill("v3")
        info = cluster.wait_restarted("v3", old)
        assert info["pid"] != old
        time.sleep(1.0)
    finally:
        stop.set()
        loader.join()
    assert len(sent) > 40
    for vid in ("v0", "v1"):
        wait_committed(cluster, vid, [h for v, h in sent if v == vid])
    head = max(cluster.wait_height(0).values())
    assert info["height"] < head  # it restarted behind: the blocks it missed came from peers
    cluster.wait_height(head, timeout=90)
    blocks = {vid: cluster.call(vid, "block", head) for vid in cluster.ids}
    assert len({b["hash"] for b in blocks.values()}) == 1
    assert len({b["header"]["state_root"] for b in blocks.values()}) == 1
    tables = {vid: cluster.call(vid, "table_rows", owner_addr, "t") for vid in cluster.ids}
    assert len(tables["v3"]) >= len(sent)
    for vid in ("v0", "v1", "v2"):
        assert tables["v3"] == tables[vid]  # row by row, in the ledger's row order
    assert load_cluster(cluster.layout.root).ids == cluster.ids


def test_down_without_a_ray_cluster_to_reach_is_a_clear_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``ray.init(address=...)`` raises ConnectionError when nothing runs there (``auto`` finds
    no instance); the command reports it instead of printing a traceback."""
    from tablechain.platform import cluster as cluster_module
    from tablechain.platform.config import init_cluster

    class NoRay:
        @staticmethod
        def is_initialized() -> bool:
            return False

        @staticmethod
        def init(**kwargs: object) -> None:
            raise ConnectionError("Could not find any running Ray instance.")

    init_cluster(tmp_path / "c", 1)
    monkeypatch.setattr(cluster_module, "import_ray", lambda: NoRay)
    result = CliRunner().invoke(app, ["cluster", "down", "--dir", str(tmp_path / "c")])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "error: tecCLUSTER: cannot connect to a Ray cluster at auto" in " ".join(
        result.stderr.split())
