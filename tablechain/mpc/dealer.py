"""n-party additive secret sharing with a trusted dealer of correlated randomness.

Trust model ``"dealer"``: ``n`` parties hold additive shares over Z/2^64; a separate dealer
(network party ``n``) hands out input-independent correlated randomness -- Beaver triples,
matrix triples, truncation pairs, edaBits (a random ring element with its bits XOR-shared),
daBits (a random bit shared both ways) and AND triples for XOR-shared words. Secure against
semi-honest parties as long as the dealer colludes with nobody; any ``n-1`` parties together
learn nothing. This is the SEMI2K / CrypTen-TTP model, and it is named in every result.

The dealer gives party ``i`` a 16-byte seed once (over the network); afterwards each party's
share of every correlated value is drawn from its seeded stream, and only the last party gets
an explicit correction per value -- sent in the same round as the online messages that use it.
In this in-process simulation the dealer and the party draw each seeded share once and both use
it, which is what each would compute from the common seed.
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

__all__ = ["Dealer", "DealerSharing", "TRUST_DEALER"]

TRUST_DEALER = "dealer"

_ONE = np.uint64(1)
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)


def _sum(parts: Sequence[np.ndarray]) -> np.ndarray:
    if len(parts) == 1:
        return np.array(parts[0], dtype=np.uint64)
    total = np.asarray(np.add(parts[0], parts[1]), dtype=np.uint64)
    for p in parts[2:]:
        total += p
    return total


def _xor(parts: Sequence[np.ndarray]) -> np.ndarray:
    total = np.array(parts[0], dtype=np.uint64)
    for p in parts[1:]:
        total ^= p
    return total


class Dealer:
    """Produces correlated randomness; corrections for the last party are returned as payloads."""

    def __init__(self, n_parties: int, seeds: Sequence[bytes]) -> None:
        self.n_parties = n_parties
        self._streams = [RandomStream(s) for s in seeds]

    def _seeded(self, shape: tuple[int, ...], count: int) -> list[np.ndarray]:
        return [self._streams[i].words(shape) for i in range(count)]

    def random_additive(self, shape: tuple[int, ...]) -> tuple[list[np.ndarray], np.ndarray]:
        """A uniformly random value, all shares from the seeds (no message)."""
        parts = self._seeded(shape, self.n_parties)
        return parts, _sum(parts)

    def random_xor(self, shape: tuple[int, ...]) -> tuple[list[np.ndarray], np.ndarray]:
        parts = self._seeded(shape, self.n_parties)
        return parts, _xor(parts)

    def additive_of(
        self, value: np.ndarray, owned: bool = False
    ) -> tuple[list[np.ndarray], np.ndarray]:
        """Shares of a value the dealer knows; the last share is the correction to send.

        ``owned`` lets the correction be computed in place in ``value``'s buffer.
        """
        parts = self._seeded(value.shape, self.n_parties - 1)
        last = value if owned and value.dtype == np.uint64 else np.array(value, dtype=np.uint64)
        for p in parts:
            last -= p
        parts.append(last)
        return parts, last

    def xor_of(
        self, value: np.ndarray, owned: bool = False
    ) -> tuple[list[np.ndarray], np.ndarray]:
        parts = self._seeded(value.shape, self.n_parties - 1)
        last = value if owned and value.dtype == np.uint64 else np.array(value, dtype=np.uint64)
        for p in parts:
            last ^= p
        parts.append(last)
        return parts, last

    def triple(self, shape: tuple[int, ...]) -> tuple[Parts, Parts, Parts, np.ndarray]:
        """Beaver triple a, b, c = a*b (element-wise) and the correction of c."""
        a_parts, a = self.random_additive(shape)
        b_parts, b = self.random_additive(shape)
        a *= b
        c_parts, correction = self.additive_of(a, owned=True)
        return tuple(a_parts), tuple(b_parts), tuple(c_parts), correction

    def matrix_triple(
        self, shape_a: tuple[int, ...], shape_b: tuple[int, ...]
    ) -> tuple[Parts, Parts, Parts, np.ndarray]:
        """Matrix triple A, B, C = A @ B."""
        a_parts, a = self.random_additive(shape_a)
        b_parts, b = self.random_additive(shape_b)
        c_parts, correction = self.additive_of(np.asarray(a @ b, dtype=np.uint64), owned=True)
        return tuple(a_parts), tuple(b_parts), tuple(c_parts), correction

    def and_triple(self, shape: tuple[int, ...]) -> tuple[Parts, Parts, Parts, np.ndarray]:
        """Bitwise AND triple on XOR-shared 64-bit words."""
        a_parts, a = self.random_xor(shape)
        b_parts, b = self.random_xor(shape)
        a &= b
        c_parts, correction = self.xor_of(a, owned=True)
        return tuple(a_parts), tuple(b_parts), tuple(c_parts), correction

    def truncation_pair(
        self, shape: tuple[int, ...], bits: int
    ) -> tuple[Parts, Parts, Parts, tuple[np.ndarray, np.ndarray]]:
        """Random r with shares of r >> bits and of msb(r)."""
        r_parts, r = self.random_additive(shape)
        high_parts, high = self.additive_of(r >> np.uint64(bits), owned=True)
        r >>= np.uint64(63)
        msb_parts, msb = self.additive_of(r, owned=True)
        return tuple(r_parts), tuple(high_parts), tuple(msb_parts), (high, msb)

    def edabit(self, shape: tuple[int, ...]) -> tuple[Parts, Parts, np.ndarray]:
        """Random r, additively shared, with its 64 bits XOR-shared as one word."""
        r_parts, r = self.random_additive(shape)
        bit_parts, correction = self.xor_of(r, owned=True)
        return tuple(r_parts), tuple(bit_parts), correction

    def dabit(self, shape: tuple[int, ...]) -> tuple[Parts, Parts, np.ndarray]:
        """Random bit b, XOR-shared (bit 0 of each share) and additively shared."""
        xor_parts, word = self.random_xor(shape)
        xor_parts = [p & _ONE for p in xor_parts]
        word &= _ONE
        add_parts, correction = self.additive_of(word, owned=True)
        return tuple(xor_parts), tuple(add_parts), correction


class DealerSharing(SecretSharing):
    """n parties with additive shares; a trusted dealer (network party n) supplies randomness.

    ``network`` must have ``n_parties + 1`` parties (the dealer is the last); by default a
    :class:`LocalNetwork` is made, with ``taps`` attached.
    """

    trust_model = TRUST_DEALER
    trust_model_description = (
        "n parties + trusted dealer of correlated randomness (Beaver/matrix/AND triples, "
        "truncation pairs, edaBits, daBits); semi-honest; private if the dealer colludes "
        "with no party; any n-1 parties learn nothing"
    )

    def __init__(
        self,
        n_parties: int,
        frac_bits: int = 16,
        *,
        seed: int | None = None,
        network: Network | None = None,
        taps: list[Any] | None = None,
    ) -> None:
        if not isinstance(n_parties, int) or n_parties < 2:
            raise PartyError(f"the dealer model needs at least 2 parties, got {n_parties!r}")
        if network is None:
            network = LocalNetwork(n_parties + 1, taps=taps)
        elif network.n_parties != n_parties + 1:
            raise PartyError(
                f"the network must have n_parties + 1 = {n_parties + 1} parties "
                f"(the dealer is party {n_parties}), it has {network.n_parties}"
            )
        super().__init__(network, n_parties, FixedPoint(frac_bits))
        self.dealer_index = n_parties
        self._keys = KeySource(seed)
        # party-local randomness for input sharing (one stream per party)
        self._party_streams = [self._keys.stream() for _ in range(n_parties)]
        seeds = [self._keys.key() for _ in range(n_parties)]
        received = self.network.exchange(
            {(self.dealer_index, i): seeds[i] for i in range(n_parties)}
        )
        self.dealer = Dealer(
            n_parties, [received[(self.dealer_index, i)] for i in range(n_parties)]
        )
        self._last = n_parties - 1

    @property
    def n_parts(self) -> int:
        return self.n_parties

    # -------------------------------------------------------------- communication
    def _broadcast_round(
        self, per_party: Sequence[Any], receivers: Sequence[int], dealer_payload: Any = None
    ) -> None:
        """Party i sends ``per_party[i]`` to every receiver; the dealer's correction rides along."""
        msgs: dict[tuple[int, int], Any] = {}
        for i, payload in enumerate(per_party):
            for r in receivers:
                if r != i:
                    msgs[(i, r)] = payload
        if dealer_payload is not None:
            msgs[(self.dealer_index, self._last)] = dealer_payload
        self.network.exchange(msgs)

    def _input_parts(self, owner: int, ring: np.ndarray) -> Parts:
        parts = [
            self._party_streams[owner].words(ring.shape)
            for i in range(self.n_parties)
            if i != owner
        ]
        own = ring - _sum(parts) if parts else ring.copy()
        others = [i for i in range(self.n_parties) if i != owner]
        self.network.exchange({(owner, i): parts[k] for k, i in enumerate(others)})
        out: list[np.ndarray] = [np.empty(0, dtype=np.uint64)] * self.n_parties
        out[owner] = own
        for k, i in enumerate(others):
            out[i] = parts[k]
        return tuple(out)

    def _open_parts(self, values: Sequence[Parts], receivers: Sequence[int]) -> list[np.ndarray]:
        per_party = [tuple(v[i] for v in values) for i in range(self.n_parties)]
        self._broadcast_round(per_party, receivers)
        return [_sum(v) for v in values]

    def _open_with(self, values: Sequence[Parts], dealer_payload: Any) -> list[np.ndarray]:
        """Open to every party, in the round that also delivers the dealer's correction."""
        per_party = [tuple(v[i] for v in values) for i in range(self.n_parties)]
        self._broadcast_round(per_party, range(self.n_parties), dealer_payload)
        return [_sum(v) for v in values]

    def _open_xor_with(self, values: Sequence[Parts], dealer_payload: Any) -> list[np.ndarray]:
        per_party = [tuple(v[i] for v in values) for i in range(self.n_parties)]
        self._broadcast_round(per_party, range(self.n_parties), dealer_payload)
        return [_xor(v) for v in values]

    # -------------------------------------------------------------- arithmetic
    def _mul_parts(self, x: Parts, y: Parts) -> Parts:
        a, b, c, correction = self.dealer.triple(x[0].shape)
        d_parts = tuple(xi - ai for xi, ai in zip(x, a, strict=True))
        e_parts = tuple(yi - bi for yi, bi in zip(y, b, strict=True))
        d, e = self._open_with([d_parts, e_parts], correction)
        out = []
        scratch = np.empty_like(d)
        for i in range(self.n_parties):
            z = np.multiply(d, b[i])
            z += c[i]
            z += np.multiply(e, a[i], out=scratch)
            if i == 0:
                z += np.multiply(d, e, out=scratch)
            out.append(z)
        return tuple(out)

    def _matmul_parts(self, x: Parts, y: Parts) -> Parts:
        a, b, c, correction = self.dealer.matrix_triple(x[0].shape, y[0].shape)
        d_parts = tuple(xi - ai for xi, ai in zip(x, a, strict=True))
        e_parts = tuple(yi - bi for yi, bi in zip(y, b, strict=True))
        d, e = self._open_with([d_parts, e_parts], correction)
        out = []
        for i in range(self.n_parties):
            z = c[i] + d @ b[i]
            z += a[i] @ e
            if i == 0:
                z += d @ e
            out.append(np.asarray(z, dtype=np.uint64))
        return tuple(out)

    def _truncate_parts(self, x: Parts, bits: int) -> Parts:
        """Open c = x + 2^62 + r; then
        x >> bits = c >> bits - r >> bits + wrap * 2^(64-bits) - 2^(62-bits).

        ``wrap = msb(r) * (1 - msb(c))`` because the shifted x is below 2^63; the only error is
        the borrow from the low ``bits`` bits, so the result is exact or one unit too large.
        """
        shape = x[0].shape
        r, high, msb, corrections = self.dealer.truncation_pair(shape, bits)
        shift = np.uint64(1 << 62)
        masked = tuple(
            (xi + ri + shift) if i == 0 else (xi + ri)
            for i, (xi, ri) in enumerate(zip(x, r, strict=True))
        )
        (c,) = self._open_with([masked], corrections)
        no_top = (c >> np.uint64(63)) ^ _ONE
        wrap_weight = no_top << np.uint64(64 - bits)
        out = []
        for i in range(self.n_parties):
            y = wrap_weight * msb[i] - high[i]
            if i == 0:
                y += (c >> np.uint64(bits)) - np.uint64(1 << (62 - bits))
            out.append(y)
        return tuple(out)

    # -------------------------------------------------------------- bits
    def _and(self, x: Parts, y: Parts) -> Parts:
        """Bitwise AND of XOR-shared words (one round)."""
        a, b, c, correction = self.dealer.and_triple(x[0].shape)
        d_parts = tuple(xi ^ ai for xi, ai in zip(x, a, strict=True))
        e_parts = tuple(yi ^ bi for yi, bi in zip(y, b, strict=True))
        d, e = self._open_xor_with([d_parts, e_parts], correction)
        out = []
        for i in range(self.n_parties):
            z = c[i] ^ (d & b[i])
            z ^= e & a[i]
            if i == 0:
                z ^= d & e
            out.append(z)
        return tuple(out)

    def _bit_to_arithmetic(self, bit: Parts) -> Parts:
        """XOR-shared bits (bit 0) to additive shares, with a daBit (one round)."""
        beta_xor, beta_add, correction = self.dealer.dabit(bit[0].shape)
        masked = tuple((bi ^ di).astype(np.uint8) for bi, di in zip(bit, beta_xor, strict=True))
        (e8,) = self._open_xor_with([masked], correction)
        e = e8.astype(np.uint64)
        factor = np.uint64(1) - (e << _ONE)  # 1 - 2e in the ring
        out = []
        for i in range(self.n_parties):
            z = beta_add[i] * factor
            if i == 0:
                z += e
            out.append(z)
        return tuple(out)

    def _mask_with_edabit(self, x: Parts) -> tuple[np.ndarray, Parts, np.ndarray]:
        """Open c = x - r for an edaBit r (so x = c + r); returns c and r's XOR-shared bits."""
        r_add, r_bits, correction = self.dealer.edabit(x[0].shape)
        masked = tuple(xi - ri for xi, ri in zip(x, r_add, strict=True))
        (c,) = self._open_with([masked], correction)
        return c, r_bits, correction

    def _msb_parts(self, x: Parts) -> Parts:
        """Sign bit of x = c + r by a carry-lookahead (Kogge-Stone) adder on public c and bits of r.

        Rounds: 1 (open c) + 6 (AND layers) + 1 (bit to arithmetic).
        """
        c, r_bits, _ = self._mask_with_edabit(x)
        generate = tuple(c & ri for ri in r_bits)  # c public: local
        propagate = tuple((ri ^ c) if i == 0 else ri.copy() for i, ri in enumerate(r_bits))
        top_propagate = propagate
        generate = self._prefix_carries(generate, propagate)
        # msb(x) = c63 ^ r63 ^ carry into bit 63 (= generate bit 62)
        sign = tuple(
            ((tp >> np.uint64(63)) ^ (g >> np.uint64(62))) & _ONE
            for tp, g in zip(top_propagate, generate, strict=True)
        )
        return self._bit_to_arithmetic(sign)

    def _is_zero_parts(self, x: Parts) -> Parts:
        """x == 0 iff the bits of r equal those of -c: AND of 64 XNORs by a 6-layer tree."""
        c, r_bits, _ = self._mask_with_edabit(x)
        target = np.negative(c)
        word = tuple((ri ^ target ^ _ALL) if i == 0 else ri for i, ri in enumerate(r_bits))
        width = 32
        while width >= 1:
            word = self._and(word, tuple(w >> np.uint64(width) for w in word))
            width //= 2
        return self._bit_to_arithmetic(tuple(w & _ONE for w in word))
