"""Signature schemes behind one interface: secp256k1, Ed25519 and SM2.

An account address is 20 bytes derived from the public key. For secp256k1 it is Ethereum's
(last 20 bytes of Keccak-256 of the uncompressed point without its 04 prefix), so one key signs
both table transactions and EVM transactions. For Ed25519 and SM2 it is the last 20 bytes of the
scheme's hash (SHA-256, SM3) of the public key bytes.
"""

from __future__ import annotations

import functools
import importlib
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import coincurve
from coincurve._libsecp256k1 import ffi as _secp_ffi
from coincurve._libsecp256k1 import lib as _secp_lib
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from tablechain.crypto.hashes import keccak256, sha256
from tablechain.errors import TablechainError

__all__ = [
    "CryptoError",
    "PublicKey",
    "PrivateKey",
    "Secp256k1PrivateKey",
    "Secp256k1PublicKey",
    "Ed25519PrivateKey",
    "Ed25519PublicKey",
    "SCHEMES",
    "generate_private_key",
    "private_key_from_bytes",
    "public_key_from_bytes",
    "address_to_text",
    "address_from_text",
    "recover_secp256k1",
]

SCHEMES = ("secp256k1", "ed25519", "sm2")
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_SECP256K1_HALF_N = (_SECP256K1_N // 2).to_bytes(32, "big")


class CryptoError(TablechainError):
    """A key or signature is malformed."""

    code = "temBAD_SIGNATURE"


class PublicKey(ABC):
    """A public key of one signature scheme."""

    scheme: ClassVar[str]

    @abstractmethod
    def to_bytes(self) -> bytes:
        """The encoded public key (compressed point for secp256k1, raw 32 bytes for Ed25519,
        04||X||Y for SM2)."""

    @abstractmethod
    def verify(self, message: bytes, signature: bytes) -> bool:
        """True when ``signature`` is this key's signature over ``message``."""

    @abstractmethod
    def address(self) -> bytes:
        """The 20-byte account address of this key."""

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, PublicKey)
            and other.scheme == self.scheme
            and other.to_bytes() == self.to_bytes()
        )

    def __hash__(self) -> int:
        return hash((self.scheme, self.to_bytes()))

    def __reduce__(self) -> tuple[Any, tuple[str, bytes]]:
        # Pickles as its encoding (worker processes return verified transactions).
        return (public_key_from_bytes, (self.scheme, self.to_bytes()))

    def __repr__(self) -> str:
        return f"<{self.scheme} public key {self.to_bytes().hex()[:16]}...>"


class PrivateKey(ABC):
    """A private key of one signature scheme. It never leaves the client."""

    scheme: ClassVar[str]

    @abstractmethod
    def to_bytes(self) -> bytes:
        """The 32-byte secret."""

    @abstractmethod
    def sign(self, message: bytes) -> bytes:
        """Sign ``message`` (the scheme hashes it as it requires)."""

    @property
    @abstractmethod
    def public_key(self) -> PublicKey:
        """The matching public key."""

    def address(self) -> bytes:
        return self.public_key.address()

    def __repr__(self) -> str:
        return f"<{self.scheme} private key for {address_to_text(self.address())}>"


# --- secp256k1 -------------------------------------------------------------------------------


class Secp256k1PublicKey(PublicKey):
    """secp256k1 public key; signatures are 65-byte recoverable r||s||v over Keccak-256."""

    scheme = "secp256k1"

    def __init__(self, key: coincurve.PublicKey) -> None:
        self._key = key
        self._compressed = key.format(compressed=True)
        self._address: bytes | None = None

    @classmethod
    def from_bytes(cls, data: bytes) -> Secp256k1PublicKey:
        try:
            return cls(coincurve.PublicKey(data))
        except Exception as exc:  # coincurve raises ValueError or its own errors
            raise CryptoError(f"invalid secp256k1 public key: {exc}") from None

    def to_bytes(self) -> bytes:
        return self._compressed

    def address(self) -> bytes:
        if self._address is None:
            self._address = keccak256(self._key.format(compressed=False)[1:])[-20:]
        return self._address

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Recover the signer from the signature and compare it with this key.

        The same rules as ``recover_secp256k1`` (65 bytes, v in {0, 1}, low S, r and s in
        range), but through libsecp256k1's own calls (coincurve's bundled library): the
        recovered point is compared in place, without building and serialising a key object.
        This runs once per transaction on every validator, so the ~10% it saves counts.
        """
        if len(signature) != 65 or signature[64] > 1 or signature[32:64] > _SECP256K1_HALF_N:
            return False
        ctx = self._key.context.ctx
        parsed = _secp_ffi.new("secp256k1_ecdsa_recoverable_signature *")
        # Refuses r or s >= n; recovery refuses r = 0 or s = 0.
        if not _secp_lib.secp256k1_ecdsa_recoverable_signature_parse_compact(
            ctx, parsed, signature, signature[64]
        ):
            return False
        recovered = _secp_ffi.new("secp256k1_pubkey *")
        if not _secp_lib.secp256k1_ecdsa_recover(ctx, recovered, parsed, keccak256(message)):
            return False
        return _secp_lib.secp256k1_ec_pubkey_cmp(ctx, recovered, self._key.public_key) == 0  # type: ignore[no-any-return]


def recover_secp256k1(message: bytes, signature: bytes) -> Secp256k1PublicKey | None:
    """Recover the signer's key from a 65-byte signature, or None if it is invalid.

    High-S signatures are refused (malleability), as Ethereum does since EIP-2.
    """
    if len(signature) != 65 or signature[64] > 1:
        return None
    s = int.from_bytes(signature[32:64], "big")
    r = int.from_bytes(signature[:32], "big")
    if not (0 < r < _SECP256K1_N and 0 < s <= _SECP256K1_N // 2):
        return None
    try:
        key = coincurve.PublicKey.from_signature_and_message(
            signature, keccak256(message), hasher=None
        )
    except Exception:
        return None
    return Secp256k1PublicKey(key)


class Secp256k1PrivateKey(PrivateKey):
    scheme = "secp256k1"

    def __init__(self, key: coincurve.PrivateKey) -> None:
        self._key = key
        self._public = Secp256k1PublicKey(key.public_key)

    @classmethod
    def generate(cls) -> Secp256k1PrivateKey:
        return cls(coincurve.PrivateKey())

    @classmethod
    def from_bytes(cls, data: bytes) -> Secp256k1PrivateKey:
        try:
            return cls(coincurve.PrivateKey(data))
        except Exception as exc:
            raise CryptoError(f"invalid secp256k1 private key: {exc}") from None

    def to_bytes(self) -> bytes:
        return self._key.secret

    @property
    def public_key(self) -> Secp256k1PublicKey:
        return self._public

    def sign(self, message: bytes) -> bytes:
        return self._key.sign_recoverable(keccak256(message), hasher=None)


# --- Ed25519 ---------------------------------------------------------------------------------


class Ed25519PublicKey(PublicKey):
    scheme = "ed25519"

    def __init__(self, key: ed25519.Ed25519PublicKey, raw: bytes) -> None:
        self._key = key
        self._raw = raw

    @classmethod
    def from_bytes(cls, data: bytes) -> Ed25519PublicKey:
        if len(data) != 32:
            raise CryptoError("an Ed25519 public key is 32 bytes")
        try:
            return cls(ed25519.Ed25519PublicKey.from_public_bytes(data), bytes(data))
        except ValueError as exc:
            raise CryptoError(f"invalid Ed25519 public key: {exc}") from None

    def to_bytes(self) -> bytes:
        return self._raw

    def address(self) -> bytes:
        return sha256(self._raw)[-20:]

    def verify(self, message: bytes, signature: bytes) -> bool:
        if len(signature) != 64:
            return False
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


class Ed25519PrivateKey(PrivateKey):
    scheme = "ed25519"

    def __init__(self, key: ed25519.Ed25519PrivateKey) -> None:
        from cryptography.hazmat.primitives import serialization as ser

        self._key = key
        self._secret = key.private_bytes(
            ser.Encoding.Raw, ser.PrivateFormat.Raw, ser.NoEncryption()
        )
        pub = key.public_key()
        self._public = Ed25519PublicKey(
            pub, pub.public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
        )

    @classmethod
    def generate(cls) -> Ed25519PrivateKey:
        return cls(ed25519.Ed25519PrivateKey.generate())

    @classmethod
    def from_bytes(cls, data: bytes) -> Ed25519PrivateKey:
        if len(data) != 32:
            raise CryptoError("an Ed25519 private key is 32 bytes")
        return cls(ed25519.Ed25519PrivateKey.from_private_bytes(data))

    def to_bytes(self) -> bytes:
        return self._secret

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._public

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


# --- registry --------------------------------------------------------------------------------


def _classes(scheme: str) -> tuple[type, type]:
    if scheme == "secp256k1":
        return Secp256k1PrivateKey, Secp256k1PublicKey
    if scheme == "ed25519":
        return Ed25519PrivateKey, Ed25519PublicKey
    if scheme == "sm2":
        sm2 = importlib.import_module("tablechain.crypto.sm2")
        return sm2.Sm2PrivateKey, sm2.Sm2PublicKey
    raise CryptoError(f"unknown signature scheme {scheme!r}; known: {', '.join(SCHEMES)}")


def generate_private_key(scheme: str = "secp256k1") -> PrivateKey:
    """A fresh private key from the operating system's CSPRNG."""
    return _classes(scheme)[0].generate()  # type: ignore[no-any-return,attr-defined]


def private_key_from_bytes(scheme: str, data: bytes) -> PrivateKey:
    return _classes(scheme)[0].from_bytes(data)  # type: ignore[no-any-return,attr-defined]


@functools.lru_cache(maxsize=65536)
def public_key_from_bytes(scheme: str, data: bytes) -> PublicKey:
    """Decode (and validate) a public key. Cached: an account's key recurs in every one of its
    transactions, and decoding plus address derivation cost more than a hash lookup."""
    return _classes(scheme)[1].from_bytes(data)  # type: ignore[no-any-return,attr-defined]


def address_to_text(address: bytes) -> str:
    """0x-prefixed lowercase hex, as Ethereum tools print addresses."""
    return "0x" + address.hex()


def address_from_text(text: str) -> bytes:
    if not isinstance(text, str) or len(text) != 42 or not text.startswith("0x"):
        raise CryptoError(f"an address is 0x followed by 40 hex digits, got {str(text)[:60]!r}")
    try:
        return bytes.fromhex(text[2:])
    except ValueError:
        raise CryptoError(f"an address is 0x followed by 40 hex digits, got {text!r}") from None
