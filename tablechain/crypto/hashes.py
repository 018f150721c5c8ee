"""Hash functions: SHA-256, SM3 (cryptography's, ~250x faster than gmssl's) and Keccak-256
(safe-pysha3's C implementation: about 3x faster per call than eth-hash over pycryptodome, and
every secp256k1 signature check hashes its message with it)."""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import hashes as _hashes
from sha3 import keccak_256 as _keccak_256

__all__ = ["sha256", "sm3", "keccak256", "HASHES", "hash_by_name"]


def sha256(data: bytes) -> bytes:
    """SHA-256 digest (32 bytes)."""
    return hashlib.sha256(data).digest()


def sm3(data: bytes) -> bytes:
    """SM3 digest (32 bytes), GB/T 32905-2016, via OpenSSL through `cryptography`."""
    h = _hashes.Hash(_hashes.SM3())
    h.update(data)
    return h.finalize()


def keccak256(data: bytes) -> bytes:
    """Keccak-256 as Ethereum uses it (not NIST SHA3-256)."""
    return _keccak_256(data).digest()  # type: ignore[no-any-return]


HASHES = {"sha256": sha256, "sm3": sm3, "keccak256": keccak256}


def hash_by_name(name: str):  # type: ignore[no-untyped-def]
    """The hash function called ``name`` (sha256, sm3, keccak256)."""
    try:
        return HASHES[name]
    except KeyError:
        raise ValueError(f"unknown hash {name!r}; known: {sorted(HASHES)}") from None
