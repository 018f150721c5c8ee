"""Errors of the certificate authority and of certificate admission.

Every refusal of a certificate path is an :class:`AdmissionRefused` with its own stable code, so
the ledger can record why a transaction was turned away. Problems with the CA's own tooling
(its directory, a CRL file) are :class:`CAError`.
"""

from __future__ import annotations

from tablechain.errors import TablechainError

__all__ = [
    "AdmissionRefused",
    "CertificateMalformed",
    "UnknownCertificate",
    "UnsupportedAlgorithm",
    "PathTooLong",
    "UnknownRoot",
    "IssuerMismatch",
    "BadSignature",
    "CertificateExpired",
    "CertificateNotYetValid",
    "NotACA",
    "PathLenExceeded",
    "BadKeyUsage",
    "UnknownCriticalExtension",
    "CertificateRevoked",
    "KeyMismatch",
    "RoleMismatch",
    "InvalidCheckTime",
    "CAError",
    "CAStoreError",
    "UnknownSerial",
    "CRLInvalid",
    "ADMISSION_ERRORS",
]


class AdmissionRefused(TablechainError):
    """A certificate (path) does not admit this signer; ``code`` says why."""

    code = "caADMISSION_REFUSED"


class CertificateMalformed(AdmissionRefused):
    """Not a well-formed X.509 v3 certificate (or chain) that this verifier can read."""

    code = "caMALFORMED_CERTIFICATE"


class UnknownCertificate(AdmissionRefused):
    """A fingerprint that was never registered."""

    code = "caUNKNOWN_CERTIFICATE"


class UnsupportedAlgorithm(AdmissionRefused):
    """A key or signature algorithm outside ECDSA P-256 / SM2-with-SM3 (issuers) and
    secp256k1 / SM2 / Ed25519 (account keys)."""

    code = "caUNSUPPORTED_ALGORITHM"


class PathTooLong(AdmissionRefused):
    code = "caPATH_TOO_LONG"


class UnknownRoot(AdmissionRefused):
    """The chain does not end at one of the trusted roots."""

    code = "caUNKNOWN_ROOT"


class IssuerMismatch(AdmissionRefused):
    """A certificate's issuer name is not the subject of the next certificate up."""

    code = "caISSUER_MISMATCH"


class BadSignature(AdmissionRefused):
    code = "caBAD_SIGNATURE"


class CertificateExpired(AdmissionRefused):
    code = "caCERT_EXPIRED"


class CertificateNotYetValid(AdmissionRefused):
    code = "caCERT_NOT_YET_VALID"


class NotACA(AdmissionRefused):
    """An issuing certificate without basicConstraints cA=TRUE."""

    code = "caNOT_A_CA"


class PathLenExceeded(AdmissionRefused):
    code = "caPATH_LEN_EXCEEDED"


class BadKeyUsage(AdmissionRefused):
    """keyUsage lacks keyCertSign (CA), digitalSignature (leaf) or cRLSign (CRL issuer)."""

    code = "caBAD_KEY_USAGE"


class UnknownCriticalExtension(AdmissionRefused):
    code = "caUNKNOWN_CRITICAL_EXTENSION"


class CertificateRevoked(AdmissionRefused):
    code = "caREVOKED"


class KeyMismatch(AdmissionRefused):
    """The certificate's public key is not the transaction signer's key."""

    code = "caKEY_MISMATCH"


class RoleMismatch(AdmissionRefused):
    """The leaf certificate does not carry the role the caller requires."""

    code = "caROLE_MISMATCH"


class InvalidCheckTime(AdmissionRefused):
    """The check time is not an integer number of seconds."""

    code = "caBAD_TIME"


class CAError(TablechainError):
    """A problem with the CA tooling or with an input file it was given."""

    code = "caERROR"


class CAStoreError(CAError):
    """The CA directory is missing, incomplete or not a CA directory."""

    code = "caSTORE_INVALID"


class UnknownSerial(CAError):
    code = "caUNKNOWN_SERIAL"


class CRLInvalid(CAError):
    """A CRL that cannot be imported: malformed, wrong issuer, bad signature."""

    code = "caBAD_CRL"


ADMISSION_ERRORS: tuple[type[AdmissionRefused], ...] = (
    CertificateMalformed,
    UnknownCertificate,
    UnsupportedAlgorithm,
    PathTooLong,
    UnknownRoot,
    IssuerMismatch,
    BadSignature,
    CertificateExpired,
    CertificateNotYetValid,
    NotACA,
    PathLenExceeded,
    BadKeyUsage,
    UnknownCriticalExtension,
    CertificateRevoked,
    KeyMismatch,
    RoleMismatch,
    InvalidCheckTime,
)
