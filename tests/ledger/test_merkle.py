import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from tablechain.ledger.merkle import inclusion_proof, merkle_root, verify_inclusion


def h(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def reference_root(items):
    # RFC 9162 section 2.1.1, written recursively as the RFC states it.
    if not items:
        return h(b"")
    if len(items) == 1:
        return h(b"\x00" + items[0])
    k = 1
    while k * 2 < len(items):
        k *= 2
    return h(b"\x01" + reference_root(items[:k]) + reference_root(items[k:]))


@given(st.lists(st.binary(max_size=8), max_size=40))
@settings(max_examples=200)
def test_root_matches_rfc_definition(items):
    assert merkle_root(items, h) == reference_root(items)


@given(st.lists(st.binary(max_size=8), min_size=1, max_size=40), st.data())
@settings(max_examples=200)
def test_inclusion_proofs_verify_and_hostile_ones_fail(items, data):
    root = merkle_root(items, h)
    i = data.draw(st.integers(0, len(items) - 1))
    proof = inclusion_proof(items, i, h)
    assert verify_inclusion(items[i], i, len(items), proof, root, h)
    assert not verify_inclusion(items[i] + b"x", i, len(items), proof, root, h)
    if proof:
        bad = list(proof)
        bad[0] = bytes(32)
        assert not verify_inclusion(items[i], i, len(items), bad, root, h)
        assert not verify_inclusion(items[i], i, len(items), proof[:-1], root, h)
    assert not verify_inclusion(items[i], i, len(items), proof + [bytes(32)], root, h)
    assert not verify_inclusion(items[i], len(items), len(items), proof, root, h)
