"""Transactions committed per second with certificate admission on and off, in the same run.

Every account's first transaction carries its certificate chain (registered on-chain); later
ones reference it by fingerprint, so admission costs a cached path check per transaction (plus
the chain's validation once per account).
"""

from __future__ import annotations

import argparse
import base64
import statistics
import tempfile
from pathlib import Path

from bench._common import Figure, report
from bench.ledger_insert import measure_node
from tablechain.ca import CertificateAuthority
from tablechain.crypto import PrivateKey, address_to_text

T0 = 1_700_000_000


def _pem(der: bytes) -> str:
    body = base64.encodebytes(der).decode().replace("\n", "")
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN CERTIFICATE-----\n{lines}\n-----END CERTIFICATE-----\n"


def _pki(workdir: Path) -> tuple[dict, object]:
    root = CertificateAuthority.init_root(
        workdir / "root", name="Bench Root", not_before=T0, not_after=T0 + 10**9
    )
    issuing = CertificateAuthority.init_intermediate(
        workdir / "issuing", root, name="Bench Issuing CA", not_before=T0, not_after=T0 + 10**9
    )
    chains: dict[bytes, str] = {}

    def certify(key: PrivateKey) -> str:
        pub = key.public_key.to_bytes()
        if pub not in chains:
            leaf = issuing.issue(
                name=address_to_text(key.address()),
                role="user",
                public_key=pub,
                scheme=key.scheme,
                not_before=T0,
                not_after=T0 + 10**9,
            )
            chains[pub] = "".join(_pem(d) for d in issuing.chain_for(leaf))
        return chains[pub]

    admission = {"enabled": True, "trusted_roots": [_pem(root.certificate.der)], "admins": []}
    return admission, certify


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench admission")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    n = 3000 if args.quick else 12000
    repeats = 1 if args.quick else args.repeats
    on, off = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as d:
            admission, certify = _pki(Path(d))
            for sub in ("off", "on"):
                (Path(d) / sub).mkdir()
            off.append(measure_node(n, "secp256k1", Path(d) / "off"))
            on.append(measure_node(n, "secp256k1", Path(d) / "on", admission, certify))
    report(
        "admission",
        [
            Figure(
                "committed_tx_per_s_admission_on",
                statistics.median(on),
                "tx/s",
                "same node, admission off",
                statistics.median(off),
                ">= 0.8 of peer",
            )
        ],
        {"transactions": n, "repeats": repeats, "accounts": 64},
    )
    return 0
