"""Merkle trees in the shape of RFC 9162 (Certificate Transparency).

leaf = H(0x00 || data), node = H(0x01 || left || right), the tree split at the largest power of
two below the size; the root of the empty tree is H(""). Inclusion proofs as RFC 9162 §2.1.3.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = ["merkle_root", "inclusion_proof", "verify_inclusion"]

Hasher = Callable[[bytes], bytes]


def _split(n: int) -> int:
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


def _root_of_leaf_hashes(hashes: Sequence[bytes], h: Hasher) -> bytes:
    level = list(hashes)
    # Iterative reduction that matches the recursive RFC definition: pair left to right,
    # carrying an odd last node up unchanged.
    while len(level) > 1:
        nxt = [h(b"\x01" + level[i] + level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def merkle_root(items: Sequence[bytes], h: Hasher) -> bytes:
    """Root over ``items`` (their leaf hashes are computed here)."""
    if not items:
        return h(b"")
    return _root_of_leaf_hashes([h(b"\x00" + item) for item in items], h)


def inclusion_proof(items: Sequence[bytes], index: int, h: Hasher) -> list[bytes]:
    """Audit path for ``items[index]`` (RFC 9162 PATH)."""
    if not 0 <= index < len(items):
        raise ValueError("index outside the tree")
    leaves = [h(b"\x00" + item) for item in items]

    def path(m: int, lo: int, hi: int) -> list[bytes]:
        n = hi - lo
        if n == 1:
            return []
        k = _split(n)
        if m < k:
            return path(m, lo, lo + k) + [_root_of_leaf_hashes(leaves[lo + k : hi], h)]
        return path(m - k, lo + k, hi) + [_root_of_leaf_hashes(leaves[lo : lo + k], h)]

    return path(index, 0, len(leaves))


def verify_inclusion(
    item: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes, h: Hasher
) -> bool:
    """RFC 9162 §2.1.3.2 verification of an inclusion proof."""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = h(b"\x00" + item)
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = h(b"\x01" + p + r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = h(b"\x01" + r + p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root
