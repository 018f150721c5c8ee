"""Hashes, signature schemes, canonical JSON and addresses."""

from tablechain.crypto.canonical import (
    MAX_DEPTH,
    CanonicalJSONError,
    canonical_json,
    parse_canonical,
    parse_json,
    parse_relayed,
    too_deep,
)
from tablechain.crypto.hashes import hash_by_name, keccak256, sha256, sm3
from tablechain.crypto.keys import (
    SCHEMES,
    CryptoError,
    PrivateKey,
    PublicKey,
    address_from_text,
    address_to_text,
    generate_private_key,
    private_key_from_bytes,
    public_key_from_bytes,
    recover_secp256k1,
)
from tablechain.crypto.sm2 import DEFAULT_ID as SM2_DEFAULT_ID
from tablechain.crypto.sm2 import Sm2PrivateKey, Sm2PublicKey

__all__ = [
    "SCHEMES",
    "SM2_DEFAULT_ID",
    "Sm2PrivateKey",
    "Sm2PublicKey",
    "CanonicalJSONError",
    "MAX_DEPTH",
    "CryptoError",
    "PrivateKey",
    "PublicKey",
    "address_from_text",
    "address_to_text",
    "canonical_json",
    "generate_private_key",
    "hash_by_name",
    "keccak256",
    "parse_json",
    "parse_canonical",
    "parse_relayed",
    "private_key_from_bytes",
    "public_key_from_bytes",
    "recover_secp256k1",
    "sha256",
    "too_deep",
    "sm3",
]
