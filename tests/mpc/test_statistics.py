"""Secure statistics against numpy, in both trust models and with many dealer-model parties."""

from __future__ import annotations

import numpy as np
import pytest

from tablechain.mpc import (
    DealerSharing,
    FixedPointRangeError,
    PartyError,
    ShapeMismatch,
    secure_covariance,
    secure_mean,
    secure_sum,
    secure_variance,
    share_columns,
)
from tests.mpc._protocols import MODES, make


@pytest.mark.parametrize("n_parties", [3, 10, 30])
def test_secure_sum_of_many_parties(n_parties: int) -> None:
    rng = np.random.default_rng(n_parties)
    inputs = {p: rng.uniform(-1000, 1000, 16).round(3) for p in range(n_parties)}
    result = secure_sum(DealerSharing(n_parties, seed=1), inputs, to=[0])
    assert np.allclose(result.value, sum(inputs.values()), atol=1e-3)
    assert result.trust_model == "dealer" and result.receivers == (0,)
    assert result.traffic.rounds == n_parties + 1  # one input round per party, one to open


@pytest.mark.parametrize("mode", MODES)
def test_mean_variance_covariance_match_numpy(mode: str) -> None:
    proto = make(mode)
    rng = np.random.default_rng(11)
    table = rng.normal([3.0, -20.0, 0.5], [2.0, 15.0, 0.1], size=(240, 3))
    rows = {0: table[:100], 1: table[100:170], 2: table[170:]}
    mean = secure_mean(proto, rows)
    var = secure_variance(proto, rows)
    cov = secure_covariance(proto, rows, ddof=0)
    assert np.allclose(mean.value, table.mean(axis=0), atol=1e-4)
    assert np.allclose(var.value, table.var(axis=0, ddof=1), rtol=1e-3, atol=1e-3)
    assert np.allclose(cov.value, np.cov(table.T, ddof=0), rtol=1e-3, atol=1e-3)
    for result in (mean, var, cov):
        assert result.trust_model == mode and result.rows == 240
        assert result.traffic.total_bytes > 0 and result.traffic.rounds > 0


@pytest.mark.parametrize("mode", MODES)
def test_covariance_of_vertically_partitioned_columns(mode: str) -> None:
    proto = make(mode)
    rng = np.random.default_rng(2)
    a = rng.normal(size=200)
    b = 0.8 * a + rng.normal(scale=0.3, size=200)
    shared = share_columns(proto, {0: a, 1: b})
    cov = secure_covariance(proto, shared, to=[0, 1])
    assert np.allclose(cov.value, np.cov(np.stack([a, b])), atol=2e-3)
    assert cov.receivers == (0, 1)


def test_statistics_reject_bad_input() -> None:
    proto = make("replicated")
    with pytest.raises(ShapeMismatch):
        secure_sum(proto, {0: np.ones(3), 1: np.ones(4)})
    with pytest.raises(PartyError):
        secure_sum(proto, {})
    with pytest.raises(ShapeMismatch):
        secure_variance(proto, {0: np.ones((1, 2))})
    with pytest.raises(ShapeMismatch):
        secure_mean(proto, {0: np.ones((3, 2)), 1: np.ones((3, 3))})


@pytest.mark.parametrize("mode", MODES)
def test_mean_of_large_values_over_many_rows(mode: str) -> None:
    # the column sums (5e6 and 5e7) exceed 2^21; the means (5000, 50000) are well in range
    proto = make(mode)
    rng = np.random.default_rng(3)
    table = rng.normal([5000.0, 50000.0], [10.0, 10.0], size=(1000, 2))
    mean = secure_mean(proto, {0: table[:600], 1: table[600:]})
    assert np.allclose(mean.value, table.mean(axis=0), rtol=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_variance_and_covariance_of_many_rows(mode: str) -> None:
    # sum of squared deviations ~ 4e7, far above 2^21; the variance (~4e4) is in range
    proto = make(mode)
    rng = np.random.default_rng(4)
    table = rng.normal(0.0, 200.0, size=(1000, 2))
    rows = {0: table[:500], 1: table[500:]}
    var = secure_variance(proto, rows)
    cov = secure_covariance(proto, rows)
    assert np.allclose(var.value, table.var(axis=0, ddof=1), rtol=1e-4)
    assert np.allclose(cov.value, np.cov(table.T), rtol=1e-4, atol=1e-2)


def test_means_refuse_values_beyond_their_range() -> None:
    proto = make("replicated")
    with pytest.raises(FixedPointRangeError) as info:
        secure_mean(proto, {0: [1.0, 2.0], 1: [3.0e6, 1.0]})
    assert "3000000" not in str(info.value)  # the bound is named, not the value
    with pytest.raises(FixedPointRangeError):
        secure_variance(proto, {0: [-2.0**21, 0.0]})
