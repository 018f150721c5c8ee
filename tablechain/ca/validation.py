"""Certification path validation, the essentials of RFC 5280 section 6.1.

Checked at each step from the trust anchor down: the issuer name chains to the previous
subject, the signature verifies under the previous key (ECDSA P-256 or SM2-with-SM3), no
unrecognised critical extension, CA certificates carry basicConstraints cA=TRUE and (if keyUsage
is present) keyCertSign, pathLenConstraint holds (self-issued certificates do not count), the
leaf's keyUsage (if present) has digitalSignature, and the path is at most ``max_depth``
certificates long, the root included. Then, separately, validity at a given time (the block's
timestamp; every certificate of the path, the root included, as OpenSSL does) and revocation by
(issuer key id, serial).

The time-independent part is done once per chain and cached by the verifier; the time and
revocation checks are cheap and run on every call. Failures are reported in a fixed order
(structure, then time, then revocation) so a cached and a cold check always agree.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from dataclasses import dataclass, replace

from tablechain.ca.algorithms import verify_signed
from tablechain.ca.certificate import Certificate
from tablechain.ca.errors import (
    AdmissionRefused,
    BadKeyUsage,
    CertificateExpired,
    CertificateMalformed,
    CertificateNotYetValid,
    CertificateRevoked,
    InvalidCheckTime,
    IssuerMismatch,
    NotACA,
    PathLenExceeded,
    PathTooLong,
    UnknownCriticalExtension,
    UnknownRoot,
)

__all__ = [
    "MAX_PATH_DEPTH",
    "ValidatedPath",
    "validate_structure",
    "check_anchor",
    "check_time",
    "check_revocation",
    "validate_path",
]

MAX_PATH_DEPTH = 5
"""Default longest path, root included: root, up to three intermediates, leaf."""


@dataclass(frozen=True)
class ValidatedPath:
    """A path whose time-independent checks passed, root first and leaf last."""

    certificates: tuple[Certificate, ...]
    not_before: int  # latest notBefore on the path
    not_after: int  # earliest notAfter on the path
    revocation_keys: tuple[tuple[str, int], ...]  # (issuer key id, serial), top down
    # The same chain under other trusted roots that also sign its top (a root renewed with the
    # same name and key, both trusted): they differ in validity, so time picks among them.
    alternatives: tuple[ValidatedPath, ...] = ()

    @property
    def leaf(self) -> Certificate:
        return self.certificates[-1]

    @property
    def root(self) -> Certificate:
        return self.certificates[0]


def _who(cert: Certificate) -> str:
    return f"{cert.subject_text or '(empty subject)'} [{cert.fingerprint[:16]}]"


def check_anchor(anchor: Certificate) -> None:
    """A trust anchor must be a CA certificate this verifier fully understands."""
    if anchor.unknown_critical:
        raise UnknownCriticalExtension(
            f"root {_who(anchor)} has unrecognised critical extension(s) "
            f"{', '.join(anchor.unknown_critical)}"
        )
    if not anchor.is_ca:
        raise NotACA(f"root {_who(anchor)} lacks basicConstraints cA=TRUE")
    if anchor.key_usage is not None and "key_cert_sign" not in anchor.key_usage:
        raise BadKeyUsage(f"root {_who(anchor)} keyUsage lacks keyCertSign")


def _find_anchors(top: Certificate, anchors: Sequence[Certificate]) -> list[Certificate]:
    """Every trusted root that signed ``top``, in the order of ``anchors``."""
    named = [a for a in anchors if a.subject == top.issuer]
    found = []
    for anchor in named:
        try:
            verify_signed(
                anchor.key_algorithm, anchor.public_key, top.signature_oid, top.tbs, top.signature
            )
        except AdmissionRefused:  # another root of the same name may have signed it
            continue
        found.append(anchor)
    if found:
        return found
    if named:
        raise UnknownRoot(
            f"{_who(top)} names a trusted root as issuer but is not signed by its key"
        )
    raise UnknownRoot(f"no trusted root issued {_who(top)}")


def validate_structure(
    chain: Sequence[Certificate],
    anchors: Sequence[Certificate],
    max_depth: int = MAX_PATH_DEPTH,
) -> ValidatedPath:
    """The time-independent checks of a chain given leaf first (intermediates after it; the
    root may be included at the end or left out)."""
    certs = list(chain)
    if not certs:
        raise CertificateMalformed("empty certificate chain")
    by_fp = {a.fingerprint: a for a in anchors}
    anchor = by_fp.get(certs[-1].fingerprint)
    if anchor is not None:
        certs.pop()
        if not certs:
            raise CertificateMalformed("the chain holds only a root, no end-entity certificate")
    if len(certs) + 1 > max_depth:
        raise PathTooLong(f"path of {len(certs) + 1} certificates exceeds the maximum {max_depth}")
    if anchor is not None:
        return _validate_below(certs, anchor, max_depth)
    paths: list[ValidatedPath] = []
    failures: list[AdmissionRefused] = []
    for candidate in _find_anchors(certs[-1], anchors):  # at least one, or it raised
        try:
            paths.append(_validate_below(certs, candidate, max_depth))
        except AdmissionRefused as exc:
            failures.append(exc)
    if not paths:
        raise failures[0]
    return replace(paths[0], alternatives=tuple(paths[1:]))


def _validate_below(
    certs: list[Certificate], anchor: Certificate, max_depth: int
) -> ValidatedPath:
    """The checks of ``certs`` (leaf first, root excluded) under the trust anchor ``anchor``."""
    check_anchor(anchor)

    max_path_length = anchor.path_len if anchor.path_len is not None else max_depth
    issuer = anchor
    revocation: list[tuple[str, int]] = []
    for index in range(len(certs) - 1, -1, -1):
        cert = certs[index]
        leaf = index == 0
        if cert.issuer != issuer.subject:
            raise IssuerMismatch(
                f"{_who(cert)} is not issued by the next certificate up, {_who(issuer)}"
            )
        verify_signed(
            issuer.key_algorithm, issuer.public_key, cert.signature_oid, cert.tbs, cert.signature
        )
        if cert.unknown_critical:
            raise UnknownCriticalExtension(
                f"{_who(cert)} has unrecognised critical extension(s) "
                f"{', '.join(cert.unknown_critical)}"
            )
        if not leaf:
            if not cert.is_ca:
                raise NotACA(f"{_who(cert)} issues certificates but lacks basicConstraints cA=TRUE")
            if not cert.self_issued:
                if max_path_length <= 0:
                    raise PathLenExceeded(
                        f"{_who(cert)} exceeds the pathLenConstraint of a CA above it"
                    )
                max_path_length -= 1
            if cert.path_len is not None and cert.path_len < max_path_length:
                max_path_length = cert.path_len
            if cert.key_usage is not None and "key_cert_sign" not in cert.key_usage:
                raise BadKeyUsage(f"CA certificate {_who(cert)} keyUsage lacks keyCertSign")
        elif cert.key_usage is not None and "digital_signature" not in cert.key_usage:
            raise BadKeyUsage(f"{_who(cert)} keyUsage lacks digitalSignature")
        revocation.append((issuer.key_id, cert.serial))
        issuer = cert
    path = (anchor, *reversed(certs))
    return ValidatedPath(
        certificates=path,
        not_before=max(c.not_before for c in path),
        not_after=min(c.not_after for c in path),
        revocation_keys=tuple(revocation),
    )


def check_time(path: ValidatedPath, at_time: int) -> ValidatedPath:
    """Every certificate of the path valid at ``at_time`` (inclusive bounds), root first.
    Returns the path that is: ``path`` or the first of its alternatives that is valid then; if
    none is, the failure is ``path``'s."""
    if not isinstance(at_time, int) or isinstance(at_time, bool):
        raise InvalidCheckTime(f"check time must be integer seconds, got {type(at_time).__name__}")
    for candidate in (path, *path.alternatives):
        if candidate.not_before <= at_time <= candidate.not_after:
            return candidate
    for cert in path.certificates:
        if at_time < cert.not_before:
            raise CertificateNotYetValid(
                f"{_who(cert)} is valid from {cert.not_before}, checked at {at_time}"
            )
        if at_time > cert.not_after:
            raise CertificateExpired(
                f"{_who(cert)} expired at {cert.not_after}, checked at {at_time}"
            )
    # Not reached: outside the path's window, some certificate of it is out of its own.
    raise CertificateExpired(f"path not valid at {at_time}")


def check_revocation(path: ValidatedPath, revoked: Container[tuple[str, int]]) -> None:
    """No certificate of the path below the root is in ``revoked`` (issuer key id, serial)."""
    for (issuer_key_id, serial), cert in zip(
        path.revocation_keys, path.certificates[1:], strict=True
    ):
        if (issuer_key_id, serial) in revoked:
            raise CertificateRevoked(f"{_who(cert)} (serial {serial:x}) is revoked")


def validate_path(
    chain: Sequence[Certificate],
    anchors: Sequence[Certificate],
    at_time: int,
    revoked: Container[tuple[str, int]] = frozenset(),
    max_depth: int = MAX_PATH_DEPTH,
) -> ValidatedPath:
    """All checks, uncached: structure, then validity at ``at_time``, then revocation."""
    path = check_time(validate_structure(chain, anchors, max_depth), at_time)
    check_revocation(path, revoked)
    return path
