"""Secure linear and logistic regression; logistic AUC against scikit-learn on breast cancer."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from tablechain.mpc import (
    ShapeMismatch,
    fit_linear_regression,
    logistic_regression_horizontal,
    logistic_regression_vertical,
)
from tests.mpc._protocols import MODES, make

AUC_TOLERANCE = 0.02  # the stated tolerance: |AUC(secure) - AUC(scikit-learn)| <= 0.02


@pytest.fixture(scope="module")
def cancer() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    x, y = load_breast_cancer(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    scaler = StandardScaler().fit(xtr)
    reference = LogisticRegression(max_iter=5000).fit(scaler.transform(xtr), ytr)
    auc = roc_auc_score(yte, reference.decision_function(scaler.transform(xte)))
    return xtr, xte, ytr.astype(float), yte, float(auc)


@pytest.mark.parametrize("mode", MODES)
def test_vertical_logistic_regression_matches_sklearn_auc(mode: str, cancer) -> None:  # type: ignore[no-untyped-def]
    xtr, xte, ytr, yte, sk_auc = cancer
    proto = make(mode, n_parties=2) if mode == "dealer" else make(mode)
    # FATE-style split: party 0 holds 15 features, party 1 the other 15 and the labels
    model = logistic_regression_vertical(
        proto, {0: xtr[:, :15], 1: xtr[:, 15:]}, labels=(1, ytr), epochs=60, to=[1]
    )
    auc = roc_auc_score(yte, model.decision_function(xte))
    assert abs(auc - sk_auc) <= AUC_TOLERANCE
    assert model.trust_model == mode and model.partition == "vertical"
    assert model.receivers == (1,) and model.traffic.rounds > 0


@pytest.mark.parametrize("mode", MODES)
def test_horizontal_logistic_regression_matches_sklearn_auc(mode: str, cancer) -> None:  # type: ignore[no-untyped-def]
    xtr, xte, ytr, yte, sk_auc = cancer
    proto = make(mode)
    parts = np.array_split(np.arange(len(xtr)), 3)
    data = {p: (xtr[idx], ytr[idx]) for p, idx in enumerate(parts)}
    model = logistic_regression_horizontal(proto, data, epochs=60)
    auc = roc_auc_score(yte, model.decision_function(xte))
    assert abs(auc - sk_auc) <= AUC_TOLERANCE
    assert model.partition == "horizontal" and model.trust_model == mode


@pytest.mark.parametrize("mode", MODES)
def test_linear_regression_matches_least_squares(mode: str) -> None:
    proto = make(mode)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 4)) * [1.0, 2.0, 0.5, 3.0]
    y = x @ np.array([1.5, -2.0, 0.5, 3.0]) + 0.7 + rng.normal(scale=0.1, size=200)
    model = fit_linear_regression(proto, proto.share(x, 0), proto.share(y, 1), ridge=1e-4)
    ref = np.linalg.lstsq(np.c_[x, np.ones(200)], y, rcond=None)[0]
    assert np.allclose(model.coef, ref[:-1], atol=1e-2)
    assert abs(model.intercept - ref[-1]) < 1e-2
    assert np.allclose(model.predict(x), np.c_[x, np.ones(200)] @ ref, atol=5e-2)
    assert model.trust_model == mode


def test_regression_rejects_misaligned_data() -> None:
    proto = make("replicated")
    with pytest.raises(ShapeMismatch):
        fit_linear_regression(proto, proto.share(np.ones((5, 2)), 0), proto.share(np.ones(4), 1))
    with pytest.raises(ShapeMismatch):
        logistic_regression_vertical(proto, {0: np.ones((5, 2))}, labels=(1, np.ones(4)))
