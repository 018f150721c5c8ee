"""Secure statistics against numpy, in both trust models and with many dealer-model parties."""

from __future__ import annotations

import numpy as np
import pytest

from tablechain.mpc import (
    DealerSharing,
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
