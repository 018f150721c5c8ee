"""Correctness of the secret-sharing operations against numpy, in both trust models."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tablechain.mpc import (
    DealerSharing,
    FixedPoint,
    FixedPointRangeError,
    PartyError,
    ProtocolMismatch,
    ReplicatedSharing,
    ShapeMismatch,
)
from tests.mpc._protocols import MODES, make

# the `mode` fixture is a constant string, so sharing it across examples is safe
FAST = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
F = 16
ULP = 2.0**-F
MAX_VALUE = FixedPoint(F).max_value  # 2^46 at 16 fractional bits

int64s = st.integers(min_value=-(2**63), max_value=2**63 - 1)
comparable = st.integers(min_value=-(2**62), max_value=2**62 - 1)  # |a - b| < 2^63
edge_ints = st.sampled_from([-(2**62), 2**62 - 1, -1, 0, 1, -(2**61), 2**61])


def int_vectors(elements: st.SearchStrategy[int]) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(np.int64, st.integers(1, 12), elements=elements)


# values whose pairwise products stay inside the fixed-point product range (|xy| < 2^30)
fixed_values = st.one_of(
    st.floats(-30000.0, 30000.0, allow_nan=False, allow_infinity=False),
    st.sampled_from([-30000.0, 30000.0, -ULP, ULP, 0.0, -1.0, 1.0, 2.0**-10]),
)


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# ----------------------------------------------------------------- encoding
@given(st.floats(-MAX_VALUE + 1, MAX_VALUE - 1, allow_nan=False))
@FAST
def test_fixed_point_round_trip_to_half_ulp(value: float) -> None:
    fp = FixedPoint(F)
    decoded = fp.decode(fp.encode(np.array([value])))[0]
    assert abs(decoded - value) <= ULP / 2 + abs(value) * 2.0**-52


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, MAX_VALUE, -MAX_VALUE * 2])
def test_fixed_point_rejects_out_of_range(bad: float) -> None:
    with pytest.raises(FixedPointRangeError):
        FixedPoint(F).encode(np.array([1.0, bad]))


def test_fixed_point_edges_are_representable() -> None:
    fp = FixedPoint(F)
    edge = np.array([MAX_VALUE - 1.0, -(MAX_VALUE - 1.0), ULP, -ULP])
    assert np.array_equal(fp.decode(fp.encode(edge)), edge)


# ----------------------------------------------------------------- ring arithmetic
@given(a=int_vectors(int64s), b_seed=st.integers(0, 2**32))
@FAST
def test_ring_add_sub_mul_wrap_like_int64(mode: str, a: np.ndarray, b_seed: int) -> None:
    proto = make(mode)
    b = np.random.default_rng(b_seed).integers(-(2**63), 2**63 - 1, a.shape, dtype=np.int64)
    x, y = proto.share(a, 0), proto.share(b, 1)
    with np.errstate(over="ignore"):
        assert np.array_equal(proto.reveal(x + y).value, a + b)
        assert np.array_equal(proto.reveal(x - y).value, a - b)
        assert np.array_equal(proto.reveal(x * y).value, a * b)
        assert np.array_equal(proto.reveal(x * 3).value, a * 3)
        assert np.array_equal(proto.reveal(x.sum()).value, a.sum())


@given(
    shape=st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5)),
    seed=st.integers(0, 2**32),
)
@FAST
def test_ring_matmul_matches_numpy(mode: str, shape: tuple[int, int, int], seed: int) -> None:
    proto = make(mode)
    rng = np.random.default_rng(seed)
    a = rng.integers(-(2**63), 2**63 - 1, shape[:2], dtype=np.int64)
    b = rng.integers(-(2**63), 2**63 - 1, shape[1:], dtype=np.int64)
    x, y = proto.share(a, 0), proto.share(b, 2)
    with np.errstate(over="ignore"):
        expected = (a.view(np.uint64) @ b.view(np.uint64)).view(np.int64)
    assert np.array_equal(proto.reveal(x @ y).value, expected)
    assert np.array_equal(proto.reveal(x[0] @ y).value, expected[0])


# ----------------------------------------------------------------- fixed point
@given(a=hnp.arrays(np.float64, st.integers(1, 10), elements=fixed_values), seed=st.integers(0, 99))
@FAST
def test_fixed_point_products_within_two_ulp(mode: str, a: np.ndarray, seed: int) -> None:
    proto = make(mode)
    b = np.random.default_rng(seed).permutation(a) * -1.0
    b = np.clip(b, -30000.0, 30000.0)
    x, y = proto.share(a, 0), proto.share(b, 1)
    fp = proto.fixed
    ea, eb = fp.decode(fp.encode(a)), fp.decode(fp.encode(b))
    got = proto.reveal(x * y).value
    assert np.all(np.abs(got - ea * eb) <= 2 * ULP + 1e-9 * np.abs(ea * eb))
    assert np.allclose(proto.reveal(x + y).value, ea + eb, atol=0)
    assert np.allclose(proto.reveal(x * 0.5).value, ea * 0.5, atol=2 * ULP)


truncatable = st.integers(min_value=-(2**62) + 1, max_value=2**62 - 1)


@given(v=int_vectors(st.one_of(truncatable, edge_ints.filter(lambda e: e != -(2**62)))),
       bits=st.sampled_from([1, 16, 20, 40, 61]))
@FAST
def test_truncation_is_floor_or_one_more_over_the_whole_range(
    mode: str, v: np.ndarray, bits: int
) -> None:
    proto = make(mode)
    got = proto.reveal(proto.truncate(proto.share(v, 1), bits=bits)).value
    floor = v >> bits  # arithmetic shift = floor division by 2^bits
    assert np.all((got == floor) | (got == floor + 1))


def test_truncation_of_largest_products(mode: str) -> None:
    proto = make(mode)
    big = np.array([2.0**29, -(2.0**29), 2.0**15, -(2.0**15) - 0.5])
    x = proto.share(big, 0)
    other = np.array([1.999, -1.999, 2.0**14, 2.0**14])  # |products| just under 2^30
    y = proto.share(other, 1)
    fp = proto.fixed
    expected = fp.decode(fp.encode(big)) * fp.decode(fp.encode(other))
    assert np.all(np.abs(proto.reveal(x * y).value - expected) <= 2 * ULP)


# ----------------------------------------------------------------- comparison
@given(a=int_vectors(st.one_of(comparable, edge_ints)), seed=st.integers(0, 2**32))
@FAST
def test_less_than_and_equality_on_ring_integers(mode: str, a: np.ndarray, seed: int) -> None:
    proto = make(mode)
    rng = np.random.default_rng(seed)
    b = rng.integers(-(2**62), 2**62, a.shape, dtype=np.int64)
    same = rng.random(a.shape) < 0.3
    b[same] = a[same]
    x, y = proto.share(a, 0), proto.share(b, 1)
    assert np.array_equal(proto.reveal(x < y).value, (a < b).astype(np.int64))
    assert np.array_equal(proto.reveal(x <= y).value, (a <= b).astype(np.int64))
    assert np.array_equal(proto.reveal(proto.eq(x, y)).value, (a == b).astype(np.int64))
    assert np.array_equal(proto.reveal(proto.eq(x, x)).value, np.ones_like(a))


@given(a=hnp.arrays(np.float64, st.integers(1, 10), elements=fixed_values), seed=st.integers(0, 99))
@FAST
def test_relu_max_min_on_fixed_point(mode: str, a: np.ndarray, seed: int) -> None:
    proto = make(mode)
    b = np.random.default_rng(seed).permutation(a)
    x, y = proto.share(a, 0), proto.share(b, 2)
    fp = proto.fixed
    ea, eb = fp.decode(fp.encode(a)), fp.decode(fp.encode(b))
    assert np.array_equal(proto.reveal(proto.relu(x)).value, np.maximum(ea, 0))
    assert np.array_equal(proto.reveal(proto.maximum(x, y)).value, np.maximum(ea, eb))
    assert np.array_equal(proto.reveal(proto.minimum(x, y)).value, np.minimum(ea, eb))
    assert np.array_equal(proto.reveal(proto.max(x)).value, ea.max())
    assert np.array_equal(proto.reveal(x > 0.0).value, (ea > 0).astype(np.int64))


def test_comparison_at_fixed_point_range_edges(mode: str) -> None:
    proto = make(mode)
    top = MAX_VALUE - 1.0
    a = np.array([top, -top, top, -top, ULP, -ULP, 0.0])
    b = np.array([-top, top, top, -top, -ULP, ULP, -0.0])
    x, y = proto.share(a, 0), proto.share(b, 1)
    assert np.array_equal(proto.reveal(x < y).value, (a < b).astype(np.int64))
    assert np.array_equal(proto.reveal(proto.eq(x, y)).value, (a == b).astype(np.int64))


# ----------------------------------------------------------------- iterations
def test_reciprocal_sqrt_and_sigmoid(mode: str) -> None:
    proto = make(mode)
    rng = np.random.default_rng(1)
    pos = np.concatenate([rng.uniform(0.02, 1000.0, 40), [0.02, 1000.0, 1.0]])
    x = proto.share(pos, 0)
    recip = proto.reveal(proto.reciprocal(x, lower=0.015, upper=1024.0)).value
    assert np.all(np.abs(recip - 1 / pos) <= 1e-3 * np.maximum(1.0, 1 / pos))
    root = proto.reveal(proto.sqrt(x, lower=0.015, upper=1024.0)).value
    assert np.all(np.abs(root - np.sqrt(pos)) <= 2e-3 * np.maximum(1.0, np.sqrt(pos)))
    z = np.concatenate([rng.uniform(-12, 12, 60), [-6.0, 6.0, 0.0, -100.0, 100.0]])
    sig = proto.reveal(proto.sigmoid(proto.share(z, 1))).value
    assert np.max(np.abs(sig - 1 / (1 + np.exp(-z)))) < 4e-3


# ----------------------------------------------------------------- reveal, errors, accounting
def test_reveal_to_named_parties_only(mode: str) -> None:
    seen: list[tuple[int, int]] = []
    proto = make(mode, taps=[lambda s, r, p: seen.append((s, r))])
    x = proto.share(np.array([1.5, -2.0]), 0)
    seen.clear()
    out = proto.reveal(x, to=[2])
    assert out.receivers == (2,)
    assert np.array_equal(out.value, [1.5, -2.0])
    assert seen and all(r == 2 for _, r in seen)
    assert out.trust_model == mode


def test_bad_inputs_raise_clear_errors(mode: str) -> None:
    proto = make(mode)
    other = make(mode, seed=8)
    x = proto.share(np.ones(3), 0)
    with pytest.raises(PartyError):
        proto.share(np.ones(3), 5)
    with pytest.raises(PartyError):
        proto.reveal(x, to=[9])
    with pytest.raises(ProtocolMismatch):
        proto.mul(x, other.share(np.ones(3), 0))
    with pytest.raises(ShapeMismatch):
        proto.mul(x, proto.share(np.ones(4), 1))
    with pytest.raises(ShapeMismatch):
        proto.matmul(x, proto.share(np.ones((4, 2)), 1))
    with pytest.raises(FixedPointRangeError):
        proto.share(np.array([np.nan]), 0)
    with pytest.raises(ShapeMismatch):
        proto.reciprocal(x, lower=2.0, upper=1.0)
    err = pickle.loads(pickle.dumps(PartyError("no such party")))
    assert err.code == "tecMPC_PARTY" and err.message == "no such party"


def test_accounting_per_operation(mode: str) -> None:
    proto = make(mode)
    n = 1000
    x, y = proto.share(np.arange(n), 0), proto.share(np.arange(n), 1)
    z = x * y
    assert z.cost is not None and z.cost.rounds == 1
    lt = x < y
    assert lt.cost is not None
    if mode == "replicated":
        assert z.cost.bytes_sent == [8 * n] * 3
        assert lt.cost.rounds == 10
    else:
        assert z.cost.bytes_sent[:3] == [2 * 2 * 8 * n] * 3  # d and e to two peers
        assert z.cost.bytes_sent[3] == 8 * n  # the dealer's correction of c
        assert lt.cost.rounds == 8
    costs = proto.costs
    assert costs["mul"].calls >= 1 and costs["lt"].calls == 1
    assert costs["lt"].rounds == lt.cost.rounds
    assert z.trust_model == mode


@pytest.mark.parametrize("n_parties", [2, 5])
def test_dealer_model_with_other_party_counts(n_parties: int) -> None:
    proto = DealerSharing(n_parties, seed=3)
    a = np.array([-3.25, 0.5, 7.0])
    shares = [proto.share(a * (i + 1), i) for i in range(n_parties)]
    total = shares[0]
    for s in shares[1:]:
        total = total + s
    expect = a * sum(range(1, n_parties + 1))
    assert np.array_equal(proto.reveal(total).value, expect)
    assert np.array_equal(proto.reveal(total < 1.0).value, (expect < 1).astype(np.int64))
    assert np.allclose(proto.reveal(total * total).value, expect**2, atol=2 * ULP)


def test_replicated_rejects_wrong_network() -> None:
    from tablechain.mpc import LocalNetwork

    with pytest.raises(PartyError):
        ReplicatedSharing(network=LocalNetwork(4))
    with pytest.raises(PartyError):
        DealerSharing(3, network=LocalNetwork(3))


@pytest.mark.parametrize("mode", MODES)
def test_div_public_by_large_divisors(mode: str) -> None:
    proto = make(mode)
    x = proto.share(np.array([3.0e6, -2.0e6, 1.5, 0.0]), 0)
    for d in (3, 1000, 2**20 + 1):
        got = proto.reveal(proto.div_public(x, d)).value
        assert np.allclose(got, np.array([3.0e6, -2.0e6, 1.5, 0.0]) / d, rtol=1e-6, atol=4e-5)
    tiny = proto.reveal(proto.div_public(x, 2**60)).value
    assert np.allclose(tiny, 0.0, atol=4e-5)
    with pytest.raises(ShapeMismatch):
        proto.div_public(x, 2**61)
    with pytest.raises(ShapeMismatch):
        proto.div_public(x, True)


def test_loose_arguments_are_refused_with_the_librarys_errors(mode: str) -> None:
    """Iteration counts below 1 (0 meant the default, -1 ran no iteration and returned the
    start value as if it were 1/x), axes that are not axes, and True as a party id."""
    proto = make(mode)
    x = proto.share(np.array([[2.0, 4.0], [8.0, 1.0]]), owner=0)
    for bad in (0, -1, True, 2.5):
        with pytest.raises(ShapeMismatch):
            proto.reciprocal(x, iterations=bad)  # type: ignore[arg-type]
        with pytest.raises(ShapeMismatch):
            proto.inv_sqrt(x, iterations=bad)  # type: ignore[arg-type]
    got = proto.reveal(proto.reciprocal(x, iterations=30)).value
    assert np.allclose(got, [[0.5, 0.25], [0.125, 1.0]], atol=1e-3)
    for axis in (5, -3, True):
        with pytest.raises(ShapeMismatch):
            proto.max(x, axis=axis)  # type: ignore[arg-type]
    assert np.allclose(proto.reveal(proto.max(x, axis=-1)).value, [4.0, 8.0])
    with pytest.raises(PartyError):
        proto.reveal(x, to=[True])  # type: ignore[list-item]
