"""Confidential-table crypto: sealing, key wrapping per scheme, SM2 encryption interop."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from gmssl import sm2 as gmssl_sm2
from hypothesis import given, settings
from hypothesis import strategies as st

from tablechain.crypto import CryptoError, generate_private_key
from tablechain.crypto.envelope import new_table_key, open_sealed, seal, unwrap_key, wrap_key
from tablechain.crypto.sm2 import Sm2PrivateKey
from tests.crypto.test_sm2 import SPKI_PREFIX, _openssl

SCHEMES = ["secp256k1", "ed25519", "sm2"]


@pytest.mark.parametrize("suite", ["international", "national"])
@pytest.mark.parametrize("scheme", SCHEMES)
def test_wrap_unwrap_for_each_scheme_and_only_for_its_key(scheme: str, suite: str) -> None:
    key = generate_private_key(scheme)
    table_key = new_table_key(suite)
    token = wrap_key(table_key, key.public_key)
    assert unwrap_key(token, key) == table_key
    assert wrap_key(table_key, key.public_key) != token  # fresh ephemeral randomness
    with pytest.raises(CryptoError):
        unwrap_key(token, generate_private_key(scheme))
    for i in (0, 1, len(token) // 2, len(token) - 1):
        tampered = bytearray(token)
        tampered[i] ^= 0x01
        with pytest.raises(CryptoError):
            unwrap_key(bytes(tampered), key)
    with pytest.raises(CryptoError):
        unwrap_key(token[:-1], key)
    other = next(s for s in SCHEMES if s != scheme)
    with pytest.raises(CryptoError, match="not wrapped for"):
        unwrap_key(token, generate_private_key(other))


@pytest.mark.parametrize("suite", ["international", "national"])
def test_sealed_blobs_open_only_intact_and_with_their_key(suite: str) -> None:
    table_key = new_table_key(suite)
    blob = seal(table_key, b'[{"id":1}]')
    assert open_sealed(table_key, blob) == b'[{"id":1}]'
    assert seal(table_key, b'[{"id":1}]') != blob  # a fresh nonce each time
    with pytest.raises(CryptoError):
        open_sealed(new_table_key(suite), blob)
    for i in range(len(blob)):
        tampered = bytearray(blob)
        tampered[i] ^= 0x80
        with pytest.raises(CryptoError):
            open_sealed(table_key, bytes(tampered))
    with pytest.raises(CryptoError):
        open_sealed(table_key, blob[:20])
    with pytest.raises(CryptoError):
        seal(b"short", b"x")


@settings(max_examples=25, deadline=None)
@given(st.binary(min_size=1, max_size=300))
def test_sm2_encryption_round_trips_and_gmssl_agrees(message: bytes) -> None:
    key = Sm2PrivateKey.generate()
    ours = key.public_key.encrypt(message)
    assert key.decrypt(ours) == message
    theirs = gmssl_sm2.CryptSM2(private_key=key.to_bytes().hex(), public_key="", mode=1)
    # set after construction: gmssl's constructor lstrip()s "04" and would eat the
    # leading digits of an X that starts with 04 (about one key in 256)
    theirs.public_key = key.public_key.to_bytes().hex()[2:]
    assert theirs.decrypt(ours[1:]) == message  # gmssl omits the 04 of C1
    assert key.decrypt(b"\x04" + theirs.encrypt(message)) == message


def test_sm2_decryption_refuses_bad_ciphertexts() -> None:
    key = Sm2PrivateKey.generate()
    ct = key.public_key.encrypt(b"secret")
    for bad in (b"", ct[:97], b"\x05" + ct[1:], ct[:1] + bytes(64) + ct[65:],
                ct[:-1] + bytes([ct[-1] ^ 1]), ct[:70] + bytes([ct[70] ^ 1]) + ct[71:]):
        with pytest.raises(CryptoError):
            key.decrypt(bad)
    with pytest.raises(CryptoError):
        key.public_key.encrypt(b"")


def _der_len(n: int) -> bytes:
    return bytes([n]) if n < 128 else bytes([0x81, n]) if n < 256 else bytes([0x82]) + \
        n.to_bytes(2, "big")


def _der(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _der_len(len(body)) + body


def _der_int(value: int) -> bytes:
    return _der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _to_openssl(ct: bytes) -> bytes:
    """C1 || C3 || C2 as OpenSSL's SM2 ciphertext: SEQUENCE {x, y, C3, C2} (GM/T 0009)."""
    x, y = int.from_bytes(ct[1:33], "big"), int.from_bytes(ct[33:65], "big")
    return _der(0x30, _der_int(x) + _der_int(y) + _der(0x04, ct[65:97]) + _der(0x04, ct[97:]))


def _from_openssl(der: bytes) -> bytes:
    parts: list[bytes] = []
    pos = 2 if der[1] < 128 else 2 + (der[1] & 0x7F)
    while pos < len(der):
        length, pos = der[pos + 1], pos + 2
        if length >= 128:
            size = length & 0x7F
            length, pos = int.from_bytes(der[pos : pos + size], "big"), pos + size
        parts.append(der[pos : pos + length])
        pos += length
    x, y, c3, c2 = parts
    return b"\x04" + int.from_bytes(x, "big").to_bytes(32, "big") + \
        int.from_bytes(y, "big").to_bytes(32, "big") + c3 + c2


@pytest.mark.openssl
def test_sm2_encryption_interoperates_with_openssl(tmp_path: Path) -> None:
    key_pem = tmp_path / "k.pem"
    assert _openssl("genpkey", "-algorithm", "SM2", "-out", str(key_pem)).returncode == 0
    sec1 = _openssl("pkey", "-in", str(key_pem), "-outform", "DER").stdout
    key = Sm2PrivateKey.from_bytes(sec1[7:39])
    (tmp_path / "pub.der").write_bytes(SPKI_PREFIX + key.public_key.to_bytes())
    for i, message in enumerate([b"k" * 16, b"a table key of 32 bytes........", b"x" * 200]):
        (tmp_path / "ours").write_bytes(_to_openssl(key.public_key.encrypt(message)))
        out = _openssl("pkeyutl", "-decrypt", "-inkey", str(key_pem), "-in",
                       str(tmp_path / "ours"))
        assert out.returncode == 0, out.stderr
        assert out.stdout == message
        (tmp_path / "msg").write_bytes(message)
        enc = _openssl("pkeyutl", "-encrypt", "-pubin", "-keyform", "DER", "-inkey",
                       str(tmp_path / "pub.der"), "-in", str(tmp_path / "msg"))
        assert enc.returncode == 0, (i, enc.stderr)
        assert key.decrypt(_from_openssl(enc.stdout)) == message


def test_a_node_never_loads_the_envelope() -> None:
    """Validators and the RPC server never import the sealing code (keys stay with clients)."""
    code = ("import sys, tablechain.ledger.validator, tablechain.platform.rpc; "
            "print('tablechain.crypto.envelope' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("suite", ["international", "national"])
def test_a_field_value_sealed_for_several_keys_opens_for_each_and_no_other(suite: str) -> None:
    from tablechain.crypto.envelope import open_for, seal_for

    schemes = ["sm2"] if suite == "national" else ["secp256k1", "ed25519"]
    readers = [generate_private_key(schemes[i % len(schemes)]) for i in range(3)]
    blob = seal_for(b"salary: 12,000", [k.public_key for k in readers], suite)
    assert all(open_for(blob, k) == b"salary: 12,000" for k in readers)
    with pytest.raises(CryptoError, match="not sealed for this key"):
        open_for(blob, generate_private_key(schemes[0]))
    tampered = bytearray(blob)
    tampered[-3] ^= 1
    with pytest.raises(CryptoError):
        open_for(bytes(tampered), readers[0])
    for bad in (b"", blob[:30], b"\x01" + blob[1:]):
        with pytest.raises(CryptoError):
            open_for(bad, readers[0])
    with pytest.raises(CryptoError):
        seal_for(b"x", [], suite)


# Ed25519 encodings of small-order points (libsodium's blocklist in crypto_sign_ed25519's
# checks): y = -1 (order 2), y = 0 (order 4) and two of order 8.
_SMALL_ORDER_ED25519 = [
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
]


@pytest.mark.parametrize("raw", _SMALL_ORDER_ED25519)
def test_no_key_is_wrapped_to_a_small_order_ed25519_key(raw: str) -> None:
    """Its X25519 shared secret is all zeros: a CryptoError that says so (as for any bad
    public key), not cryptography's bare ValueError."""
    from tablechain.crypto import public_key_from_bytes

    public = public_key_from_bytes("ed25519", bytes.fromhex(raw))
    with pytest.raises(CryptoError, match="low-order"):
        wrap_key(new_table_key("international"), public)
