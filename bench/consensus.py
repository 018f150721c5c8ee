"""BFT consensus on Ray: 4 validators as Ray actors on this machine, under a load of signed inserts.

In the same run:

1. the signature-verification ceiling for 4 validators: cores x single-core secp256k1
   verifications per second (``PublicKey.verify``, recovery and comparison, on pre-made
   signatures of the same transactions) / 4, since every validator verifies every transaction once;
2. saturation: every pre-signed insert is submitted as fast as the validators admit them
   (batches through the actors' ``submit_many``, each account's transactions to one validator,
   the accounts spread over all four); committed transactions per second and commit latency;
3. paced: the same kind of load offered at a fixed rate below the measured throughput; commit
   latency p50 / p99 (submit -> committed on the validator it was submitted to, per
   transaction, from ``time.monotonic()`` stamps taken in the load generator and in the actor).

Anchors: ChainSQL's PoP measured 7,092 TPS with 4 validators on four 4-core/8-thread servers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench._common import Figure, busy_cpu_seconds, report
from tablechain.crypto import PrivateKey, address_to_text, generate_private_key
from tablechain.crypto.keys import public_key_from_bytes
from tablechain.ledger.transactions import sign_transaction, signing_bytes

FIELDS = [
    {"field": "id", "type": "int", "PK": 1},
    {"field": "name", "type": "varchar", "length": 32},
    {"field": "amount", "type": "int"},
]
NETWORK = 77
VALIDATORS = 4
CHAINSQL_TPS = 7092.0


def _insert(key: PrivateKey, seq: int, owner: str, row_id: int) -> dict[str, Any]:
    return sign_transaction({"TransactionType": "SQLStatement", "OpType": 6, "NetworkID": NETWORK,
                             "Sequence": seq, "Owner": owner,
                             "Tables": [{"Table": {"TableName": "bench"}}],
                             "Raw": [{"id": row_id, "name": f"row-{row_id}",
                                      "amount": row_id * 7}]}, key)


def presign(n: int, accounts: int, owner: str, first_id: int,
            keys: list[PrivateKey], next_seq: list[int]) -> list[list[dict[str, Any]]]:
    """``n`` inserts from ``accounts`` keys, grouped by the validator each account uses
    (account k -> validator k % 4), in submission order."""
    per_validator: list[list[dict[str, Any]]] = [[] for _ in range(VALIDATORS)]
    for i in range(n):
        k = i % accounts
        next_seq[k] += 1
        per_validator[k % VALIDATORS].append(_insert(keys[k], next_seq[k], owner, first_id + i))
    return per_validator


def verification_rate(txs: list[dict[str, Any]], repeats: int) -> float:
    """Single-core secp256k1 verifications per second, median: the check a validator runs on
    each transaction (``PublicKey.verify``: public-key recovery and comparison)."""
    checks = [(public_key_from_bytes("secp256k1", bytes.fromhex(tx["SigningPubKey"])),
               signing_bytes(tx), bytes.fromhex(tx["TxnSignature"])) for tx in txs]
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for key, message, signature in checks:
            if not key.verify(message, signature):
                raise RuntimeError("a pre-made signature does not verify")
        rates.append(len(checks) / (time.perf_counter() - start))
    return statistics.median(rates)


class LoadRun:
    """Submit per-validator batches (one call in flight per validator, so each account's
    transactions arrive in order), optionally paced; then collect commit times."""

    def __init__(self, cluster: Any, per_validator: list[list[dict[str, Any]]], batch: int,
                 rate: float | None) -> None:
        self.cluster = cluster
        self.per_validator = per_validator
        self.batch = batch
        self.rate = rate
        self.submitted: list[list[tuple[str, float]]] = [[] for _ in range(VALIDATORS)]
        self.rejected: dict[str, int] = {}
        self._lock = threading.Lock()

    def _feed(self, index: int, start: float) -> None:
        vid = f"v{index}"
        txs = self.per_validator[index]
        interval = None if self.rate is None else self.batch / (self.rate / VALIDATORS)
        for k, offset in enumerate(range(0, len(txs), self.batch)):
            if interval is not None:
                delay = start + k * interval - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            chunk = txs[offset: offset + self.batch]
            sent_at = time.monotonic()
            results = self.cluster.call(vid, "submit_many", chunk, timeout=300)
            for tx_hash, code in results:
                if code is None:
                    self.submitted[index].append((tx_hash, sent_at))
                else:
                    with self._lock:
                        self.rejected[code] = self.rejected.get(code, 0) + 1

    def run(self, timeout: float) -> dict[str, Any]:
        cpu_start = busy_cpu_seconds()
        start = time.monotonic()
        feeders = [threading.Thread(target=self._feed, args=(i, start))
                   for i in range(VALIDATORS)]
        for t in feeders:
            t.start()
        for t in feeders:
            t.join()
        submitted_done = time.monotonic()
        total = sum(len(s) for s in self.submitted)
        deadline = time.monotonic() + timeout
        latencies: list[float] = []
        commits: list[float] = []
        pending = [list(s) for s in self.submitted]
        # Wait cheaply: a validator's transactions are all committed once the last one it
        # admitted is (each account's transactions went to one validator, in Sequence order,
        # and a block keeps that order), so only that one is polled; every commit time is
        # fetched once at the end (polling thousands of hashes loaded the validators).
        while time.monotonic() < deadline:
            waiting = [i for i in range(VALIDATORS) if pending[i]
                       and self.cluster.call(f"v{i}", "commit_times",
                                             [pending[i][-1][0]])[0] is None]
            if not waiting:
                break
            time.sleep(0.1)
        while True:  # normally once (if not, keep polling all of them until the deadline)
            for i in range(VALIDATORS):
                if not pending[i]:
                    continue
                times = self.cluster.call(f"v{i}", "commit_times", [h for h, _ in pending[i]])
                left = []
                for (tx_hash, sent_at), committed in zip(pending[i], times, strict=True):
                    if committed is None:
                        left.append((tx_hash, sent_at))
                    else:
                        latencies.append(committed - sent_at)
                        commits.append(committed)
                pending[i] = left
            if not any(pending) or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        # Busy CPU of the whole machine until the last commit was seen (the polling above
        # adds a little), per committed transaction.
        cpu_end = busy_cpu_seconds()
        cpu_per_tx = None
        if cpu_start is not None and cpu_end is not None and commits:
            cpu_per_tx = (cpu_end - cpu_start) / len(commits) * 1e6
        lost = sum(len(p) for p in pending)
        elapsed = (max(commits) - start) if commits else float("nan")
        latencies.sort()

        def pct(p: float) -> float:
            return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

        return {
            "submitted": total, "committed": len(commits), "not_committed": lost,
            "rejected": dict(self.rejected), "seconds": elapsed,
            "submit_seconds": submitted_done - start,
            "tx_per_s": len(commits) / elapsed if commits else 0.0,
            "p50_ms": pct(0.50) if latencies else float("nan"),
            "p99_ms": pct(0.99) if latencies else float("nan"),
            "cpu_us_per_tx": cpu_per_tx,
        }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench consensus")
    parser.add_argument("--quick", action="store_true", help="a run of about a minute")
    parser.add_argument("--txs", type=int, default=None, help="inserts in the saturation run")
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--batch", type=int, default=250, help="transactions per submit call")
    parser.add_argument("--paced-seconds", type=float, default=None)
    parser.add_argument("--paced-fraction", type=float, default=0.4,
                        help="offered rate in the paced run, as a fraction of the throughput")
    parser.add_argument("--max-block-txs", type=int, default=2000)
    parser.add_argument("--max-block-wait-ms", type=int, default=100)
    parser.add_argument("--timeout-propose-ms", type=int, default=3000,
                        help="round 0 waits this long for a proposal (the proposer executes "
                             "the block first: too short a wait wastes rounds under load)")
    parser.add_argument("--address", default=None, help="use a running Ray cluster")
    args = parser.parse_args(argv)
    # A saturation run long enough (~13 s here) that filling and draining the pipeline (the
    # first block waits for gossip and verification, the last for its votes) weighs little: at
    # 16,000 inserts those edges cost ~10% of the measured rate.
    n = args.txs or (3000 if args.quick else 48000)
    paced_seconds = args.paced_seconds or (6.0 if args.quick else 10.0)
    cores = os.cpu_count() or 1

    from tablechain.platform.cluster import RayCluster, init_ray
    from tablechain.platform.config import init_cluster

    owner = generate_private_key()
    owner_addr = address_to_text(owner.address())
    keys = [generate_private_key() for _ in range(args.accounts)]
    next_seq = [0] * args.accounts
    t0 = time.perf_counter()
    saturation_txs = presign(n, args.accounts, owner_addr, 1, keys, next_seq)
    sign_seconds = time.perf_counter() - t0
    flat = [tx for group in saturation_txs for tx in group]
    verify_1core = verification_rate(flat[:2000], 3 if not args.quick else 1)
    ceiling = cores * verify_1core / VALIDATORS
    print(f"pre-signed {n} inserts in {sign_seconds:.1f} s; single-core verification "
          f"{verify_1core:,.0f}/s -> ceiling for {VALIDATORS} validators on {cores} cores "
          f"{ceiling:,.0f} tx/s", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-consensus-") as tmp:
        layout = init_cluster(Path(tmp) / "cluster", VALIDATORS, network_id=NETWORK,
                              max_block_txs=args.max_block_txs,
                              max_block_wait_ms=args.max_block_wait_ms,
                              consensus={"timeout_propose_ms": args.timeout_propose_ms})
        ray = init_ray(args.address, validators=layout.ids, num_cpus=cores,
                       namespace=layout.namespace)
        cluster = RayCluster(layout)
        try:
            started = time.perf_counter()
            cluster.start()
            print(f"4 validator actors up in {time.perf_counter() - started:.1f} s", flush=True)
            setup = [sign_transaction({"TransactionType": "TableListSet", "OpType": op,
                                       "NetworkID": NETWORK, "Sequence": seq,
                                       "Tables": [{"Table": {"TableName": "bench"}}], **body},
                                      owner)
                     for seq, op, body in ((1, 1, {"Raw": FIELDS}),
                                           (2, 11, {"User": "everyone",
                                                    "Raw": [{"insert": True}]}))]
            setup_run = LoadRun(cluster, [setup, [], [], []], 10, None).run(60)
            if setup_run["committed"] != 2:
                raise RuntimeError(f"setup transactions did not commit: {setup_run}")
            height0 = cluster.call("v0", "info")["height"]

            saturated = LoadRun(cluster, saturation_txs, args.batch, None).run(300)
            print(f"saturation: {saturated}", flush=True)
            height1 = max(cluster.wait_height(0).values())

            offered = max(50.0, args.paced_fraction * saturated["tx_per_s"])
            paced_n = int(offered * paced_seconds)
            paced_txs = presign(paced_n, args.accounts, owner_addr, n + 1, keys, next_seq)
            batch = max(1, min(args.batch, int(offered / VALIDATORS / 10)))  # ~10 calls/s each
            paced = LoadRun(cluster, paced_txs, batch, offered).run(300)
            print(f"paced at {offered:,.0f} tx/s offered: {paced}", flush=True)
            status = cluster.status()
            roots = {vid: s["state_root"] for vid, s in status.items()}
            heights = {vid: s["height"] for vid, s in status.items()}
        finally:
            cluster.shutdown()
            ray.shutdown()

    blocks = height1 - height0
    figures = [
        Figure("committed_tx_per_s", saturated["tx_per_s"], "tx/s",
               "signature ceiling (cores x verify/s / 4)", ceiling, ">= 3000 tx/s, >= 0.5 of peer"),
        Figure("committed_tx_per_s_vs_chainsql", saturated["tx_per_s"], "tx/s",
               "ChainSQL PoP, 4 servers (deck)", CHAINSQL_TPS, None),
        Figure("commit_latency_p50_paced", paced["p50_ms"], "ms", None, None, "< 1000 ms"),
        Figure("commit_latency_p99_paced", paced["p99_ms"], "ms"),
        Figure("paced_offered_tx_per_s", offered, "tx/s"),
        Figure("paced_committed_tx_per_s", paced["tx_per_s"], "tx/s"),
        Figure("commit_latency_p50_saturated", saturated["p50_ms"], "ms"),
        Figure("commit_latency_p99_saturated", saturated["p99_ms"], "ms"),
        Figure("secp256k1_verify_per_s_one_core", verify_1core, "verif/s"),
        Figure("machine_cpu_us_per_committed_tx_saturated",
               saturated["cpu_us_per_tx"] or float("nan"), "us"),
        Figure("txs_per_block_saturated", saturated["committed"] / max(1, blocks), "tx"),
    ]
    report("consensus", figures, {
        "validators": VALIDATORS, "transport": "ray actors", "saturation": saturated,
        "paced": paced, "heights": heights, "same_state_root": len(set(roots.values())) == 1,
        "max_block_txs": args.max_block_txs, "max_block_wait_ms": args.max_block_wait_ms,
        "timeout_propose_ms": args.timeout_propose_ms, "blocks_saturated": blocks,
    })
    return 0
