"""The admission verifier: trusted roots, registered certificates, cached path validation.

The ledger builds one :class:`CertificateVerifier` from the roots in genesis (and rebuilds it when
an admin transaction changes them), registers certificates as their registration transactions
are applied, and calls :meth:`CertificateVerifier.check_signer` for every transaction (and every
consensus vote) with the block's timestamp and the on-chain revocation set.

The expensive, time-independent part of validation (signatures, chaining, constraints) runs once
per chain and is cached together with the path's validity window; a repeated check is a window
comparison, one set lookup per certificate of the path and a key comparison. Failures of the
time-independent part are cached too, so a hostile chain costs its signature checks only once.
A cache hit and a cold check always give the same answer. The verifier is not thread-safe.
"""

from __future__ import annotations

import hashlib
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass

from tablechain.ca.algorithms import pem_blocks
from tablechain.ca.certificate import Certificate, load_certificates
from tablechain.ca.errors import (
    AdmissionRefused,
    CertificateMalformed,
    KeyMismatch,
    RoleMismatch,
    UnknownCertificate,
)
from tablechain.ca.validation import (
    MAX_PATH_DEPTH,
    ValidatedPath,
    check_anchor,
    check_revocation,
    check_time,
    validate_structure,
)
from tablechain.crypto.keys import SCHEMES, CryptoError, public_key_from_bytes

__all__ = ["CertificateVerifier", "AdmittedSigner"]

_MAX_CHAIN = 16


@dataclass(frozen=True)
class AdmittedSigner:
    """What a successful check established about the signer."""

    fingerprint: str  # of the leaf certificate
    subject: str
    role: str | None
    scheme: str
    address: bytes  # the account address of the certified key
    valid_until: int  # earliest notAfter on the path


@dataclass(frozen=True)
class _Entry:
    path: ValidatedPath
    account_key: bytes | None  # the leaf key in its scheme's canonical encoding
    address: bytes


def _chain_key(ders: Sequence[bytes]) -> str:
    h = hashlib.sha256()
    for der in ders:
        h.update(len(der).to_bytes(4, "big"))
        h.update(der)
    return h.hexdigest()


class CertificateVerifier:
    """Trust store and admission check. ``trusted_roots`` are DER (or PEM) certificates."""

    def __init__(
        self,
        trusted_roots: Iterable[bytes],
        *,
        max_depth: int = MAX_PATH_DEPTH,
        cache_size: int = 100_000,
    ) -> None:
        if max_depth < 2:
            raise ValueError("max_depth counts the root and the leaf, so it is at least 2")
        roots: dict[str, Certificate] = {}
        for data in trusted_roots:
            for cert in load_certificates(data):
                check_anchor(cert)
                roots[cert.fingerprint] = cert
        self._roots = tuple(roots[fp] for fp in sorted(roots))
        self._max_depth = max_depth
        self._cache_size = cache_size
        self._registered: dict[str, str] = {}  # leaf fingerprint -> chain key
        self._sources: dict[str, bytes] = {}  # leaf fingerprint -> SHA-256 of the bytes given
        self._chains: dict[str, tuple[Certificate, ...]] = {}  # chain key -> parsed chain
        self._valid: dict[str, _Entry] = {}  # chain key -> validated path
        self._invalid: dict[str, AdmissionRefused] = {}  # chain key -> structural failure

    @property
    def trusted_roots(self) -> tuple[str, ...]:
        """Fingerprints of the trusted roots, sorted."""
        return tuple(r.fingerprint for r in self._roots)

    def is_registered(self, fingerprint: str) -> bool:
        return fingerprint in self._registered

    def is_registered_from(self, fingerprint: str, chain: bytes) -> bool:
        """Whether ``fingerprint`` is registered from exactly these bytes (PEM text of a chain).
        Several chains may end in one leaf and the last registration wins, so a caller that
        must use one particular chain (the ledger: the one on-chain) checks this first."""
        source = self._sources.get(fingerprint)
        return source is not None and source == hashlib.sha256(chain).digest()

    def registered_path(self, fingerprint: str) -> ValidatedPath:
        """The structurally validated path (root first) of a registered leaf; no time or
        revocation check."""
        return self._lookup(fingerprint).path

    def registered_chain(self, fingerprint: str) -> tuple[bytes, ...]:
        """The DER chain registered under a leaf fingerprint, leaf first."""
        try:
            return tuple(c.der for c in self._chains[self._registered[fingerprint]])
        except KeyError:
            raise UnknownCertificate(f"no certificate registered as {fingerprint}") from None

    # --- validation ----------------------------------------------------------------------

    def _remember(self, table: dict, key: str, value: object) -> None:  # type: ignore[type-arg]
        if len(table) >= self._cache_size:
            del table[next(iter(table))]
        table[key] = value

    def _entry_for_chain(self, ders: Sequence[bytes]) -> tuple[str, _Entry]:
        if not ders or len(ders) > _MAX_CHAIN:
            raise CertificateMalformed(f"a certificate chain holds 1 to {_MAX_CHAIN} certificates")
        key = _chain_key(ders)
        return key, self._entry(key, ders)

    def _entry(self, key: str, ders: Sequence[bytes] | None) -> _Entry:
        hit = self._valid.get(key)
        if hit is not None:
            return hit
        failure = self._invalid.get(key)
        if failure is not None:  # a fresh instance: re-raising one object grows its traceback
            raise type(failure)(*failure.args)
        try:
            chain = self._chains.get(key)
            if chain is None:
                if ders is None:
                    raise UnknownCertificate("registered chain is no longer available")
                chain = tuple(load_certificates(ders))
            path = validate_structure(chain, self._roots, self._max_depth)
            leaf = path.leaf
            account_key: bytes | None = None
            address = b""
            if leaf.key_algorithm in SCHEMES:
                pub = public_key_from_bytes(leaf.key_algorithm, leaf.public_key)
                account_key, address = pub.to_bytes(), pub.address()
        except AdmissionRefused as exc:
            self._remember(self._invalid, key, exc)
            raise
        entry = _Entry(path, account_key, address)
        self._remember(self._valid, key, entry)
        return entry

    def register(self, chain: bytes | Sequence[bytes], *, at_time: int | None = None) -> str:
        """Validate a chain (leaf first; PEM text or a list of DER certificates) and keep it
        under its leaf fingerprint, which is returned. With ``at_time`` the chain must also be
        valid at that time. Registering a leaf again replaces its chain."""
        ders = self._ders(chain)
        key, entry = self._entry_for_chain(ders)
        if at_time is not None:
            check_time(entry.path, at_time)  # registration keeps every alternative path
        fingerprint = entry.path.leaf.fingerprint
        previous = self._registered.get(fingerprint)
        if previous is not None and previous != key:
            self._chains.pop(previous, None)
        self._chains[key] = tuple(reversed(entry.path.certificates))
        self._registered[fingerprint] = key
        if isinstance(chain, (bytes, bytearray)):
            self._sources[fingerprint] = hashlib.sha256(chain).digest()
        else:
            self._sources.pop(fingerprint, None)
        return fingerprint

    @staticmethod
    def _ders(chain: bytes | Sequence[bytes]) -> list[bytes]:
        if isinstance(chain, (bytes, bytearray)):
            if b"-----BEGIN" in chain:
                # Only the DER bytes are needed to find the chain in the cache; parsing (~0.4 ms
                # a certificate) happens once per chain, in _entry.
                ders = pem_blocks(bytes(chain), "CERTIFICATE")
                if not ders:
                    raise CertificateMalformed("no PEM CERTIFICATE block in the chain")
                return ders
            return [bytes(chain)]
        if isinstance(chain, str):
            raise CertificateMalformed("a chain is bytes or a list of DER certificates, not str")
        return [bytes(d) for d in chain]

    def validate(
        self,
        certificate: str | bytes | Sequence[bytes],
        at_time: int,
        revoked: Container[tuple[str, int]] = frozenset(),
    ) -> ValidatedPath:
        """The validated path of a registered fingerprint or of a chain, at ``at_time``."""
        path = check_time(self._lookup(certificate).path, at_time)
        check_revocation(path, revoked)
        return path

    def _lookup(self, certificate: str | bytes | Sequence[bytes]) -> _Entry:
        if isinstance(certificate, str):
            key = self._registered.get(certificate)
            if key is None:
                raise UnknownCertificate(f"no certificate registered as {certificate[:64]}")
            return self._entry(key, None)
        return self._entry_for_chain(self._ders(certificate))[1]

    def check_signer(
        self,
        certificate: str | bytes | Sequence[bytes],
        signer_public_key: bytes,
        scheme: str,
        at_time: int,
        revoked: Container[tuple[str, int]] = frozenset(),
        *,
        role: str | None = None,
    ) -> AdmittedSigner:
        """Admit ``signer_public_key`` (of signature ``scheme``) at ``at_time`` (the block's
        timestamp, integer seconds) if ``certificate`` (a registered leaf fingerprint, or a
        chain leaf first) validates to a trusted root, nothing on its path is in ``revoked``
        (a set of (issuer key id, serial)), the leaf has ``role`` when one is required, and the
        leaf's public key is the signer's. Raises an :class:`AdmissionRefused` subclass.

        Order of checks: path structure, validity time, revocation, role, key.
        """
        entry = self._lookup(certificate)
        path = check_time(entry.path, at_time)
        check_revocation(path, revoked)
        leaf = path.leaf
        if role is not None and leaf.role != role:
            raise RoleMismatch(
                f"certificate {leaf.fingerprint[:16]} has role {leaf.role!r}, {role!r} required"
            )
        if scheme != leaf.key_algorithm or entry.account_key is None:
            raise KeyMismatch(
                f"certificate {leaf.fingerprint[:16]} certifies a {leaf.key_algorithm} key, "
                f"the signer uses {scheme}"
            )
        if signer_public_key != entry.account_key:
            try:
                signer = public_key_from_bytes(scheme, signer_public_key).to_bytes()
            except CryptoError:
                signer = b""
            if signer != entry.account_key:
                raise KeyMismatch(
                    f"certificate {leaf.fingerprint[:16]} is not for the signer's key"
                )
        return AdmittedSigner(
            fingerprint=leaf.fingerprint,
            subject=leaf.subject_text,
            role=leaf.role,
            scheme=scheme,
            address=entry.address,
            valid_until=path.not_after,
        )
