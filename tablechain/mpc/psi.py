"""Two-party private set intersection by commutative Diffie-Hellman blinding (ECDH-PSI).

The receiver R holds set A, the sender S holds set B; only R learns the output (the
intersection, or only its size). With H a hash onto a prime-order group and secret scalars
alpha (R) and beta (S):

    round 1  R -> S : { alpha * H(a) }                       (R's order)
    round 2  S -> R : { beta * (alpha * H(a)) } (same order; shuffled if only the size is
                      revealed) and { beta * H(b) } shuffled
    R computes { alpha * (beta * H(b)) } and matches.

Security: semi-honest parties, decisional Diffie-Hellman in the group and H modelled as a
random oracle. S sees only blinded points; R learns the output and |B|.

Groups:

* ``ristretto255`` (default, as the design asks): libsodium's ``crypto_core_ristretto255_*`` and
  ``crypto_scalarmult_ristretto255`` through ctypes. PyNaCl 1.6 neither binds them nor exports
  them from its bundled libsodium, so the system libsodium (>= 1.0.18, Debian ``libsodium23``) is
  loaded; if it is missing, ``GroupUnavailable`` says so.
* ``x25519``: X25519 through ``cryptography`` (OpenSSL; always installed; in CPU time here about
  1.4x libsodium's ristretto255 and 1.25x libsodium's own X25519). Items hash onto the curve
  (not its twist) by try-and-increment with a Legendre-symbol test, so blinded points reveal
  nothing about which curve an item hit; clamped scalars are multiples of the cofactor 8, so
  every blinded point lies in the prime-order subgroup, where DDH is assumed hard. Received
  points are checked to be canonical and on the curve.

Each party's scalar multiplications can be spread over a process pool (``workers``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import multiprocessing
import secrets
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import gmpy2

from tablechain.mpc.channel import Network, Traffic
from tablechain.mpc.he_errors import GroupUnavailable, ProtocolInputError, PSIError

__all__ = [
    "GROUPS",
    "ECGroup",
    "Ristretto255",
    "X25519Group",
    "get_group",
    "PointBatch",
    "PSIResult",
    "encode_item",
    "psi",
]

GROUPS = ("ristretto255", "x25519")
POINT_BYTES = 32
_DOMAIN = b"tablechain/psi/v1/"
# ints up to this size are encoded in decimal: 2000 bits is 603 digits, below the smallest
# limit Python lets int-to-str conversion be set to (640 digits)
_DECIMAL_INT_BITS = 2000

Item = bytes | str | int


class ECGroup(Protocol):
    """What ECDH-PSI needs from a group with 32-byte encodings."""

    name: str

    def random_scalar(self) -> bytes: ...

    def hash_to_points(self, encoded_items: Sequence[bytes]) -> bytes:
        """Concatenated points H(item) for already-encoded items."""
        ...

    def multiply(self, scalar: bytes, points: bytes, validate: bool = True) -> bytes:
        """Concatenated scalar * point; ``validate`` checks received points first."""
        ...


def _split(blob: bytes) -> list[bytes]:
    return [blob[i : i + POINT_BYTES] for i in range(0, len(blob), POINT_BYTES)]


SODIUM_SONAMES = ("libsodium.so.23", "libsodium.so.26", "libsodium.dylib")


def _load_libsodium() -> tuple[ctypes.CDLL, str]:
    """libsodium with its ristretto255 functions: the copy bundled by the ``rbcl`` package
    (pinned in requirements.txt, so a fresh machine needs nothing else), else the system's
    (known sonames first, then ctypes' search)."""
    try:
        from rbcl._sodium import _sodium as bundled

        return bundled, "rbcl's bundled libsodium"
    except (ImportError, OSError):
        pass
    for name in SODIUM_SONAMES:
        try:
            return ctypes.CDLL(name), name
        except OSError:
            continue
    path = ctypes.util.find_library("sodium")
    if path is None:
        raise GroupUnavailable(
            "ristretto255 needs the system libsodium >= 1.0.18 (Debian: libsodium23); "
            "PyNaCl does not expose its ristretto functions. Use group='x25519' instead."
        )
    return ctypes.CDLL(path), path


class Ristretto255:
    """ristretto255 from the system libsodium via ctypes."""

    name = "ristretto255"

    def __init__(self) -> None:
        lib, path = _load_libsodium()
        if not hasattr(lib, "crypto_scalarmult_ristretto255"):
            raise GroupUnavailable(f"{path} has no ristretto255 functions (libsodium < 1.0.18)")
        if lib.sodium_init() < 0:
            raise GroupUnavailable("libsodium failed to initialize")
        self._lib = lib
        self._hash = lib.crypto_core_ristretto255_from_hash
        self._mul = lib.crypto_scalarmult_ristretto255

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (get_group, (self.name,))

    def random_scalar(self) -> bytes:
        out = ctypes.create_string_buffer(32)
        self._lib.crypto_core_ristretto255_scalar_random(out)
        return out.raw

    def hash_to_points(self, encoded_items: Sequence[bytes]) -> bytes:
        out = ctypes.create_string_buffer(POINT_BYTES)
        parts = []
        prefix = _DOMAIN + b"ristretto255/"
        for item in encoded_items:
            self._hash(out, hashlib.sha512(prefix + item).digest())
            parts.append(out.raw)
        return b"".join(parts)

    def multiply(self, scalar: bytes, points: bytes, validate: bool = True) -> bytes:
        # libsodium always decodes (and so validates) the point
        if len(points) % POINT_BYTES:
            raise PSIError("a point batch must be a whole number of 32-byte points")
        out = ctypes.create_string_buffer(POINT_BYTES)
        mul = self._mul
        parts = []
        for point in _split(points):
            if mul(out, scalar, point) != 0:
                raise PSIError("received an invalid ristretto255 point (or the identity)")
            parts.append(out.raw)
        return b"".join(parts)


_P25519 = (1 << 255) - 19
_A25519 = 486662


class X25519Group:
    """Curve25519 u-coordinates with X25519 scalar multiplication (OpenSSL via cryptography)."""

    name = "x25519"

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric.x25519 import (
            X25519PrivateKey,
            X25519PublicKey,
        )

        self._private = X25519PrivateKey.from_private_bytes
        self._public = X25519PublicKey.from_public_bytes
        self._p = gmpy2.mpz(_P25519)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (get_group, (self.name,))

    def random_scalar(self) -> bytes:
        return secrets.token_bytes(32)

    def _on_curve(self, u: Any) -> bool:
        p = self._p
        return bool(gmpy2.legendre((u * u * u + _A25519 * u * u + u) % p, p) == 1)

    def hash_to_points(self, encoded_items: Sequence[bytes]) -> bytes:
        parts = []
        prefix = _DOMAIN + b"x25519/"
        p = self._p
        for item in encoded_items:
            counter = 0
            while True:
                digest = hashlib.sha512(prefix + bytes([counter]) + item).digest()
                u = gmpy2.mpz(int.from_bytes(digest, "little")) % p
                if self._on_curve(u):
                    break
                counter += 1
                if counter > 255:  # probability 2^-256
                    raise PSIError("could not hash an item onto the curve")
            parts.append(int(u).to_bytes(POINT_BYTES, "little"))
        return b"".join(parts)

    def multiply(self, scalar: bytes, points: bytes, validate: bool = True) -> bytes:
        if len(points) % POINT_BYTES:
            raise PSIError("a point batch must be a whole number of 32-byte points")
        if len(scalar) != 32:
            raise PSIError("an X25519 scalar has 32 bytes")
        key, public = self._private(scalar), self._public
        parts = []
        for point in _split(points):
            if validate:
                u = gmpy2.mpz(int.from_bytes(point, "little"))
                if u >= self._p or not self._on_curve(u):
                    raise PSIError("received a point that is not a canonical Curve25519 point")
            try:
                parts.append(key.exchange(public(point)))
            except ValueError as exc:  # OpenSSL refuses an all-zero (small-order) result
                raise PSIError("received a point of small order") from exc
        return b"".join(parts)


def get_group(name: str) -> ECGroup:
    """A group implementation by name: ``ristretto255`` or ``x25519``."""
    if name == "ristretto255":
        return Ristretto255()
    if name == "x25519":
        return X25519Group()
    raise ProtocolInputError(f"unknown PSI group {name!r}; choose one of {', '.join(GROUPS)}")


def encode_item(item: Item) -> bytes:
    """Canonical bytes of an item; the type is part of the encoding (so 5 != '5')."""
    if isinstance(item, bytes):
        return b"b" + item
    if isinstance(item, str):
        return b"s" + item.encode("utf-8")
    if isinstance(item, int) and not isinstance(item, bool):
        if item.bit_length() <= _DECIMAL_INT_BITS:
            return b"i" + str(item).encode("ascii")
        # str() of a longer int may exceed sys.get_int_max_str_digits() (ValueError); hex has
        # no such limit, and its own tag keeps the encoding injective
        return b"x" + format(item, "x").encode("ascii")
    raise ProtocolInputError(f"PSI items must be bytes, str or int, not {type(item).__name__}")


# -- parallel helpers (module-level so that they pickle into worker processes)


def _run_job(group_name: str, kind: str, scalar: bytes, data: Any) -> bytes:
    group = get_group(group_name)
    if kind == "hash_mul":
        return group.multiply(scalar, group.hash_to_points(data), validate=False)
    return group.multiply(scalar, data)


def _chunk_job(kind: str, data: Any, parts: int) -> list[Any]:
    if kind == "hash_mul":
        size = max(1, -(-len(data) // parts))
        return [data[i : i + size] for i in range(0, len(data), size)]
    count = len(data) // POINT_BYTES
    size = max(1, -(-count // parts)) * POINT_BYTES
    return [data[i : i + size] for i in range(0, len(data), size)]


class _Compute:
    """Runs a party's hashing and scalar multiplications, in this process or in a pool.

    A job is ``("hash_mul", scalar, encoded_items)`` (own items: hash, then multiply) or
    ``("mul", scalar, points)`` (received points: validate, then multiply). All jobs of one
    step are split into chunks and dispatched together, so both cores stay busy.
    """

    def __init__(self, group: ECGroup, executor: Executor | None, workers: int) -> None:
        self.group = group
        self.executor = executor
        self.parts = workers * 2

    def run(self, jobs: Sequence[tuple[str, bytes, Any]]) -> list[bytes]:
        if self.executor is None:
            return [_run_job_local(self.group, *job) for job in jobs]
        plans = []
        for kind, scalar, data in jobs:
            chunks = _chunk_job(kind, data, self.parts) if len(data) else []
            plans.append(
                [
                    self.executor.submit(_run_job, self.group.name, kind, scalar, chunk)
                    for chunk in chunks
                ]
            )
        return [b"".join(f.result() for f in futures) for futures in plans]


def _run_job_local(group: ECGroup, kind: str, scalar: bytes, data: Any) -> bytes:
    if kind == "hash_mul":
        return group.multiply(scalar, group.hash_to_points(data), validate=False)
    return group.multiply(scalar, data)


@dataclass(frozen=True)
class PointBatch:
    """Blinded group elements on the wire (32 bytes each)."""

    group: str
    data: bytes

    def wire_size(self) -> int:
        return len(self.data)

    def __len__(self) -> int:
        return len(self.data) // POINT_BYTES


@dataclass(frozen=True)
class PSIResult:
    """What the receiver learned. ``intersection`` is None when only the size was revealed."""

    receiver: int
    sender: int
    size: int
    intersection: tuple[Item, ...] | None
    group: str
    traffic: Traffic
    trust_model: str = "semi-honest; DDH in the group; hash as random oracle"


def _shuffled(points: bytes) -> bytes:
    items = _split(points)
    for i in range(len(items) - 1, 0, -1):  # Fisher-Yates with a CSPRNG
        j = secrets.randbelow(i + 1)
        items[i], items[j] = items[j], items[i]
    return b"".join(items)


def _dedupe(items: Collection[Item]) -> tuple[list[Item], list[bytes]]:
    seen: dict[bytes, Item] = {}
    for item in items:
        seen.setdefault(encode_item(item), item)
    return list(seen.values()), list(seen.keys())


def psi(
    network: Network,
    sets: Mapping[int, Collection[Item]],
    *,
    receiver: int,
    size_only: bool = False,
    group: str = "ristretto255",
    workers: int = 1,
    executor: Executor | None = None,
) -> PSIResult:
    """ECDH-PSI between the two parties in ``sets``; only ``receiver`` learns the result.

    ``workers`` > 1 spreads each party's scalar multiplications over a process pool created
    for the call (or pass an ``executor`` to reuse one). Duplicate items count once.
    """
    if len(sets) != 2 or receiver not in sets:
        raise ProtocolInputError("PSI needs exactly two parties, one of them the receiver")
    sender = next(p for p in sets if p != receiver)
    for party in (receiver, sender):
        if not _is_index(party) or not 0 <= party < network.n_parties:
            raise ProtocolInputError(f"party {party!r} is not in the network")
    if not _is_index(workers) or workers < 1:
        raise ProtocolInputError("workers must be an integer of at least 1")
    for party, items in sets.items():
        if isinstance(items, (str, bytes)) or not isinstance(items, Collection):
            raise ProtocolInputError(f"party {party}'s set must be a collection of items")
    r_items, r_encoded = _dedupe(list(sets[receiver]))
    _, s_encoded = _dedupe(list(sets[sender]))
    impl = get_group(group)
    before = network.traffic.copy()
    own_pool = None
    if executor is None and workers > 1:
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else None)
        own_pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
        executor = own_pool
    try:
        compute = _Compute(impl, executor, workers)
        # receiver: alpha * H(a)
        alpha = impl.random_scalar()
        (blinded_a,) = compute.run([("hash_mul", alpha, r_encoded)])
        msg = network.exchange({(receiver, sender): PointBatch(group, blinded_a)})
        # sender: beta * (alpha * H(a)) and beta * H(b)
        beta = impl.random_scalar()
        incoming = _check_batch(msg[(receiver, sender)], group)
        double_a, blinded_b = compute.run([("mul", beta, incoming), ("hash_mul", beta, s_encoded)])
        blinded_b = _shuffled(blinded_b)
        if size_only:
            double_a = _shuffled(double_a)
        msg = network.exchange(
            {(sender, receiver): (PointBatch(group, double_a), PointBatch(group, blinded_b))}
        )
        # receiver: alpha * (beta * H(b)) and match
        got_a, got_b = msg[(sender, receiver)]
        double_a = _check_batch(got_a, group)
        if len(double_a) != len(blinded_a):
            raise PSIError("the sender returned a different number of points")
        (double_b_points,) = compute.run([("mul", alpha, _check_batch(got_b, group))])
        double_b = set(_split(double_b_points))
    finally:
        if own_pool is not None:
            own_pool.shutdown()
    matches = [point in double_b for point in _split(double_a)]
    size = sum(matches)
    intersection = None
    if not size_only:
        intersection = tuple(item for item, hit in zip(r_items, matches, strict=True) if hit)
    return PSIResult(
        receiver=receiver,
        sender=sender,
        size=size,
        intersection=intersection,
        group=group,
        traffic=network.traffic.minus(before),
    )


def _is_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_batch(batch: Any, group: str) -> bytes:
    if not isinstance(batch, PointBatch) or batch.group != group:
        raise PSIError(f"expected a batch of {group} points")
    if len(batch.data) % POINT_BYTES:
        raise PSIError("a point batch must be a whole number of 32-byte points")
    return batch.data
