"""Differential privacy: mechanisms, calibration and per-data-set budget accounting."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tablechain.mpc.dp import (
    PrivacyAccountant,
    dp_count,
    dp_mean,
    dp_sum,
    gaussian_mechanism,
    gaussian_sigma,
    laplace_mechanism,
    laplace_scale,
    make_rng,
)
from tablechain.mpc.he_errors import InvalidPrivacyParameter, PrivacyBudgetExhausted


def test_budget_refusal_changes_nothing():
    acc = PrivacyAccountant({"patients": (1.0, 1e-6)})
    rng = make_rng(1)
    laplace_mechanism(5.0, sensitivity=1, epsilon=0.5, accountant=acc, dataset="patients", rng=rng)
    laplace_mechanism(5.0, sensitivity=1, epsilon=0.5, accountant=acc, dataset="patients", rng=rng)
    assert acc.spent("patients") == (1.0, 0.0)  # exactly the budget is allowed
    state = rng.bit_generator.state
    with pytest.raises(PrivacyBudgetExhausted) as info:
        laplace_mechanism(
            5.0, sensitivity=1, epsilon=1e-9, accountant=acc, dataset="patients", rng=rng
        )
    assert info.value.code == "tecMPC_DP_BUDGET_EXHAUSTED"
    assert "patients" in info.value.message and "exceed" in info.value.message
    assert acc.spent("patients") == (1.0, 0.0) and len(acc.charges("patients")) == 2
    assert rng.bit_generator.state == state  # no noise was drawn for the refused release


def test_budgets_are_per_data_set_and_delta_is_counted():
    acc = PrivacyAccountant({"a": (1.0, 1e-5), "b": (1.0, 0.0)})
    gaussian_mechanism(
        [1.0, 2.0], sensitivity=1, epsilon=0.4, delta=6e-6, accountant=acc, dataset="a"
    )
    with pytest.raises(PrivacyBudgetExhausted):  # delta: 6e-6 + 6e-6 > 1e-5
        gaussian_mechanism(1.0, sensitivity=1, epsilon=0.1, delta=6e-6, accountant=acc, dataset="a")
    with pytest.raises(PrivacyBudgetExhausted):  # b has no delta at all
        gaussian_mechanism(1.0, sensitivity=1, epsilon=0.1, delta=1e-9, accountant=acc, dataset="b")
    laplace_mechanism(1.0, sensitivity=1, epsilon=1.0, accountant=acc, dataset="b")
    assert acc.remaining("a") == pytest.approx((0.6, 4e-6))
    assert acc.remaining("b") == (0.0, 0.0)
    charge = acc.charges("a")[0]
    assert (charge.mechanism, charge.epsilon, charge.delta) == ("gaussian", 0.4, 6e-6)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(min_value=1e-3, max_value=1.0), min_size=1, max_size=30))
def test_accountant_never_overspends(epsilons):
    acc = PrivacyAccountant({"d": (2.0, 0.0)})
    granted = []
    for eps in epsilons:
        try:
            acc.charge("d", eps, mechanism="laplace")
            granted.append(eps)
        except PrivacyBudgetExhausted:
            pass
    assert math.fsum(granted) <= 2.0 + 1e-12
    assert acc.spent("d")[0] == pytest.approx(math.fsum(granted))


def test_accountant_validation():
    acc = PrivacyAccountant()
    with pytest.raises(InvalidPrivacyParameter):
        acc.charge("unknown", 0.1, mechanism="laplace")
    with pytest.raises(InvalidPrivacyParameter):
        acc.set_budget("", 1.0)
    with pytest.raises(InvalidPrivacyParameter):
        acc.set_budget("d", -1.0)
    with pytest.raises(InvalidPrivacyParameter):
        acc.set_budget("d", 1.0, delta=1.0)
    acc.set_budget("d", 1.0)
    acc.charge("d", 0.8, mechanism="laplace")
    with pytest.raises(InvalidPrivacyParameter):
        acc.set_budget("d", 0.5)  # below what is already spent
    with pytest.raises(InvalidPrivacyParameter):
        laplace_mechanism(1.0, sensitivity=1, epsilon=0.1, accountant=acc)  # no data set named


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sensitivity": 0, "epsilon": 1},
        {"sensitivity": 1, "epsilon": 0},
        {"sensitivity": 1, "epsilon": float("inf")},
        {"sensitivity": float("nan"), "epsilon": 1},
        {"sensitivity": True, "epsilon": 1},
    ],
)
def test_laplace_parameter_errors(kwargs):
    with pytest.raises(InvalidPrivacyParameter):
        laplace_mechanism(1.0, **kwargs)


def test_gaussian_parameter_errors():
    for delta in (0.0, 1.0, -0.1):
        with pytest.raises(InvalidPrivacyParameter):
            gaussian_sigma(1.0, 0.5, delta)
    with pytest.raises(InvalidPrivacyParameter):
        gaussian_sigma(1.0, 2.0, 1e-5, calibration="classic")
    with pytest.raises(InvalidPrivacyParameter):
        gaussian_mechanism(float("nan"), sensitivity=1, epsilon=1, delta=1e-5)


def test_laplace_noise_has_the_calibrated_scale():
    rng = make_rng(7)
    b = laplace_scale(2.0, 0.5)
    assert b == 4.0
    samples = laplace_mechanism(np.zeros(40_000), sensitivity=2.0, epsilon=0.5, rng=rng)
    assert abs(np.mean(samples)) < 0.1
    assert np.mean(np.abs(samples)) == pytest.approx(b, rel=0.03)  # E|Lap(b)| = b


def test_gaussian_calibration_and_noise():
    from statistics import NormalDist

    phi = NormalDist().cdf
    for eps, delta in [(0.1, 1e-5), (1.0, 1e-6), (4.0, 1e-3)]:
        sigma = gaussian_sigma(1.0, eps, delta)

        def privacy_loss_delta(s: float) -> float:
            return phi(0.5 / s - eps * s) - math.exp(eps) * phi(-0.5 / s - eps * s)

        assert privacy_loss_delta(sigma) <= delta * (1 + 1e-9)
        assert privacy_loss_delta(sigma * 0.99) > delta  # and it is (nearly) the smallest
        if eps < 1:
            assert sigma < gaussian_sigma(1.0, eps, delta, calibration="classic")
    sigma = gaussian_sigma(3.0, 0.5, 1e-5)
    samples = gaussian_mechanism(
        np.zeros(40_000), sensitivity=3.0, epsilon=0.5, delta=1e-5, rng=make_rng(3)
    )
    assert np.std(samples) == pytest.approx(sigma, rel=0.03)


def test_rng_seeding():
    assert make_rng(5).integers(0, 2**62) == make_rng(5).integers(0, 2**62)
    assert make_rng().integers(0, 2**62) != make_rng().integers(0, 2**62)
    scalar = laplace_mechanism(3.0, sensitivity=1, epsilon=1, rng=make_rng(2), round_to=2)
    assert isinstance(scalar, float) and round(scalar, 2) == scalar


def test_count_sum_mean_queries():
    values = np.array([1.0, 5.0, 9.0, 100.0])
    acc = PrivacyAccountant({"t": (3.0, 0.0)})
    rng = make_rng(11)
    total = dp_sum(values, lower=0, upper=10, epsilon=1.0, accountant=acc, dataset="t", rng=rng)
    assert abs(total - 25.0) < 10 * 10  # clamped sum 25, Laplace(10) noise
    count = dp_count(values, epsilon=1.0, accountant=acc, dataset="t", rng=rng)
    assert abs(count - 4) < 20
    with pytest.raises(PrivacyBudgetExhausted):  # needs 2 x 0.75 > 1 remaining
        dp_mean(values, lower=0, upper=10, epsilon=1.5, accountant=acc, dataset="t", rng=rng)
    assert acc.spent("t") == (2.0, 0.0)  # the refused mean charged neither half
    mean = dp_mean(values, lower=0, upper=10, epsilon=1.0, accountant=acc, dataset="t", rng=rng)
    assert 0 <= mean <= 10
    assert acc.spent("t") == (3.0, 0.0)
    with pytest.raises(InvalidPrivacyParameter):
        dp_sum(values, lower=5, upper=5, epsilon=1.0)


def test_errors_pickle():
    err = pickle.loads(pickle.dumps(PrivacyBudgetExhausted("no budget left")))
    assert isinstance(err, PrivacyBudgetExhausted) and err.message == "no budget left"


def test_mean_charges_both_halves_or_neither_when_floats_round():
    # 1 - 0.1 rounds to 0.9 as a float, but 0.1 + 0.45 + 0.45 exceeds 1 exactly: the exact
    # accountant refuses the count half, so the mean must be refused before the sum half is spent
    acc = PrivacyAccountant({"t": (1.0, 0.0)})
    acc.charge("t", 0.1, mechanism="laplace")
    with pytest.raises(PrivacyBudgetExhausted):
        dp_mean([1.0, 2.0], lower=0, upper=10, epsilon=0.9, accountant=acc, dataset="t")
    assert [c.epsilon for c in acc.charges("t")] == [0.1]
    with pytest.raises(InvalidPrivacyParameter):  # non-finite values charge nothing either
        dp_mean([1.0, math.nan], lower=0, upper=10, epsilon=0.1, accountant=acc, dataset="t")
    assert [c.epsilon for c in acc.charges("t")] == [0.1]


def test_charge_all_is_atomic():
    acc = PrivacyAccountant({"t": (1.0, 1e-6)})
    releases = [(0.5, 0.0, "laplace", "a"), (0.4, 2e-6, "gaussian", "b")]
    with pytest.raises(PrivacyBudgetExhausted):  # the delta of the second part is too much
        acc.charge_all("t", releases)
    assert acc.charges("t") == ()
    with pytest.raises(InvalidPrivacyParameter):
        acc.charge_all("t", [(0.5, 0.0, "laplace", "a"), (-1.0, 0.0, "laplace", "b")])
    assert acc.charges("t") == ()
    charged = acc.charge_all("t", [(0.5, 0.0, "laplace", "a"), (0.4, 1e-6, "gaussian", "b")])
    assert [c.label for c in charged] == ["a", "b"] and acc.spent("t") == (0.9, 1e-6)


def test_a_budget_is_never_raised():
    acc = PrivacyAccountant({"d": (1.0, 1e-6)})
    acc.charge("d", 1.0, mechanism="laplace")
    with pytest.raises(InvalidPrivacyParameter):  # would refill the spent budget
        acc.set_budget("d", 5.0)
    with pytest.raises(InvalidPrivacyParameter):
        acc.set_budget("d", 1.0, delta=1e-5)
    assert acc.budget("d") == (1.0, 1e-6)
    with pytest.raises(PrivacyBudgetExhausted):
        acc.charge("d", 0.1, mechanism="laplace")
    acc.set_budget("d", 1.0, delta=0.0)  # keeping or lowering is allowed
    assert acc.budget("d") == (1.0, 0.0)
