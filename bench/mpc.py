"""Secret-sharing benchmark against MPyC, measured in the same run: ``python -m bench mpc``.

(a) 3-party secure multiplications per second on 1,000,000-element vectors, (b) secure
less-than comparisons per second, (c) a 100x100 fixed-point matrix product, each for both
trust models of ``tablechain.mpc`` -- "replicated" (ABY3-style, honest majority, no dealer) and
"dealer" (3 parties + trusted dealer, whose triple generation is timed in the same loop) -- and
for MPyC 0.11 run as three local processes on 127.0.0.1 (Shamir, t=1, honest majority).
Then (d)(e), Paillier and PSI, from ``bench/_mpc_he.py`` when that module is present.

All operations are vectorised: one call multiplies or compares whole vectors, and "per second"
counts element operations. --quick shrinks the MPyC sizes (and our comparison vector) so the
run stays under a minute; sizes are printed in the metric names.
"""

from __future__ import annotations

import argparse
import importlib
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import Figure, median_rate, report
from tablechain.mpc import DealerSharing, ReplicatedSharing, SecretSharing

MPYC_PARTY = r'''
import json, sys, time
import numpy as np
from mpyc.runtime import mpc

async def main(n_mul, n_lt, dim):
    await mpc.start()
    secint = mpc.SecInt(64)
    secfxp = mpc.SecFxp(64)
    out = {}
    rng = np.random.default_rng(1)
    a = rng.integers(-2**20, 2**20, n_mul)
    b = rng.integers(-2**20, 2**20, n_mul)
    x = mpc.input(secint.array(a), senders=0)
    y = mpc.input(secint.array(b), senders=0)
    await mpc.barrier()
    t = time.perf_counter()
    z = x * y
    await mpc.barrier()
    r = await mpc.output(z[:8])
    out['mul_s'] = time.perf_counter() - t
    out['mul_ok'] = bool(np.array_equal(np.array(r, dtype=np.int64), (a * b)[:8]))
    a = rng.integers(-2**30, 2**30, n_lt)
    b = rng.integers(-2**30, 2**30, n_lt)
    x = mpc.input(secint.array(a), senders=0)
    y = mpc.input(secint.array(b), senders=0)
    await mpc.barrier()
    t = time.perf_counter()
    r = await mpc.output(x < y)
    out['lt_s'] = time.perf_counter() - t
    out['lt_ok'] = bool(np.array_equal(np.array(r, dtype=bool), a < b))
    A = rng.normal(size=(dim, dim))
    B = rng.normal(size=(dim, dim))
    X = mpc.input(secfxp.array(A), senders=0)
    Y = mpc.input(secfxp.array(B), senders=0)
    await mpc.barrier()
    t = time.perf_counter()
    r = await mpc.output(X @ Y)
    out['matmul_s'] = time.perf_counter() - t
    out['matmul_err'] = float(np.max(np.abs(np.array(r, dtype=float) - A @ B)))
    await mpc.shutdown()
    if mpc.pid == 0:
        print('RESULT ' + json.dumps(out), flush=True)

mpc.run(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
'''


def _free_ports(count: int) -> list[int]:
    socks, ports = [], []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def run_mpyc(n_mul: int, n_lt: int, dim: int, timeout: float) -> dict[str, Any]:
    """Three MPyC parties as local processes on 127.0.0.1; returns party 0's timings."""
    ports = _free_ports(3)
    addresses = [arg for p in ports for arg in ("-P", f"127.0.0.1:{p}")]
    with tempfile.TemporaryDirectory(prefix="bench-mpyc-") as tmp:
        script = Path(tmp) / "mpyc_party.py"
        script.write_text(MPYC_PARTY)
        procs = []
        for i in (2, 1, 0):
            cmd = [sys.executable, str(script), str(n_mul), str(n_lt), str(dim), *addresses,
                   "-I", str(i), "--no-log"]
            procs.append(
                subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True, cwd=tmp)
            )
        deadline = time.monotonic() + timeout
        outputs: list[str] = []
        try:
            for p in procs:
                out, _ = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
                outputs.append(out)
        finally:
            for p in procs:  # only the processes started here, by handle
                if p.poll() is None:
                    p.kill()
                    p.wait()
    for out in outputs:
        for line in out.splitlines():
            if line.startswith("RESULT "):
                result: dict[str, Any] = json.loads(line[len("RESULT "):])
                return result
    raise RuntimeError("MPyC produced no result:\n" + "\n".join(o[-2000:] for o in outputs))


def _protocols() -> dict[str, SecretSharing]:
    return {"replicated": ReplicatedSharing(16), "dealer": DealerSharing(3, 16)}


def measure_ours(
    proto: SecretSharing, n_mul: int, n_lt: int, dim: int, repeats: int
) -> dict[str, Any]:
    rng = np.random.default_rng(1)
    x = proto.share(rng.integers(-(2**20), 2**20, n_mul), 0)
    y = proto.share(rng.integers(-(2**20), 2**20, n_mul), 1)

    def multiply() -> int:
        proto.mul(x, y)
        return n_mul

    mul_rate = median_rate(multiply, repeats)
    mul_cost = proto.mul(x, y).cost
    a = rng.integers(-(2**30), 2**30, n_lt)
    b = rng.integers(-(2**30), 2**30, n_lt)
    xa, yb = proto.share(a, 0), proto.share(b, 1)
    check = proto.reveal(proto.lt(xa, yb)).value
    if not np.array_equal(check, (a < b).astype(np.int64)):
        raise RuntimeError(f"{proto.trust_model}: wrong comparison results")

    def compare() -> int:
        proto.lt(xa, yb)
        return n_lt

    lt_rate = median_rate(compare, repeats)
    lt_cost = proto.lt(xa, yb).cost
    ma, mb = rng.normal(size=(dim, dim)), rng.normal(size=(dim, dim))
    sa, sb = proto.share(ma, 0), proto.share(mb, 1)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        prod = proto.matmul(sa, sb)
        times.append(time.perf_counter() - start)
    err = float(np.max(np.abs(proto.reveal(prod).value - ma @ mb)))
    return {
        "mul_per_s": mul_rate, "lt_per_s": lt_rate, "matmul_s": statistics.median(times),
        "matmul_err": err, "mul_cost": mul_cost, "lt_cost": lt_cost, "matmul_cost": prod.cost,
    }


def _he_figures(quick: bool) -> list[Figure]:
    if not (Path(__file__).parent / "_mpc_he.py").exists():
        print("note: bench/_mpc_he.py is missing, so the Paillier and PSI figures (d)(e) are "
              "not measured in this run (they come with the HE branch)")
        return []
    module = importlib.import_module("bench._mpc_he")
    figures: list[Figure] = module.figures(quick)
    return figures


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench mpc")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, under a minute")
    parser.add_argument("--no-mpyc", action="store_true", help="skip the MPyC peer")
    args = parser.parse_args(argv)
    quick = args.quick
    n_mul = 1_000_000
    n_lt = 200_000 if quick else 1_000_000
    dim = 100
    mpyc_mul = 100_000 if quick else 1_000_000
    mpyc_lt = 200 if quick else 1000
    mpyc_dim = 50 if quick else 100
    repeats = 3 if quick else 5

    ours = {name: measure_ours(p, n_mul, n_lt, dim, repeats) for name, p in _protocols().items()}
    peer: dict[str, Any] | None = None
    if not args.no_mpyc:
        peer = run_mpyc(mpyc_mul, mpyc_lt, mpyc_dim, timeout=240 if quick else 900)
        if not (peer["mul_ok"] and peer["lt_ok"]):
            raise RuntimeError(f"MPyC returned wrong results: {peer}")
    peer_name = "MPyC 0.11, 3 local processes (Shamir t=1)"
    peer_mul = mpyc_mul / peer["mul_s"] if peer else None
    peer_lt = mpyc_lt / peer["lt_s"] if peer else None
    peer_mm = peer["matmul_s"] if peer else None

    figures: list[Figure] = []
    labels = {
        "replicated": "replicated 3PC (ABY3, honest majority, no dealer)",
        "dealer": "3 parties + trusted dealer (triples made in-run)",
    }
    for name, res in ours.items():
        figures.append(Figure(
            f"{name}_mult_per_s (1e6-vector, {labels[name]})", res["mul_per_s"], "mult/s",
            f"{peer_name}, {mpyc_mul:,} elems", peer_mul, ">= 100x peer"))
    for name, res in ours.items():
        figures.append(Figure(
            f"{name}_lt_per_s ({n_lt:,}-vector, {labels[name]})", res["lt_per_s"], "cmp/s",
            f"{peer_name}, {mpyc_lt:,} elems", peer_lt, ">= 100x peer"))
    for name, res in ours.items():
        figures.append(Figure(
            f"{name}_matmul_{dim}x{dim}_fixed_s ({labels[name]})", res["matmul_s"], "s",
            f"{peer_name}, {mpyc_dim}x{mpyc_dim}", peer_mm, "lower is better"))
    figures.extend(_he_figures(quick))

    print("traffic per operation (bytes sent per party, rounds):")
    traffic: dict[str, Any] = {}
    for name, res in ours.items():
        for op in ("mul", "lt", "matmul"):
            cost = res[f"{op}_cost"]
            traffic[f"{name}.{op}"] = cost.as_dict()
            print(f"  {name:<10} {op:<6} sent {cost.bytes_sent}  rounds {cost.rounds}")
    if peer:
        print(f"MPyC matmul max error {peer['matmul_err']:.2e}; ours "
              + ", ".join(f"{k} {v['matmul_err']:.2e}" for k, v in ours.items()))
    report("mpc", figures, {
        "sizes": {"mul": n_mul, "lt": n_lt, "matmul": dim, "mpyc_mul": mpyc_mul,
                  "mpyc_lt": mpyc_lt, "mpyc_matmul": mpyc_dim},
        "traffic": traffic, "quick": quick,
    })
    return 0
