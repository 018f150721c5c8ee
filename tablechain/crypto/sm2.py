"""SM2 signatures (GB/T 32918.2-2016) on the recommended curve of GB/T 32918.5-2017.

Why not gmssl's ``CryptSM2`` on the hot path: gmssl 3.2.2 draws its signing nonce from ``random``
(not a CSPRNG), strips the ``04`` prefix of public keys with ``lstrip("04")`` (which also eats
leading 0 and 4 digits of X, breaking about one key in eight), validates no points, hashes with a
pure-Python SM3 and multiplies points over hex strings (about 43 signs/s). Each of those is
replaced here: the nonce comes from :mod:`secrets`, keys are parsed as bytes and checked to be on
the curve, SM3 is OpenSSL's (through ``cryptography``), and scalar multiplication uses Jacobian
coordinates over Python ints with a precomputed table for the base point and a width-5 NAF for
other points. What is left of gmssl is four lines of modular arithmetic, so gmssl stays in the
tests as an independent oracle (it verifies our signatures and we verify its) next to OpenSSL.

Encodings, chosen for interoperability with OpenSSL (``openssl pkeyutl -rawin -digest sm3``):
- public key: the uncompressed point ``04 || X || Y`` (65 bytes); a compressed point is accepted
  on input;
- private key: the 32-byte big-endian scalar d, 1 <= d <= n - 2;
- signature: DER ``SEQUENCE { INTEGER r, INTEGER s }`` as OpenSSL emits it (70 to 72 bytes);
  :func:`signature_to_raw` / :func:`signature_from_raw` convert to and from the 64-byte r || s;
- the signed digest is e = SM3(Z_A || M) with Z_A over the default user ID ``1234567812345678``
  (GM/T 0009), the ID OpenSSL 3 uses by default.

This code is not constant-time (Python integers never are); neither is gmssl.
"""

from __future__ import annotations

import hmac
import secrets
from functools import lru_cache

from gmpy2 import invert, mpz

from tablechain.crypto.hashes import sm3
from tablechain.crypto.keys import CryptoError, PrivateKey, PublicKey

__all__ = [
    "DEFAULT_ID",
    "Sm2PrivateKey",
    "Sm2PublicKey",
    "encode_signature",
    "decode_signature",
    "signature_to_raw",
    "signature_from_raw",
    "z_value",
    "SM2_CIPHERTEXT_OVERHEAD",
]

# Curve sm2p256v1 (GB/T 32918.5-2017); a = p - 3. Field arithmetic runs on gmpy2 integers
# (GMP), about 2.5x faster than Python ints for 256-bit multiply-and-reduce.
_P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
_A = _P - 3
_B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
_N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
_GX = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
_GY = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0

DEFAULT_ID = b"1234567812345678"
"""The default user ID (GM/T 0009-2012), used by OpenSSL 3 and by SM2-with-SM3 certificates."""

_MAX_ID_BYTES = 8191  # ENTL is a 16-bit count of bits

_Pm = mpz(_P)
_Jacobian = tuple[int, int, int]  # (X, Y, Z) with x = X / Z^2, y = Y / Z^3; Z == 0 is infinity
_Affine = tuple[int, int]
_INFINITY: _Jacobian = (1, 1, 0)

_BASE_WINDOW = 8  # bits per window of the base-point table: 32 windows of 255 points
_NAF_WIDTH = 5  # window of the NAF for other points: odd multiples 1P..15P


# --- field and group arithmetic ----------------------------------------------------------------


def _double(pt: _Jacobian) -> _Jacobian:
    """2P in Jacobian coordinates for a = -3 (dbl-2001-b)."""
    x1, y1, z1 = pt
    if z1 == 0 or y1 == 0:
        return _INFINITY
    p = _Pm
    delta = z1 * z1 % p
    gamma = y1 * y1 % p
    beta = x1 * gamma % p
    alpha = 3 * (x1 - delta) * (x1 + delta) % p
    x3 = (alpha * alpha - 8 * beta) % p
    z3 = ((y1 + z1) * (y1 + z1) - gamma - delta) % p
    y3 = (alpha * (4 * beta - x3) - 8 * gamma * gamma) % p
    return x3, y3, z3


def _add_affine(pt: _Jacobian, q: _Affine) -> _Jacobian:
    """P + Q with P Jacobian and Q affine (mixed addition); handles P = Q and P = -Q."""
    x1, y1, z1 = pt
    x2, y2 = q
    if z1 == 0:
        return x2, y2, 1
    p = _Pm
    z1z1 = z1 * z1 % p
    u2 = x2 * z1z1 % p
    s2 = y2 * z1 * z1z1 % p
    h = (u2 - x1) % p
    r = (s2 - y1) % p
    if h == 0:
        return _double(pt) if r == 0 else _INFINITY
    hh = h * h % p
    hhh = h * hh % p
    v = x1 * hh % p
    x3 = (r * r - hhh - 2 * v) % p
    y3 = (r * (v - x3) - y1 * hhh) % p
    return x3, y3, z1 * h % p


def _to_affine(pt: _Jacobian) -> _Affine | None:
    x, y, z = pt
    if z == 0:
        return None
    zi = invert(z, _Pm)
    zi2 = zi * zi % _Pm
    return int(x * zi2 % _Pm), int(y * zi2 * zi % _Pm)


def _affine_add(a: _Affine, b: _Affine) -> _Affine | None:
    """Affine addition, used only to build tables (one inversion per point)."""
    (x1, y1), (x2, y2) = a, b
    p = _Pm
    if x1 == x2:
        if (y1 + y2) % p == 0:
            return None
        lam = (3 * x1 * x1 + _A) * invert(2 * y1, p) % p
    else:
        lam = (y2 - y1) * invert(x2 - x1, p) % p
    x3 = (lam * lam - x1 - x2) % p
    return x3, (lam * (x1 - x3) - y1) % p


@lru_cache(maxsize=1)
def _base_table() -> tuple[tuple[_Affine, ...], ...]:
    """table[i][j] = (j + 1) * 256^i * G, built on first use (about 0.1 s, 1 MB)."""
    windows = (256 + _BASE_WINDOW - 1) // _BASE_WINDOW
    size = (1 << _BASE_WINDOW) - 1
    rows: list[tuple[_Affine, ...]] = []
    base: _Affine = (mpz(_GX), mpz(_GY))
    for _ in range(windows):
        row = [base]
        for _ in range(size - 1):
            nxt = _affine_add(row[-1], base)
            if nxt is None:  # cannot happen: the multiples are far below the group order
                raise CryptoError("SM2 base table hit the point at infinity")
            row.append(nxt)
        rows.append(tuple(row))
        doubled = _affine_add(row[-1], base)  # 256 * base
        if doubled is None:
            raise CryptoError("SM2 base table hit the point at infinity")
        base = doubled
    return tuple(rows)


def _add_base_multiple(acc: _Jacobian, k: int) -> _Jacobian:
    """acc + k*G using the fixed-base table: one mixed addition per nonzero 8-bit window."""
    table = _base_table()
    mask = (1 << _BASE_WINDOW) - 1
    i = 0
    while k:
        digit = k & mask
        if digit:
            acc = _add_affine(acc, table[i][digit - 1])
        k >>= _BASE_WINDOW
        i += 1
    return acc


def _naf(k: int, width: int) -> list[int]:
    """Width-w non-adjacent form of k, least significant digit first."""
    digits: list[int] = []
    full = 1 << width
    half = full >> 1
    while k:
        if k & 1:
            d = k & (full - 1)
            if d >= half:
                d -= full
            k -= d
        else:
            d = 0
        digits.append(d)
        k >>= 1
    return digits


def _odd_multiples(point: _Affine) -> tuple[_Affine, ...]:
    """(1P, 3P, 5P, ..., 15P) in affine coordinates."""
    twice = _affine_add(point, point)
    if twice is None:
        raise CryptoError("SM2 point of order 2 (impossible on a prime-order curve)")
    out = [point]
    for _ in range((1 << (_NAF_WIDTH - 2)) - 1):
        nxt = _affine_add(out[-1], twice)
        if nxt is None:
            raise CryptoError("SM2 point of small order (impossible on a prime-order curve)")
        out.append(nxt)
    return tuple(out)


def _mul_with_table(k: int, odd: tuple[_Affine, ...]) -> _Jacobian:
    """k*P by width-5 NAF over the odd multiples of P.

    The doubling (dbl-2001-b) and the mixed addition of :func:`_double` / :func:`_add_affine`
    are inlined: this loop is where verification spends its time.
    """
    p = _Pm
    x1 = y1 = mpz(1)
    z1 = mpz(0)
    for d in reversed(_naf(k, _NAF_WIDTH)):
        if z1:
            delta = z1 * z1 % p
            gamma = y1 * y1 % p
            beta = x1 * gamma % p
            alpha = 3 * (x1 - delta) * (x1 + delta) % p
            x3 = (alpha * alpha - 8 * beta) % p
            z1 = ((y1 + z1) * (y1 + z1) - gamma - delta) % p
            y1 = (alpha * (4 * beta - x3) - 8 * gamma * gamma) % p
            x1 = x3
        if d:
            if d > 0:
                x2, y2 = odd[d >> 1]
            else:
                x2, y2 = odd[(-d) >> 1]
                y2 = p - y2
            if not z1:
                x1, y1, z1 = x2, y2, mpz(1)
                continue
            z1z1 = z1 * z1 % p
            h = (x2 * z1z1 - x1) % p
            r = (y2 * z1 * z1z1 - y1) % p
            if not h:  # doubling or P + (-P): the general routine handles both
                x1, y1, z1 = _add_affine((x1, y1, z1), (x2, y2))
                continue
            hh = h * h % p
            hhh = h * hh % p
            v = x1 * hh % p
            x3 = (r * r - hhh - 2 * v) % p
            y1 = (r * (v - x3) - y1 * hhh) % p
            z1 = z1 * h % p
            x1 = x3
    return x1, y1, z1


def _on_curve(x: int, y: int) -> bool:
    return 0 <= x < _P and 0 <= y < _P and (y * y - (x * x * x + _A * x + _B)) % _P == 0


def _base_mul(k: int) -> _Affine:
    pt = _to_affine(_add_base_multiple(_INFINITY, k % _N))
    if pt is None:
        raise CryptoError("SM2 scalar is a multiple of the group order")
    return pt


def _point_mul(k: int, odd: tuple[_Affine, ...]) -> _Affine:
    pt = _to_affine(_mul_with_table(k, odd))
    if pt is None:
        raise CryptoError("SM2 scalar multiple is the point at infinity")
    return pt


# --- public-key encryption (GB/T 32918.4-2016) -------------------------------------------------

SM2_CIPHERTEXT_OVERHEAD = 65 + 32
"""Bytes an SM2 ciphertext adds to its plaintext: C1 (``04 || X || Y``) and C3 (SM3)."""


def _kdf(z: bytes, length: int) -> bytes:
    """The SM3 key derivation function of GB/T 32918.4 section 5.4.3."""
    out = bytearray()
    counter = 1
    while len(out) < length:
        out += sm3(z + counter.to_bytes(4, "big"))
        counter += 1
    return bytes(out[:length])


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")




def _der_int(value: int) -> bytes:
    body = value.to_bytes(value.bit_length() // 8 + 1, "big")  # leading 0 keeps it positive
    return b"\x02" + bytes([len(body)]) + body


def encode_signature(r: int, s: int) -> bytes:
    """DER ``SEQUENCE { INTEGER r, INTEGER s }`` (OpenSSL's SM2 signature encoding)."""
    if not (0 < r < _N and 0 < s < _N):
        raise CryptoError("SM2 signature values must lie in [1, n-1]")
    body = _der_int(r) + _der_int(s)
    return b"\x30" + bytes([len(body)]) + body


def _read_der_int(data: bytes, pos: int) -> tuple[int, int]:
    if pos + 2 > len(data) or data[pos] != 0x02:
        raise CryptoError("SM2 signature: expected a DER INTEGER")
    length = data[pos + 1]
    if length == 0 or length > 33 or pos + 2 + length > len(data):
        raise CryptoError("SM2 signature: bad INTEGER length")
    body = data[pos + 2 : pos + 2 + length]
    if body[0] & 0x80:
        raise CryptoError("SM2 signature: negative INTEGER")
    if length > 1 and body[0] == 0 and not body[1] & 0x80:
        raise CryptoError("SM2 signature: INTEGER not minimally encoded")
    return int.from_bytes(body, "big"), pos + 2 + length


def decode_signature(signature: bytes) -> tuple[int, int]:
    """(r, s) from a strict DER signature; raises :class:`CryptoError` on any deviation."""
    if not isinstance(signature, (bytes, bytearray)) or len(signature) < 8 or len(signature) > 72:
        raise CryptoError("SM2 signature: expected 8 to 72 bytes of DER")
    if signature[0] != 0x30 or signature[1] != len(signature) - 2:
        raise CryptoError("SM2 signature: expected one DER SEQUENCE filling the input")
    r, pos = _read_der_int(signature, 2)
    s, pos = _read_der_int(signature, pos)
    if pos != len(signature):
        raise CryptoError("SM2 signature: trailing bytes")
    if not (0 < r < _N and 0 < s < _N):
        raise CryptoError("SM2 signature values must lie in [1, n-1]")
    return r, s


def signature_to_raw(signature: bytes) -> bytes:
    """DER signature -> 64-byte r || s (the fixed-width form some SM2 libraries use)."""
    r, s = decode_signature(signature)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def signature_from_raw(raw: bytes) -> bytes:
    """64-byte r || s -> DER signature."""
    if len(raw) != 64:
        raise CryptoError("a raw SM2 signature is 64 bytes r || s")
    return encode_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))


def _za_prefix(user_id: bytes) -> bytes:
    if len(user_id) > _MAX_ID_BYTES:
        raise CryptoError(f"SM2 user ID longer than {_MAX_ID_BYTES} bytes")
    return (
        (len(user_id) * 8).to_bytes(2, "big")
        + user_id
        + _A.to_bytes(32, "big")
        + _B.to_bytes(32, "big")
        + _GX.to_bytes(32, "big")
        + _GY.to_bytes(32, "big")
    )


def z_value(public_key: bytes, user_id: bytes = DEFAULT_ID) -> bytes:
    """Z_A = SM3(ENTL || ID || a || b || xG || yG || xA || yA) for a 65-byte public key."""
    return Sm2PublicKey.from_bytes(public_key).z_value(user_id)


# --- keys ------------------------------------------------------------------------------------


class Sm2PublicKey(PublicKey):
    """A validated point on sm2p256v1 (never the point at infinity)."""

    scheme = "sm2"

    def __init__(self, x: int, y: int) -> None:
        if not _on_curve(x, y):
            raise CryptoError("SM2 public key is not a point on the curve")
        self._x = x
        self._y = y
        self._raw = b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")
        self._z_default: bytes | None = None
        self._odd: tuple[_Affine, ...] | None = None

    @classmethod
    def from_bytes(cls, data: bytes) -> Sm2PublicKey:
        """From ``04 || X || Y`` (65 bytes) or a compressed ``02/03 || X`` (33 bytes)."""
        if not isinstance(data, (bytes, bytearray)):
            raise CryptoError("an SM2 public key is bytes")
        data = bytes(data)
        if len(data) == 65 and data[0] == 4:
            return cls(int.from_bytes(data[1:33], "big"), int.from_bytes(data[33:], "big"))
        if len(data) == 33 and data[0] in (2, 3):
            x = int.from_bytes(data[1:], "big")
            if x >= _P:
                raise CryptoError("SM2 public key: X is not a field element")
            rhs = (x * x * x + _A * x + _B) % _P
            y = pow(rhs, (_P + 1) // 4, _P)  # p = 3 (mod 4)
            if y * y % _P != rhs:
                raise CryptoError("SM2 public key is not a point on the curve")
            if (y & 1) != (data[0] & 1):
                y = _P - y
            return cls(x, y)
        raise CryptoError(
            f"an SM2 public key is 65 bytes 04||X||Y or 33 bytes 02/03||X, got {len(data)} bytes"
        )

    def to_bytes(self) -> bytes:
        return self._raw

    def address(self) -> bytes:
        return sm3(self._raw)[-20:]

    def z_value(self, user_id: bytes = DEFAULT_ID) -> bytes:
        """Z_A of this key for ``user_id`` (cached for the default ID)."""
        if user_id == DEFAULT_ID:
            if self._z_default is None:
                self._z_default = sm3(_za_prefix(DEFAULT_ID) + self._raw[1:])
            return self._z_default
        return sm3(_za_prefix(user_id) + self._raw[1:])

    def digest(self, message: bytes, user_id: bytes = DEFAULT_ID) -> bytes:
        """e = SM3(Z_A || M), the value SM2 signs."""
        return sm3(self.z_value(user_id) + message)

    def verify(self, message: bytes, signature: bytes, *, user_id: bytes = DEFAULT_ID) -> bool:
        """True when ``signature`` (DER) is this key's SM2 signature over ``message``."""
        try:
            r, s = decode_signature(signature)
            e = int.from_bytes(self.digest(message, user_id), "big")
        except CryptoError:
            return False
        return self.verify_digest_int(e, r, s)

    def verify_digest_int(self, e: int, r: int, s: int) -> bool:
        """GB/T 32918.2 section 7: check (r, s) against the digest e."""
        if not (0 < r < _N and 0 < s < _N):
            return False
        t = (r + s) % _N
        if t == 0:
            return False
        acc = _add_base_multiple(_mul_with_table(t, self._odd_table()), s)
        pt = _to_affine(acc)
        if pt is None:
            return False
        return (e + pt[0]) % _N == r

    def _odd_table(self) -> tuple[_Affine, ...]:
        if self._odd is None:
            self._odd = _odd_multiples((mpz(self._x), mpz(self._y)))
        return self._odd

    def encrypt(self, plaintext: bytes) -> bytes:
        """SM2 encryption (GB/T 32918.4 section 6.1) to this key: ``C1 || C3 || C2``.

        C1 = kG as ``04 || X || Y``, C3 = SM3(x2 || M || y2), C2 = M xor KDF(x2 || y2), with
        k from :mod:`secrets` (gmssl draws it from ``random``). The order C1C3C2 is the 2016
        standard's (gmssl's ``mode=1``); OpenSSL wraps the same parts in ASN.1.
        """
        if not plaintext:
            raise CryptoError("SM2 encryption needs a non-empty message")
        while True:
            k = secrets.randbelow(_N - 1) + 1
            c1x, c1y = _base_mul(k)
            x2, y2 = _point_mul(k, self._odd_table())
            xb, yb = int(x2).to_bytes(32, "big"), int(y2).to_bytes(32, "big")
            t = _kdf(xb + yb, len(plaintext))
            if any(t):  # an all-zero key stream: draw another k (section 6.1 A5)
                break
        c1 = b"\x04" + int(c1x).to_bytes(32, "big") + int(c1y).to_bytes(32, "big")
        return c1 + sm3(xb + plaintext + yb) + _xor(plaintext, t)


class Sm2PrivateKey(PrivateKey):
    """An SM2 private key d in [1, n-2]; signs with a fresh nonce from :mod:`secrets`."""

    scheme = "sm2"

    def __init__(self, d: int) -> None:
        if not (1 <= d <= _N - 2):
            raise CryptoError("an SM2 private key lies in [1, n-2]")
        self._d = d
        self._inv_1_plus_d = pow(1 + d, -1, _N)
        x, y = _base_mul(d)
        self._public = Sm2PublicKey(x, y)

    @classmethod
    def generate(cls) -> Sm2PrivateKey:
        return cls(secrets.randbelow(_N - 2) + 1)

    @classmethod
    def from_bytes(cls, data: bytes) -> Sm2PrivateKey:
        if not isinstance(data, (bytes, bytearray)) or len(data) != 32:
            raise CryptoError("an SM2 private key is 32 bytes")
        return cls(int.from_bytes(data, "big"))

    def to_bytes(self) -> bytes:
        return self._d.to_bytes(32, "big")

    @property
    def public_key(self) -> Sm2PublicKey:
        return self._public

    def sign(self, message: bytes, *, user_id: bytes = DEFAULT_ID) -> bytes:
        """DER SM2 signature over e = SM3(Z_A || message)."""
        e = int.from_bytes(self._public.digest(message, user_id), "big")
        while True:
            k = secrets.randbelow(_N - 1) + 1
            rs = self._sign_with_nonce(e, k)
            if rs is not None:
                return encode_signature(*rs)

    def _sign_with_nonce(self, e: int, k: int) -> tuple[int, int] | None:
        """GB/T 32918.2 section 6.1 with the nonce given (None: draw another nonce)."""
        x1, _ = _base_mul(k)
        r = (e + x1) % _N
        if r == 0 or r + k == _N:
            return None
        s = self._inv_1_plus_d * (k - r * self._d) % _N
        if s == 0:
            return None
        return r, s

    def decrypt(self, ciphertext: bytes) -> bytes:
        """The plaintext of an SM2 ciphertext ``C1 || C3 || C2`` to this key (section 7.1);
        ``CryptoError`` when C1 is not a curve point or the SM3 check value C3 differs."""
        if len(ciphertext) <= SM2_CIPHERTEXT_OVERHEAD or ciphertext[0] != 4:
            raise CryptoError("an SM2 ciphertext is 04 || X || Y || C3 (32) || C2")
        c1 = Sm2PublicKey.from_bytes(ciphertext[:65])  # checks the point is on the curve
        c3, c2 = ciphertext[65:97], ciphertext[97:]
        x2, y2 = _point_mul(self._d, _odd_multiples((mpz(c1._x), mpz(c1._y))))
        xb, yb = int(x2).to_bytes(32, "big"), int(y2).to_bytes(32, "big")
        t = _kdf(xb + yb, len(c2))
        if not any(t):
            raise CryptoError("SM2 ciphertext gives an all-zero key stream")
        plaintext = _xor(c2, t)
        if not hmac.compare_digest(sm3(xb + plaintext + yb), c3):
            raise CryptoError("SM2 ciphertext does not decrypt with this key (C3 differs)")
        return plaintext
