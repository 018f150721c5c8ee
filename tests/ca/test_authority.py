"""The project's own CA: certificates it makes validate here and in OpenSSL, each defect it can
be asked to produce is refused with its own code, revocation and CRLs round-trip."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from tablechain.ca import (
    AdmissionRefused,
    CAError,
    CertificateAuthority,
    CertificateVerifier,
    import_crl,
    load_certificates,
    parse_certificate,
)
from tablechain.ca.algorithms import SigningKey, to_pem
from tablechain.ca.builder import Extension
from tablechain.crypto.keys import PrivateKey, generate_private_key
from tablechain.crypto.sm2 import Sm2PublicKey
from tests.ca.openssl_pki import openssl

T = 1_900_000_000  # an arbitrary "block time"
YEAR = 365 * 86_400


@dataclass
class Setup:
    root: CertificateAuthority
    inter: CertificateAuthority
    account: PrivateKey
    leaf: bytes


@pytest.fixture(scope="module", params=["p256", "sm2"])
def setup(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Setup:
    alg = request.param
    base = tmp_path_factory.mktemp(f"own-{alg}")
    root = CertificateAuthority.init_root(
        base / "root",
        name=f"Chain Root {alg}",
        algorithm=alg,
        not_before=T - YEAR,
        not_after=T + 10 * YEAR,
        organization="tablechain",
    )
    # a mixed path: the intermediate uses the other algorithm
    other = "sm2" if alg == "p256" else "p256"
    inter = CertificateAuthority.init_intermediate(
        base / "inter",
        root,
        name=f"Agency {other}",
        algorithm=other,
        path_len=0,
        not_before=T - YEAR,
        not_after=T + 5 * YEAR,
    )
    account = generate_private_key("secp256k1")
    leaf = inter.issue(
        name="alice",
        role="user",
        public_key=account.public_key.to_bytes(),
        scheme="secp256k1",
        not_before=T - 10,
        not_after=T + YEAR,
    )
    return Setup(root, inter, account, leaf)


def _verifier(setup: Setup) -> CertificateVerifier:
    return CertificateVerifier([setup.root.certificate.der])


def test_issued_chain_is_admitted_for_every_account_scheme(setup: Setup) -> None:
    v = _verifier(setup)
    chain = setup.inter.chain_for(setup.leaf)
    admitted = v.check_signer(chain, setup.account.public_key.to_bytes(), "secp256k1", T)
    assert admitted.address == setup.account.address()
    assert admitted.valid_until == T + YEAR
    for scheme, role in (("sm2", "validator"), ("ed25519", "regulator")):
        key = generate_private_key(scheme)
        leaf = setup.inter.issue(
            name=f"{scheme}-holder",
            role=role,
            public_key=key.public_key.to_bytes(),
            scheme=scheme,
            not_before=T - 10,
            not_after=T + YEAR,
        )
        got = v.check_signer(
            setup.inter.chain_for(leaf), key.public_key.to_bytes(), scheme, T, role=role
        )
        assert got.role == role and got.address == key.address()
        # the certificate's key is the account key, signature and all
        assert key.public_key.verify(b"tx", key.sign(b"tx"))


def test_reopen_directory_and_list(setup: Setup) -> None:
    again = CertificateAuthority.open(setup.inter.directory)
    assert again.certificate == setup.inter.certificate
    assert [c.fingerprint for c in again.chain] == [c.fingerprint for c in setup.inter.chain]
    serials = [r.serial for r in again.list()]
    assert parse_certificate(setup.leaf).serial in serials
    assert serials == sorted(serials)
    assert oct(os.stat(setup.inter.directory / "ca.key").st_mode & 0o777) == "0o600"
    with pytest.raises(CAError) as info:
        CertificateAuthority.init_root(
            setup.root.directory, name="again", not_before=T, not_after=T + 1
        )
    assert info.value.code == "caSTORE_INVALID"


def test_time_window_and_caching(setup: Setup) -> None:
    v = _verifier(setup)
    fp = v.register(setup.inter.chain_for(setup.leaf), at_time=T)
    key = setup.account.public_key.to_bytes()
    assert v.check_signer(fp, key, "secp256k1", T).fingerprint == fp
    assert v.check_signer(fp, key, "secp256k1", T + YEAR)  # notAfter is inclusive
    for at, code in (
        (T + YEAR + 1, "caCERT_EXPIRED"),
        (T - 11, "caCERT_NOT_YET_VALID"),
        (T - 2 * YEAR, "caCERT_NOT_YET_VALID"),  # before the root: the root is reported
        (T + 20 * YEAR, "caCERT_EXPIRED"),
    ):
        with pytest.raises(AdmissionRefused) as info:
            v.check_signer(fp, key, "secp256k1", at)
        assert info.value.code == code
    with pytest.raises(AdmissionRefused) as info:
        v.check_signer(fp, key, "secp256k1", T - 2 * YEAR)
    assert "Chain Root" in info.value.message
    with pytest.raises(AdmissionRefused) as info:
        v.check_signer(fp, key, "secp256k1", 1.9e9)  # type: ignore[arg-type]
    assert info.value.code == "caBAD_TIME"
    with pytest.raises(AdmissionRefused) as info:
        v.check_signer("ab" * 32, key, "secp256k1", T)
    assert info.value.code == "caUNKNOWN_CERTIFICATE"
    assert v.registered_chain(fp)[0] == setup.leaf


def test_revocation_and_crl_round_trip(setup: Setup, tmp_path: Path) -> None:
    v = _verifier(setup)
    key = generate_private_key("secp256k1")
    leaf = setup.inter.issue(
        name="mallory",
        role="user",
        public_key=key.public_key.to_bytes(),
        scheme="secp256k1",
        not_before=T - 10,
        not_after=T + YEAR,
    )
    serial = parse_certificate(leaf).serial
    entry = setup.inter.revoke(serial, at=T + 5, reason="key_compromise")
    assert entry.key == (setup.inter.certificate.key_id, serial)
    with pytest.raises(CAError) as info:
        setup.inter.revoke(serial, at=T + 6)
    assert info.value.code == "caERROR"
    with pytest.raises(CAError) as info:
        setup.inter.revoke(12345, at=T)
    assert info.value.code == "caUNKNOWN_SERIAL"
    listed = {r.serial: r for r in setup.inter.list()}
    assert listed[serial].revoked_at == T + 5 and listed[serial].reason == "key_compromise"
    crl = setup.inter.crl(this_update=T + 10, next_update=T + 7 * 86_400)
    entries = import_crl(crl, setup.inter.certificate.der)
    assert entry.key in {e.key for e in entries}
    assert {e.serial: e.revoked_at for e in entries}[serial] == T + 5
    chain = setup.inter.chain_for(leaf)
    with pytest.raises(AdmissionRefused) as refused:
        v.check_signer(chain, key.public_key.to_bytes(), "secp256k1", T, {e.key for e in entries})
    assert refused.value.code == "caREVOKED"
    # a CRL whose signature was tampered with is refused
    bad = bytearray(crl)
    bad[-3] ^= 1
    with pytest.raises(CAError) as info:
        import_crl(bytes(bad), setup.inter.certificate.der)
    assert info.value.code == "caBAD_CRL"
    # OpenSSL reads our CRL
    (tmp_path / "crl.der").write_bytes(crl)
    text = openssl("crl", "-inform", "DER", "-in", str(tmp_path / "crl.der"), "-noout", "-text")
    assert f"{serial:X}".encode() in text.replace(b":", b"")


def test_own_ca_defects_each_have_a_code(setup: Setup, tmp_path: Path) -> None:
    alg = setup.root.algorithm
    root = setup.root
    key = generate_private_key("secp256k1")
    pub = key.public_key.to_bytes()
    v = _verifier(setup)

    def refused(chain: list[bytes], code: str, **kw: object) -> None:
        with pytest.raises(AdmissionRefused) as info:
            v.check_signer(chain, pub, "secp256k1", T, **kw)  # type: ignore[arg-type]
        assert info.value.code == code, info.value.message

    # pathLen: the intermediate has pathLen 0, so a CA below it may not issue
    sub = CertificateAuthority.init_intermediate(
        tmp_path / "sub",
        setup.inter,
        name="Sub",
        algorithm=alg,
        not_before=T - YEAR,
        not_after=T + YEAR,
    )
    leaf = sub.issue(
        name="x", role="user", public_key=pub, scheme="secp256k1", not_before=T - 1, not_after=T + 1
    )
    refused(sub.chain_for(leaf), "caPATH_LEN_EXCEEDED")
    # an unknown critical extension on a leaf
    leaf = setup.inter.issue(
        name="crit",
        role="user",
        public_key=pub,
        scheme="secp256k1",
        not_before=T - 1,
        not_after=T + 1,
        extra_extensions=[Extension("1.3.6.1.4.1.55555.9", True, b"\x05\x00")],
    )
    refused(setup.inter.chain_for(leaf), "caUNKNOWN_CRITICAL_EXTENSION")
    # the same extension non-critical is fine
    leaf = setup.inter.issue(
        name="noncrit",
        role="user",
        public_key=pub,
        scheme="secp256k1",
        not_before=T - 1,
        not_after=T + 1,
        extra_extensions=[Extension("1.3.6.1.4.1.55555.9", False, b"\x05\x00")],
    )
    assert v.check_signer(setup.inter.chain_for(leaf), pub, "secp256k1", T)
    # a chain to a root that is not trusted
    stranger = CertificateAuthority.init_root(
        tmp_path / "stranger",
        name=f"Chain Root {alg}",
        algorithm=alg,
        organization="tablechain",
        not_before=T - YEAR,
        not_after=T + YEAR,
    )
    leaf = stranger.issue(
        name="y", role="user", public_key=pub, scheme="secp256k1", not_before=T - 1, not_after=T + 1
    )
    refused([leaf], "caUNKNOWN_ROOT")
    refused([leaf, stranger.certificate.der], "caUNKNOWN_ROOT")
    # a path longer than allowed
    short = CertificateVerifier([root.certificate.der], max_depth=2)
    with pytest.raises(AdmissionRefused) as info:
        short.check_signer(
            setup.inter.chain_for(setup.leaf), setup.account.public_key.to_bytes(), "secp256k1", T
        )
    assert info.value.code == "caPATH_TOO_LONG"
    # the role must match when one is required, and the key must be the signer's
    chain = setup.inter.chain_for(setup.leaf)
    refused(chain, "caKEY_MISMATCH")
    with pytest.raises(AdmissionRefused) as info:
        v.check_signer(chain, setup.account.public_key.to_bytes(), "secp256k1", T, role="regulator")
    assert info.value.code == "caROLE_MISMATCH"
    # garbage in
    for junk in ([b""], [b"\x30\x03\x02\x01\x01"], [b"\x30" + b"\xff" * 20], []):
        with pytest.raises(AdmissionRefused) as info:
            v.check_signer(junk, pub, "secp256k1", T)
        assert info.value.code == "caMALFORMED_CERTIFICATE"
    with pytest.raises(AdmissionRefused) as info:
        v.check_signer([setup.leaf] * 20, pub, "secp256k1", T)
    assert info.value.code == "caMALFORMED_CERTIFICATE"


@pytest.mark.openssl
def test_openssl_accepts_our_certificates(setup: Setup, tmp_path: Path) -> None:
    """ECDSA signatures: ``openssl verify`` on the whole path when every CA is P-256; SM2-with-SM3
    signatures: OpenSSL 3.0's ``verify`` cannot check SM2 certificate signatures at all (it fails
    on its own), so each of our SM2 certificate signatures is checked with ``openssl pkeyutl``
    over the TBSCertificate with the issuer's key."""
    certs = [parse_certificate(setup.leaf), *setup.inter.chain]
    for cert in certs:
        (tmp_path / "c.pem").write_bytes(to_pem(cert.der, "CERTIFICATE"))
        text = openssl("x509", "-in", str(tmp_path / "c.pem"), "-noout", "-text")
        assert b"X509v3 Basic Constraints: critical" in text
    (tmp_path / "leaf.pem").write_bytes(to_pem(setup.leaf, "CERTIFICATE"))
    subject = openssl("x509", "-in", str(tmp_path / "leaf.pem"), "-noout", "-subject")
    assert b"OU = user" in subject and b"CN = alice" in subject
    for cert, issuer in zip(certs, certs[1:] + [certs[-1]], strict=True):
        (tmp_path / "issuer.pem").write_bytes(to_pem(issuer.der, "CERTIFICATE"))
        (tmp_path / "tbs").write_bytes(cert.tbs)
        (tmp_path / "sig").write_bytes(cert.signature)
        pub = openssl("x509", "-in", str(tmp_path / "issuer.pem"), "-noout", "-pubkey")
        (tmp_path / "pub.pem").write_bytes(pub)
        digest = "sm3" if issuer.key_algorithm == "sm2" else "sha256"
        args = [
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            str(tmp_path / "pub.pem"),
            "-rawin",
            "-digest",
            digest,
            "-in",
            str(tmp_path / "tbs"),
            "-sigfile",
            str(tmp_path / "sig"),
        ]
        if issuer.key_algorithm == "sm2":
            args += ["-pkeyopt", "distid:1234567812345678"]
        assert b"Verified Successfully" in openssl(*args)


@pytest.mark.openssl
def test_openssl_verify_on_an_all_p256_path(tmp_path: Path) -> None:
    root = CertificateAuthority.init_root(
        tmp_path / "r", name="R", not_before=T - YEAR, not_after=T + YEAR
    )
    inter = CertificateAuthority.init_intermediate(
        tmp_path / "i", root, name="I", not_before=T - YEAR, not_after=T + YEAR
    )
    for scheme in ("secp256k1", "sm2", "ed25519"):
        key = generate_private_key(scheme)
        leaf = inter.issue(
            name="l",
            role="user",
            public_key=key.public_key.to_bytes(),
            scheme=scheme,
            not_before=T - 1,
            not_after=T + 1,
        )
        (tmp_path / "root.pem").write_bytes(to_pem(root.certificate.der, "CERTIFICATE"))
        (tmp_path / "inter.pem").write_bytes(to_pem(inter.certificate.der, "CERTIFICATE"))
        (tmp_path / "leaf.pem").write_bytes(to_pem(leaf, "CERTIFICATE"))
        out = openssl(
            "verify",
            "-x509_strict",
            "-attime",
            str(T),
            "-CAfile",
            str(tmp_path / "root.pem"),
            "-untrusted",
            str(tmp_path / "inter.pem"),
            str(tmp_path / "leaf.pem"),
        )
        assert out.strip().endswith(b"OK")


def test_ca_keys_round_trip_through_pem_and_openssl(tmp_path: Path) -> None:
    for alg in ("p256", "sm2"):
        key = SigningKey.generate(alg)
        again = SigningKey.from_pem(key.to_pem())
        assert again.public_key == key.public_key and again.algorithm == alg
        (tmp_path / f"{alg}.pem").write_bytes(key.to_pem())
        spki = openssl("pkey", "-in", str(tmp_path / f"{alg}.pem"), "-pubout", "-outform", "DER")
        assert spki == key.spki()
    # an SM2 key OpenSSL generated is read back as our key
    openssl("genpkey", "-algorithm", "SM2", "-out", str(tmp_path / "o.pem"))
    key = SigningKey.from_pem((tmp_path / "o.pem").read_bytes())
    point = openssl("pkey", "-in", str(tmp_path / "o.pem"), "-pubout", "-outform", "DER")[-65:]
    assert key.algorithm == "sm2" and key.public_key == point
    assert Sm2PublicKey.from_bytes(point).verify(b"m", key.sign(b"m"))


def test_load_certificates_formats(setup: Setup) -> None:
    pem = b"".join(to_pem(d, "CERTIFICATE") for d in setup.inter.chain_for(setup.leaf))
    from_pem = load_certificates(pem)
    from_der = load_certificates(setup.inter.chain_for(setup.leaf))
    assert [c.fingerprint for c in from_pem] == [c.fingerprint for c in from_der]
    assert load_certificates(setup.leaf)[0].der == setup.leaf
