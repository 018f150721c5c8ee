"""How fast a node's data can be checked and copied, against the database's own scan.

In the same run, on one chain of signed inserts (SQLite): (1) ``verify_ledger`` over tables and
state (rows per second: every row's LtHash recomputed), against a raw SQLite full scan of the
same table; (2) the whole check with the chain's blocks (transactions per second, without and
with signatures); (3) a read replica following the chain (``Follower``: certificates,
signatures and re-execution), against the node that built it (blocks executed without parsing
or verifying, the rate it committed them at).
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import Figure, report
from bench.ledger_insert import FIELDS, NETWORK, _signed_inserts
from tablechain.ledger.chain import Genesis, Ledger
from tablechain.ledger.integrity import verify_ledger
from tablechain.ledger.transactions import parse_transaction, sign_transaction
from tablechain.platform.follow import Follower


class _Source:
    """What a follower asks a node for, answered from a ledger in this process (no HTTP: the
    figure is the follower's own cost)."""

    url = "in-process"

    def __init__(self, source: Ledger) -> None:
        self.source = source

    def server_info(self) -> dict[str, Any]:
        return {"chain": self.source.genesis.hash()}

    def ledger_closed(self) -> dict[str, Any]:
        return {"ledger_index": self.source.height}

    def ledger(self, height: int, expand: bool = False) -> dict[str, Any]:
        return self.source.block(height)


def _chain(workdir: Path, n: int) -> tuple[Ledger, float]:
    owner, txs = _signed_inserts(n, 64, "secp256k1")
    source = Ledger(f"sqlite:///{workdir / 'source.db'}", Genesis(network_id=NETWORK))
    suite = source.suite
    setup = [
        sign_transaction({"TransactionType": "TableListSet", "OpType": 1, "NetworkID": NETWORK,
                          "Sequence": 1, "Tables": [{"Table": {"TableName": "bench"}}],
                          "Raw": FIELDS}, owner),
        sign_transaction({"TransactionType": "TableListSet", "OpType": 11, "NetworkID": NETWORK,
                          "Sequence": 2, "Tables": [{"Table": {"TableName": "bench"}}],
                          "User": "everyone", "Raw": [{"insert": True}]}, owner),
    ]
    source.execute([parse_transaction(t, suite, NETWORK) for t in setup], 1, "bench").commit()
    parsed = [parse_transaction(t, suite, NETWORK) for t in txs]
    start = time.perf_counter()
    for i in range(0, n, 2000):
        source.execute(parsed[i : i + 2000], 2 + i, "bench").commit()
    return source, n / (time.perf_counter() - start)


def _raw_scan(path: Path) -> float:
    db = sqlite3.connect(path)
    try:
        (name,) = db.execute(
            "SELECT name FROM sqlite_master WHERE name LIKE 't!_%' ESCAPE '!'").fetchone()
        start = time.perf_counter()
        rows = len(db.execute(f'SELECT * FROM "{name}"').fetchall())
        return rows / (time.perf_counter() - start)
    finally:
        db.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench integrity")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    n = 6000 if args.quick else 40000
    with tempfile.TemporaryDirectory() as d:
        workdir = Path(d)
        source, committed_rate = _chain(workdir, n)
        try:
            start = time.perf_counter()
            tables = verify_ledger(source, blocks=False)
            tables_rate = tables.rows / (time.perf_counter() - start)
            start = time.perf_counter()
            whole = verify_ledger(source)
            chain_rate = whole.transactions / (time.perf_counter() - start)
            start = time.perf_counter()
            signed = verify_ledger(source, signatures=True)
            signed_rate = signed.transactions / (time.perf_counter() - start)
            if not (tables.ok and whole.ok and signed.ok):
                raise SystemExit(f"verification failed: {whole.problems[:1]}")
            scan_rate = _raw_scan(workdir / "source.db")
            replica = Ledger(f"sqlite:///{workdir / 'replica.db'}", source.genesis)
            try:
                start = time.perf_counter()
                Follower(replica, _Source(source)).sync()  # type: ignore[arg-type]
                follow_rate = n / (time.perf_counter() - start)
                if replica.head != source.head:
                    raise SystemExit("the replica did not reach the source's head")
            finally:
                replica.close()
        finally:
            source.close()
    report("integrity", [
        Figure("verify_tables_rows_per_s", tables_rate, "rows/s", "raw SQLite full scan",
               scan_rate),
        Figure("verify_chain_tx_per_s", chain_rate, "tx/s"),
        Figure("verify_chain_with_signatures_tx_per_s", signed_rate, "tx/s"),
        Figure("follow_tx_per_s", follow_rate, "tx/s", "the node executing the same blocks",
               committed_rate),
    ], {"transactions": n})
    return 0
