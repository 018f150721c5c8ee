"""Certificate admission on the chain: only certified signers may transact.

When genesis enables it, every transaction must carry (``Certificate``: a PEM chain, leaf
first) or reference (``Certificate``: the leaf's SHA-256 fingerprint) a certificate whose public
key is the signer's, that chains to one of the chain's trusted roots, is valid at the block's
timestamp and is not revoked. A chain is registered on-chain the first time it is carried and
referenced by fingerprint afterwards. The check runs at submission (against committed state)
and again, deterministically, when the block is executed.

``CertificateSet`` transactions manage the trust store on-chain:
- ``"Action": "register"``: register a chain (``Certificates``) without doing anything else;
- ``"Action": "revoke"``: an admin revokes ``Revocations`` [{"IssuerKeyId", "Serial"}];
- ``"Action": "import_crl"``: anyone submits an X.509 CRL (``CRL``, PEM) signed by a known CA
  (``Issuer``, PEM: a trusted root or a CA of a registered chain); its entries become
  revocations — so the issuing CA revokes through its own signature;
- ``"Action": "set_roots"``: an admin replaces the trusted roots (``TrustedRoots``, PEM list).
All validators apply revocations at the same height, because they are transactions.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tablechain.ca import (
    CertificateVerifier,
    UnknownCertificate,
    import_crl,
    load_certificates,
)
from tablechain.ca.errors import AdmissionRefused
from tablechain.errors import TablechainError
from tablechain.ledger.errors import InvalidTransaction, PermissionDenied
from tablechain.ledger.state import StateOverlay
from tablechain.ledger.transactions import (
    SignedTransaction,
    check_address,
    register_transaction_type,
)

__all__ = [
    "CertificateAdmission",
    "CertificateSet",
    "CertificateExecutor",
    "genesis_entries",
    "CERTIFICATE_TX",
]

CERTIFICATE_TX = "CertificateSet"
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")
_MAX_PEM = 64 * 1024


class CertificateRequired(AdmissionRefused):
    code = "caCERTIFICATE_REQUIRED"


@dataclass(frozen=True)
class CertificateSet:
    action: str
    certificates: str | None = None
    revocations: tuple[tuple[str, int], ...] = ()
    crl: str | None = None
    issuer: str | None = None
    trusted_roots: tuple[str, ...] = ()

    transaction_type = CERTIFICATE_TX


def _pem(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value or len(value) > _MAX_PEM:
        raise InvalidTransaction(
            f"CertificateSet.{key} must be PEM text of at most {_MAX_PEM} bytes"
        )
    return value


def _parse_certificate_set(obj: Mapping[str, Any]) -> CertificateSet:
    action = obj.get("Action")
    if action == "register":
        return CertificateSet(action, certificates=_pem(obj, "Certificates"))
    if action == "revoke":
        entries = obj.get("Revocations")
        if not isinstance(entries, list) or not entries or len(entries) > 1000:
            raise InvalidTransaction("Revocations is a list of 1 to 1000 entries")
        out = []
        for e in entries:
            if (
                not isinstance(e, dict)
                or set(e) != {"IssuerKeyId", "Serial"}
                or not isinstance(e["IssuerKeyId"], str)
                or len(e["IssuerKeyId"]) != 64
                or not isinstance(e["Serial"], int)
                or isinstance(e["Serial"], bool)
            ):
                raise InvalidTransaction('each revocation is {"IssuerKeyId": hex, "Serial": int}')
            out.append((e["IssuerKeyId"].lower(), e["Serial"]))
        return CertificateSet(action, revocations=tuple(out))
    if action == "import_crl":
        return CertificateSet(action, crl=_pem(obj, "CRL"), issuer=_pem(obj, "Issuer"))
    if action == "set_roots":
        roots = obj.get("TrustedRoots")
        if not isinstance(roots, list) or not roots or len(roots) > 32:
            raise InvalidTransaction("TrustedRoots is a list of 1 to 32 PEM certificates")
        return CertificateSet(action, trusted_roots=tuple(_pem({"r": r}, "r") for r in roots))
    raise InvalidTransaction("CertificateSet.Action is register, revoke, import_crl or set_roots")


register_transaction_type(
    CERTIFICATE_TX,
    _parse_certificate_set,
    {"TransactionType", "Action", "Certificates", "Revocations", "CRL", "Issuer", "TrustedRoots"},
)


def genesis_entries(admission: Mapping[str, Any]) -> dict[str, Any]:
    """State entries that genesis' ``admission`` section creates."""
    if not admission:
        return {}
    roots = list(admission.get("trusted_roots", []))
    return {
        "admission/config": {
            "enabled": bool(admission.get("enabled", False)),
            # Canonical (lowercase) addresses, as transactions' accounts are: an admin written
            # in another case would otherwise silently never match.
            "admins": sorted(check_address(a, "admission.admins") for a in
                             admission.get("admins", [])),
        },
        "admission/roots": roots,
    }


class _StateRevocations:
    """``(issuer_key_id, serial) in revoked`` answered from state."""

    def __init__(self, state: StateOverlay) -> None:
        self.state = state

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, tuple) or len(key) != 2:
            return False
        return self.state.get(f"revoked/{key[0]}/{key[1]}") is not None


class CertificateAdmission:
    """The ledger's admission hook backed by ``tablechain.ca``'s verifier and its cache."""

    def __init__(self) -> None:
        self._verifiers: dict[tuple[str, ...], CertificateVerifier] = {}
        self._submitted: set[tuple[str, bytes]] = set()  # see check_submissions
        self._submitted_at: tuple[int, int] = (-1, -1)
        # The verifier and its caches are not thread-safe; submissions (RPC threads) and block
        # execution (the producer / consensus thread) share them.
        self._lock = threading.Lock()

    def _verifier(self, state: StateOverlay) -> CertificateVerifier | None:
        config = state.get("admission/config")
        if not config or not config.get("enabled"):
            return None
        roots = tuple(state.get("admission/roots", []))
        verifier = self._verifiers.get(roots)
        if verifier is None:
            verifier = CertificateVerifier([r.encode() for r in roots])
            self._verifiers = {roots: verifier}  # roots changed: the old cache is moot
        return verifier

    def _admit(
        self, state: StateOverlay, tx: SignedTransaction, at_time: int, register: bool
    ) -> None:
        verifier = self._verifier(state)
        if verifier is None:
            return
        # (certificate, signer) -> the leaf fingerprint it was admitted with
        admitted: dict[tuple[str, bytes], str] = state.memo.setdefault("admission", {})
        memo_key = (tx.certificate or "", tx.public_key.to_bytes())
        fingerprint = admitted.get(memo_key)
        # Same certificate, same signer, same block time, no CA change: admitted again, as long
        # as the chain's registration is still in state (a batch of inserts rolled back and
        # replayed one by one undoes the registration its first check wrote, not this memo).
        if fingerprint is not None and (not register or state.get(f"cert/{fingerprint}")):
            return
        if not tx.certificate:
            raise CertificateRequired(
                "admission is on: attach your certificate chain (PEM) or "
                "its registered fingerprint as Certificate"
            )
        text = tx.certificate
        carried = not _FINGERPRINT.fullmatch(text)
        reference: str | bytes
        if carried:
            reference = text.encode()
        else:
            stored = state.get(f"cert/{text}")
            if stored is not None:
                # The chain registered on-chain decides, never the one this node's verifier
                # happens to hold for the leaf: another chain for the same leaf (a CA renewed
                # with the same key) may have reached it from the mempool or a later
                # registration, and a restarted validator would not have it.
                chain = stored["chain"].encode()
                if not verifier.is_registered_from(text, chain):
                    verifier.register(chain)
            elif register or not verifier.is_registered(text):
                # At submission a chain carried by a transaction still in the mempool is
                # enough; execution insists on the chain being registered on-chain.
                raise UnknownCertificate(f"no certificate is registered as {text[:16]}...")
            reference = text
        verifier.check_signer(
            reference,
            tx.public_key.to_bytes(),
            tx.public_key.scheme,
            at_time,
            _StateRevocations(state),
        )
        if carried:
            if register:
                fingerprint = _register_chain(state, verifier, text.encode())
            else:
                fingerprint = verifier.register(text.encode())
        else:
            fingerprint = text
        admitted[memo_key] = fingerprint

    def check(self, ctx: Any, tx: SignedTransaction) -> None:
        """At execution: the block's timestamp decides validity."""
        with self._lock:
            self._admit(ctx.state, tx, ctx.env.timestamp_ms // 1000, register=True)

    def check_submission(self, ledger: Any, tx: SignedTransaction) -> None:
        """At submission, against committed state (consensus checks again)."""
        [refusal] = self.check_submissions(ledger, [tx])
        if refusal is not None:
            raise refusal

    def check_submissions(
        self, ledger: Any, txs: list[SignedTransaction]
    ) -> list[TablechainError | None]:
        """``check_submission`` for a batch, with one read view; an error or None for each."""
        with self._lock:
            return self._check_submissions(ledger, txs)

    def _check_submissions(
        self, ledger: Any, txs: list[SignedTransaction]
    ) -> list[TablechainError | None]:
        out: list[TablechainError | None] = []
        now = int(time.time())
        head = ledger.height
        if self._submitted_at != (head, now):
            # Successes stay good while no block commits (a block may revoke) and the second
            # is the same (validity is checked at whole seconds).
            self._submitted_at = (head, now)
            self._submitted.clear()
        with ledger.reader() as (state, _tables):
            for tx in txs:
                key = (tx.certificate or "", tx.public_key.to_bytes())
                if key in self._submitted:
                    out.append(None)
                    continue
                try:
                    self._admit(state, tx, now, register=False)
                    self._submitted.add(key)
                    out.append(None)
                except TablechainError as exc:
                    out.append(exc)
        return out

    def verifier_for(self, state: StateOverlay) -> CertificateVerifier | None:
        return self._verifier(state)


def _register_chain(state: StateOverlay, verifier: CertificateVerifier, chain: bytes) -> str:
    fingerprint = verifier.register(chain)
    if state.get(f"cert/{fingerprint}") is None:
        state.set(f"cert/{fingerprint}", {"chain": chain.decode()})
        for cert in verifier.registered_path(fingerprint).certificates:
            if cert.is_ca and state.get(f"ca/{cert.fingerprint}") is None:
                state.set(f"ca/{cert.fingerprint}", {"key_id": cert.key_id})
    return fingerprint



def _text(value: str | None) -> str:
    if value is None:
        raise InvalidTransaction("a required PEM field is missing")
    return value


class CertificateExecutor:
    """Applies ``CertificateSet`` transactions."""

    def __init__(self, admission: CertificateAdmission) -> None:
        self.admission = admission

    def apply(self, ctx: Any, tx: SignedTransaction, txenv: Any) -> Mapping[str, Any]:
        with self.admission._lock:  # the shared verifier is not thread-safe
            return self._apply(ctx, tx)

    def _apply(self, ctx: Any, tx: SignedTransaction) -> Mapping[str, Any]:
        body: CertificateSet = tx.body
        state: StateOverlay = ctx.state
        state.memo.pop("admission", None)  # revocations and roots may change below
        config = state.get("admission/config") or {"admins": []}
        is_admin = tx.account in config.get("admins", [])
        if body.action == "register":
            verifier = self.admission.verifier_for(state) or CertificateVerifier(
                [r.encode() for r in state.get("admission/roots", [])]
            )
            chain = _text(body.certificates).encode()
            verifier.validate(chain, ctx.env.timestamp_ms // 1000, _StateRevocations(state))
            return {"fingerprint": _register_chain(state, verifier, chain)}
        if body.action == "revoke":
            if not is_admin:
                raise PermissionDenied("only an admin revokes directly; a CA submits its CRL")
            for key_id, serial in body.revocations:
                state.set(f"revoked/{key_id}/{serial}", {"by": tx.account})
            return {"revoked": len(body.revocations)}
        if body.action == "import_crl":
            issuers = load_certificates(_text(body.issuer).encode())
            if len(issuers) != 1:
                raise InvalidTransaction("Issuer is one PEM certificate")
            issuer = issuers[0]
            roots = {
                c.fingerprint
                for r in state.get("admission/roots", [])
                for c in load_certificates(r.encode())
            }
            if issuer.fingerprint not in roots and state.get(f"ca/{issuer.fingerprint}") is None:
                raise UnknownCertificate(
                    "the CRL's issuer is neither a trusted root nor a CA of a registered chain"
                )
            entries = import_crl(_text(body.crl).encode(), issuer.der)
            for e in entries:
                state.set(
                    f"revoked/{e.issuer_key_id}/{e.serial}",
                    {"by": tx.account, "crl": issuer.fingerprint},
                )
            return {"revoked": len(entries)}
        if not is_admin:
            raise PermissionDenied("only an admin changes the trusted roots")
        for pem in body.trusted_roots:
            CertificateVerifier([pem.encode()])  # each must be a valid anchor
        state.set("admission/roots", list(body.trusted_roots))
        return {"roots": len(body.trusted_roots)}
