"""The verifier's cache and registration, the CA CLI, and the DER codec."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from tablechain.ca import (
    ADMISSION_ERRORS,
    AdmissionRefused,
    CertificateAuthority,
    CertificateVerifier,
    _der,
    import_crl,
    load_certificates,
)
from tablechain.ca import verifier as verifier_module
from tablechain.crypto.keys import generate_private_key
from tablechain.platform.ca_cli import app

T = 1_900_000_000
YEAR = 365 * 86_400


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    base = tmp_path_factory.mktemp("verifier")
    root = CertificateAuthority.init_root(
        base / "root", name="Root", not_before=T - YEAR, not_after=T + YEAR
    )
    return CertificateAuthority.init_intermediate(
        base / "inter", root, name="Inter", algorithm="sm2", not_before=T - YEAR, not_after=T + YEAR
    )


def test_structure_is_validated_once(
    ca: CertificateAuthority, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real = verifier_module.validate_structure

    def counting(*args: object, **kw: object) -> object:
        calls.append(1)
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(verifier_module, "validate_structure", counting)
    v = CertificateVerifier([ca.chain[-1].der])
    key = generate_private_key("secp256k1")
    pub = key.public_key.to_bytes()
    leaf = ca.issue(
        name="a", role="user", public_key=pub, scheme="secp256k1", not_before=T - 5, not_after=T + 5
    )
    chain = ca.chain_for(leaf)
    fp = v.register(chain)
    for at in range(T - 5, T + 6):
        v.check_signer(fp, pub, "secp256k1", at)
        v.check_signer(chain, pub, "secp256k1", at)
    assert len(calls) == 1
    # failures are cached as well, and each raise is a fresh, picklable error
    other = generate_private_key("secp256k1").public_key.to_bytes()
    bad = bytearray(leaf)
    bad[-4] ^= 1
    first = second = None
    for _ in range(2):
        with pytest.raises(AdmissionRefused) as info:
            v.check_signer([bytes(bad), *chain[1:]], other, "secp256k1", T)
        first, second = second, info.value
    assert len(calls) == 2
    # a refused registration changes nothing
    with pytest.raises(AdmissionRefused):
        v.register([bytes(bad), *chain[1:]])
    assert not v.is_registered(load_certificates(bytes(bad))[0].fingerprint)
    assert v.is_registered(fp)
    assert first is not second and first.code == second.code  # type: ignore[union-attr]
    again = pickle.loads(pickle.dumps(second))
    assert again.code == second.code and again.message == second.message  # type: ignore[union-attr]
    # the time window still applies on a cache hit
    with pytest.raises(AdmissionRefused) as info:
        v.check_signer(fp, pub, "secp256k1", T + 6)
    assert info.value.code == "caCERT_EXPIRED"


def test_cache_is_bounded(ca: CertificateAuthority) -> None:
    v = CertificateVerifier([ca.chain[-1].der], cache_size=2)
    keys = []
    for i in range(4):
        key = generate_private_key("sm2")
        pub = key.public_key.to_bytes()
        leaf = ca.issue(
            name=f"n{i}",
            role="user",
            public_key=pub,
            scheme="sm2",
            not_before=T - 5,
            not_after=T + 5,
        )
        fp = v.register(ca.chain_for(leaf))
        keys.append((fp, pub))
    assert len(v._valid) <= 2
    for fp, pub in keys:  # evicted entries are revalidated from the registered chain
        assert v.check_signer(fp, pub, "sm2", T).fingerprint == fp


def test_roots_must_be_cas(ca: CertificateAuthority) -> None:
    key = generate_private_key("secp256k1")
    leaf = ca.issue(
        name="leaf",
        role="user",
        public_key=key.public_key.to_bytes(),
        scheme="secp256k1",
        not_before=T,
        not_after=T + 1,
    )
    with pytest.raises(AdmissionRefused) as info:
        CertificateVerifier([leaf])
    assert info.value.code == "caNOT_A_CA"
    v = CertificateVerifier([ca.certificate.der])  # an intermediate may be a trust anchor
    assert v.trusted_roots == (ca.certificate.fingerprint,)
    assert v.check_signer([leaf], key.public_key.to_bytes(), "secp256k1", T)


def test_a_root_renewed_with_the_same_key_is_used_when_the_old_one_is_not_valid(
    tmp_path: Path,
) -> None:
    """Both the old root and its renewal (same name and key) trusted: a chain without its root
    is valid whenever either root is, whichever of them sorts first."""
    from tablechain.ca.builder import build_certificate, subject_name

    old = CertificateAuthority.init_root(
        tmp_path / "root", name="Root", not_before=T - 100, not_after=T + 100
    )
    renewed = build_certificate(
        issuer_key=old._key,
        issuer_name=old.certificate.subject,
        serial=7,
        subject=subject_name("Root"),
        subject_algorithm="p256",
        subject_key=old.certificate.public_key,
        not_before=T + 50,
        not_after=T + YEAR,
        is_ca=True,
    )
    inter = CertificateAuthority.init_intermediate(
        tmp_path / "inter", old, name="Inter", not_before=T - 100, not_after=T + YEAR
    )
    key = generate_private_key("secp256k1")
    pub = key.public_key.to_bytes()
    leaf = inter.issue(
        name="a", role="user", public_key=pub, scheme="secp256k1", not_before=T - 100,
        not_after=T + YEAR,
    )
    chain = inter.chain_for(leaf)
    fingerprint = load_certificates(leaf)[0].fingerprint
    v = CertificateVerifier([old.certificate.der, renewed])
    for at in (T - 50, T + 75, T + 1000):  # only the old root, both, only the renewed one
        assert v.check_signer(chain, pub, "secp256k1", at).fingerprint == fingerprint
        root = v.validate(chain, at).root
        assert root.not_before <= at <= root.not_after
    with pytest.raises(AdmissionRefused) as info:
        v.check_signer(chain, pub, "secp256k1", T - 101)
    assert info.value.code == "caCERT_NOT_YET_VALID"


def test_error_codes_are_stable_and_distinct() -> None:
    codes = {cls.__name__: cls.code for cls in ADMISSION_ERRORS}
    assert len(set(codes.values())) == len(codes)
    assert all(c.startswith("ca") for c in codes.values())
    assert codes["CertificateExpired"] == "caCERT_EXPIRED"
    assert codes["CertificateRevoked"] == "caREVOKED"


def test_cli_init_issue_revoke_list_crl(tmp_path: Path) -> None:
    runner = CliRunner()
    root_dir, inter_dir = tmp_path / "root", tmp_path / "inter"
    out = runner.invoke(
        app,
        [
            "init",
            str(root_dir),
            "--name",
            "CLI Root",
            "--algorithm",
            "sm2",
            "--not-before",
            str(T - 10),
        ],
    )
    assert out.exit_code == 0, out.output
    root_info = json.loads(out.stdout)
    out = runner.invoke(
        app,
        [
            "init",
            str(inter_dir),
            "--name",
            "CLI Agency",
            "--parent",
            str(root_dir),
            "--path-len",
            "0",
            "--not-before",
            str(T - 10),
        ],
    )
    assert out.exit_code == 0, out.output
    key = generate_private_key("secp256k1")
    chain_file = tmp_path / "alice.pem"
    out = runner.invoke(
        app,
        [
            "issue",
            str(inter_dir),
            "--name",
            "alice",
            "--role",
            "validator",
            "--public-key",
            key.public_key.to_bytes().hex(),
            "--not-before",
            str(T - 5),
            "--out",
            str(chain_file),
        ],
    )
    assert out.exit_code == 0, out.output
    issued = json.loads(out.stdout)
    root_der = load_certificates((root_dir / "ca.pem").read_bytes())[0].der
    assert load_certificates(root_der)[0].fingerprint == root_info["fingerprint"]
    v = CertificateVerifier([root_der])
    admitted = v.check_signer(
        chain_file.read_bytes(), key.public_key.to_bytes(), "secp256k1", T, role="validator"
    )
    assert admitted.fingerprint == issued["fingerprint"]
    out = runner.invoke(app, ["list", str(inter_dir), "--json"])
    assert [json.loads(line)["serial"] for line in out.stdout.splitlines()] == [issued["serial"]]
    out = runner.invoke(
        app,
        [
            "revoke",
            str(inter_dir),
            issued["serial"],
            "--reason",
            "key_compromise",
            "--at",
            str(T + 1),
        ],
    )
    assert out.exit_code == 0, out.output
    entry = json.loads(out.stdout)
    with pytest.raises(AdmissionRefused) as info:
        v.check_signer(
            chain_file.read_bytes(),
            key.public_key.to_bytes(),
            "secp256k1",
            T,
            {(entry["issuer_key_id"], int(entry["serial"], 16))},
        )
    assert info.value.code == "caREVOKED"
    out = runner.invoke(app, ["list", str(inter_dir)])
    assert "revoked" in out.stdout and "validator" in out.stdout
    out = runner.invoke(app, ["crl", str(inter_dir), "--out", str(tmp_path / "crl.pem")])
    assert out.exit_code == 0, out.output
    inter_der = (inter_dir / "ca.pem").read_bytes()
    entries = import_crl((tmp_path / "crl.pem").read_bytes(), load_certificates(inter_der)[0])
    assert [e.serial for e in entries] == [int(issued["serial"], 16)]
    # errors are reported with their code and a non-zero exit
    out = runner.invoke(app, ["revoke", str(inter_dir), "abcdef", "--at", str(T)])
    assert out.exit_code == 1 and "caUNKNOWN_SERIAL" in out.output
    out = runner.invoke(
        app,
        [
            "issue",
            str(inter_dir),
            "--name",
            "x",
            "--role",
            "king",
            "--public-key",
            key.public_key.to_bytes().hex(),
        ],
    )
    assert out.exit_code == 1 and "unknown role" in out.output
    out = runner.invoke(app, ["list", str(tmp_path / "nowhere")])
    assert out.exit_code == 1 and "caSTORE_INVALID" in out.output


# --- DER -------------------------------------------------------------------------------------


@given(st.integers(min_value=-(2**300), max_value=2**300))
def test_der_integer_round_trip(value: int) -> None:
    assert _der.parse_integer(_der.decode(_der.integer(value))) == value


@given(st.integers(0, 2), st.integers(0, 39), st.lists(st.integers(0, 2**70), max_size=8))
def test_der_oid_round_trip(first: int, second: int, rest: list[int]) -> None:
    dotted = ".".join(str(a) for a in [first, second, *rest])
    assert _der.parse_oid(_der.decode(_der.oid(dotted))) == dotted


def test_der_is_strict() -> None:
    for bad in (
        b"\x30\x80\x00\x00",  # indefinite length
        b"\x04\x81\x01\x00",  # non-minimal length
        b"\x04\x02\x00",  # runs past the end
        b"\x04\x01\x00\x00",  # trailing bytes
        b"\x1f\x01\x00",  # high tag number
        b"\x02\x02\x00\x01",  # non-minimal INTEGER
    ):
        with pytest.raises(_der.DerError):
            node = _der.decode(bad)
            if node.tag == 0x02:
                _der.parse_integer(node)
    with pytest.raises(_der.DerError):
        _der.decode(_der.null()).children()  # a primitive element has no children
    assert _der.time(0) == b"\x17\x0d700101000000Z"
    assert _der.time(2_524_608_000) == b"\x18\x0f20500101000000Z"


def test_mangled_certificates_and_crls_get_only_admission_errors(ca: CertificateAuthority) -> None:
    """Bytes flipped, cut or inserted anywhere in a certificate chain or a CRL (a CRL's version
    byte among them, which cryptography refuses with its own exception type): only this
    package's errors come out, with their codes, never another exception."""
    import os
    import random

    from tablechain.errors import TablechainError

    key = generate_private_key()
    leaf = ca.issue(name="fuzz", role="user", public_key=key.public_key.to_bytes(),
                    scheme=key.scheme, not_before=T - 10, not_after=T + 10)
    ders = list(ca.chain_for(leaf))
    crl = ca.crl(this_update=T, next_update=T + 10)
    root_der = ders[-1]
    verifier = CertificateVerifier([root_der])
    rng = random.Random(7)
    for i in range(600):
        base = crl if i % 3 == 2 else ders[rng.randrange(len(ders))]
        data = bytearray(base)
        for _ in range(rng.randrange(1, 4)):
            op = rng.randrange(3)
            if op == 0 and data:
                data[rng.randrange(len(data))] = rng.randrange(256)
            elif op == 1:
                data = data[: rng.randrange(len(data) + 1)]
            else:
                at = rng.randrange(len(data) + 1)
                data[at:at] = os.urandom(rng.randrange(1, 8))
        try:
            if i % 3 == 0:
                load_certificates([bytes(data)])
            elif i % 3 == 1:
                verifier.validate([*ders[:-1], bytes(data)], T, frozenset())
            else:
                import_crl(bytes(data), ca.certificate.der)
        except TablechainError as exc:
            assert exc.code, exc
    # The one that slipped through before: a CRL whose version is out of range.
    bad_version = bytearray(crl)
    at = bad_version.find(b"\x02\x01\x01")  # version INTEGER 1 (v2) at the head of the TBS
    assert at > 0
    bad_version[at + 2] = 62
    with pytest.raises(TablechainError):
        import_crl(bytes(bad_version), ca.certificate.der)
