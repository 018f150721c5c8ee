"""Benchmark parts (d) and (e) of ``python -m bench mpc``: Paillier and PSI (plus HE-LR).

``figures(quick)`` is called by ``bench/mpc.py``; ``python -m bench._mpc_he [--quick]`` runs
these figures alone. Every figure's peer is measured in the same run:

* Paillier-2048 on one core, in the format of HEU's table (encrypt, ct+ct, ct+pt, ct x pt,
  decrypt), against plain ``phe`` with ``gmpy2``; packed encryption in values per second. These
  are per CPU-second of the benchmark process, ours and the peer alternating, because the
  machine's two cores are shared and wall-clock rates swing by 2x with other load.
* ECDH-PSI 100k x 100k (5k x 5k with --quick) on both cores, X25519 and ristretto255, in
  wall-clock seconds, against the ceiling set by the group's own scalar-multiplication and
  hashing rates (CPU time of one core, scaled to two idle cores).
* FATE-style vertical LR on the breast-cancer data: seconds per epoch with Paillier against the
  same algorithm in the clear, and its AUC against scikit-learn's.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import phe

from bench._common import Figure, report
from tablechain.mpc.channel import LocalNetwork
from tablechain.mpc.paillier import (
    HeteroLRConfig,
    generate_keypair,
    packing_layout,
    secure_aggregate,
    train_hetero_lr,
    train_lr_plain,
)
from tablechain.mpc.psi import encode_item, get_group, psi


def _median_seconds(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _paired_cpu_rates(
    ours: Callable[[], int], peer: Callable[[], int], rounds: int
) -> tuple[float, float]:
    """Median items per CPU-second of ``ours`` and ``peer``, run alternately.

    Single-core figures use process CPU time, and ours and the peer alternate round by round,
    so that other load on this shared 2-core machine affects both alike.
    """
    mine, theirs = [], []
    for _ in range(rounds):
        for run, out in ((ours, mine), (peer, theirs)):
            start = time.process_time()
            items = run()
            out.append(items / max(time.process_time() - start, 1e-9))
    return statistics.median(mine), statistics.median(theirs)


def paillier_figures(quick: bool) -> list[Figure]:
    pub, priv = generate_keypair(2048)
    pub._ensure_table()  # built once per key (about 0.1 s), not per encryption
    phe_pub = phe.PaillierPublicKey(pub.n)
    phe_priv = phe.PaillierPrivateKey(phe_pub, priv.p, priv.q)
    rounds = 3 if quick else 7
    n_fast = 200 if quick else 500
    n_slow = 8 if quick else 20
    n_dec = 20 if quick else 60
    n_mul = 50 if quick else 200
    rng = np.random.default_rng(0)
    plain = [int(v) for v in rng.integers(0, 2**62, size=n_fast)]
    scalars = [int(v) for v in rng.integers(2**62, 2**63, size=n_fast)]
    ours = pub.encrypt_ints(plain)
    theirs = [phe.EncryptedNumber(phe_pub, c) for c in ours]
    pairs = list(zip(ours, ours[1:] + ours[:1], strict=True))
    tpairs = list(zip(theirs, theirs[1:] + theirs[:1], strict=True))

    enc, phe_enc = _paired_cpu_rates(
        lambda: len(pub.encrypt_ints(plain)),
        lambda: len([phe_pub.encrypt(m) for m in plain[:n_slow]]),
        rounds,
    )
    dec, phe_dec = _paired_cpu_rates(
        lambda: len([priv.raw_decrypt(c) for c in ours[:n_dec]]),
        lambda: len([phe_priv.decrypt(x) for x in theirs[:n_dec]]),
        rounds,
    )
    add, phe_add = _paired_cpu_rates(
        lambda: len([pub.add(a, b) for a, b in pairs]),
        lambda: len([a + b for a, b in tpairs]),
        rounds,
    )
    add_pt, phe_add_pt = _paired_cpu_rates(
        lambda: len([pub.add_plain(c, m) for c, m in zip(ours, plain, strict=True)]),
        lambda: len([x + m for x, m in zip(theirs, plain, strict=True)]),
        rounds,
    )
    mul, phe_mul = _paired_cpu_rates(
        lambda: len([pub.mul_plain(c, k) for c, k in zip(ours[:n_mul], scalars, strict=False)]),
        lambda: len([x * k for x, k in zip(theirs[:n_mul], scalars, strict=False)]),
        rounds,
    )
    layout = packing_layout(pub)  # 36 slots of 16.16 fixed point with 16 headroom bits
    values = rng.normal(0, 1000, size=layout.slots * (n_fast // 4))

    def encrypt_packed_values() -> int:
        pub.encrypt_ints(layout.encode(values))
        return int(values.size)

    packed, phe_enc2 = _paired_cpu_rates(
        encrypt_packed_values, lambda: len([phe_pub.encrypt(m) for m in plain[:n_slow]]), rounds
    )

    peer = "phe + gmpy2 (same run)"
    unit = "ops/cpu-s"
    return [
        Figure("paillier2048_encrypt_per_s", enc, unit, peer, phe_enc, ">= 1,500/s per core"),
        Figure("paillier2048_decrypt_per_s", dec, unit, peer, phe_dec),
        Figure("paillier2048_ct_add_ct_per_s", add, unit, peer, phe_add),
        Figure("paillier2048_ct_add_pt_per_s", add_pt, unit, peer, phe_add_pt),
        Figure("paillier2048_ct_mul_pt64_per_s", mul, unit, peer, phe_mul),
        Figure(
            "paillier2048_packed_encrypt_values_per_s",
            packed,
            "values/cpu-s",
            "phe + gmpy2, one value per ciphertext",
            phe_enc2,
        ),
    ]


def _psi_ceiling(group: str, n: int, workers: int) -> float:
    """Seconds that the 4n scalar multiplications and 2n hashes alone take on ``workers`` cores,
    from single-core rates measured now in CPU time (perfect scaling, idle cores assumed)."""
    impl = get_group(group)
    sample = [encode_item(i) for i in range(2000)]
    start = time.process_time()
    points = impl.hash_to_points(sample)
    hash_rate = len(sample) / (time.process_time() - start)
    scalar = impl.random_scalar()
    start = time.process_time()
    impl.multiply(scalar, points, validate=False)
    mul_rate = len(sample) / (time.process_time() - start)
    return (4 * n / mul_rate + 2 * n / hash_rate) / workers


def psi_figures(quick: bool) -> list[Figure]:
    n = 5_000 if quick else 100_000
    workers = min(2, os.cpu_count() or 1)
    label = "5k" if quick else "100k"
    a = [f"id-{i}" for i in range(n)]
    b = [f"id-{i}" for i in range(n // 2, n + n // 2)]
    out = []
    for group in ("x25519", "ristretto255"):
        sizes: list[int] = []

        def run(group: str = group, sizes: list[int] = sizes) -> None:
            result = psi(LocalNetwork(2), {0: a, 1: b}, receiver=0, group=group, workers=workers)
            sizes.append(result.size)

        seconds = _median_seconds(run, 1)
        if sizes[-1] != n - n // 2:
            raise RuntimeError(f"PSI returned {sizes[-1]} matches, expected {n - n // 2}")
        ceiling = _psi_ceiling(group, n, workers)
        out.append(
            Figure(
                f"psi_{label}x{label}_{group}_seconds",
                seconds,
                "s",
                f"{group} crypto ceiling, {workers} cores",
                ceiling,
                "< 10 s for 100k x 100k" if not quick else None,
            )
        )
    return out


def lr_figures(quick: bool) -> list[Figure]:
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    x, y = load_breast_cancer(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    mu, sd = xtr.mean(0), xtr.std(0)
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    _, priv = generate_keypair(2048)
    epochs = 1 if quick else 3
    config = HeteroLRConfig(epochs=epochs)
    start = time.perf_counter()
    model = train_hetero_lr(LocalNetwork(3), xtr[:, :10], ytr, xtr[:, 10:], priv, config=config)
    he_epoch = (time.perf_counter() - start) / epochs
    start = time.perf_counter()
    train_lr_plain(xtr[:, :10], ytr, xtr[:, 10:], config=config)
    plain_epoch = (time.perf_counter() - start) / epochs
    auc = roc_auc_score(yte, model.decision_function(xte[:, :10], xte[:, 10:]))
    sk = LogisticRegression(max_iter=1000).fit(xtr, ytr)
    sk_auc = roc_auc_score(yte, sk.decision_function(xte))
    return [
        Figure(
            "hetero_lr_paillier2048_seconds_per_epoch",
            he_epoch,
            "s",
            "same algorithm in the clear",
            plain_epoch,
        ),
        Figure(
            f"hetero_lr_auc_after_{epochs}_epochs",
            auc,
            "AUC",
            "scikit-learn LogisticRegression",
            sk_auc,
            "within 0.02 of scikit-learn",
        ),
    ]


def aggregation_figures(quick: bool) -> list[Figure]:
    if quick:
        return []
    _, priv = generate_keypair(2048)
    figures = []
    for parties in (3, 10, 30):
        rng = np.random.default_rng(parties)
        inputs = {p: rng.normal(0, 100, size=1000) for p in range(2, parties + 2)}
        start = time.perf_counter()
        result = secure_aggregate(LocalNetwork(parties + 2), inputs, priv, key_holder=0, combiner=1)
        seconds = time.perf_counter() - start
        np.testing.assert_allclose(result.total, sum(inputs.values()), atol=1e-3)
        figures.append(Figure(f"he_secure_sum_{parties}_parties_1000_values_seconds", seconds, "s"))
    return figures


def figures(quick: bool) -> list[Figure]:
    """All figures of parts (d) and (e), plus vertical LR (and secure sums when not quick)."""
    return (
        paillier_figures(quick)
        + psi_figures(quick)
        + lr_figures(quick)
        + aggregation_figures(quick)
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    report("mpc_he", figures("--quick" in argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
