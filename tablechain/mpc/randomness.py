"""Randomness for the protocols: AES-128-CTR keystreams read as uint64 ring elements.

Every random share and every pairwise pseudo-random function (PRF) stream comes from a keyed
AES-CTR stream (a cryptographic PRG, and on this machine faster than numpy's PCG64). Keys come
from ``secrets`` unless a test passes an integer seed, which makes a run reproducible.
"""

from __future__ import annotations

import hashlib
import secrets
from math import prod

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = ["KeySource", "RandomStream"]


class RandomStream:
    """A keystream of uint64 words; two holders of the same key draw the same words."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 16:
            raise ValueError("a stream key is 16 bytes")
        self._encryptor = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
        self._zeros = b""

    def words(self, shape: tuple[int, ...] | int) -> np.ndarray:
        """Uniform elements of Z/2^64 of the given shape."""
        dims = (shape,) if isinstance(shape, int) else tuple(shape)
        count = prod(dims)
        if len(self._zeros) < 8 * count:
            self._zeros = bytes(8 * count)
        out = np.empty(count + 2, dtype=np.uint64)  # update_into needs one block of slack
        self._encryptor.update_into(memoryview(self._zeros)[: 8 * count], out.view(np.uint8).data)
        return out[:count].reshape(dims)


class KeySource:
    """Fresh 16-byte keys: from ``secrets``, or derived from ``seed`` for reproducible tests."""

    def __init__(self, seed: int | None = None) -> None:
        self._seed = seed
        self._counter = 0

    def key(self) -> bytes:
        if self._seed is None:
            return secrets.token_bytes(16)
        self._counter += 1
        material = f"tablechain.mpc:{self._seed}:{self._counter}".encode()
        return hashlib.sha256(material).digest()[:16]

    def stream(self) -> RandomStream:
        return RandomStream(self.key())
