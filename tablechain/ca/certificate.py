"""A parsed X.509 v3 certificate: the facts path validation needs, nothing more.

``cryptography`` parses the certificate (strict DER, names, extensions); the
SubjectPublicKeyInfo is read here because ``cryptography`` refuses SM2 keys.

The role of a leaf (user, validator, regulator) is carried as an organizationalUnitName (OU)
attribute of its subject, as Hyperledger Fabric's NodeOUs do: OpenSSL writes it with
``-subj "/CN=alice/OU=validator"`` and every X.509 tool shows it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import ExtensionOID, NameOID

from tablechain.ca import _der
from tablechain.ca.algorithms import parse_spki, pem_blocks
from tablechain.ca.errors import CertificateMalformed

__all__ = [
    "ROLES",
    "Certificate",
    "parse_certificate",
    "load_certificates",
    "fingerprint",
    "to_seconds",
]

ROLES = ("user", "validator", "regulator")

RECOGNISED_EXTENSIONS = frozenset(
    {
        ExtensionOID.BASIC_CONSTRAINTS.dotted_string,
        ExtensionOID.KEY_USAGE.dotted_string,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER.dotted_string,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER.dotted_string,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME.dotted_string,
    }
)
"""Extensions this verifier processes; any other extension marked critical is refused."""

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
_MAX_CERT_BYTES = 16384


def to_seconds(when: _dt.datetime) -> int:
    """Integer seconds since the epoch, without passing through a float."""
    return (when - _EPOCH) // _dt.timedelta(seconds=1)


def fingerprint(der: bytes) -> str:
    """SHA-256 of the certificate's DER, lowercase hex: how a certificate is referenced."""
    return hashlib.sha256(der).hexdigest()


@dataclass(frozen=True)
class Certificate:
    """What path validation reads from one certificate."""

    der: bytes
    fingerprint: str
    serial: int
    issuer: bytes  # Name, DER
    subject: bytes  # Name, DER
    subject_text: str
    not_before: int
    not_after: int
    tbs: bytes
    signature_oid: str
    signature: bytes
    key_algorithm: str  # p256 | secp256k1 | sm2 | ed25519
    public_key: bytes  # EC point as encoded in the certificate, or raw Ed25519 bytes
    key_id: str  # SHA-256 hex of the SubjectPublicKeyInfo DER
    is_ca: bool
    has_basic_constraints: bool
    path_len: int | None
    key_usage: frozenset[str] | None  # None: no keyUsage extension
    unknown_critical: tuple[str, ...]  # OIDs of critical extensions not recognised
    role: str | None

    @property
    def self_issued(self) -> bool:
        return self.issuer == self.subject


def _key_usage(ku: x509.KeyUsage) -> frozenset[str]:
    names = [
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
    ]
    used = {n for n in names if getattr(ku, n)}
    if ku.key_agreement:
        used |= {n for n in ("encipher_only", "decipher_only") if getattr(ku, n)}
    return frozenset(used)


def _role(name: x509.Name) -> str | None:
    values = {a.value for a in name.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)}
    roles = sorted(v for v in values if isinstance(v, str) and v in ROLES)
    if len(roles) > 1:
        raise CertificateMalformed(f"certificate names several roles: {', '.join(roles)}")
    return roles[0] if roles else None


def parse_certificate(der: bytes) -> Certificate:
    """Parse one DER certificate; raises :class:`CertificateMalformed` (or
    ``UnsupportedAlgorithm`` for a key type outside :data:`KEY_ALGORITHMS`)."""
    if not isinstance(der, (bytes, bytearray)) or not 0 < len(der) <= _MAX_CERT_BYTES:
        raise CertificateMalformed(f"a certificate is 1 to {_MAX_CERT_BYTES} bytes of DER")
    der = bytes(der)
    try:
        outer = _der.decode(der).children()
        if len(outer) != 3:
            raise CertificateMalformed("a certificate is a SEQUENCE of three elements")
        tbs_node, sigalg_node, sig_node = outer
        fields = tbs_node.children()
        if not fields or fields[0].tag != 0xA0:
            raise CertificateMalformed("only X.509 v3 certificates are accepted")
        if _der.parse_integer(fields[0].children()[0]) != 2:
            raise CertificateMalformed("only X.509 v3 certificates are accepted")
        if fields[2].raw != sigalg_node.raw:
            raise CertificateMalformed("inner and outer signature algorithms differ")
        spki = fields[6].raw
        if sig_node.tag != _der.BIT_STRING or not sig_node.content or sig_node.content[0]:
            raise CertificateMalformed("signatureValue is not a whole-byte BIT STRING")
    except (_der.DerError, IndexError) as exc:
        raise CertificateMalformed(f"malformed certificate structure: {exc}") from None
    algorithm, key = parse_spki(spki)
    try:
        cert = x509.load_der_x509_certificate(der)
        extensions = cert.extensions
        bc: x509.BasicConstraints | None = None
        ku: frozenset[str] | None = None
        unknown: list[str] = []
        for ext in extensions:
            dotted = ext.oid.dotted_string
            if isinstance(ext.value, x509.BasicConstraints):
                bc = ext.value
            elif isinstance(ext.value, x509.KeyUsage):
                ku = _key_usage(ext.value)
            if ext.critical and dotted not in RECOGNISED_EXTENSIONS:
                unknown.append(dotted)
        result = Certificate(
            der=der,
            fingerprint=fingerprint(der),
            serial=cert.serial_number,
            issuer=cert.issuer.public_bytes(),
            subject=cert.subject.public_bytes(),
            subject_text=cert.subject.rfc4514_string(),
            not_before=to_seconds(cert.not_valid_before_utc),
            not_after=to_seconds(cert.not_valid_after_utc),
            tbs=tbs_node.raw,
            signature_oid=_der.parse_oid(sigalg_node.children()[0]),
            signature=sig_node.content[1:],
            key_algorithm=algorithm,
            public_key=key,
            key_id=hashlib.sha256(spki).hexdigest(),
            is_ca=bool(bc and bc.ca),
            has_basic_constraints=bc is not None,
            path_len=bc.path_length if bc is not None and bc.ca else None,
            key_usage=ku,
            unknown_critical=tuple(sorted(unknown)),
            role=_role(cert.subject),
        )
    except CertificateMalformed:
        raise
    except (ValueError, _der.DerError, IndexError, x509.InvalidVersion) as exc:
        raise CertificateMalformed(f"malformed certificate: {exc}") from None
    return result


def load_certificates(data: bytes | Iterable[bytes]) -> list[Certificate]:
    """Certificates from PEM text (every CERTIFICATE block, in order), one DER certificate, or
    an iterable of DER certificates."""
    if isinstance(data, (bytes, bytearray)):
        if b"-----BEGIN" in data:
            ders = pem_blocks(bytes(data), "CERTIFICATE")
            if not ders:
                raise CertificateMalformed("no PEM CERTIFICATE block found")
        else:
            ders = [bytes(data)]
    else:
        ders = [bytes(d) for d in data]
    return [parse_certificate(d) for d in ders]
