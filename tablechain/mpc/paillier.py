"""Paillier encryption with fast short-exponent randomness, packing and two protocols.

Keys extend ``phe``'s, so ciphertexts interoperate with ``phe.EncryptedNumber`` and
``phe.PaillierPrivateKey`` (a phe private key decrypts ours and ``phe`` arithmetic works on them).

Fast encryption (the ZPaillier / HEU construction, from Damgard-Jurik-Nielsen, "A generalization
of Paillier's public-key system", section 4)::

    c = (1 + n)^m * hs^r  mod n^2,   hs = h^n mod n^2,  h = -x^2 mod n for a random x,
    r uniform in [0, 2^448)

instead of ``r^n`` with ``r < n``. ``hs`` is part of the public key and ``hs^r`` comes from a
fixed-base table (``ceil(448 / w)`` rows of ``2^w`` powers, about 7 MB for ``w = 8`` and a 2048-bit
key), so one encryption costs about 56 multiplications mod n^2 instead of a 2048-bit
exponentiation. Because ``hs^r`` is still an n-th residue, decryption is ordinary Paillier.

Security assumption: besides Paillier's decisional composite residuosity (DCR) assumption, that
``hs^r`` with a short ``r`` is indistinguishable from a uniform element of the subgroup ``<hs>``
(the short-exponent indistinguishability assumption used by DJN and by HEU's ZPaillier; with a
2048-bit modulus, 112-bit security, ``r`` has 448 bits = 4x the security level so that
exponent-search attacks such as baby-step giant-step or Pollard's lambda cost at least 2^224).

Decryption uses the Chinese remainder theorem (mod p^2 and q^2 separately).

Two protocols run over a ``tablechain.mpc.channel`` network with traffic accounting:
``secure_aggregate`` (many parties' vectors summed under the key holder's key by a combiner that
has no key) and ``train_hetero_lr`` (FATE-style vertical logistic regression: a guest with labels,
a host with more features, an arbiter holding the key).
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import gmpy2
import numpy as np
import phe

from tablechain.mpc.channel import Network, Traffic
from tablechain.mpc.he_errors import (
    InvalidCiphertext,
    KeyMismatch,
    PlaintextOutOfRange,
    ProtocolInputError,
)

__all__ = [
    "DEFAULT_KEY_BITS",
    "DEFAULT_RANDOM_BITS",
    "DEFAULT_WINDOW_BITS",
    "PaillierPublicKey",
    "PaillierPrivateKey",
    "generate_keypair",
    "keypair_from_phe",
    "CiphertextVector",
    "MaskedVector",
    "PackingLayout",
    "packing_layout",
    "encrypt_packed",
    "decrypt_packed",
    "AggregationResult",
    "secure_aggregate",
    "HeteroLRConfig",
    "HeteroLRModel",
    "train_hetero_lr",
    "train_lr_plain",
]

DEFAULT_KEY_BITS = 2048
DEFAULT_RANDOM_BITS = 448
DEFAULT_WINDOW_BITS = 8
MIN_KEY_BITS = 256  # below this nothing is secure; tests use >= 512, production 2048+

mpz = gmpy2.mpz
_MPZ = type(gmpy2.mpz(0))


def _as_mpz(value: Any, what: str) -> Any:
    kind = type(value)
    if kind is _MPZ:
        return value
    if kind is int or (isinstance(value, int) and not isinstance(value, bool)):
        return mpz(value)
    raise ProtocolInputError(f"{what} must be an integer, got {kind.__name__}")


# --------------------------------------------------------------------------------------------
# keys


class PaillierPublicKey(phe.PaillierPublicKey):  # type: ignore[misc]
    """A phe public key plus ``hs`` for short-exponent encryption from a fixed-base table.

    ``n`` and ``hs`` are public; the table is built lazily at the first encryption (about
    0.1 s for a 2048-bit key) and is not pickled.
    """

    def __init__(
        self,
        n: int,
        hs: int,
        *,
        random_bits: int = DEFAULT_RANDOM_BITS,
        window_bits: int = DEFAULT_WINDOW_BITS,
    ) -> None:
        n_int = int(_as_mpz(n, "n"))
        if n_int.bit_length() < MIN_KEY_BITS or n_int % 2 == 0:
            raise ProtocolInputError(
                f"a Paillier modulus must be odd and at least {MIN_KEY_BITS} bits"
            )
        super().__init__(n_int)
        hs_m = _as_mpz(hs, "hs")
        if not (1 < hs_m < self.nsquare) or gmpy2.gcd(hs_m, n_int) != 1:
            raise ProtocolInputError("hs must be a unit of Z_{n^2} other than 1")
        if not (64 <= random_bits <= n_int.bit_length()):
            raise ProtocolInputError("random_bits must be between 64 and the modulus size")
        if not (1 <= window_bits <= 16):
            raise ProtocolInputError("window_bits must be between 1 and 16")
        self.hs = int(hs_m)
        self.random_bits = random_bits
        self.window_bits = window_bits
        self._n = mpz(n_int)
        self._nsq = mpz(self.nsquare)
        self._table: list[list[Any]] | None = None

    # -- pickling: keep n, hs and the parameters; rebuild the table on demand
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_table"] = None
        state["_n"] = int(self._n)
        state["_nsq"] = int(self._nsq)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._n = mpz(state["_n"])
        self._nsq = mpz(state["_nsq"])

    @property
    def modulus_bytes(self) -> int:
        return (self.n.bit_length() + 7) // 8

    def wire_size(self) -> int:
        """Bytes on the wire: n and hs."""
        return self.modulus_bytes * 3

    def fingerprint(self) -> int:
        """The modulus; two keys are the same key iff their moduli are equal."""
        return int(self.n)

    # -- fixed-base table of hs
    def _ensure_table(self) -> list[list[Any]]:
        if self._table is None:
            w = self.window_bits
            rows = -(-self.random_bits // w)
            nsq = self._nsq
            base = mpz(self.hs)
            table: list[list[Any]] = []
            for _ in range(rows):
                row = [mpz(1), base]
                for _ in range((1 << w) - 2):
                    row.append(row[-1] * base % nsq)
                table.append(row)
                base = row[-1] * base % nsq
            self._table = table
        return self._table

    def table_bytes(self) -> int:
        """Memory of the fixed-base table once built (ciphertext-sized entries)."""
        rows = -(-self.random_bits // self.window_bits)
        return rows * ((1 << self.window_bits) - 1) * 2 * self.modulus_bytes

    def _hs_pow_random(self, random_bytes: bytes) -> Any:
        """hs^r for r read little-endian from ``random_bytes`` (random_bits bits)."""
        table = self._ensure_table()
        nsq = self._nsq
        acc: Any = None
        if self.window_bits == 8:
            digits: Iterable[int] = random_bytes
        else:
            r = int.from_bytes(random_bytes, "little") & ((1 << self.random_bits) - 1)
            w, mask = self.window_bits, (1 << self.window_bits) - 1
            digits = ((r >> (w * i)) & mask for i in range(len(table)))
        for row, digit in zip(table, digits, strict=False):
            if digit:
                acc = row[digit] if acc is None else acc * row[digit] % nsq
        return mpz(1) if acc is None else acc

    def _random_bytes(self, count: int) -> list[bytes]:
        size = -(-self.random_bits // 8)
        extra = size * 8 - self.random_bits
        blob = os.urandom(size * count)
        chunks = [blob[i * size : (i + 1) * size] for i in range(count)]
        if extra and self.window_bits == 8:
            # clear the top bits so r < 2^random_bits exactly (only needed when not a multiple of 8)
            keep = 0xFF >> extra
            chunks = [c[:-1] + bytes([c[-1] & keep]) for c in chunks]
        return chunks

    def _check_plaintext(self, m: Any) -> Any:
        m_m = _as_mpz(m, "plaintext")
        if not (-self._n < m_m < self._n):
            raise PlaintextOutOfRange("a plaintext must satisfy -n < m < n (it is taken mod n)")
        return m_m % self._n

    # -- raw integer API (ciphertexts are Python ints)
    def encrypt_int(self, m: int) -> int:
        """Encrypt ``m mod n`` with short-exponent randomness; returns the ciphertext."""
        m_m = self._check_plaintext(m)
        noise = self._hs_pow_random(self._random_bytes(1)[0])
        return int((1 + m_m * self._n) * noise % self._nsq)

    def encrypt_ints(self, values: Iterable[int]) -> list[int]:
        """Encrypt many integers (each taken mod n); returns ciphertexts in order."""
        plain = [self._check_plaintext(v) for v in values]
        randoms = self._random_bytes(len(plain))
        n, nsq = self._n, self._nsq
        return [
            int((1 + m * n) * self._hs_pow_random(r) % nsq)
            for m, r in zip(plain, randoms, strict=True)
        ]

    def _check_ciphertext(self, c: Any) -> Any:
        c_m = _as_mpz(c, "ciphertext")
        if not (0 < c_m < self._nsq):
            raise InvalidCiphertext("a ciphertext must lie in (0, n^2)")
        return c_m

    def _check_unit(self, c: Any) -> Any:
        """A ciphertext that is also a unit of Z_{n^2}; only units are encryptions.

        Checked where it matters (decryption, scalar powers): a non-unit such as ``n`` would
        decrypt to an unrelated number, or fail inside gmpy2 for a negative scalar. The cost
        (one gcd) is small next to the exponentiation that follows.
        """
        c_m = self._check_ciphertext(c)
        if gmpy2.gcd(c_m, self._n) != 1:
            raise InvalidCiphertext("a ciphertext must be a unit of Z_{n^2} (coprime to n)")
        return c_m

    def add(self, c1: int, c2: int) -> int:
        """E(a) (+) E(b) = E(a + b)."""
        return int(self._check_ciphertext(c1) * self._check_ciphertext(c2) % self._nsq)

    def add_plain(self, c: int, m: int) -> int:
        """E(a) (+) b = E(a + b) for a plaintext integer b (not rerandomized)."""
        return int(self._check_ciphertext(c) * (1 + self._check_plaintext(m) * self._n) % self._nsq)

    def mul_plain(self, c: int, k: int) -> int:
        """E(a) (x) k = E(a * k) for a plaintext integer k (negative k allowed)."""
        k_m = _as_mpz(k, "scalar")
        return int(gmpy2.powmod(self._check_unit(c), k_m, self._nsq))

    def sum_ciphertexts(self, cs: Iterable[int]) -> int:
        """E(sum of the plaintexts)."""
        acc = mpz(1)
        for c in cs:
            acc = acc * self._check_ciphertext(c) % self._nsq
        return int(acc)

    def rerandomize(self, c: int) -> int:
        """Multiply by a fresh encryption of zero so that the result is unlinkable to ``c``."""
        noise = self._hs_pow_random(self._random_bytes(1)[0])
        return int(self._check_ciphertext(c) * noise % self._nsq)

    # -- phe interoperability
    def raw_encrypt(self, plaintext: int, r_value: int | None = None) -> int:
        """phe's raw_encrypt; without ``r_value`` it uses the fast short-exponent path."""
        if r_value is None:
            return self.encrypt_int(plaintext)
        return int(super().raw_encrypt(plaintext, r_value=r_value))

    def encrypt_encoded(self, encoding: Any, r_value: int | None) -> phe.EncryptedNumber:
        """phe's encrypt path (floats, exponents), fast when no ``r_value`` is given."""
        if r_value is not None:
            return super().encrypt_encoded(encoding, r_value)
        number = phe.EncryptedNumber(self, self.encrypt_int(encoding.encoding), encoding.exponent)
        _mark_obfuscated(number)
        return number

    def rerandomize_number(self, number: phe.EncryptedNumber) -> phe.EncryptedNumber:
        """A fresh-looking copy of a phe EncryptedNumber (fast; replaces phe's obfuscate)."""
        if number.public_key != self:
            raise KeyMismatch("the number was encrypted under another key")
        fresh = phe.EncryptedNumber(
            self, self.rerandomize(number.ciphertext(be_secure=False)), number.exponent
        )
        _mark_obfuscated(fresh)
        return fresh

    def __repr__(self) -> str:
        return f"<PaillierPublicKey {self.n.bit_length()} bits, r {self.random_bits} bits>"


def _mark_obfuscated(number: phe.EncryptedNumber) -> None:
    """Tell phe the ciphertext is already randomized (phe 1.5 keeps the flag name-mangled)."""
    number._EncryptedNumber__is_obfuscated = True


class PaillierPrivateKey(phe.PaillierPrivateKey):  # type: ignore[misc]
    """A phe private key whose decryption runs by CRT on gmpy2 integers."""

    def __init__(self, public_key: PaillierPublicKey, p: int, q: int) -> None:
        if not isinstance(public_key, PaillierPublicKey):
            raise ProtocolInputError("public_key must be a tablechain PaillierPublicKey")
        if int(p) * int(q) != public_key.n or int(p) == int(q):
            raise ProtocolInputError("p and q are not the distinct factors of the modulus")
        super().__init__(public_key, int(p), int(q))
        self._p, self._q = mpz(self.p), mpz(self.q)
        self._psq, self._qsq = mpz(self.psquare), mpz(self.qsquare)
        self._hp, self._hq = mpz(self.hp), mpz(self.hq)
        self._p_inv = mpz(self.p_inverse)

    def __getstate__(self) -> dict[str, Any]:
        return {"public_key": self.public_key, "p": int(self.p), "q": int(self.q)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["public_key"], state["p"], state["q"])  # type: ignore[misc]

    def raw_decrypt(self, ciphertext: int) -> int:
        """The plaintext in [0, n) of a ciphertext (CRT over p^2 and q^2)."""
        c = self.public_key._check_unit(ciphertext)
        p, q = self._p, self._q
        mp = (gmpy2.powmod(c, p - 1, self._psq) - 1) // p * self._hp % p
        mq = (gmpy2.powmod(c, q - 1, self._qsq) - 1) // q * self._hq % q
        return int(mp + (mq - mp) * self._p_inv % q * p)

    def decrypt_int(self, ciphertext: int) -> int:
        """The plaintext as a signed integer in (-n/2, n/2]."""
        m = self.raw_decrypt(ciphertext)
        n = self.public_key.n
        return m - n if m > n // 2 else m

    def decrypt_ints(self, ciphertexts: Iterable[int]) -> list[int]:
        return [self.decrypt_int(c) for c in ciphertexts]

    def __repr__(self) -> str:
        return f"<PaillierPrivateKey for {self.public_key!r}>"


def _derive_hs(n: int) -> int:
    """hs = (-x^2)^n mod n^2 for a random unit x (the DJN choice of h)."""
    n_m = mpz(n)
    while True:
        x = mpz(secrets.randbelow(n - 2) + 2)
        if gmpy2.gcd(x, n_m) == 1:
            break
    h = (-x * x) % n_m
    return int(gmpy2.powmod(h, n_m, n_m * n_m))


def generate_keypair(
    n_length: int = DEFAULT_KEY_BITS,
    *,
    random_bits: int = DEFAULT_RANDOM_BITS,
    window_bits: int = DEFAULT_WINDOW_BITS,
) -> tuple[PaillierPublicKey, PaillierPrivateKey]:
    """A fresh key pair (primes from phe's generator, which uses the system CSPRNG)."""
    if n_length < MIN_KEY_BITS:
        raise ProtocolInputError(f"key length must be at least {MIN_KEY_BITS} bits")
    phe_public, phe_private = phe.generate_paillier_keypair(n_length=n_length)
    public = PaillierPublicKey(
        phe_public.n,
        _derive_hs(phe_public.n),
        random_bits=min(random_bits, n_length),
        window_bits=window_bits,
    )
    return public, PaillierPrivateKey(public, phe_private.p, phe_private.q)


def keypair_from_phe(
    public_key: phe.PaillierPublicKey,
    private_key: phe.PaillierPrivateKey | None = None,
    *,
    random_bits: int = DEFAULT_RANDOM_BITS,
    window_bits: int = DEFAULT_WINDOW_BITS,
) -> tuple[PaillierPublicKey, PaillierPrivateKey | None]:
    """Wrap existing phe keys: a fresh ``hs`` is derived for the modulus."""
    public = PaillierPublicKey(
        public_key.n, _derive_hs(public_key.n), random_bits=random_bits, window_bits=window_bits
    )
    private = None
    if private_key is not None:
        private = PaillierPrivateKey(public, private_key.p, private_key.q)
    return public, private


# --------------------------------------------------------------------------------------------
# messages


@dataclass(frozen=True)
class CiphertextVector:
    """Ciphertexts on the wire, each counted at the fixed width of an element of Z_{n^2}."""

    key: int  # the modulus n, to refuse mixing keys
    values: tuple[int, ...]

    def wire_size(self) -> int:
        return len(self.values) * 2 * ((self.key.bit_length() + 7) // 8)

    def __len__(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class MaskedVector:
    """Plaintexts masked with randomness only the receiver knows, fixed width on the wire."""

    width_bytes: int
    values: tuple[int, ...]

    def wire_size(self) -> int:
        return len(self.values) * self.width_bytes


@dataclass(frozen=True)
class PlainResult:
    """A revealed protocol output sent by the party entitled to it."""

    values: np.ndarray

    def wire_size(self) -> int:
        return int(self.values.nbytes)


def _vector(public_key: PaillierPublicKey, values: Iterable[int]) -> CiphertextVector:
    return CiphertextVector(int(public_key.n), tuple(int(v) for v in values))


def _check_vector(public_key: PaillierPublicKey, vector: Any) -> tuple[int, ...]:
    if not isinstance(vector, CiphertextVector):
        raise ProtocolInputError("expected a CiphertextVector")
    if vector.key != public_key.n:
        raise KeyMismatch("ciphertexts were encrypted under another key")
    return vector.values


# --------------------------------------------------------------------------------------------
# fixed point and packing


def _fixed_point(values: Any, frac_bits: int, value_bits: int) -> list[int]:
    """round(x * 2^frac_bits) for each value, each required to satisfy |v| < 2^(value_bits-1)."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "fiub":
        raise ProtocolInputError("values must be numbers")
    flat = arr.reshape(-1)
    limit = 1 << (value_bits - 1)
    out: list[int] = []
    if flat.dtype.kind == "f":
        if not np.all(np.isfinite(flat)):
            raise PlaintextOutOfRange("values must be finite")
        for x in flat.tolist():
            try:  # exact scaling of a binary float, then round
                v = round(math.ldexp(x, frac_bits))
            except OverflowError:  # near the float maximum: far outside any layout
                v = limit
            if not -limit < v < limit:
                raise PlaintextOutOfRange(
                    f"{x!r} does not fit {value_bits} signed bits with {frac_bits} fraction bits"
                )
            out.append(v)
    else:
        for x in flat.tolist():
            v = int(x) << frac_bits
            if not -limit < v < limit:
                raise PlaintextOutOfRange(
                    f"{x!r} does not fit {value_bits} signed bits with {frac_bits} fraction bits"
                )
            out.append(v)
    return out


@dataclass(frozen=True)
class PackingLayout:
    """How fixed-point values share one plaintext.

    Each value is encoded as ``round(x * 2^frac_bits)`` and must satisfy
    ``|v| < 2^(value_bits - 1)``. Each slot has ``headroom_bits`` more bits, so up to
    ``2^headroom_bits`` packed plaintexts can be added (or one multiplied by a scalar of up to
    ``headroom_bits`` bits) before a slot overflows. Slots hold signed values in balanced base
    ``2^slot_bits``, so negative values need no offset bookkeeping.
    """

    frac_bits: int
    value_bits: int
    headroom_bits: int
    slots: int

    @property
    def slot_bits(self) -> int:
        return self.value_bits + self.headroom_bits

    @property
    def max_terms(self) -> int:
        """How many packed plaintexts may be summed."""
        return 1 << self.headroom_bits

    @property
    def max_abs_value(self) -> float:
        """Largest magnitude a single input value may have."""
        return math.ldexp((1 << (self.value_bits - 1)) - 1, -self.frac_bits)

    def check_key(self, public_key: PaillierPublicKey) -> None:
        if self.slots * self.slot_bits > public_key.n.bit_length() - 2:
            raise PlaintextOutOfRange("this packing layout does not fit the key's plaintext space")

    def encode(self, values: Any) -> list[int]:
        """Packed plaintext integers (signed) for the flattened values, ``slots`` per integer."""
        fixed = _fixed_point(values, self.frac_bits, self.value_bits)
        out = []
        for start in range(0, len(fixed), self.slots):
            acc = 0
            for v in reversed(fixed[start : start + self.slots]):
                acc = (acc << self.slot_bits) + v
            out.append(acc)
        return out

    def decode_fixed(self, packed: Iterable[int], count: int) -> list[int]:
        """The slot integers (still scaled by 2^frac_bits) of signed packed plaintexts."""
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
            # a negative count would slice values off the end and return the rest as if right
            raise ProtocolInputError(f"count must be a non-negative integer, got {count!r}")
        count = int(count)
        sb = self.slot_bits
        base, half, mask = 1 << sb, 1 << (sb - 1), (1 << sb) - 1
        out: list[int] = []
        for total in packed:
            t = int(total)
            for _ in range(self.slots):
                digit = t & mask
                if digit >= half:
                    digit -= base
                out.append(digit)
                t = (t - digit) >> sb
            if t != 0:
                raise PlaintextOutOfRange("packed plaintext overflowed its slots")
        if count > len(out):
            raise ProtocolInputError("fewer packed values than requested")
        return out[:count]

    def decode(self, packed: Iterable[int], count: int) -> np.ndarray:
        """The values (float64) of signed packed plaintexts."""
        fixed = self.decode_fixed(packed, count)
        return np.array([math.ldexp(v, -self.frac_bits) for v in fixed], dtype=np.float64)


def packing_layout(
    public_key: PaillierPublicKey | int,
    *,
    frac_bits: int = 16,
    value_bits: int = 40,
    headroom_bits: int = 16,
) -> PackingLayout:
    """The densest layout for a key (or a modulus bit length) with these field widths."""
    bits = public_key if isinstance(public_key, int) else public_key.n.bit_length()
    if frac_bits < 0 or value_bits < 2 or headroom_bits < 0:
        raise ProtocolInputError("frac_bits >= 0, value_bits >= 2 and headroom_bits >= 0")
    if frac_bits >= value_bits:
        raise ProtocolInputError("value_bits must exceed frac_bits")
    slots = (bits - 2) // (value_bits + headroom_bits)
    if slots < 1:
        raise ProtocolInputError("a slot does not fit the plaintext space")
    return PackingLayout(frac_bits, value_bits, headroom_bits, slots)


def encrypt_packed(public_key: PaillierPublicKey, layout: PackingLayout, values: Any) -> list[int]:
    """Ciphertexts of the values packed ``layout.slots`` to a plaintext."""
    layout.check_key(public_key)
    return public_key.encrypt_ints(layout.encode(values))


def decrypt_packed(
    private_key: PaillierPrivateKey, layout: PackingLayout, ciphertexts: Iterable[int], count: int
) -> np.ndarray:
    """The ``count`` values packed in ``ciphertexts`` (after any homomorphic additions)."""
    layout.check_key(private_key.public_key)
    return layout.decode((private_key.decrypt_int(c) for c in ciphertexts), count)


# --------------------------------------------------------------------------------------------
# secure aggregation


@dataclass(frozen=True)
class AggregationResult:
    """The sum of the parties' vectors and who learned it.

    Trust model: semi-honest parties; the combiner (which sees every party's ciphertexts) and the
    key holder (which can decrypt) must not collude. The key holder learns only the sum.
    """

    total: np.ndarray
    key_holder: int
    combiner: int
    contributors: tuple[int, ...]
    receivers: tuple[int, ...]
    ciphertexts_per_party: int
    traffic: Traffic
    trust_model: str = "semi-honest; combiner and key holder do not collude"


def secure_aggregate(
    network: Network,
    inputs: Mapping[int, Any],
    private_key: PaillierPrivateKey,
    *,
    key_holder: int,
    combiner: int,
    layout: PackingLayout | None = None,
    reveal_to: Sequence[int] = (),
) -> AggregationResult:
    """Sum equal-shaped vectors of several parties so that only the key holder sees the sum.

    Round 1: the key holder sends its public key. Round 2: each contributor sends its packed,
    encrypted vector to the combiner. Round 3: the combiner multiplies the ciphertexts (adds the
    plaintexts), rerandomizes and sends the sum to the key holder, who decrypts it and adds its
    own input in the clear. Round 4 (only if ``reveal_to``): the key holder sends the sum.
    """
    n_parties = network.n_parties

    def is_party(p: Any) -> bool:
        return (not isinstance(p, bool) and isinstance(p, (int, np.integer))
                and 0 <= int(p) < n_parties)

    if not (is_party(key_holder) and is_party(combiner)):
        raise ProtocolInputError("key_holder and combiner must be parties of the network")
    if key_holder == combiner:
        raise ProtocolInputError("the combiner must not hold the key")
    if not isinstance(inputs, Mapping) or not inputs:
        raise ProtocolInputError("nothing to aggregate")
    for party in list(inputs) + list(reveal_to):
        if not is_party(party):
            raise ProtocolInputError(f"party {party!r} is not in the network")
    public_key = private_key.public_key
    layout = layout or packing_layout(public_key)
    layout.check_key(public_key)
    arrays = {p: np.asarray(v) for p, v in sorted(inputs.items())}
    shape = next(iter(arrays.values())).shape
    if any(a.shape != shape for a in arrays.values()):
        raise ProtocolInputError("all inputs must have the same shape")
    if len(arrays) > layout.max_terms:
        raise PlaintextOutOfRange(
            f"{len(arrays)} contributors exceed the layout's headroom of {layout.max_terms}"
        )
    count = int(np.prod(shape, dtype=np.int64))
    # validate every input before anything is sent, so bad input changes nothing
    encoded = {p: layout.encode(a) for p, a in arrays.items()}
    before = network.traffic.copy()

    others = [p for p in range(n_parties) if p != key_holder]
    keys_at = network.exchange({(key_holder, p): public_key for p in others})
    encrypted: dict[int, list[int]] = {}
    for party, plain in encoded.items():
        if party == key_holder:
            continue
        party_key = keys_at[(key_holder, party)]
        encrypted[party] = party_key.encrypt_ints(plain)
    at_combiner = network.exchange(
        {(p, combiner): _vector(public_key, c) for p, c in encrypted.items() if p != combiner}
    )
    combiner_key: PaillierPublicKey = keys_at[(key_holder, combiner)]
    chunks = -(-count // layout.slots)
    incoming = [_check_vector(combiner_key, v) for v in at_combiner.values()]
    if combiner in encrypted:
        incoming.append(tuple(encrypted[combiner]))
    summed = []
    for i in range(chunks):
        if incoming:  # the sum of the others' ciphertexts, made unlinkable to them
            summed.append(
                combiner_key.rerandomize(combiner_key.sum_ciphertexts(v[i] for v in incoming))
            )
        else:  # only the key holder contributed
            summed.append(combiner_key.encrypt_int(0))
    at_holder = network.exchange({(combiner, key_holder): _vector(public_key, summed)})
    received = _check_vector(public_key, at_holder[(combiner, key_holder)])
    fixed = layout.decode_fixed((private_key.decrypt_int(c) for c in received), count)
    if key_holder in encoded:
        own = layout.decode_fixed(encoded[key_holder], count)
        fixed = [a + b for a, b in zip(fixed, own, strict=True)]
    total_values = np.array(
        [math.ldexp(v, -layout.frac_bits) for v in fixed], dtype=np.float64
    ).reshape(shape)
    receivers = tuple(sorted({key_holder, *reveal_to}))
    if reveal_to:
        network.exchange(
            {(key_holder, p): PlainResult(total_values) for p in receivers if p != key_holder}
        )
    return AggregationResult(
        total=total_values,
        key_holder=key_holder,
        combiner=combiner,
        contributors=tuple(arrays),
        receivers=receivers,
        ciphertexts_per_party=chunks,
        traffic=network.traffic.minus(before),
    )


# --------------------------------------------------------------------------------------------
# vertical (hetero) logistic regression, FATE style


@dataclass(frozen=True)
class HeteroLRConfig:
    """Training parameters; the batch order comes from ``seed`` and is public to both parties.

    ``frac_bits`` scales the encrypted activations and residuals, ``feature_frac_bits`` the
    features used as plaintext exponents in the encrypted gradient. ``gradient_bits`` bounds the
    magnitude of an encrypted gradient sum and ``mask_bits`` is the statistical hiding of the
    masks the arbiter sees.
    """

    epochs: int = 2
    batch_size: int = 64
    learning_rate: float = 0.2
    l2: float = 0.01
    frac_bits: int = 16
    feature_frac_bits: int = 10
    gradient_bits: int = 120
    mask_bits: int = 40
    seed: int = 0


@dataclass(frozen=True)
class HeteroLRModel:
    """A vertically split linear model: guest weights, host weights, the guest's intercept."""

    guest_weights: np.ndarray
    host_weights: np.ndarray
    intercept: float
    epochs: int
    encrypted: bool
    traffic: Traffic | None = None
    losses: tuple[float, ...] = field(default=())

    def decision_function(self, x_guest: Any, x_host: Any) -> np.ndarray:
        xg = np.asarray(x_guest, dtype=np.float64)
        xh = np.asarray(x_host, dtype=np.float64)
        return xg @ self.guest_weights + xh @ self.host_weights + self.intercept

    def predict_proba(self, x_guest: Any, x_host: Any) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.decision_function(x_guest, x_host)))


def _check_lr_inputs(
    x_guest: Any, y: Any, x_host: Any, config: HeteroLRConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xg = np.asarray(x_guest, dtype=np.float64)
    xh = np.asarray(x_host, dtype=np.float64)
    labels = np.asarray(y)
    if xg.ndim != 2 or xh.ndim != 2 or labels.ndim != 1:
        raise ProtocolInputError("features must be 2-D and labels 1-D")
    if not (len(xg) == len(xh) == len(labels)) or len(labels) == 0:
        raise ProtocolInputError("guest features, host features and labels must be aligned rows")
    if not (np.all(np.isfinite(xg)) and np.all(np.isfinite(xh))):
        raise ProtocolInputError("features must be finite")
    if not np.all((labels == 0) | (labels == 1)):
        raise ProtocolInputError("labels must be 0 or 1")
    if max(float(np.abs(xg).max(initial=0)), float(np.abs(xh).max(initial=0))) > 2.0**20:
        raise PlaintextOutOfRange("features must be scaled to |x| <= 2^20 (standardize them)")
    if config.epochs < 1 or config.batch_size < 1:
        raise ProtocolInputError("epochs and batch_size must be positive")
    if not (0 < config.learning_rate < 10) or config.l2 < 0:
        raise ProtocolInputError("learning_rate must be in (0, 10) and l2 >= 0")
    return xg, labels.astype(np.int64), xh


def _batches(rows: int, config: HeteroLRConfig, epoch: int) -> list[np.ndarray]:
    order = np.random.default_rng([config.seed, epoch]).permutation(rows)
    return [order[s : s + config.batch_size] for s in range(0, rows, config.batch_size)]


def _to_fixed(x: np.ndarray, bits: int) -> list[int]:
    return [round(math.ldexp(v, bits)) for v in x.reshape(-1).tolist()]


def _encrypted_dot_columns(
    public_key: PaillierPublicKey, cts: Sequence[int], exps: np.ndarray, window: int = 4
) -> list[Any]:
    """For each column j of the integer matrix ``exps``: E(sum_i d_i * exps[i, j]).

    Exponents are shifted per column to be non-negative (the shift is undone with one
    exponentiation of E(sum d)), then all columns share per-ciphertext tables of
    c^1 .. c^(2^window - 1) (simultaneous exponentiation, Straus).
    """
    nsq = public_key._nsq
    bases = [mpz(c) for c in cts]
    total = mpz(1)
    for b in bases:
        total = total * b % nsq
    shift = exps.min(axis=0)
    shifted = exps - shift
    bits = int(shifted.max(initial=0)).bit_length()
    size = 1 << window
    tables = []
    for b in bases:
        row = [mpz(1), b]
        for _ in range(size - 2):
            row.append(row[-1] * b % nsq)
        tables.append(row)
    windows = -(-bits // window)
    mask = size - 1
    out = []
    for j in range(exps.shape[1]):
        column = [int(v) for v in shifted[:, j].tolist()]
        acc = mpz(1)
        for w in range(windows - 1, -1, -1):
            for _ in range(window):
                acc = acc * acc % nsq
            offset = w * window
            for table, e in zip(tables, column, strict=True):
                digit = (e >> offset) & mask
                if digit:
                    acc = acc * table[digit] % nsq
        if shift[j]:
            acc = acc * gmpy2.powmod(total, int(shift[j]), nsq) % nsq
        out.append(acc)
    out.append(total)  # the last entry is E(sum d), used for the intercept
    return out


def _mask_and_pack(
    public_key: PaillierPublicKey, sums: Sequence[Any], config: HeteroLRConfig
) -> tuple[list[int], list[int], int]:
    """E(g_j + m_j) packed several to a ciphertext, with statistically hiding masks m_j.

    Returns (ciphertexts, masks, slot_bits). Each g_j is a signed value with
    ``|g_j| < 2^gradient_bits``; ``m_j`` is uniform in ``[2^gradient_bits, 2^(gradient_bits +
    mask_bits) + 2^gradient_bits)`` so ``g_j + m_j`` is positive and hides g_j up to
    statistical distance 2^-mask_bits.
    """
    nsq, n = public_key._nsq, public_key._n
    slot_bits = config.gradient_bits + config.mask_bits + 2
    per_ct = (n.bit_length() - 1) // slot_bits
    if per_ct < 1:
        raise ProtocolInputError("gradient_bits + mask_bits do not fit the key")
    masks = [
        secrets.randbits(config.gradient_bits + config.mask_bits) + (1 << config.gradient_bits)
        for _ in sums
    ]
    cts: list[int] = []
    for start in range(0, len(sums), per_ct):
        acc = mpz(1)
        for s, m in reversed(
            list(zip(sums[start : start + per_ct], masks[start : start + per_ct], strict=True))
        ):
            acc = gmpy2.powmod(acc, 1 << slot_bits, nsq) if acc != 1 else acc
            acc = acc * s % nsq * (1 + mpz(m) * n) % nsq
        cts.append(public_key.rerandomize(int(acc)))
    return cts, masks, slot_bits


def _unpack_masked(
    values: Sequence[int], masks: Sequence[int], slot_bits: int, per_ct: int
) -> list[int]:
    out: list[int] = []
    slot_mask = (1 << slot_bits) - 1
    for i, m in enumerate(masks):
        packed = int(values[i // per_ct])
        out.append(((packed >> (slot_bits * (i % per_ct))) & slot_mask) - m)
    return out


def train_hetero_lr(
    network: Network,
    x_guest: Any,
    y: Any,
    x_host: Any,
    private_key: PaillierPrivateKey,
    *,
    guest: int = 0,
    host: int = 1,
    arbiter: int = 2,
    config: HeteroLRConfig | None = None,
) -> HeteroLRModel:
    """Vertical logistic regression with gradients under the arbiter's Paillier key.

    FATE's hetero-LR with the Taylor approximation ``sigmoid(u) ~ 1/2 + u/4``. Per batch:
    the host sends E(u_host) to the guest (round 1); the guest adds its part and the labels and
    returns the rerandomized residuals E(4d), d = u/4 + 1/2 - y (round 2); each party computes
    its encrypted gradient E(X^T 4d), masks it, and sends it to the arbiter (round 3); the
    arbiter decrypts the masked gradients and returns them (round 4). The guest never sees
    host features, the host never sees labels or guest features, the arbiter sees only masked
    gradients. As in FATE, each party does learn the plaintext gradient of its own weights
    (X_party^T d), which is what it needs to update them. Trust model: semi-honest, no
    collusion with the arbiter.
    """
    config = config or HeteroLRConfig()
    xg, labels, xh = _check_lr_inputs(x_guest, y, x_host, config)
    roles = {guest, host, arbiter}
    if len(roles) != 3 or not all(0 <= r < network.n_parties for r in roles):
        raise ProtocolInputError("guest, host and arbiter must be three distinct parties")
    public_key = private_key.public_key
    n = public_key._n
    f, fx = config.frac_bits, config.feature_frac_bits
    before = network.traffic.copy()

    keys = network.exchange({(arbiter, guest): public_key, (arbiter, host): public_key})
    guest_key: PaillierPublicKey = keys[(arbiter, guest)]
    host_key: PaillierPublicKey = keys[(arbiter, host)]
    wg = np.zeros(xg.shape[1])
    wh = np.zeros(xh.shape[1])
    bias = 0.0
    xg_fixed = np.array([_to_fixed(row, fx) for row in xg], dtype=object)
    xh_fixed = np.array([_to_fixed(row, fx) for row in xh], dtype=object)
    scale = math.ldexp(4.0, f + fx)
    width = (public_key.n.bit_length() + 7) // 8

    for epoch in range(config.epochs):
        for batch in _batches(len(labels), config, epoch):
            size = len(batch)
            # round 1: host -> guest, E(u_host)
            u_host = _to_fixed(xh[batch] @ wh, f)
            msg = network.exchange(
                {(host, guest): _vector(host_key, host_key.encrypt_ints(u_host))}
            )
            enc_uh = _check_vector(guest_key, msg[(host, guest)])
            # round 2: guest -> host, E(4d) = E(u_host) * (1 + n * (u_guest + 2 - 4y)), rerandomized
            u_guest = xg[batch] @ wg + bias
            plain = [
                round(math.ldexp(ug, f)) + ((2 - 4 * int(lab)) << f)
                for ug, lab in zip(u_guest.tolist(), labels[batch].tolist(), strict=True)
            ]
            residual = [
                guest_key.rerandomize(int(mpz(c) * (1 + (mpz(p) % n) * n) % guest_key._nsq))
                for c, p in zip(enc_uh, plain, strict=True)
            ]
            msg = network.exchange({(guest, host): _vector(guest_key, residual)})
            enc_d_at_host = _check_vector(host_key, msg[(guest, host)])
            # round 3: both -> arbiter, masked packed gradients
            g_sums = _encrypted_dot_columns(guest_key, residual, xg_fixed[batch].astype(object))
            # guest's intercept gradient is E(sum 4d) scaled by 2^(f) only: lift it to 2^(f+fx)
            g_sums[-1] = gmpy2.powmod(g_sums[-1], 1 << fx, guest_key._nsq)
            h_sums = _encrypted_dot_columns(host_key, enc_d_at_host, xh_fixed[batch].astype(object))
            h_sums = h_sums[:-1]
            g_cts, g_masks, slot_bits = _mask_and_pack(guest_key, g_sums, config)
            h_cts, h_masks, _ = _mask_and_pack(host_key, h_sums, config)
            msg = network.exchange(
                {
                    (guest, arbiter): _vector(guest_key, g_cts),
                    (host, arbiter): _vector(host_key, h_cts),
                }
            )
            # round 4: arbiter decrypts masked values and returns them
            reply = {}
            for party in (guest, host):
                cts = _check_vector(public_key, msg[(party, arbiter)])
                reply[(arbiter, party)] = MaskedVector(
                    width, tuple(private_key.raw_decrypt(c) for c in cts)
                )
            msg = network.exchange(reply)
            per_ct = (public_key.n.bit_length() - 1) // slot_bits
            g_grad = _unpack_masked(msg[(arbiter, guest)].values, g_masks, slot_bits, per_ct)
            h_grad = _unpack_masked(msg[(arbiter, host)].values, h_masks, slot_bits, per_ct)
            limit = 1 << config.gradient_bits
            if any(abs(v) >= limit for v in g_grad + h_grad):
                raise PlaintextOutOfRange("a gradient exceeded gradient_bits; scale the features")
            grad_g = np.array([v / scale for v in g_grad], dtype=np.float64) / size
            grad_h = np.array([v / scale for v in h_grad], dtype=np.float64) / size
            wg -= config.learning_rate * (grad_g[:-1] + config.l2 * wg)
            bias -= config.learning_rate * grad_g[-1]
            wh -= config.learning_rate * (grad_h + config.l2 * wh)
    return HeteroLRModel(
        guest_weights=wg,
        host_weights=wh,
        intercept=bias,
        epochs=config.epochs,
        encrypted=True,
        traffic=network.traffic.minus(before),
    )


def train_lr_plain(
    x_guest: Any, y: Any, x_host: Any, *, config: HeteroLRConfig | None = None
) -> HeteroLRModel:
    """The same algorithm in the clear on one machine: the no-encryption baseline."""
    config = config or HeteroLRConfig()
    xg, labels, xh = _check_lr_inputs(x_guest, y, x_host, config)
    wg = np.zeros(xg.shape[1])
    wh = np.zeros(xh.shape[1])
    bias = 0.0
    for epoch in range(config.epochs):
        for batch in _batches(len(labels), config, epoch):
            u = xg[batch] @ wg + xh[batch] @ wh + bias
            d = 0.25 * u + 0.5 - labels[batch]
            size = len(batch)
            grad_g = xg[batch].T @ d / size
            grad_h = xh[batch].T @ d / size
            wg -= config.learning_rate * (grad_g + config.l2 * wg)
            bias -= config.learning_rate * float(d.mean())
            wh -= config.learning_rate * (grad_h + config.l2 * wh)
    return HeteroLRModel(wg, wh, bias, config.epochs, encrypted=False)
