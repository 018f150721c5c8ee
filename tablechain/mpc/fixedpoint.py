"""Fixed-point encoding of real numbers into the ring Z/2^64 (two's complement, numpy uint64).

A real ``x`` is stored as ``round(x * 2^f) mod 2^64``. Encoded values are kept below 2^62 in
magnitude so that the difference of any two of them is still a correctly signed ring element
(comparison) and a product before truncation fits in 2^62 when ``|x*y| < 2^(62-2f)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tablechain.mpc.errors import FixedPointRangeError

__all__ = ["FixedPoint", "to_ring", "from_ring_signed", "RING_BITS"]

RING_BITS = 64


def to_ring(values: Any) -> np.ndarray:
    """Integers (any sign, within int64) as ring elements (uint64, two's complement)."""
    arr = np.asarray(values)
    if arr.dtype == np.uint64:
        return arr.copy()
    if arr.dtype.kind not in "iub":
        raise FixedPointRangeError(f"ring elements must be integers, got dtype {arr.dtype}")
    return arr.astype(np.int64).view(np.uint64)


def from_ring_signed(values: np.ndarray) -> np.ndarray:
    """Ring elements read as signed 64-bit integers."""
    return np.asarray(values, dtype=np.uint64).view(np.int64)


@dataclass(frozen=True)
class FixedPoint:
    """Fixed-point format with ``frac_bits`` fractional bits in Z/2^64."""

    frac_bits: int = 16

    def __post_init__(self) -> None:
        if not isinstance(self.frac_bits, int) or not 0 <= self.frac_bits <= 30:
            raise FixedPointRangeError(
                f"frac_bits must be an integer in [0, 30], got {self.frac_bits!r}"
            )

    @property
    def scale(self) -> int:
        return 1 << self.frac_bits

    @property
    def resolution(self) -> float:
        """The smallest positive representable step, 2^-f."""
        return 1.0 / self.scale

    @property
    def max_value(self) -> float:
        """Encodable values satisfy ``|x| < max_value`` (= 2^(62-f))."""
        return float(2 ** (62 - self.frac_bits))

    @property
    def max_product(self) -> float:
        """A secure product ``x*y`` is exact (up to 1 ulp) when ``|x*y| < max_product``."""
        return float(2 ** (62 - 2 * self.frac_bits))

    def encode(self, values: Any) -> np.ndarray:
        """Reals to ring elements; raises for non-finite or out-of-range values."""
        arr = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(arr)):
            raise FixedPointRangeError("cannot encode NaN or infinite values")
        scaled = np.round(arr * self.scale)
        if arr.size and float(np.max(np.abs(scaled))) >= 2.0**62:
            raise FixedPointRangeError(
                f"value of magnitude {float(np.max(np.abs(arr))):g} is outside the fixed-point "
                f"range |x| < {self.max_value:g} for {self.frac_bits} fractional bits"
            )
        return scaled.astype(np.int64).view(np.uint64)

    def decode(self, ring: np.ndarray, frac_bits: int | None = None) -> np.ndarray:
        """Ring elements (scaled by 2^frac_bits, default this format's) back to floats."""
        bits = self.frac_bits if frac_bits is None else frac_bits
        return from_ring_signed(ring).astype(np.float64) / float(1 << bits)
