"""Signed insert transactions committed per second by one node, against its peers.

In the same run: (1) the node: signed SQLStatement inserts submitted (signature and shape
checked), cut into blocks, executed and committed; (2) the machine's signature ceiling for the
same scheme: cores x single-core verifications per second; (3) raw SQLite ``executemany`` of the
same rows into a plain table (the database's own ceiling).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench._common import Figure, report
from tablechain.crypto import PrivateKey, address_to_text, generate_private_key
from tablechain.ledger.chain import Genesis
from tablechain.ledger.node import Node, NodeConfig
from tablechain.ledger.transactions import sign_transaction

FIELDS = [
    {"field": "id", "type": "int", "PK": 1},
    {"field": "name", "type": "varchar", "length": 32},
    {"field": "amount", "type": "int"},
]
NETWORK = 1
ACCOUNTS = 64
CLIENTS = 4  # concurrent submitters; each owns ACCOUNTS / CLIENTS accounts


Certify = Callable[[PrivateKey], str]  # a key -> its PEM certificate chain


def _cert_fields(key: PrivateKey, certify: Certify | None, first: bool) -> dict:
    """What admission needs on a transaction: the chain first, then its fingerprint."""
    if certify is None:
        return {}
    chain = certify(key)
    if first:
        return {"Certificate": chain}
    from tablechain.ca import load_certificates

    return {"Certificate": load_certificates(chain.encode())[0].fingerprint}


def _signed_inserts(
    n: int, accounts: int, scheme: str, certify: Certify | None = None
) -> tuple[PrivateKey, list[dict]]:
    owner = generate_private_key(scheme)
    owner_addr = address_to_text(owner.address())
    keys = [generate_private_key(scheme) for _ in range(accounts)]
    txs: list[dict] = []
    seq = dict.fromkeys(range(accounts), 0)
    for i in range(n):
        k = i % accounts
        seq[k] += 1
        txs.append(
            sign_transaction(
                {
                    "TransactionType": "SQLStatement",
                    "OpType": 6,
                    "NetworkID": NETWORK,
                    "Sequence": seq[k],
                    "Owner": owner_addr,
                    "Tables": [{"Table": {"TableName": "bench"}}],
                    "Raw": [{"id": i, "name": f"row-{i}", "amount": i * 7}],
                    **_cert_fields(keys[k], certify, seq[k] == 1),
                },
                keys[k],
            )
        )
    return owner, txs


def measure_node(
    n: int,
    scheme: str,
    workdir: Path,
    admission: dict | None = None,
    certify: Certify | None = None,
) -> float:
    """Signed inserts committed per second by one in-process node (SQLite)."""
    owner, txs = _signed_inserts(n, ACCOUNTS, scheme, certify)
    genesis = Genesis(
        network_id=NETWORK, max_block_txs=2000, max_block_wait_ms=50, admission=admission or {}
    )
    node = Node(
        f"sqlite:///{workdir / 'node.db'}",
        genesis,
        generate_private_key(scheme),
        NodeConfig(mempool_size=n + 10),
    )
    setup = [
        sign_transaction(
            {
                "TransactionType": "TableListSet",
                "OpType": 1,
                "NetworkID": NETWORK,
                "Sequence": 1,
                "Tables": [{"Table": {"TableName": "bench"}}],
                "Raw": FIELDS,
                **_cert_fields(owner, certify, True),
            },
            owner,
        ),
        sign_transaction(
            {
                "TransactionType": "TableListSet",
                "OpType": 11,
                "NetworkID": NETWORK,
                "Sequence": 2,
                "Tables": [{"Table": {"TableName": "bench"}}],
                "User": "everyone",
                "Raw": [{"insert": True}],
                **_cert_fields(owner, certify, False),
            },
            owner,
        ),
    ]
    for tx in setup:
        node.submit(tx)
    node.produce_block()
    node.warm_up()  # steady state: the verification workers are running
    # As the node runs in service: several clients submit concurrently (each in batches of
    # 250, as an RPC batch would; each client signs for its own accounts, so per-account order
    # holds) while the block producer cuts and commits blocks.
    refused: list[Exception] = []

    def load(mine: list[dict]) -> None:
        for i in range(0, len(mine), 250):
            results = node.submit_many(mine[i : i + 250])
            refused.extend(r for r in results if isinstance(r, Exception))

    start = time.perf_counter()
    node.start()
    loaders = [
        threading.Thread(target=load, args=(txs[c::CLIENTS],)) for c in range(CLIENTS)
    ]
    for loader in loaders:
        loader.start()
    for loader in loaders:
        loader.join()
    if refused:
        raise SystemExit(f"{len(refused)} transactions refused at submission: {refused[0]}")
    # Every client's last transaction committed: then all of them are (per-account order).
    lasts = [node.wait_for(_hash(node, txs[-1 - c]), timeout=600) for c in range(CLIENTS)]
    elapsed = time.perf_counter() - start
    # The block of the last transaction (the in-memory head may lag the database by a moment).
    head = max(int(last["ledger_index"]) for last in lasts)
    receipts = [r for h in range(2, head + 1) for r in node.ledger.block(h)["receipts"]]
    node.stop()
    bad = [r for r in receipts if r["result"] != "tesSUCCESS"]
    if len(receipts) != n or bad:
        raise SystemExit(f"{len(receipts)} of {n} committed, {len(bad)} failed: {bad[:1]}")
    return n / elapsed


def _hash(node: Node, tx: dict) -> str:
    return node.check_transaction(tx).hash_hex


def measure_verify(n: int, scheme: str) -> float:
    """Pure signature verification on one core: the very check a node runs per transaction
    (``PublicKey.verify``; for secp256k1 that is public-key recovery and comparison)."""
    from tablechain.crypto import PublicKey

    key = generate_private_key(scheme)
    pub: PublicKey = key.public_key
    messages = [os.urandom(200) for _ in range(n)]
    sigs = [key.sign(m) for m in messages]
    start = time.perf_counter()
    for m, s in zip(messages, sigs, strict=True):
        if not pub.verify(m, s):
            raise SystemExit("verification failed")
    return n / (time.perf_counter() - start)


def measure_sqlite(n: int, workdir: Path) -> float:
    db = sqlite3.connect(workdir / "raw.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name VARCHAR(32), amount INTEGER)")
    rows = [(i, f"row-{i}", i * 7) for i in range(n)]
    start = time.perf_counter()
    db.executemany("INSERT INTO t VALUES (?, ?, ?)", rows)
    db.commit()
    rate = n / (time.perf_counter() - start)
    db.close()
    return rate


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench ledger_insert")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--scheme", default="secp256k1", choices=["secp256k1", "ed25519"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    n = 6000 if args.quick else 20000
    repeats = 1 if args.quick else args.repeats
    cores = os.cpu_count() or 1
    node_rates, verify_rates, sqlite_rates = [], [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as d:
            node_rates.append(measure_node(n, args.scheme, Path(d)))
            verify_rates.append(measure_verify(min(n, 5000), args.scheme))
            sqlite_rates.append(measure_sqlite(n, Path(d)))
    node_rate = statistics.median(node_rates)
    ceiling = statistics.median(verify_rates) * cores
    report(
        "ledger_insert",
        [
            Figure(
                "committed_tx_per_s",
                node_rate,
                "tx/s",
                f"signature ceiling ({cores} cores)",
                ceiling,
                ">= 0.5 of peer",
            ),
            Figure(
                "committed_tx_per_s",
                node_rate,
                "tx/s",
                "raw SQLite executemany rows/s",
                statistics.median(sqlite_rates),
                None,
            ),
            Figure(
                "verify_per_s_one_core", statistics.median(verify_rates), "tx/s", None, None, None
            ),
        ],
        {"transactions": n, "scheme": args.scheme, "repeats": repeats},
    )
    return 0
