"""ECDH-PSI over ristretto255 and X25519."""

from __future__ import annotations

import ctypes.util
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tablechain.mpc import psi as psi_module
from tablechain.mpc.channel import LocalNetwork
from tablechain.mpc.he_errors import GroupUnavailable, ProtocolInputError, PSIError
from tablechain.mpc.psi import GROUPS, PointBatch, encode_item, get_group, psi

items = st.one_of(st.integers(-1000, 1000), st.text(max_size=6), st.binary(max_size=6))


@pytest.mark.parametrize("group", GROUPS)
@settings(max_examples=15, deadline=None)
@given(a=st.lists(items, max_size=25), b=st.lists(items, max_size=25))
def test_intersection_matches_python_sets(group, a, b):
    net = LocalNetwork(2)
    result = psi(net, {0: a, 1: b}, receiver=0, group=group)
    keys_b = {encode_item(x) for x in b}
    expected = []
    seen = set()
    for x in a:
        if encode_item(x) in keys_b and encode_item(x) not in seen:
            expected.append(x)
            seen.add(encode_item(x))
    assert list(result.intersection) == expected
    assert result.size == len(expected)


@pytest.mark.parametrize("group", GROUPS)
def test_size_only_and_receiver_choice(group):
    a = [f"user{i}" for i in range(40)]
    b = [f"user{i}" for i in range(30, 90)]
    net = LocalNetwork(3)
    result = psi(net, {2: a, 0: b}, receiver=0, size_only=True, group=group)
    assert result.intersection is None and result.size == 10
    assert result.receiver == 0 and result.sender == 2
    full = psi(LocalNetwork(3), {2: a, 0: b}, receiver=0, group=group)
    assert sorted(full.intersection) == [f"user{i}" for i in range(30, 40)]


@pytest.mark.parametrize("group", GROUPS)
def test_channels_carry_only_blinded_points(group):
    a = [f"alice-{i}" for i in range(50)] + ["shared-1", "shared-2"]
    b = [f"bob-{i}" for i in range(70)] + ["shared-2", "shared-1"]
    seen: list[tuple[int, int, object]] = []
    net = LocalNetwork(2, taps=[lambda s, r, m: seen.append((s, r, m))])
    result = psi(net, {0: a, 1: b}, receiver=0, group=group)
    assert sorted(result.intersection) == ["shared-1", "shared-2"]
    impl = get_group(group)
    unblinded = set()
    for x in a + b:
        unblinded.add(impl.hash_to_points([encode_item(x)]))
    for sender, receiver, msg in seen:
        batches = msg if isinstance(msg, tuple) else (msg,)
        for batch in batches:
            assert isinstance(batch, PointBatch) and batch.group == group
            points = {batch.data[i : i + 32] for i in range(0, len(batch.data), 32)}
            assert not points & unblinded  # never H(item) in the clear
            for x in a + b:
                assert x.encode() not in batch.data
    # accounting: 2 rounds; R sends |A| points, S sends |A| + |B| points
    t = result.traffic
    assert t.rounds == 2
    assert t.bytes_sent == [32 * len(a), 32 * (len(a) + len(b))]
    assert t.bytes_received == [32 * (len(a) + len(b)), 32 * len(a)]


def test_blinded_sets_do_not_repeat_across_runs():
    a = ["x", "y"]
    first: list[bytes] = []
    second: list[bytes] = []
    psi(LocalNetwork(2, taps=[lambda s, r, m: first.append(m)]), {0: a, 1: a}, receiver=0)
    psi(LocalNetwork(2, taps=[lambda s, r, m: second.append(m)]), {0: a, 1: a}, receiver=0)
    assert first[0].data != second[0].data  # fresh scalars each run


def test_process_pool_path():
    a = list(range(300))
    b = list(range(150, 500))
    result = psi(LocalNetwork(2), {0: a, 1: b}, receiver=1, group="x25519", workers=2)
    assert sorted(result.intersection) == list(range(150, 300))


def test_duplicates_count_once_and_types_are_distinct():
    result = psi(LocalNetwork(2), {0: [5, 5, "5", b"5"], 1: [5, "6"]}, receiver=0)
    assert result.intersection == (5,) and result.size == 1


def test_bad_inputs():
    net = LocalNetwork(3)
    with pytest.raises(ProtocolInputError):
        psi(net, {0: [1], 1: [1], 2: [1]}, receiver=0)
    with pytest.raises(ProtocolInputError):
        psi(net, {0: [1], 1: [1]}, receiver=2)
    with pytest.raises(ProtocolInputError):
        psi(net, {0: [1.5], 1: [1]}, receiver=0)
    with pytest.raises(ProtocolInputError):
        psi(net, {0: "abc", 1: [1]}, receiver=0)
    with pytest.raises(ProtocolInputError):
        psi(net, {0: [1], 1: [1]}, receiver=0, group="p256")
    # parties and workers of the wrong type raised TypeError from a comparison
    with pytest.raises(ProtocolInputError):
        psi(net, {"a": [1], 1: [1]}, receiver=1)  # type: ignore[dict-item]
    with pytest.raises(ProtocolInputError):
        psi(net, {0: [1], 1: [1]}, receiver=0, workers="2")  # type: ignore[arg-type]
    assert net.traffic.rounds == 0


@pytest.mark.parametrize("group", GROUPS)
def test_invalid_points_are_rejected(group):
    impl = get_group(group)
    scalar = impl.random_scalar()
    # 2^255 - 1 is not canonical for either encoding
    with pytest.raises(PSIError):
        impl.multiply(scalar, b"\xff" * 32)
    with pytest.raises(PSIError):
        impl.multiply(scalar, b"\x01" * 31)
    with pytest.raises(PSIError):
        impl.multiply(scalar, bytes(32))  # identity / u = 0


def test_x25519_hash_lands_on_the_curve_not_the_twist():
    impl = get_group("x25519")
    points = impl.hash_to_points([encode_item(i) for i in range(200)])
    for i in range(0, len(points), 32):
        u = int.from_bytes(points[i : i + 32], "little")
        assert impl._on_curve(u)  # type: ignore[attr-defined]
    # a twist point is refused when received
    twist = next(u for u in range(2, 100) if not impl._on_curve(u))  # type: ignore[attr-defined]
    with pytest.raises(PSIError):
        impl.multiply(impl.random_scalar(), twist.to_bytes(32, "little"))


def test_groups_pickle_by_name():
    for name in GROUPS:
        assert pickle.loads(pickle.dumps(get_group(name))).name == name


def test_missing_libsodium_gives_a_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "rbcl._sodium", None)  # as if rbcl were not installed
    monkeypatch.setattr(psi_module, "SODIUM_SONAMES", ("libsodium-not-here.so.99",))
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    with pytest.raises(GroupUnavailable) as info:
        psi_module.Ristretto255()
    assert "x25519" in str(info.value)


def test_x25519_known_answer_rfc7748():
    """RFC 7748 section 5.2, first test vector."""
    impl = get_group("x25519")
    scalar = bytes.fromhex("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4")
    u = bytes.fromhex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c")
    expected = "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"
    assert impl.multiply(scalar, u, validate=False).hex() == expected


def test_ristretto255_known_answer_rfc9496():
    """RFC 9496 appendix A.1: encodings of small multiples of the generator."""
    impl = get_group("ristretto255")
    generator = bytes.fromhex("e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2d76")
    multiples = {
        2: "6a493210f7499cd17fecb510ae0cea23a110e8d5b901f8acadd3095c73a3b919",
        3: "94741f5d5d52755ece4f23f044ee27d5d1ea1e2bd196b462166b16152a9d0259",
    }
    for k, expected in multiples.items():
        assert impl.multiply(k.to_bytes(32, "little"), generator).hex() == expected


def test_huge_int_items():
    # str() of an int over 4300 digits raises ValueError; such items are encoded in hex
    huge = 10**5000
    assert encode_item(huge) != encode_item(huge + 1)
    assert encode_item(huge) != encode_item(-huge)
    assert encode_item(2**2000) != encode_item(2**2000 + 1)
    assert encode_item(2**2000 - 1).startswith(b"i")  # small ints keep their decimal encoding
    net = LocalNetwork(2)
    result = psi(net, {0: [huge, -huge, 7], 1: [huge, 7, 8]}, receiver=0)
    assert set(result.intersection or ()) == {huge, 7}
