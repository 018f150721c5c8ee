import pytest

from tablechain.crypto import (
    CryptoError,
    address_from_text,
    address_to_text,
    generate_private_key,
    keccak256,
    private_key_from_bytes,
    public_key_from_bytes,
    sha256,
    sm3,
)


def test_hash_known_answers():
    # FIPS 180-2, GB/T 32905-2016 appendix A, and Keccak-256 of the empty string.
    assert sha256(b"abc").hex() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert sm3(b"abc").hex() == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    assert keccak256(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"


def test_secp256k1_address_is_ethereum_compatible():
    # Private key 1: its Ethereum address is well known.
    key = private_key_from_bytes("secp256k1", (1).to_bytes(32, "big"))
    assert address_to_text(key.address()) == "0x7e5f4552091a69125d5dfcb7b8c2659029395bdf"


@pytest.mark.parametrize("scheme", ["secp256k1", "ed25519"])
def test_sign_verify_round_trip(scheme):
    key = generate_private_key(scheme)
    sig = key.sign(b"message")
    pub = public_key_from_bytes(scheme, key.public_key.to_bytes())
    assert pub.verify(b"message", sig)
    assert not pub.verify(b"messagf", sig)
    tampered = bytes([sig[0] ^ 1]) + sig[1:]
    assert not pub.verify(b"message", tampered)
    other = generate_private_key(scheme)
    assert not other.public_key.verify(b"message", sig)
    assert private_key_from_bytes(scheme, key.to_bytes()).address() == key.address()


def test_secp256k1_refuses_high_s():
    key = generate_private_key("secp256k1")
    sig = key.sign(b"m")
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    s = int.from_bytes(sig[32:64], "big")
    high = sig[:32] + (n - s).to_bytes(32, "big") + bytes([sig[64] ^ 1])
    assert not key.public_key.verify(b"m", high)


def test_bad_keys_and_addresses():
    with pytest.raises(CryptoError):
        public_key_from_bytes("secp256k1", b"\x02" + b"\xff" * 32)
    with pytest.raises(CryptoError):
        public_key_from_bytes("ed25519", b"short")
    with pytest.raises(CryptoError):
        generate_private_key("rsa")
    with pytest.raises(CryptoError):
        address_from_text("0x1234")
    assert address_from_text("0x" + "ab" * 20) == b"\xab" * 20


def test_secp256k1_verify_agrees_with_recovery_on_edge_signatures():
    """``verify`` (libsecp256k1 in place) refuses exactly what ``recover_secp256k1`` refuses."""
    from tablechain.crypto.keys import recover_secp256k1

    key = generate_private_key("secp256k1")
    sig = key.sign(b"m")
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    r, s, v = sig[:32], sig[32:64], sig[64]
    half = (n // 2).to_bytes(32, "big")
    cases = {
        "good": sig,
        "wrong v": r + s + bytes([v ^ 1]),
        "v = 2": r + s + b"\x02",
        "v = 27": r + s + bytes([27]),
        "r = 0": bytes(32) + s + bytes([v]),
        "s = 0": r + bytes(32) + bytes([v]),
        "r = n": n.to_bytes(32, "big") + s + bytes([v]),
        "s = n/2 + 1": r + (n // 2 + 1).to_bytes(32, "big") + bytes([v]),
        "s = n/2": r + half + bytes([v]),
        "short": sig[:64],
        "long": sig + b"\x00",
    }
    for name, candidate in cases.items():
        recovered = recover_secp256k1(b"m", candidate)
        expected = recovered is not None and recovered.to_bytes() == key.public_key.to_bytes()
        assert key.public_key.verify(b"m", candidate) is expected, name
    assert key.public_key.verify(b"m", cases["good"])
