"""Revocation entries, and import of X.509 CRL files into them.

A revocation is identified by (issuer key id, serial): the issuer key id is the SHA-256 (hex)
of the issuing CA certificate's SubjectPublicKeyInfo. Keying by the issuer's key rather than by
the issuer certificate's fingerprint keeps a revocation effective when a CA certificate is
renewed with the same key, and lets the ledger check that a revocation transaction is signed by
the issuing CA. A CRL only lists revocations; the ledger turns them into on-chain transactions.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import CRLEntryExtensionOID, ExtensionOID

from tablechain.ca import _der
from tablechain.ca.algorithms import pem_blocks, verify_signed
from tablechain.ca.certificate import Certificate, parse_certificate, to_seconds
from tablechain.ca.errors import AdmissionRefused, CRLInvalid

__all__ = ["RevocationEntry", "import_crl"]

_CRL_EXTENSIONS_UNDERSTOOD = frozenset(
    {ExtensionOID.AUTHORITY_KEY_IDENTIFIER.dotted_string, ExtensionOID.CRL_NUMBER.dotted_string}
)
_ENTRY_EXTENSIONS_UNDERSTOOD = frozenset(
    {
        CRLEntryExtensionOID.CRL_REASON.dotted_string,
        CRLEntryExtensionOID.INVALIDITY_DATE.dotted_string,
    }
)
_MAX_CRL_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class RevocationEntry:
    """One revoked certificate: who issued it, its serial, when, and why (if the CRL says)."""

    issuer_key_id: str
    serial: int
    revoked_at: int
    reason: str | None = None

    @property
    def key(self) -> tuple[str, int]:
        """What :meth:`CertificateVerifier.check_signer` looks up in its ``revoked`` set."""
        return (self.issuer_key_id, self.serial)


def import_crl(crl_data: bytes, issuer: bytes | Certificate) -> list[RevocationEntry]:
    """Revocation entries of a CRL (PEM ``X509 CRL`` or DER) issued by ``issuer`` (its
    certificate, DER or parsed), sorted by serial. The CRL's signature is verified with the
    issuer's key (ECDSA or SM2-with-SM3); delta, indirect and partitioned CRLs are refused."""
    if not isinstance(crl_data, (bytes, bytearray)) or len(crl_data) > _MAX_CRL_BYTES:
        raise CRLInvalid(f"a CRL is bytes, at most {_MAX_CRL_BYTES}")
    ca = issuer if isinstance(issuer, Certificate) else parse_certificate(issuer)
    if b"-----BEGIN" in crl_data:
        blocks = pem_blocks(bytes(crl_data), "X509 CRL")
        if len(blocks) != 1:
            raise CRLInvalid("expected exactly one PEM X509 CRL block")
        der = blocks[0]
    else:
        der = bytes(crl_data)
    try:
        outer = _der.decode(der).children()
        if len(outer) != 3 or outer[0].children()[1].raw != outer[1].raw:
            raise CRLInvalid("CRL inner and outer signature algorithms differ")
        crl = x509.load_der_x509_crl(der)
        signature_oid = crl.signature_algorithm_oid.dotted_string
        tbs, signature = crl.tbs_certlist_bytes, crl.signature
        crl_issuer = crl.issuer.public_bytes()
        crl_extensions = list(crl.extensions)
        revoked = list(crl)
    except CRLInvalid:
        raise
    except (ValueError, IndexError, _der.DerError, x509.InvalidVersion) as exc:
        raise CRLInvalid(f"malformed CRL: {exc}") from None
    if crl_issuer != ca.subject:
        raise CRLInvalid(f"CRL issuer is not {ca.subject_text}")
    if not ca.is_ca:
        raise CRLInvalid(f"{ca.subject_text} is not a CA certificate")
    if ca.key_usage is not None and "crl_sign" not in ca.key_usage:
        raise CRLInvalid(f"{ca.subject_text} keyUsage lacks cRLSign")
    try:
        verify_signed(ca.key_algorithm, ca.public_key, signature_oid, tbs, signature)
    except AdmissionRefused as exc:
        raise CRLInvalid(f"CRL signature rejected: {exc.message}") from None
    for ext in crl_extensions:
        if ext.critical and ext.oid.dotted_string not in _CRL_EXTENSIONS_UNDERSTOOD:
            raise CRLInvalid(
                f"CRL has critical extension {ext.oid.dotted_string} (delta, indirect or "
                "partitioned CRLs are not supported)"
            )
    entries: dict[int, RevocationEntry] = {}
    for item in revoked:
        reason: str | None = None
        try:
            item_extensions = list(item.extensions)
        except ValueError as exc:
            raise CRLInvalid(f"malformed CRL entry extensions: {exc}") from None
        for ext in item_extensions:
            if ext.critical and ext.oid.dotted_string not in _ENTRY_EXTENSIONS_UNDERSTOOD:
                raise CRLInvalid(f"CRL entry has critical extension {ext.oid.dotted_string}")
            if isinstance(ext.value, x509.CRLReason):
                reason = ext.value.reason.value
        entries[item.serial_number] = RevocationEntry(
            issuer_key_id=ca.key_id,
            serial=item.serial_number,
            revoked_at=to_seconds(item.revocation_date_utc),
            reason=reason,
        )
    return [entries[s] for s in sorted(entries)]
