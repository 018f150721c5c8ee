"""A validator that was down for thousands of blocks catches up over Ray.

The chain is made on one ledger (each block executed, committed and certified with a quorum of
the validators' precommit signatures, exactly what consensus stores) and copied to three of the
four validators' data directories; the fourth starts empty and must fetch every block with its
certificate from its peers, check the certificate and re-execute the block.

``TABLECHAIN_CATCHUP_BLOCKS`` sets the length (2,000 by default; ``make soak`` runs 10,000).
The catch-up rate is printed and recorded as the test property ``catchup_blocks_per_s``.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from tablechain.crypto import PrivateKey, address_to_text, generate_private_key
from tablechain.ledger.chain import Genesis, Ledger
from tablechain.ledger.consensus.messages import PRECOMMIT, QuorumCertificate, vote_payload
from tablechain.ledger.transactions import parse_transaction, sign_transaction
from tablechain.ledger.validator import validator_set_from_genesis
from tablechain.platform.client import Client
from tablechain.platform.cluster import RayCluster
from tablechain.platform.config import (
    ClusterLayout,
    init_cluster,
    load_genesis,
    load_settings,
    read_key_file,
)

pytestmark = pytest.mark.ray

BLOCKS = int(os.environ.get("TABLECHAIN_CATCHUP_BLOCKS", "2000"))
FIELDS = [{"field": "id", "type": "int", "PK": 1}, {"field": "v", "type": "int"}]
CONSENSUS = {"catchup_delay_ms": 50, "rebroadcast_ms": 500, "catchup_retry_ms": 1000}


def validator_keys(layout: ClusterLayout) -> dict[str, PrivateKey]:
    out = {}
    for m in layout.members:
        settings = load_settings(m.datadir)
        out[m.validator_id] = read_key_file(settings.key_path, settings.key_scheme)
    return out


def build_certified_chain(db_url: str, genesis: Genesis, keys: dict[str, PrivateKey],
                          owner: PrivateKey, blocks: int) -> dict[str, Any]:
    """``blocks`` one-transaction blocks (a create, then inserts), each with a quorum
    certificate signed by the first 2f+1 validators; returns the head block."""
    ledger = Ledger(db_url, genesis)
    try:
        validators = validator_set_from_genesis(genesis)
        addresses = {vid: address_to_text(k.address()) for vid, k in keys.items()}
        signers = validators.ids[: validators.quorum]
        for height in range(1, blocks + 1):
            if height == 1:
                body: dict[str, Any] = {"TransactionType": "TableListSet", "OpType": 1,
                                        "Tables": [{"Table": {"TableName": "t"}}], "Raw": FIELDS}
            else:
                body = {"TransactionType": "SQLStatement", "OpType": 6,
                        "Tables": [{"Table": {"TableName": "t"}}],
                        "Raw": [{"id": height, "v": height * 7}]}
            tx = sign_transaction({"NetworkID": genesis.network_id, "Sequence": height, **body},
                                  owner)
            parsed = parse_transaction(tx, ledger.suite, genesis.network_id, verify=False)
            proposer = addresses[validators.proposer(height, 0)]
            pending = ledger.execute([parsed], genesis.timestamp_ms + height, proposer)
            block_hash = bytes.fromhex(pending.hash)
            root = bytes.fromhex(pending.header.state_root)
            payload = vote_payload(validators.chain_id, PRECOMMIT, height, 0, block_hash, root)
            qc = QuorumCertificate(height, 0, block_hash, root,
                                   tuple((vid, keys[vid].sign(payload)) for vid in signers))
            pending.commit({"qc": qc.to_bytes().hex()})
        return ledger.block(blocks)
    finally:
        ledger.close()


def copy_database(source: Path, target: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(source) + suffix)
        if src.exists():
            shutil.copyfile(src, Path(str(target) + suffix))


def test_a_validator_down_for_thousands_of_blocks_catches_up(ray_session: Any,
                                                              tmp_path: Path) -> None:
    layout = init_cluster(tmp_path / "cluster", 4, max_block_wait_ms=20, timestamp_ms=1,
                          consensus=CONSENSUS)
    genesis = load_genesis(load_settings(layout.members[0].datadir))
    owner = generate_private_key()
    owner_addr = address_to_text(owner.address())
    made = time.monotonic()
    head = build_certified_chain(load_settings(layout.members[0].datadir).resolved_db_url,
                                 genesis, validator_keys(layout), owner, BLOCKS)
    made = time.monotonic() - made
    for m in layout.members[1:3]:
        copy_database(layout.members[0].datadir / "node.db", m.datadir / "node.db")

    cluster = RayCluster(layout)
    try:
        cluster.start(["v0", "v1", "v2"])
        assert cluster.wait_height(BLOCKS, ["v0", "v1", "v2"], timeout=30)
        started = time.monotonic()
        cluster.start(["v3"])
        cluster.wait_height(BLOCKS, ["v3"], timeout=60 + BLOCKS * 0.1)
        took = time.monotonic() - started
        rate = BLOCKS / took
        print(f"\nbuilt {BLOCKS} certified blocks in {made:.1f} s; v3 caught up in {took:.1f} s "
              f"({rate:.0f} blocks/s, including its actor start)")

        caught = cluster.call("v3", "block", BLOCKS)
        assert caught["hash"] == head["hash"]
        assert caught["header"]["state_root"] == head["header"]["state_root"]
        assert caught["certificate"] == head["certificate"]
        rows = cluster.call("v3", "table_rows", owner_addr, "t")
        assert len(rows) == BLOCKS - 1
        assert rows == cluster.call("v0", "table_rows", owner_addr, "t")

        # The caught-up validator takes part again: a transaction sent to it commits everywhere.
        urls = cluster.endpoints()
        with Client(urls["v3"], owner) as client:
            record = client.insert("t", [{"id": 0, "v": 0}])
        height = record["ledger_index"]
        assert height == BLOCKS + 1
        cluster.wait_height(height, timeout=60)
        roots = {vid: cluster.call(vid, "block", height)["header"]["state_root"]
                 for vid in cluster.ids}
        assert len(set(roots.values())) == 1, roots
    finally:
        cluster.shutdown()
