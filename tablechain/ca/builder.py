"""Encoding and signing of certificates and CRLs (RFC 5280 sections 4 and 5).

One path for every algorithm: the TBSCertificate / TBSCertList is encoded here (names and
extension values come from ``cryptography``'s encoders) and signed with the issuer's
:class:`SigningKey`, ECDSA P-256 or SM2-with-SM3. ``cryptography``'s own builders cannot take an
SM2 key, on either side.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import ExtensionOID, NameOID

from tablechain.ca import _der
from tablechain.ca.algorithms import SigningKey, spki_der
from tablechain.ca.certificate import ROLES
from tablechain.ca.errors import CAError

__all__ = [
    "Extension",
    "subject_name",
    "key_identifier",
    "build_certificate",
    "build_crl",
    "MAX_SERIAL_BITS",
]

MAX_SERIAL_BITS = 159  # RFC 5280 4.1.2.2: at most 20 octets, positive


@dataclass(frozen=True)
class Extension:
    """An extension to encode: dotted OID, criticality, DER of the extnValue contents."""

    oid: str
    critical: bool
    value: bytes

    def encode(self) -> bytes:
        parts = [_der.oid(self.oid)]
        if self.critical:
            parts.append(_der.boolean(True))
        parts.append(_der.octet_string(self.value))
        return _der.sequence(*parts)


def subject_name(
    common_name: str, *, role: str | None = None, organization: str | None = None
) -> x509.Name:
    """CN, optional O, and the role as OU (see :mod:`tablechain.ca.certificate`)."""
    if not common_name or len(common_name) > 64:
        raise CAError("a common name is 1 to 64 characters")
    attrs = []
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    if role is not None:
        if role not in ROLES:
            raise CAError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def key_identifier(public_key: bytes) -> bytes:
    """RFC 7093 method 1: the leftmost 160 bits of SHA-256 of the subjectPublicKey bits."""
    return hashlib.sha256(public_key).digest()[:20]


def _key_usage(*, ca: bool) -> bytes:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    ).public_bytes()


def build_certificate(
    *,
    issuer_key: SigningKey,
    issuer_name: bytes,
    serial: int,
    subject: x509.Name,
    subject_algorithm: str,
    subject_key: bytes,
    not_before: int,
    not_after: int,
    is_ca: bool,
    path_len: int | None = None,
    extra_extensions: Sequence[Extension] = (),
) -> bytes:
    """A signed DER certificate. ``issuer_name`` is the issuer's subject Name in DER (the
    subject itself for a self-signed root)."""
    if not 0 < serial < (1 << MAX_SERIAL_BITS):
        raise CAError(f"serial must be positive and below 2^{MAX_SERIAL_BITS}")
    if not_after <= not_before:
        raise CAError("notAfter must be later than notBefore")
    if path_len is not None and (not is_ca or path_len < 0):
        raise CAError("pathLenConstraint is a non-negative number on a CA certificate")
    issuer_ski = key_identifier(issuer_key.public_key)
    extensions = [
        Extension(
            ExtensionOID.BASIC_CONSTRAINTS.dotted_string,
            True,
            x509.BasicConstraints(ca=is_ca, path_length=path_len).public_bytes(),
        ),
        Extension(ExtensionOID.KEY_USAGE.dotted_string, True, _key_usage(ca=is_ca)),
        Extension(
            ExtensionOID.SUBJECT_KEY_IDENTIFIER.dotted_string,
            False,
            x509.SubjectKeyIdentifier(key_identifier(subject_key)).public_bytes(),
        ),
        Extension(
            ExtensionOID.AUTHORITY_KEY_IDENTIFIER.dotted_string,
            False,
            x509.AuthorityKeyIdentifier(issuer_ski, None, None).public_bytes(),
        ),
        *extra_extensions,
    ]
    tbs = _der.sequence(
        _der.explicit(0, _der.integer(2)),
        _der.integer(serial),
        issuer_key.signature_algorithm(),
        issuer_name,
        _der.sequence(_der.time(not_before), _der.time(not_after)),
        subject.public_bytes(),
        spki_der(subject_algorithm, subject_key),
        _der.explicit(3, _der.sequence(*(e.encode() for e in extensions))),
    )
    return _der.sequence(
        tbs, issuer_key.signature_algorithm(), _der.bit_string(issuer_key.sign(tbs))
    )


def build_crl(
    *,
    issuer_key: SigningKey,
    issuer_name: bytes,
    this_update: int,
    next_update: int,
    revoked: Sequence[tuple[int, int]],
    crl_number: int,
) -> bytes:
    """A signed DER X.509 v2 CRL listing ``revoked`` (serial, revocation time) pairs."""
    if next_update <= this_update:
        raise CAError("nextUpdate must be later than thisUpdate")
    fields = [
        _der.integer(1),
        issuer_key.signature_algorithm(),
        issuer_name,
        _der.time(this_update),
        _der.time(next_update),
    ]
    if revoked:
        entries = [
            _der.sequence(_der.integer(serial), _der.time(when)) for serial, when in sorted(revoked)
        ]
        fields.append(_der.sequence(*entries))
    crl_extensions = [
        Extension(
            ExtensionOID.AUTHORITY_KEY_IDENTIFIER.dotted_string,
            False,
            x509.AuthorityKeyIdentifier(
                key_identifier(issuer_key.public_key), None, None
            ).public_bytes(),
        ),
        Extension(
            ExtensionOID.CRL_NUMBER.dotted_string, False, x509.CRLNumber(crl_number).public_bytes()
        ),
    ]
    fields.append(_der.explicit(0, _der.sequence(*(e.encode() for e in crl_extensions))))
    tbs = _der.sequence(*fields)
    return _der.sequence(
        tbs, issuer_key.signature_algorithm(), _der.bit_string(issuer_key.sign(tbs))
    )
