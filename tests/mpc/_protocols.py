"""Protocol factories shared by the secret-sharing tests (both trust models)."""

from __future__ import annotations

from typing import Any

from tablechain.mpc import DealerSharing, ReplicatedSharing, SecretSharing

MODES = ["dealer", "replicated"]


def make(mode: str, frac_bits: int = 16, seed: int = 7, **kw: Any) -> SecretSharing:
    if mode == "dealer":
        return DealerSharing(kw.pop("n_parties", 3), frac_bits, seed=seed, **kw)
    return ReplicatedSharing(frac_bits, seed=seed, **kw)
