"""SM2 signatures: a standard known-answer vector, gmssl and OpenSSL interop, hardening."""

from __future__ import annotations

import random
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
from gmssl import sm2 as gmssl_sm2
from hypothesis import given, settings
from hypothesis import strategies as st

from tablechain.crypto import sm2
from tablechain.crypto.hashes import sm3
from tablechain.crypto.keys import (
    CryptoError,
    generate_private_key,
    private_key_from_bytes,
    public_key_from_bytes,
)
from tablechain.crypto.sm2 import (
    DEFAULT_ID,
    Sm2PrivateKey,
    Sm2PublicKey,
    decode_signature,
    encode_signature,
    signature_from_raw,
    signature_to_raw,
)

N = sm2._N
P = sm2._P

# GM/T 0003.5-2012 = GB/T 32918.5-2017, example on the recommended curve: message
# "message digest", default ID 1234567812345678.
KAT_D = "3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8"
KAT_X = "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020"
KAT_Y = "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13"
KAT_E = "F0B43E94BA45ACCAACE692ED534382EB17E6AB5A19CE7B31F4486FDFC0D28640"
KAT_K = "59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21"
KAT_R = "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3"
KAT_S = "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA"

# SubjectPublicKeyInfo header for an uncompressed SM2 point (id-ecPublicKey, curve SM2).
SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d034200")


def test_known_answer_gbt_32918_5() -> None:
    key = Sm2PrivateKey.from_bytes(bytes.fromhex(KAT_D))
    assert key.public_key.to_bytes() == bytes.fromhex("04" + KAT_X + KAT_Y)
    e = key.public_key.digest(b"message digest")
    assert e == bytes.fromhex(KAT_E)
    r, s = key._sign_with_nonce(int(KAT_E, 16), int(KAT_K, 16))  # type: ignore[misc]
    assert (r, s) == (int(KAT_R, 16), int(KAT_S, 16))
    sig = encode_signature(r, s)
    assert key.public_key.verify(b"message digest", sig)
    assert not key.public_key.verify(b"message digesT", sig)


def test_sign_verify_and_rejections() -> None:
    key = Sm2PrivateKey.generate()
    other = Sm2PrivateKey.generate()
    sig = key.sign(b"table tx")
    assert key.public_key.verify(b"table tx", sig)
    assert not key.public_key.verify(b"table tx!", sig)
    assert not other.public_key.verify(b"table tx", sig)
    r, s = decode_signature(sig)
    assert not key.public_key.verify(b"table tx", encode_signature(r, (s + 1) % N or 1))
    assert not key.public_key.verify(b"table tx", encode_signature((r + 1) % N or 1, s))
    # a signature under another user ID is a different signature
    assert not key.public_key.verify(b"table tx", key.sign(b"table tx", user_id=b"ALICE"))
    assert key.public_key.verify(b"m", key.sign(b"m", user_id=b"ALICE"), user_id=b"ALICE")


def test_signatures_are_randomised_by_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    key = Sm2PrivateKey.generate()
    assert key.sign(b"same") != key.sign(b"same")

    def forbidden(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the random module must not be used for SM2 nonces")

    for name in ("random", "choice", "randint", "randrange", "getrandbits", "choices"):
        monkeypatch.setattr(random, name, forbidden)
    sig = key.sign(b"still signs")
    assert key.public_key.verify(b"still signs", sig)
    # the nonce is exactly what secrets gives: pin it and the signature becomes repeatable
    monkeypatch.setattr(secrets, "randbelow", lambda n: 12345)
    assert key.sign(b"pinned") == key.sign(b"pinned")


def _keys_with_x_prefix(hex_digit: str, count: int) -> list[Sm2PrivateKey]:
    found: list[Sm2PrivateKey] = []
    while len(found) < count:
        k = Sm2PrivateKey.generate()
        if k.public_key.to_bytes()[1:].hex()[0] == hex_digit:
            found.append(k)
    return found


def test_keys_whose_x_starts_with_0_or_4_survive_and_interoperate_with_gmssl() -> None:
    keys = _keys_with_x_prefix("0", 4) + _keys_with_x_prefix("4", 4)
    keys += [Sm2PrivateKey.generate() for _ in range(12)]
    mangled = 0
    for key in keys:
        raw = key.public_key.to_bytes()
        assert Sm2PublicKey.from_bytes(raw).to_bytes() == raw
        assert Sm2PrivateKey.from_bytes(key.to_bytes()).public_key == key.public_key
        xy = raw[1:].hex()
        # gmssl used as documented (04||X||Y) loses leading 0/4 digits of X: the hazard we avoid
        if gmssl_sm2.CryptSM2(private_key=None, public_key="04" + xy).public_key != xy:
            mangled += 1
        oracle = gmssl_sm2.CryptSM2(private_key=key.to_bytes().hex(), public_key="")
        oracle.public_key = xy  # even a bare X||Y is stripped when X starts with "04"
        ours = key.sign(b"interop")
        assert oracle.verify_with_sm3(signature_to_raw(ours).hex(), b"interop")
        theirs = oracle.sign_with_sm3(b"interop", secrets.token_hex(32))
        assert key.public_key.verify(b"interop", signature_from_raw(bytes.fromhex(theirs)))
    assert mangled >= 8  # every key whose X starts with 0 or 4 breaks gmssl's lstrip path


def test_public_key_validation() -> None:
    pub = Sm2PrivateKey.generate().public_key
    raw = pub.to_bytes()
    x, y = int.from_bytes(raw[1:33], "big"), int.from_bytes(raw[33:], "big")
    bad_y = b"\x04" + raw[1:33] + ((y + 1) % P).to_bytes(32, "big")
    for bad in (
        bad_y,
        b"\x04" + bytes(64),  # the point at infinity has no affine encoding
        raw[1:],  # missing 04
        b"\x05" + raw[1:],
        raw + b"\x00",
        b"\x04" + (x + P).to_bytes(33, "big")[1:] + raw[33:],  # x + p wraps: not a field element
        b"\x04" + P.to_bytes(32, "big") + raw[33:],
    ):
        with pytest.raises(CryptoError):
            Sm2PublicKey.from_bytes(bad)
    compressed = bytes([2 + (y & 1)]) + raw[1:33]
    assert Sm2PublicKey.from_bytes(compressed) == pub
    negated = Sm2PublicKey.from_bytes(bytes([3 - (y & 1)]) + raw[1:33])
    assert negated.to_bytes() == b"\x04" + raw[1:33] + (P - y).to_bytes(32, "big")


def test_private_key_bounds() -> None:
    for bad in (0, N - 1, N, 2**256 - 1):
        with pytest.raises(CryptoError):
            Sm2PrivateKey.from_bytes(bad.to_bytes(32, "big"))
    assert Sm2PrivateKey.from_bytes((N - 2).to_bytes(32, "big")).public_key is not None
    with pytest.raises(CryptoError):
        Sm2PrivateKey.from_bytes(b"\x01" * 31)


def test_signature_der_is_strict() -> None:
    key = Sm2PrivateKey.generate()
    sig = key.sign(b"m")
    r, s = decode_signature(sig)
    assert signature_from_raw(signature_to_raw(sig)) == sig
    non_minimal_r = b"\x02\x21\x00" + r.to_bytes(32, "big") if r >> 255 == 0 else None
    cases = [
        sig + b"\x00",
        sig[:-1],
        b"\x31" + sig[1:],
        bytes([0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x01]),  # r = 0
        encode_signature(1, 1)[:-1] + b"\x00",
        b"\x30\x06\x02\x01\x80\x02\x01\x01",  # negative r
    ]
    if non_minimal_r is not None:
        body = non_minimal_r + sig[4 + sig[3] :]
        cases.append(b"\x30" + bytes([len(body)]) + body)
    big = N.to_bytes(32, "big")
    body = b"\x02\x21\x00" + big + b"\x02\x01\x01"
    cases.append(b"\x30" + bytes([len(body)]) + body)  # r = n
    for bad in cases:
        with pytest.raises(CryptoError):
            decode_signature(bad)
        assert not key.public_key.verify(b"m", bad)
    with pytest.raises(CryptoError):
        encode_signature(0, 5)


def test_registry_and_address() -> None:
    key = generate_private_key("sm2")
    assert isinstance(key, Sm2PrivateKey)
    pub = public_key_from_bytes("sm2", key.public_key.to_bytes())
    assert pub == key.public_key
    assert key.address() == sm3(key.public_key.to_bytes())[-20:]
    assert private_key_from_bytes("sm2", key.to_bytes()).public_key == pub
    assert pub.verify(b"x", key.sign(b"x"))


@settings(max_examples=25, deadline=None)
@given(message=st.binary(max_size=300), seed=st.integers(min_value=1, max_value=N - 2))
def test_sign_verify_property(message: bytes, seed: int) -> None:
    key = Sm2PrivateKey(seed)
    sig = key.sign(message)
    assert key.public_key.verify(message, sig)
    assert not key.public_key.verify(message + b"\x00", sig)


def test_z_value_matches_definition() -> None:
    pub = Sm2PrivateKey.generate().public_key
    ident = b"ALICE123@YAHOO.COM"
    expected = sm3(
        (len(ident) * 8).to_bytes(2, "big")
        + ident
        + sm2._A.to_bytes(32, "big")
        + sm2._B.to_bytes(32, "big")
        + sm2._GX.to_bytes(32, "big")
        + sm2._GY.to_bytes(32, "big")
        + pub.to_bytes()[1:]
    )
    assert pub.z_value(ident) == expected
    assert sm2.z_value(pub.to_bytes()) == pub.z_value(DEFAULT_ID)


# --- OpenSSL interop -------------------------------------------------------------------------

OPENSSL = shutil.which("openssl")
DISTID = "distid:" + DEFAULT_ID.decode()


def _openssl(*args: str) -> subprocess.CompletedProcess[bytes]:
    if OPENSSL is None:
        pytest.fail("the openssl command line is required for the interop tests")
    return subprocess.run([OPENSSL, *args], capture_output=True, check=False)


@pytest.mark.openssl
def test_openssl_verifies_our_signatures(tmp_path: Path) -> None:
    for i in range(4):
        key = Sm2PrivateKey.generate()
        (tmp_path / "pub.der").write_bytes(SPKI_PREFIX + key.public_key.to_bytes())
        message = b"tablechain sm2 interop %d " % i * (i + 1)
        (tmp_path / "msg").write_bytes(message)
        (tmp_path / "sig").write_bytes(key.sign(message))
        verify = [
            "pkeyutl",
            "-verify",
            "-pubin",
            "-keyform",
            "DER",
            "-inkey",
            str(tmp_path / "pub.der"),
            "-rawin",
            "-digest",
            "sm3",
            "-in",
            str(tmp_path / "msg"),
            "-sigfile",
            str(tmp_path / "sig"),
            "-pkeyopt",
            DISTID,
        ]
        out = _openssl(*verify)
        assert out.returncode == 0, out.stderr
        assert b"Verified Successfully" in out.stdout
        (tmp_path / "msg").write_bytes(message + b"!")
        assert _openssl(*verify).returncode != 0


@pytest.mark.openssl
def test_we_verify_openssl_signatures(tmp_path: Path) -> None:
    for i in range(4):
        key_pem = tmp_path / f"k{i}.pem"
        assert _openssl("genpkey", "-algorithm", "SM2", "-out", str(key_pem)).returncode == 0
        spki = _openssl("pkey", "-in", str(key_pem), "-pubout", "-outform", "DER").stdout
        assert spki.startswith(SPKI_PREFIX)
        pub = Sm2PublicKey.from_bytes(spki[len(SPKI_PREFIX) :])
        message = b"signed by openssl %d" % i
        (tmp_path / "msg").write_bytes(message)
        out = _openssl(
            "pkeyutl",
            "-sign",
            "-inkey",
            str(key_pem),
            "-rawin",
            "-digest",
            "sm3",
            "-in",
            str(tmp_path / "msg"),
            "-pkeyopt",
            DISTID,
        )
        assert out.returncode == 0, out.stderr
        assert pub.verify(message, out.stdout)
        assert not pub.verify(message + b"?", out.stdout)
        # the private key OpenSSL made (SEC1 DER: 30 77 02 01 01 04 20 <d> ...) gives the same key
        sec1 = _openssl("pkey", "-in", str(key_pem), "-outform", "DER").stdout
        assert sec1[5:7] == b"\x04\x20"
        ours = Sm2PrivateKey.from_bytes(sec1[7:39])
        assert ours.public_key == pub
