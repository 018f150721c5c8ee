"""A certificate authority kept in a directory of plain files.

Layout of a CA directory::

    ca.json            name, algorithm, format version
    ca.key             the CA's private key, PKCS#8 PEM, mode 0600 (unencrypted)
    ca.pem             the CA's certificate
    chain.pem          the CA's certificate, then its issuers up to and including the root
    issued/<serial>.pem     every certificate it issued (serial in hex)
    revoked/<serial>.json   one file per revocation: serial, time, reason

A root signs itself; an intermediate is created by its parent (``init_intermediate``). Leaves
carry the role as OU and the account's own public key (secp256k1, SM2 or Ed25519): the
certificate's key IS the account key. Times are explicit integer seconds; only the CLI reads the
wall clock.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tablechain.ca.algorithms import ISSUER_ALGORITHMS, SigningKey, to_pem
from tablechain.ca.builder import (
    MAX_SERIAL_BITS,
    Extension,
    build_certificate,
    build_crl,
    subject_name,
)
from tablechain.ca.certificate import ROLES, Certificate, load_certificates, parse_certificate
from tablechain.ca.crl import RevocationEntry
from tablechain.ca.errors import CAError, CAStoreError, UnknownSerial
from tablechain.crypto.keys import SCHEMES, CryptoError, public_key_from_bytes

__all__ = ["CertificateAuthority", "IssuedRecord", "REVOCATION_REASONS"]

_FORMAT = 1
REVOCATION_REASONS = (
    "unspecified",
    "key_compromise",
    "ca_compromise",
    "affiliation_changed",
    "superseded",
    "cessation_of_operation",
    "privilege_withdrawn",
)


@dataclass(frozen=True)
class IssuedRecord:
    """One certificate a CA issued, as ``list`` reports it."""

    serial: int
    subject: str
    role: str | None
    is_ca: bool
    not_before: int
    not_after: int
    fingerprint: str
    revoked_at: int | None
    reason: str | None


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _write_new(path: Path, data: bytes) -> None:
    """Write a file that must not exist yet, atomically (temp file + rename)."""
    if path.exists():
        raise CAStoreError(f"{path} already exists")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _account_key(scheme: str, public_key: bytes) -> tuple[str, bytes]:
    """The certificate encoding of an account key: uncompressed EC point or raw Ed25519."""
    if scheme not in SCHEMES:
        raise CAError(f"unknown signature scheme {scheme!r}; known: {', '.join(SCHEMES)}")
    try:
        key = public_key_from_bytes(scheme, public_key)
    except CryptoError as exc:
        raise CAError(f"invalid {scheme} public key: {exc.message}") from None
    if scheme == "secp256k1":
        import coincurve

        return scheme, coincurve.PublicKey(key.to_bytes()).format(compressed=False)
    return scheme, key.to_bytes()


class CertificateAuthority:
    """A root or intermediate CA backed by a directory (see the module docstring)."""

    def __init__(self, directory: Path, key: SigningKey, chain: list[Certificate]) -> None:
        self.directory = directory
        self._key = key
        self.chain = chain  # own certificate first, root last

    @property
    def certificate(self) -> Certificate:
        return self.chain[0]

    @property
    def algorithm(self) -> str:
        return self._key.algorithm

    # --- creation ------------------------------------------------------------------------

    @staticmethod
    def _prepare(directory: str | os.PathLike[str]) -> Path:
        path = Path(directory)
        if (path / "ca.json").exists():
            raise CAStoreError(f"{path} already holds a CA")
        path.mkdir(parents=True, exist_ok=True)
        (path / "issued").mkdir(exist_ok=True)
        (path / "revoked").mkdir(exist_ok=True)
        return path

    @classmethod
    def _save(
        cls, path: Path, name: str, key: SigningKey, chain: list[Certificate]
    ) -> CertificateAuthority:
        _write_private(path / "ca.key", key.to_pem())
        _write_new(path / "ca.pem", to_pem(chain[0].der, "CERTIFICATE"))
        _write_new(path / "chain.pem", b"".join(to_pem(c.der, "CERTIFICATE") for c in chain))
        meta = {"format": _FORMAT, "name": name, "algorithm": key.algorithm}
        _write_new(path / "ca.json", json.dumps(meta, sort_keys=True, indent=1).encode())
        return cls(path, key, chain)

    @classmethod
    def init_root(
        cls,
        directory: str | os.PathLike[str],
        *,
        name: str,
        not_before: int,
        not_after: int,
        algorithm: str = "p256",
        organization: str | None = None,
        path_len: int | None = None,
    ) -> CertificateAuthority:
        """A new self-signed root CA (ECDSA P-256 or SM2) in ``directory``."""
        if algorithm not in ISSUER_ALGORITHMS:
            raise CAError(f"a CA key is one of {', '.join(ISSUER_ALGORITHMS)}, not {algorithm!r}")
        path = cls._prepare(directory)
        key = SigningKey.generate(algorithm)
        subject = subject_name(name, organization=organization)
        der = build_certificate(
            issuer_key=key,
            issuer_name=subject.public_bytes(),
            serial=_new_serial(),
            subject=subject,
            subject_algorithm=algorithm,
            subject_key=key.public_key,
            not_before=not_before,
            not_after=not_after,
            is_ca=True,
            path_len=path_len,
        )
        return cls._save(path, name, key, [parse_certificate(der)])

    @classmethod
    def init_intermediate(
        cls,
        directory: str | os.PathLike[str],
        parent: CertificateAuthority,
        *,
        name: str,
        not_before: int,
        not_after: int,
        algorithm: str = "p256",
        organization: str | None = None,
        path_len: int | None = None,
    ) -> CertificateAuthority:
        """A new intermediate CA in ``directory``, certified by ``parent``."""
        if algorithm not in ISSUER_ALGORITHMS:
            raise CAError(f"a CA key is one of {', '.join(ISSUER_ALGORITHMS)}, not {algorithm!r}")
        path = cls._prepare(directory)
        key = SigningKey.generate(algorithm)
        der = parent._issue(
            subject=subject_name(name, organization=organization),
            subject_algorithm=algorithm,
            subject_key=key.public_key,
            not_before=not_before,
            not_after=not_after,
            is_ca=True,
            path_len=path_len,
        )
        return cls._save(path, name, key, [parse_certificate(der), *parent.chain])

    @classmethod
    def open(cls, directory: str | os.PathLike[str]) -> CertificateAuthority:
        path = Path(directory)
        try:
            meta = json.loads((path / "ca.json").read_text())
            key = SigningKey.from_pem((path / "ca.key").read_bytes())
            chain = load_certificates((path / "chain.pem").read_bytes())
        except FileNotFoundError as exc:
            raise CAStoreError(f"{path} is not a CA directory: {exc.filename} missing") from None
        except (ValueError, OSError) as exc:
            raise CAStoreError(f"{path} is not a readable CA directory: {exc}") from None
        if meta.get("format") != _FORMAT or key.public_key != chain[0].public_key:
            raise CAStoreError(f"{path}: key and certificate do not belong together")
        return cls(path, key, chain)

    # --- issuing -------------------------------------------------------------------------

    def _issue(self, **fields: object) -> bytes:
        serial = _new_serial()
        while (self.directory / "issued" / f"{serial:x}.pem").exists():
            serial = _new_serial()
        der = build_certificate(
            issuer_key=self._key,
            issuer_name=self.certificate.subject,
            serial=serial,
            **fields,  # type: ignore[arg-type]
        )
        _write_new(self.directory / "issued" / f"{serial:x}.pem", to_pem(der, "CERTIFICATE"))
        return der

    def issue(
        self,
        *,
        name: str,
        role: str,
        public_key: bytes,
        scheme: str,
        not_before: int,
        not_after: int,
        organization: str | None = None,
        extra_extensions: Sequence[Extension] = (),
    ) -> bytes:
        """A leaf certificate (DER) for an account key of ``scheme`` with ``role``."""
        if role not in ROLES:
            raise CAError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
        algorithm, key = _account_key(scheme, public_key)
        return self._issue(
            subject=subject_name(name, role=role, organization=organization),
            subject_algorithm=algorithm,
            subject_key=key,
            not_before=not_before,
            not_after=not_after,
            is_ca=False,
            extra_extensions=extra_extensions,
        )

    def chain_for(self, leaf_der: bytes) -> list[bytes]:
        """What a signer presents: the leaf, then this CA and its issuers below the root."""
        return [leaf_der, *(c.der for c in self.chain[:-1])]

    # --- revocation ----------------------------------------------------------------------

    def _issued(self, serial: int) -> Certificate:
        path = self.directory / "issued" / f"{serial:x}.pem"
        if not path.exists():
            raise UnknownSerial(f"this CA issued no certificate with serial {serial:x}")
        return load_certificates(path.read_bytes())[0]

    def revoke(self, serial: int, *, at: int, reason: str = "unspecified") -> RevocationEntry:
        """Record a revocation; the returned entry is what the ledger's transaction carries."""
        if reason not in REVOCATION_REASONS:
            raise CAError(f"unknown reason {reason!r}; reasons: {', '.join(REVOCATION_REASONS)}")
        self._issued(serial)
        record = self.directory / "revoked" / f"{serial:x}.json"
        if record.exists():
            raise CAError(f"serial {serial:x} is already revoked")
        body = {"serial": f"{serial:x}", "revoked_at": at, "reason": reason}
        _write_new(record, json.dumps(body, sort_keys=True).encode())
        return RevocationEntry(self.certificate.key_id, serial, at, reason)

    def revocations(self) -> list[RevocationEntry]:
        out = []
        for path in sorted((self.directory / "revoked").glob("*.json")):
            body = json.loads(path.read_text())
            out.append(
                RevocationEntry(
                    self.certificate.key_id,
                    int(body["serial"], 16),
                    body["revoked_at"],
                    body["reason"],
                )
            )
        return sorted(out, key=lambda e: e.serial)

    def list(self) -> list[IssuedRecord]:
        """Every certificate this CA issued, by serial, with its revocation status."""
        revoked = {e.serial: e for e in self.revocations()}
        records = []
        for path in sorted((self.directory / "issued").glob("*.pem")):
            cert = load_certificates(path.read_bytes())[0]
            rev = revoked.get(cert.serial)
            records.append(
                IssuedRecord(
                    serial=cert.serial,
                    subject=cert.subject_text,
                    role=cert.role,
                    is_ca=cert.is_ca,
                    not_before=cert.not_before,
                    not_after=cert.not_after,
                    fingerprint=cert.fingerprint,
                    revoked_at=rev.revoked_at if rev else None,
                    reason=rev.reason if rev else None,
                )
            )
        return sorted(records, key=lambda r: r.serial)

    def crl(self, *, this_update: int, next_update: int) -> bytes:
        """A signed DER CRL of every revocation so far (CRL number = number of entries)."""
        entries = self.revocations()
        return build_crl(
            issuer_key=self._key,
            issuer_name=self.certificate.subject,
            this_update=this_update,
            next_update=next_update,
            revoked=[(e.serial, e.revoked_at) for e in entries],
            crl_number=len(entries),
        )


def _new_serial() -> int:
    return secrets.randbits(MAX_SERIAL_BITS) | (1 << (MAX_SERIAL_BITS - 1))
