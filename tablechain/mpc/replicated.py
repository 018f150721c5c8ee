"""Three-party replicated secret sharing (ABY3-style), honest majority, no dealer.

Trust model ``"replicated"``: a value is ``x = x0 + x1 + x2`` over Z/2^64 and party ``i`` holds
``(x_i, x_{i+1})``. Any single party sees only uniformly random components; semi-honest security
holds while no two parties collude (honest majority). There is no dealer: pairwise PRF keys
(key ``k_j`` held by parties ``j`` and ``j-1``) give the zero-sharings that re-randomise
products, and the truncation mask is prepared by party 2 for parties 0 and 1 (it never sees the
masked value; the same honest-majority assumption covers it).

Rounds: multiplication and matrix product 1; truncation 2; sign bit 10 (carry-save step,
6-layer Kogge-Stone carry chain, bit injection in 2); zero test 16.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tablechain.mpc.channel import LocalNetwork, Network
from tablechain.mpc.errors import PartyError
from tablechain.mpc.fixedpoint import FixedPoint
from tablechain.mpc.randomness import KeySource, RandomStream
from tablechain.mpc.sharing import Parts, SecretSharing

__all__ = ["ReplicatedSharing", "TRUST_REPLICATED"]

TRUST_REPLICATED = "replicated"

_ONE = np.uint64(1)
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)


class ReplicatedSharing(SecretSharing):
    """ABY3-style 3-party replicated sharing over Z/2^64 (honest majority, no dealer)."""

    trust_model = TRUST_REPLICATED
    trust_model_description = (
        "3 parties, replicated (2-out-of-3) sharing, honest majority, no dealer; semi-honest; "
        "private against any single party, not against two colluding parties"
    )

    def __init__(
        self,
        frac_bits: int = 16,
        *,
        seed: int | None = None,
        network: Network | None = None,
        taps: list[Any] | None = None,
    ) -> None:
        if network is None:
            network = LocalNetwork(3, taps=taps)
        elif network.n_parties != 3:
            raise PartyError(
                f"replicated sharing runs on 3 parties, the network has {network.n_parties}"
            )
        super().__init__(network, 3, FixedPoint(frac_bits))
        keys = KeySource(seed)
        own = [keys.key() for _ in range(3)]
        # party j makes key k_j and sends it to party j-1; both then hold it
        received = self.network.exchange({(j, (j - 1) % 3): own[j] for j in range(3)})
        for j in range(3):
            if received[(j, (j - 1) % 3)] != own[j]:
                raise PartyError("key agreement failed")
        self._prf = [RandomStream(k) for k in own]
        self._private = [keys.stream() for _ in range(3)]  # each party's own randomness

    @property
    def n_parts(self) -> int:
        return 3

    # -------------------------------------------------------------- randomness
    def _prf_words(self, shape: tuple[int, ...]) -> list[np.ndarray]:
        """F_j = PRF(k_j), computed once; parties j and j-1 would each compute the same."""
        return [self._prf[j].words(shape) for j in range(3)]

    def _zero_additive(self, shape: tuple[int, ...]) -> list[np.ndarray]:
        f = self._prf_words(shape)
        return [f[i] - f[(i + 1) % 3] for i in range(3)]

    def _zero_xor(self, shape: tuple[int, ...]) -> list[np.ndarray]:
        f = self._prf_words(shape)
        return [f[i] ^ f[(i + 1) % 3] for i in range(3)]

    # -------------------------------------------------------------- communication
    def _reshare(self, z: Sequence[np.ndarray]) -> Parts:
        """Party i sends z_i to party i-1, so party i ends with (z_i, z_{i+1})."""
        self.network.exchange({(i, (i - 1) % 3): z[i] for i in range(3)})
        return tuple(z)

    def _input_parts(self, owner: int, ring: np.ndarray) -> Parts:
        """Components x_o = PRF(k_o), x_{o+1} = PRF(k_{o+1}); x_{o+2} goes to both others."""
        shape = ring.shape
        comp: list[np.ndarray] = [np.empty(0, dtype=np.uint64)] * 3
        comp[owner] = self._prf[owner].words(shape)  # held by owner and owner-1
        comp[(owner + 1) % 3] = self._prf[(owner + 1) % 3].words(shape)  # owner and owner+1
        last = ring - comp[owner]
        last -= comp[(owner + 1) % 3]
        comp[(owner + 2) % 3] = last
        self.network.exchange({(owner, (owner + 1) % 3): last, (owner, (owner + 2) % 3): last})
        return tuple(comp)

    def _open_parts(self, values: Sequence[Parts], receivers: Sequence[int]) -> list[np.ndarray]:
        """Receiver r lacks only component r+2, which party r+1 sends."""
        msgs = {
            ((r + 1) % 3, r): tuple(v[(r + 2) % 3] for v in values) for r in receivers
        }
        self.network.exchange(msgs)
        out = []
        for v in values:
            total = v[0] + v[1]
            total += v[2]
            out.append(total)
        return out

    # -------------------------------------------------------------- arithmetic
    def _mul_parts(self, x: Parts, y: Parts) -> Parts:
        f = self._prf_words(x[0].shape)
        scratch = np.empty_like(x[0])
        z = []
        for i in range(3):
            j = (i + 1) % 3
            zi = np.multiply(x[i], y[i])
            zi += np.multiply(x[i], y[j], out=scratch)
            zi += np.multiply(x[j], y[i], out=scratch)
            zi += f[i]  # zero-sharing alpha_i = F_i - F_{i+1}, added in place
            zi -= f[j]
            z.append(zi)
        return self._reshare(z)

    def _matmul_parts(self, x: Parts, y: Parts) -> Parts:
        z = []
        for i in range(3):
            j = (i + 1) % 3
            z.append(np.asarray(x[i] @ (y[i] + y[j]) + x[j] @ y[i], dtype=np.uint64))
        alpha = self._zero_additive(z[0].shape)
        return self._reshare([z[i] + alpha[i] for i in range(3)])

    def _truncate_parts(self, x: Parts, bits: int) -> Parts:
        """Party 2 masks a 2-out-of-2 sharing between parties 0 and 1 (see module docstring).

        Round 1: parties 0 and 1 swap their masked halves; party 2 sends party 0 the corrections
        for r >> bits and msb(r). Round 2: parties 0 and 1 re-share the result to party 2.
        """
        shape = x[0].shape
        # 2-out-of-2: party 0 holds a = x0 (+2^62), party 1 holds b = x1 + x2
        a = x[0] + np.uint64(1 << 62)
        b = x[1] + x[2]
        # mask r = r0 + r1: r0 from k_0 (parties 2 and 0), r1 from k_2 (parties 1 and 2)
        r0 = self._prf[0].words(shape)
        r1 = self._prf[2].words(shape)
        high1 = self._prf[2].words(shape)  # party 1's share of r >> bits
        msb1 = self._prf[2].words(shape)  # party 1's share of msb(r)
        r = r0 + r1
        high0 = (r >> np.uint64(bits)) - high1  # party 2 computes and sends to party 0
        msb0 = (r >> np.uint64(63)) - msb1
        a += r0
        b += r1
        self.network.exchange({(0, 1): a, (1, 0): b, (2, 0): (high0, msb0)})
        c = a + b
        wrap_weight = ((c >> np.uint64(63)) ^ _ONE) << np.uint64(64 - bits)
        y0 = (c >> np.uint64(bits)) - np.uint64(1 << (62 - bits)) - high0 + wrap_weight * msb0
        y1 = wrap_weight * msb1 - high1
        # back to replicated: z1 = PRF(k_1) and u = PRF(k_1) known to parties 0 and 1 only
        z1 = self._prf[1].words(shape)
        u = self._prf[1].words(shape)
        z0 = y0 + u
        z2 = y1 - u
        z2 -= z1
        self.network.exchange({(0, 2): z0, (1, 2): z2})
        return (z0, z1, z2)

    # -------------------------------------------------------------- bits
    def _and(self, x: Parts, y: Parts) -> Parts:
        """AND of replicated XOR-shared words: local cross terms, then reshare (one round)."""
        alpha = self._zero_xor(x[0].shape)
        z = []
        for i in range(3):
            j = (i + 1) % 3
            zi = x[i] & y[i]
            zi ^= x[i] & y[j]
            zi ^= x[j] & y[i]
            zi ^= alpha[i]
            z.append(zi)
        return self._reshare(z)

    def _bit_to_arithmetic(self, bit: Parts) -> Parts:
        """XOR-shared bit b0^b1^b2 to additive: u = b0 + b1 - 2 b0 b1; u + b2 - 2 u b2."""
        zero = np.zeros_like(bit[0])
        b0 = (bit[0], zero, zero)
        b1 = (zero, bit[1], zero)
        b2 = (zero, zero, bit[2])
        two = np.uint64(2)
        p = self._mul_parts(b0, b1)
        u = tuple(b0[k] + b1[k] - two * p[k] for k in range(3))
        q = self._mul_parts(u, b2)
        return tuple(u[k] + b2[k] - two * q[k] for k in range(3))

    def _to_bits(self, x: Parts) -> tuple[Parts, Parts]:
        """Boolean sharings (s, t) with x = s + t: a carry-save step over x0, x1, x2 (1 round)."""
        zero = np.zeros_like(x[0])
        s = (x[0], x[1], x[2])  # x0 ^ x1 ^ x2 as components
        a = (x[0], zero, zero)
        b = (zero, x[1], zero)
        cc = (zero, zero, x[2])
        # majority(a, b, c) = ((a ^ c) & (b ^ c)) ^ c
        maj = self._and(
            tuple(a[k] ^ cc[k] for k in range(3)), tuple(b[k] ^ cc[k] for k in range(3))
        )
        carry = tuple((maj[k] ^ cc[k]) << _ONE for k in range(3))
        return s, carry

    def _carries(self, s: Parts, t: Parts) -> tuple[Parts, Parts]:
        """Kogge-Stone carry chain of s + t: returns (generate over [0..i], s ^ t)."""
        generate = self._and(s, t)
        propagate = tuple(s[k] ^ t[k] for k in range(3))
        return self._prefix_carries(generate, propagate), propagate

    def _msb_parts(self, x: Parts) -> Parts:
        s, t = self._to_bits(x)
        generate, top = self._carries(s, t)
        sign = tuple(
            ((top[k] >> np.uint64(63)) ^ (generate[k] >> np.uint64(62))) & _ONE for k in range(3)
        )
        return self._bit_to_arithmetic(sign)

    def _is_zero_parts(self, x: Parts) -> Parts:
        """Bits of x = s + t by the full adder, then an AND tree over the 64 inverted bits."""
        s, t = self._to_bits(x)
        generate, top = self._carries(s, t)
        carry_in = tuple(g << _ONE for g in generate)
        bits = tuple(top[k] ^ carry_in[k] ^ (_ALL if k == 0 else np.uint64(0)) for k in range(3))
        width = 32
        word = bits
        while width >= 1:
            word = self._and(word, tuple(w >> np.uint64(width) for w in word))
            width //= 2
        return self._bit_to_arithmetic(tuple(w & _ONE for w in word))
