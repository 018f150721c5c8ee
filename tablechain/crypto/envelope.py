"""Client-side encryption for confidential tables: a table key, sealed data, wrapped tokens.

A confidential table has one random symmetric key, made by its owner's client. Everything the
chain keeps of the table (its field definitions, every inserted batch of rows) is sealed with
that key on the client, and each authorised account receives the key *wrapped* to its public
key (a ``Token``). Validators store and order ciphertext only: no key, wrapped or not, can be
opened by a node, and no secret ever leaves a client.

- Sealing: AES-256-GCM for the international suite, SM4-GCM (16-byte key) for the national one;
  ``01 || nonce (12) || ciphertext || tag (16)``, with a fixed associated-data label. A
  tampered or truncated blob fails to open.
- Wrapping, by the recipient key's scheme (the scheme the account signs with):
  secp256k1: ECIES (ephemeral ECDH on secp256k1, HKDF-SHA256, AES-256-GCM);
  Ed25519: the same over X25519, the Ed25519 key taken to its Montgomery form (RFC 7748's
  birational map, as libsodium's ``crypto_sign_ed25519_pk_to_curve25519``);
  SM2: SM2 public-key encryption (GB/T 32918.4).
  A token is ``tag (1) || body``; the tag names the method, so a token wrapped for another
  kind of key is refused with a clear error instead of failing obscurely.

Field-level encryption (``seal_for`` / ``open_for``): one value sealed with a fresh key that is
wrapped to each of a list of public keys, for a field of an ordinary table (a blob holding
``02 || count (1) || per recipient: address (20) || token length (2) || token || sealed``).

``cryptography`` gives ECDH, X25519, HKDF, AES-GCM and SM4-GCM; the only arithmetic written here
is the Edwards-to-Montgomery map of a public key (``cryptography`` has no call for it).
"""

from __future__ import annotations

import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tablechain.crypto.keys import CryptoError, PrivateKey, PublicKey
from tablechain.crypto.sm2 import Sm2PrivateKey, Sm2PublicKey

__all__ = [
    "KEY_BYTES",
    "new_table_key",
    "seal",
    "open_sealed",
    "wrap_key",
    "unwrap_key",
    "seal_for",
    "open_for",
]

KEY_BYTES = {"international": 32, "national": 16}  # AES-256 / SM4
_SEAL_VERSION = b"\x01"
_SEAL_AAD = b"tablechain-confidential-v1"
_NONCE = 12
_TAG = 16
_WRAP_SECP256K1 = 1
_WRAP_X25519 = 2
_WRAP_SM2 = 3
_WRAP_INFO = b"tablechain-token-v1"
_ED25519_P = 2**255 - 19


def new_table_key(suite: str) -> bytes:
    """A fresh random key for a confidential table of ``suite`` (international / national)."""
    try:
        return os.urandom(KEY_BYTES[suite])
    except KeyError:
        raise CryptoError(f"unknown crypto suite {suite!r}") from None


def _suite_of(key: bytes) -> str:
    for suite, size in KEY_BYTES.items():
        if len(key) == size:
            return suite
    raise CryptoError("a table key is 32 bytes (AES-256) or 16 bytes (SM4)")


def seal(key: bytes, plaintext: bytes) -> bytes:
    """Encrypt and authenticate ``plaintext`` with a table key (the cipher follows its size)."""
    nonce = os.urandom(_NONCE)
    if _suite_of(key) == "international":
        return _SEAL_VERSION + nonce + AESGCM(key).encrypt(nonce, plaintext, _SEAL_AAD)
    enc = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
    enc.authenticate_additional_data(_SEAL_AAD)
    body = enc.update(plaintext) + enc.finalize()
    return _SEAL_VERSION + nonce + body + enc.tag


def open_sealed(key: bytes, blob: bytes) -> bytes:
    """The plaintext of ``seal(key, ...)``; ``CryptoError`` if the blob was altered or the key
    is not the table's."""
    if len(blob) < 1 + _NONCE + _TAG or blob[:1] != _SEAL_VERSION:
        raise CryptoError("not a sealed confidential-table blob")
    nonce, body = blob[1 : 1 + _NONCE], blob[1 + _NONCE :]
    try:
        if _suite_of(key) == "international":
            return AESGCM(key).decrypt(nonce, body, _SEAL_AAD)
        dec = Cipher(algorithms.SM4(key), modes.GCM(nonce, body[-_TAG:])).decryptor()
        dec.authenticate_additional_data(_SEAL_AAD)
        return dec.update(body[:-_TAG]) + dec.finalize()
    except InvalidTag:
        raise CryptoError(
            "the sealed data does not open with this key (altered or wrong key)"
        ) from None


# --- wrapping a table key to an account's public key --------------------------------------------


def _kek(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=_WRAP_INFO + ephemeral + recipient
    ).derive(shared)


def _ed25519_to_x25519_public(raw: bytes) -> bytes:
    """The Montgomery u-coordinate of an Ed25519 public key: u = (1 + y) / (1 - y) mod p."""
    y = int.from_bytes(raw, "little") & ((1 << 255) - 1)
    if y >= _ED25519_P or (1 - y) % _ED25519_P == 0:
        raise CryptoError("this Ed25519 public key has no X25519 form")
    u = (1 + y) * pow(1 - y, -1, _ED25519_P) % _ED25519_P
    return u.to_bytes(32, "little")


def _ed25519_to_x25519_private(seed: bytes) -> x25519.X25519PrivateKey:
    """The X25519 key of an Ed25519 seed: the first half of SHA-512(seed), the scalar Ed25519
    itself uses (X25519 clamps it the same way)."""
    return x25519.X25519PrivateKey.from_private_bytes(hashlib.sha512(seed).digest()[:32])


def wrap_key(table_key: bytes, recipient: PublicKey) -> bytes:
    """``table_key`` encrypted to ``recipient`` (a ``Token``): only its private key opens it."""
    _suite_of(table_key)
    scheme = recipient.scheme
    raw = recipient.to_bytes()
    if scheme == "sm2":
        assert isinstance(recipient, Sm2PublicKey)
        return bytes([_WRAP_SM2]) + recipient.encrypt(table_key)
    if scheme == "secp256k1":
        peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), raw)
        eph = ec.generate_private_key(ec.SECP256K1())
        shared = eph.exchange(ec.ECDH(), peer)
        eph_raw = eph.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
        )
        tag = _WRAP_SECP256K1
    elif scheme == "ed25519":
        peer_x = x25519.X25519PublicKey.from_public_bytes(_ed25519_to_x25519_public(raw))
        eph_x = x25519.X25519PrivateKey.generate()
        try:
            shared = eph_x.exchange(peer_x)
        except ValueError:  # an all-zero shared secret: nothing would stay secret
            raise CryptoError("this Ed25519 public key is a low-order point: no key can be "
                              "wrapped to it") from None
        eph_raw = eph_x.public_key().public_bytes_raw()
        tag = _WRAP_X25519
    else:
        raise CryptoError(f"cannot wrap a key to a {scheme} public key")
    nonce = os.urandom(_NONCE)
    sealed = AESGCM(_kek(shared, eph_raw, raw)).encrypt(nonce, table_key, _WRAP_INFO)
    return bytes([tag]) + eph_raw + nonce + sealed


def unwrap_key(token: bytes, key: PrivateKey) -> bytes:
    """The table key inside ``token`` (from ``wrap_key``), opened with the account's key."""
    if len(token) < 2:
        raise CryptoError("a token is too short")
    tag, body = token[0], token[1:]
    scheme = key.scheme
    expected = {"secp256k1": _WRAP_SECP256K1, "ed25519": _WRAP_X25519, "sm2": _WRAP_SM2}
    if expected.get(scheme) != tag:
        raise CryptoError(f"this token was not wrapped for a {scheme} key")
    if scheme == "sm2":
        assert isinstance(key, Sm2PrivateKey)
        table_key = key.decrypt(body)
        _suite_of(table_key)
        return table_key
    recipient = key.public_key.to_bytes()
    if scheme == "secp256k1":
        size = 33
        eph_raw = body[:size]
        try:
            peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), eph_raw)
        except ValueError:
            raise CryptoError("the token's ephemeral key is not a secp256k1 point") from None
        own = ec.derive_private_key(int.from_bytes(key.to_bytes(), "big"), ec.SECP256K1())
        shared = own.exchange(ec.ECDH(), peer)
    else:
        size = 32
        eph_raw = body[:size]
        if len(eph_raw) != size:
            raise CryptoError("a token is too short")
        own_x = _ed25519_to_x25519_private(key.to_bytes())
        try:
            shared = own_x.exchange(x25519.X25519PublicKey.from_public_bytes(eph_raw))
        except ValueError:
            raise CryptoError("the token's ephemeral key is a low-order X25519 point") from None
    nonce, sealed = body[size : size + _NONCE], body[size + _NONCE :]
    try:
        table_key = AESGCM(_kek(shared, eph_raw, recipient)).decrypt(nonce, sealed, _WRAP_INFO)
    except (InvalidTag, ValueError):
        raise CryptoError("this token does not open with this key") from None
    _suite_of(table_key)
    return table_key


# --- field-level encryption ---------------------------------------------------------------------

_FIELD_VERSION = 2
MAX_RECIPIENTS = 255


def seal_for(plaintext: bytes, recipients: list[PublicKey], suite: str) -> bytes:
    """``plaintext`` readable only by the holders of ``recipients``' private keys: sealed with
    a fresh key of ``suite``, that key wrapped to each recipient (named by address)."""
    if not 1 <= len(recipients) <= MAX_RECIPIENTS:
        raise CryptoError(f"seal for 1 to {MAX_RECIPIENTS} public keys")
    key = new_table_key(suite)
    parts = [bytes([_FIELD_VERSION, len(recipients)])]
    for recipient in recipients:
        token = wrap_key(key, recipient)
        parts += [recipient.address(), len(token).to_bytes(2, "big"), token]
    parts.append(seal(key, plaintext))
    return b"".join(parts)


def open_for(blob: bytes, key: PrivateKey) -> bytes:
    """The plaintext of ``seal_for``'s blob, opened with one recipient's private key;
    ``CryptoError`` if it was not sealed for that key or was altered."""
    if len(blob) < 2 or blob[0] != _FIELD_VERSION:
        raise CryptoError("not a value sealed for a list of keys")
    address = key.address()
    pos, mine = 2, None
    for _ in range(blob[1]):
        if pos + 22 > len(blob):
            raise CryptoError("a sealed value is cut short")
        who, size = blob[pos : pos + 20], int.from_bytes(blob[pos + 20 : pos + 22], "big")
        token = blob[pos + 22 : pos + 22 + size]
        if len(token) != size:
            raise CryptoError("a sealed value is cut short")
        if who == address:
            mine = token
        pos += 22 + size
    if mine is None:
        raise CryptoError("this value was not sealed for this key")
    return open_sealed(unwrap_key(mine, key), blob[pos:])
