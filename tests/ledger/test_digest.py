from hypothesis import given, settings
from hypothesis import strategies as st

from tablechain.ledger.digest import LtHash


@given(st.lists(st.binary(max_size=20), max_size=30), st.randoms())
@settings(max_examples=100)
def test_order_independent_and_removable(elements, rnd):
    a = LtHash()
    for e in elements:
        a.add(e)
    shuffled = list(elements)
    rnd.shuffle(shuffled)
    b = LtHash()
    b.add_many(shuffled)
    assert a == b and a.digest() == b.digest()
    for e in elements:
        b.remove(e)
    assert b == LtHash()


def test_multiset_semantics_and_distinctness():
    a, b = LtHash(), LtHash()
    a.add(b"x")
    a.add(b"x")
    b.add(b"x")
    assert a.digest() != b.digest()
    c = LtHash()
    c.add(b"y")
    assert c.digest() != b.digest()
    # Serialisation round trip.
    assert LtHash(a.to_bytes()) == a
