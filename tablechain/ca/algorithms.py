"""Key and signature algorithms of certificates: ECDSA P-256 and SM2-with-SM3 for issuers,
secp256k1, SM2 and Ed25519 for account (leaf) keys.

``cryptography`` verifies ECDSA; SM2 goes through :mod:`tablechain.crypto.sm2` because
``cryptography`` refuses SM2 keys. SM2-with-SM3 certificate signatures use the default user ID
1234567812345678 (GM/T 0015), as OpenSSL 3 does.
"""

from __future__ import annotations

import base64
import re

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from tablechain.ca import _der
from tablechain.ca.errors import (
    BadSignature,
    CAStoreError,
    CertificateMalformed,
    UnsupportedAlgorithm,
)
from tablechain.crypto.keys import CryptoError, public_key_from_bytes
from tablechain.crypto.sm2 import Sm2PrivateKey, Sm2PublicKey

__all__ = [
    "OID_EC_PUBLIC_KEY",
    "OID_P256",
    "OID_SECP256K1",
    "OID_SM2_CURVE",
    "OID_ED25519",
    "OID_ECDSA_SHA256",
    "OID_SM2_WITH_SM3",
    "ISSUER_ALGORITHMS",
    "KEY_ALGORITHMS",
    "spki_der",
    "parse_spki",
    "verify_signed",
    "SigningKey",
    "pem_blocks",
    "to_pem",
]

OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
OID_P256 = "1.2.840.10045.3.1.7"
OID_SECP256K1 = "1.3.132.0.10"
OID_SM2_CURVE = "1.2.156.10197.1.301"
OID_ED25519 = "1.3.101.112"
OID_ECDSA_SHA256 = "1.2.840.10045.4.3.2"
OID_ECDSA_SHA384 = "1.2.840.10045.4.3.3"
OID_ECDSA_SHA512 = "1.2.840.10045.4.3.4"
OID_SM2_WITH_SM3 = "1.2.156.10197.1.501"

_CURVES = {OID_P256: "p256", OID_SECP256K1: "secp256k1", OID_SM2_CURVE: "sm2"}
_CURVE_OIDS = {name: o for o, name in _CURVES.items()}
_ECDSA_HASHES: dict[str, hashes.HashAlgorithm] = {
    OID_ECDSA_SHA256: hashes.SHA256(),
    OID_ECDSA_SHA384: hashes.SHA384(),
    OID_ECDSA_SHA512: hashes.SHA512(),
}

ISSUER_ALGORITHMS = ("p256", "sm2")
"""Algorithms a CA key may use."""

KEY_ALGORITHMS = ("p256", "secp256k1", "sm2", "ed25519")
"""Algorithms a certified public key may use; all but p256 are account signature schemes."""


def spki_der(algorithm: str, key: bytes) -> bytes:
    """SubjectPublicKeyInfo for ``key`` (an EC point, or 32 raw bytes for Ed25519)."""
    if algorithm == "ed25519":
        return _der.sequence(_der.sequence(_der.oid(OID_ED25519)), _der.bit_string(key))
    if algorithm not in _CURVE_OIDS:
        raise UnsupportedAlgorithm(f"no certificate key encoding for {algorithm!r}")
    algid = _der.sequence(_der.oid(OID_EC_PUBLIC_KEY), _der.oid(_CURVE_OIDS[algorithm]))
    return _der.sequence(algid, _der.bit_string(key))


def _check_point(algorithm: str, key: bytes) -> None:
    try:
        if algorithm == "p256":
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), key)
        elif algorithm == "ed25519":
            ed25519.Ed25519PublicKey.from_public_bytes(key)
        else:
            public_key_from_bytes(algorithm, key)
    except (ValueError, CryptoError) as exc:
        raise CertificateMalformed(
            f"invalid {algorithm} public key in certificate: {exc}"
        ) from None


def parse_spki(spki: bytes) -> tuple[str, bytes]:
    """(algorithm, key bytes) of a SubjectPublicKeyInfo; the key is checked to be valid."""
    try:
        algid, bits = _der.decode(spki).children()
        parts = algid.children()
        alg = _der.parse_oid(parts[0])
        if bits.tag != _der.BIT_STRING or not bits.content or bits.content[0] != 0:
            raise CertificateMalformed("subjectPublicKey is not a whole-byte BIT STRING")
        key = bits.content[1:]
        if alg == OID_ED25519:
            if len(parts) != 1:
                raise CertificateMalformed("Ed25519 key algorithm takes no parameters")
            name = "ed25519"
        elif alg == OID_EC_PUBLIC_KEY:
            if len(parts) != 2 or parts[1].tag != _der.OID:
                raise CertificateMalformed("EC key without a named curve")
            curve = _der.parse_oid(parts[1])
            if curve not in _CURVES:
                raise UnsupportedAlgorithm(f"unsupported EC curve {curve}")
            name = _CURVES[curve]
        else:
            raise UnsupportedAlgorithm(f"unsupported public key algorithm {alg}")
    except _der.DerError as exc:
        raise CertificateMalformed(f"malformed SubjectPublicKeyInfo: {exc.message}") from None
    except ValueError:
        raise CertificateMalformed("malformed SubjectPublicKeyInfo") from None
    _check_point(name, key)
    return name, key


def verify_signed(
    issuer_algorithm: str, issuer_key: bytes, signature_oid: str, tbs: bytes, signature: bytes
) -> None:
    """Raise unless ``signature`` over ``tbs`` verifies under the issuer's key."""
    if signature_oid == OID_SM2_WITH_SM3:
        if issuer_algorithm != "sm2":
            raise UnsupportedAlgorithm(f"SM2-with-SM3 signature by a {issuer_algorithm} key")
        if not Sm2PublicKey.from_bytes(issuer_key).verify(tbs, signature):
            raise BadSignature("SM2-with-SM3 signature does not verify under the issuer's key")
        return
    if signature_oid in _ECDSA_HASHES:
        if issuer_algorithm != "p256":
            raise UnsupportedAlgorithm(f"ECDSA signature by a {issuer_algorithm} key")
        pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), issuer_key)
        try:
            pub.verify(signature, tbs, ec.ECDSA(_ECDSA_HASHES[signature_oid]))
        except InvalidSignature:
            raise BadSignature("ECDSA signature does not verify under the issuer's key") from None
        return
    raise UnsupportedAlgorithm(f"unsupported signature algorithm {signature_oid}")


# --- PEM -------------------------------------------------------------------------------------

_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.S)


def pem_blocks(data: bytes, label: str) -> list[bytes]:
    """The DER of every PEM block labelled ``label`` in ``data``, in order."""
    out = []
    for m in _PEM.finditer(data):
        if m.group(1).decode() == label:
            try:
                out.append(base64.b64decode(b"".join(m.group(2).split()), validate=True))
            except ValueError:
                raise CertificateMalformed(f"bad base64 in a PEM {label} block") from None
    return out


def to_pem(der: bytes, label: str) -> bytes:
    b64 = base64.b64encode(der)
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return b"".join(
        [f"-----BEGIN {label}-----\n".encode(), *(ln + b"\n" for ln in lines)]
        + [f"-----END {label}-----\n".encode()]
    )


# --- CA signing keys -------------------------------------------------------------------------


class SigningKey:
    """A CA's private key: ECDSA P-256 (via ``cryptography``) or SM2 (via tablechain.crypto)."""

    def __init__(self, algorithm: str, key: ec.EllipticCurvePrivateKey | Sm2PrivateKey) -> None:
        if algorithm not in ISSUER_ALGORITHMS:
            raise UnsupportedAlgorithm(f"a CA key is one of {ISSUER_ALGORITHMS}, not {algorithm!r}")
        self.algorithm = algorithm
        self._key = key
        if isinstance(key, Sm2PrivateKey):
            self.public_key = key.public_key.to_bytes()
        else:
            self.public_key = key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )

    @classmethod
    def generate(cls, algorithm: str) -> SigningKey:
        if algorithm == "sm2":
            return cls("sm2", Sm2PrivateKey.generate())
        if algorithm == "p256":
            return cls("p256", ec.generate_private_key(ec.SECP256R1()))
        raise UnsupportedAlgorithm(f"a CA key is one of {ISSUER_ALGORITHMS}, not {algorithm!r}")

    def spki(self) -> bytes:
        return spki_der(self.algorithm, self.public_key)

    def signature_algorithm(self) -> bytes:
        """The AlgorithmIdentifier of this key's signatures (no parameters, as OpenSSL)."""
        oid = OID_SM2_WITH_SM3 if self.algorithm == "sm2" else OID_ECDSA_SHA256
        return _der.sequence(_der.oid(oid))

    def sign(self, tbs: bytes) -> bytes:
        if isinstance(self._key, Sm2PrivateKey):
            return self._key.sign(tbs)
        return self._key.sign(tbs, ec.ECDSA(hashes.SHA256()))

    def to_pem(self) -> bytes:
        """Unencrypted PKCS#8 PEM, readable by ``openssl pkey``."""
        if isinstance(self._key, Sm2PrivateKey):
            ec_private = _der.sequence(
                _der.integer(1),
                _der.octet_string(self._key.to_bytes()),
                _der.explicit(1, _der.bit_string(self.public_key)),
            )
            algid = _der.sequence(_der.oid(OID_EC_PUBLIC_KEY), _der.oid(OID_SM2_CURVE))
            der = _der.sequence(_der.integer(0), algid, _der.octet_string(ec_private))
            return to_pem(der, "PRIVATE KEY")
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @classmethod
    def from_pem(cls, data: bytes) -> SigningKey:
        """From PKCS#8 ``PRIVATE KEY`` PEM (P-256 or SM2, as OpenSSL's genpkey writes them)."""
        blocks = pem_blocks(data, "PRIVATE KEY")
        if len(blocks) != 1:
            raise CAStoreError("expected exactly one PEM PRIVATE KEY block")
        try:
            _version, algid, inner = _der.decode(blocks[0]).children()[:3]
            parts = algid.children()
            curve = _der.parse_oid(parts[1]) if len(parts) > 1 else ""
            if _der.parse_oid(parts[0]) == OID_EC_PUBLIC_KEY and curve == OID_SM2_CURVE:
                fields = _der.decode(inner.content).children()
                secret = fields[1].content
                return cls("sm2", Sm2PrivateKey.from_bytes(secret.rjust(32, b"\0")))
        except (_der.DerError, CryptoError, IndexError) as exc:
            raise CAStoreError(f"unreadable private key: {exc}") from None
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise CAStoreError(f"unreadable private key: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise UnsupportedAlgorithm("a CA key is ECDSA P-256 or SM2")
        return cls("p256", key)
