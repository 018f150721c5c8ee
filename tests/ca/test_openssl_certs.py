"""Admission with certificates made by the openssl command line, ECDSA P-256 and SM2-with-SM3.

Each way a certificate path can be wrong is rejected with its own error code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tablechain.ca import (
    AdmissionRefused,
    CertificateVerifier,
    import_crl,
    load_certificates,
)
from tablechain.ca.errors import ADMISSION_ERRORS
from tablechain.crypto.keys import Secp256k1PublicKey
from tests.ca.openssl_pki import OpenSSLCA, gen_key, make_root, pem_to_der, public_point

pytestmark = pytest.mark.openssl

AT = 1_893_456_000  # 2030-01-01T00:00:00Z: inside every "valid" period below


@dataclass
class PKI:
    algorithm: str
    root: OpenSSLCA
    inter: OpenSSLCA
    other_root: OpenSSLCA
    impostor_root: OpenSSLCA  # same name as root, different key
    leaves: dict[str, tuple[list[bytes], bytes, str]]  # case -> (chain DER, signer key, scheme)


def _chain(*certs: Path) -> list[bytes]:
    return [pem_to_der(c) for c in certs]


@pytest.fixture(scope="module", params=["p256", "sm2"])
def pki(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> PKI:
    alg = request.param
    base = tmp_path_factory.mktemp(f"openssl-{alg}")
    root = make_root(base, f"/CN=Test Root {alg}/O=tablechain", alg)
    inter = root.sub_ca(f"/CN=Agency {alg}", alg, extensions="v3_ca_pl0")
    other_root = make_root(base / "other", f"/CN=Other Root {alg}", alg)
    impostor = make_root(base / "impostor", f"/CN=Test Root {alg}/O=tablechain", alg)
    keys = base / "keys"
    keys.mkdir()
    leaves: dict[str, tuple[list[bytes], bytes, str]] = {}

    def leaf(
        case: str,
        issuer: OpenSSLCA,
        extensions: str = "v3_leaf",
        scheme: str = "secp256k1",
        role: str = "user",
        **dates: str,
    ) -> Path:
        key = gen_key(keys / f"{case}.key", scheme)
        cert = issuer.issue(
            f"/CN={case}/OU={role}", key, extensions=extensions, algorithm_of_key=scheme, **dates
        )
        chain_certs = [cert]
        ca = issuer
        while ca is not root and ca is not other_root and ca is not impostor:
            chain_certs.append(ca.cert)
            ca = parents[ca.dir]
        leaves[case] = (_chain(*chain_certs), public_point(key), scheme)
        return cert

    parents = {inter.dir: root}
    leaf("good", inter)
    leaf("good_sm2_key", inter, scheme="sm2", role="validator")
    leaf("direct", root)
    leaf("expired", inter, start="20200101000000Z", end="20210101000000Z")
    leaf("not_yet_valid", inter, start="20350101000000Z", end="20360101000000Z")
    leaf("wrong_root", other_root)
    leaf("impostor_root", impostor)
    noflag = root.sub_ca(f"/CN=Not A CA {alg}", alg, extensions="v3_ca_noflag")
    parents[noflag.dir] = root
    leaf("not_a_ca", noflag)
    no_bc = root.sub_ca(f"/CN=No Basic Constraints {alg}", alg, extensions="v3_ca_no_bc")
    parents[no_bc.dir] = root
    leaf("no_basic_constraints", no_bc)
    deep = inter.sub_ca(f"/CN=Too Deep {alg}", alg)
    parents[deep.dir] = inter
    leaf("path_len", deep)
    bad_ku_ca = root.sub_ca(f"/CN=Bad KU CA {alg}", alg, extensions="v3_ca_bad_ku")
    parents[bad_ku_ca.dir] = root
    leaf("ca_bad_key_usage", bad_ku_ca)
    leaf("leaf_bad_key_usage", inter, extensions="v3_leaf_bad_ku")
    leaf("unknown_critical", inter, extensions="v3_leaf_unknown_critical")
    sibling = root.sub_ca(f"/CN=Sibling Agency {alg}", alg)
    parents[sibling.dir] = root
    leaf("sibling", sibling)
    revoked_cert = leaf("revoked", inter)
    inter.revoke(revoked_cert)
    (inter.dir / "crl.pem").write_bytes(inter.crl())
    return PKI(alg, root, inter, other_root, impostor, leaves)


@pytest.fixture(scope="module")
def verifier(pki: PKI) -> CertificateVerifier:
    return CertificateVerifier([pki.root.der])


def _check(verifier: CertificateVerifier, pki: PKI, case: str, **kw: object) -> object:
    chain, key, scheme = pki.leaves[case]
    return verifier.check_signer(chain, key, scheme, AT, **kw)  # type: ignore[arg-type]


def test_openssl_made_certificates_parse(pki: PKI) -> None:
    root = load_certificates(pki.root.cert.read_bytes())[0]
    assert root.key_algorithm == pki.algorithm
    assert root.is_ca and root.self_issued
    expected_sig = "1.2.156.10197.1.501" if pki.algorithm == "sm2" else "1.2.840.10045.4.3.2"
    assert root.signature_oid == expected_sig
    chain, key, scheme = pki.leaves["good"]
    leaf = load_certificates(chain)[0]
    assert leaf.role == "user" and leaf.key_algorithm == "secp256k1"
    assert leaf.key_usage == frozenset({"digital_signature"})


def test_valid_chains_are_admitted(pki: PKI, verifier: CertificateVerifier) -> None:
    admitted = _check(verifier, pki, "good")
    chain, key, _ = pki.leaves["good"]
    assert admitted.role == "user"  # type: ignore[attr-defined]
    assert admitted.address == Secp256k1PublicKey.from_bytes(key).address()  # type: ignore[attr-defined]
    assert _check(verifier, pki, "good_sm2_key", role="validator").role == "validator"  # type: ignore[attr-defined]
    assert _check(verifier, pki, "direct").subject.startswith("OU=user")  # type: ignore[attr-defined]
    # the root may be included at the end of the chain
    assert verifier.check_signer(chain + [pki.root.der], key, "secp256k1", AT)
    # the compressed form of the same key is the same key
    compressed = Secp256k1PublicKey.from_bytes(key).to_bytes()
    assert verifier.check_signer(chain, compressed, "secp256k1", AT)


CASES = [
    ("expired", "caCERT_EXPIRED"),
    ("not_yet_valid", "caCERT_NOT_YET_VALID"),
    ("wrong_root", "caUNKNOWN_ROOT"),
    ("impostor_root", "caUNKNOWN_ROOT"),
    ("not_a_ca", "caNOT_A_CA"),
    ("no_basic_constraints", "caNOT_A_CA"),
    ("path_len", "caPATH_LEN_EXCEEDED"),
    ("ca_bad_key_usage", "caBAD_KEY_USAGE"),
    ("leaf_bad_key_usage", "caBAD_KEY_USAGE"),
    ("unknown_critical", "caUNKNOWN_CRITICAL_EXTENSION"),
]


@pytest.mark.parametrize(("case", "code"), CASES)
def test_each_defect_has_its_own_code(
    pki: PKI, verifier: CertificateVerifier, case: str, code: str
) -> None:
    with pytest.raises(AdmissionRefused) as info:
        _check(verifier, pki, case)
    assert info.value.code == code, info.value.message
    # a second (cached) check gives the same answer
    with pytest.raises(AdmissionRefused) as again:
        _check(verifier, pki, case)
    assert again.value.code == code


def test_codes_are_distinct() -> None:
    codes = [cls.code for cls in ADMISSION_ERRORS]
    assert len(codes) == len(set(codes))


def test_revoked_by_openssl_crl(pki: PKI, verifier: CertificateVerifier) -> None:
    entries = import_crl((pki.inter.dir / "crl.pem").read_bytes(), pki.inter.der)
    chain, key, _ = pki.leaves["revoked"]
    leaf = load_certificates(chain)[0]
    inter = load_certificates(pki.inter.der)[0]
    assert [(e.issuer_key_id, e.serial, e.reason) for e in entries] == [
        (inter.key_id, leaf.serial, "keyCompromise")
    ]
    revoked = {e.key for e in entries}
    with pytest.raises(AdmissionRefused) as info:
        verifier.check_signer(chain, key, "secp256k1", AT, revoked)
    assert info.value.code == "caREVOKED"
    assert verifier.check_signer(chain, key, "secp256k1", AT)  # without the revocation
    # the CRL must come from its issuer
    with pytest.raises(Exception) as wrong:
        import_crl((pki.inter.dir / "crl.pem").read_bytes(), pki.root.der)
    assert getattr(wrong.value, "code", None) == "caBAD_CRL"


def test_revoked_intermediate_refuses_its_leaves(pki: PKI, verifier: CertificateVerifier) -> None:
    chain, key, _ = pki.leaves["good"]
    inter = load_certificates(pki.inter.der)[0]
    root = load_certificates(pki.root.der)[0]
    with pytest.raises(AdmissionRefused) as info:
        verifier.check_signer(chain, key, "secp256k1", AT, {(root.key_id, inter.serial)})
    assert info.value.code == "caREVOKED"


def test_key_that_is_not_the_signers(pki: PKI, verifier: CertificateVerifier) -> None:
    _, other_key, _ = pki.leaves["direct"]
    chain, key, _ = pki.leaves["good"]
    with pytest.raises(AdmissionRefused) as info:
        verifier.check_signer(chain, other_key, "secp256k1", AT)
    assert info.value.code == "caKEY_MISMATCH"
    with pytest.raises(AdmissionRefused) as info:  # right bytes, wrong scheme
        verifier.check_signer(chain, key, "sm2", AT)
    assert info.value.code == "caKEY_MISMATCH"
    with pytest.raises(AdmissionRefused) as info:  # garbage key bytes
        verifier.check_signer(chain, b"\x04" + b"\x01" * 64, "secp256k1", AT)
    assert info.value.code == "caKEY_MISMATCH"


def test_role_required(pki: PKI, verifier: CertificateVerifier) -> None:
    with pytest.raises(AdmissionRefused) as info:
        _check(verifier, pki, "good", role="validator")
    assert info.value.code == "caROLE_MISMATCH"


def test_tampered_signature_and_broken_chain(pki: PKI, verifier: CertificateVerifier) -> None:
    chain, key, _ = pki.leaves["good"]
    leaf = bytearray(chain[0])
    leaf[-5] ^= 0x01  # inside the signature value
    with pytest.raises(AdmissionRefused) as info:
        verifier.check_signer([bytes(leaf), *chain[1:]], key, "secp256k1", AT)
    assert info.value.code in ("caBAD_SIGNATURE", "caMALFORMED_CERTIFICATE")
    tbs_flip = bytearray(chain[0])
    cn = tbs_flip.find(b"good")
    tbs_flip[cn] ^= 0x20  # "good" -> "Good": still well-formed, no longer what was signed
    with pytest.raises(AdmissionRefused) as info:
        verifier.check_signer([bytes(tbs_flip), *chain[1:]], key, "secp256k1", AT)
    assert info.value.code == "caBAD_SIGNATURE"
    other_chain, _, _ = pki.leaves["sibling"]
    with pytest.raises(AdmissionRefused) as info:  # leaf followed by a CA that did not issue it
        verifier.check_signer([chain[0], other_chain[1]], key, "secp256k1", AT)
    assert info.value.code == "caISSUER_MISMATCH"
