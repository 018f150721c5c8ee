"""Linear and logistic regression on secret-shared data.

Linear regression solves the ridge normal equations with a Newton-Schulz matrix inverse started
from I / trace (the trace's reciprocal itself by Newton's iteration). Logistic regression is
full-batch gradient descent on standardised features with the polynomial sigmoid; the data may
be partitioned vertically (each party holds columns, one holds the labels, as FATE's hetero-LR)
or horizontally (each party holds rows). Only the final model is opened, in original units.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tablechain.mpc.channel import Traffic
from tablechain.mpc.errors import PartyError, ShapeMismatch
from tablechain.mpc.sharing import SecretSharing, SharedTensor
from tablechain.mpc.statistics import share_columns, share_rows

__all__ = [
    "LinearModel",
    "LogisticModel",
    "fit_linear_regression",
    "train_logistic_regression",
    "logistic_regression_vertical",
    "logistic_regression_horizontal",
]

_VAR_FLOOR = 2.0**-10  # added to variances so constant columns do not blow up 1/sqrt
_VAR_CEILING = 2.0**20


@dataclass(frozen=True)
class LinearModel:
    coef: np.ndarray
    intercept: float
    trust_model: str
    receivers: tuple[int, ...]
    traffic: Traffic = field(repr=False)

    def predict(self, x: Any) -> np.ndarray:
        return np.asarray(x, dtype=np.float64) @ self.coef + self.intercept


@dataclass(frozen=True)
class LogisticModel:
    coef: np.ndarray
    intercept: float
    trust_model: str
    receivers: tuple[int, ...]
    epochs: int
    partition: str
    traffic: Traffic = field(repr=False)

    def decision_function(self, x: Any) -> np.ndarray:
        return np.asarray(x, dtype=np.float64) @ self.coef + self.intercept

    def predict_proba(self, x: Any) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.decision_function(x)))


def _with_intercept(protocol: SecretSharing, x: SharedTensor) -> SharedTensor:
    ones = protocol.public(np.ones((x.shape[0], 1)))
    return protocol.concatenate([x, ones], axis=1)


def fit_linear_regression(
    protocol: SecretSharing, x: SharedTensor, y: SharedTensor, *, ridge: float = 1e-3,
    iterations: int = 30, trace_bounds: tuple[float, float] = (2.0**-4, 2.0**10),
    to: Iterable[int] | None = None,
) -> LinearModel:
    """Least squares with an intercept: beta = (X'X/n + ridge I)^-1 X'y/n, all under sharing.

    ``trace_bounds`` bounds trace(X'X/n) (the Newton range for its reciprocal); features should
    be of moderate scale (|x| up to about 100 at 16 fractional bits).
    """
    before = protocol.network.traffic.copy()
    if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise ShapeMismatch(f"need X (n, d) and y (n,), got {x.shape} and {y.shape}")
    n = x.shape[0]
    xa = _with_intercept(protocol, x)
    d = xa.shape[1]
    gram = protocol.div_public(xa.T @ xa, n) + np.eye(d) * ridge
    moment = protocol.div_public(xa.T @ y, n)
    idx = np.arange(d)
    trace = gram[idx, idx].sum()
    alpha = protocol.reciprocal(trace, lower=trace_bounds[0], upper=trace_bounds[1])
    inverse = protocol.mul(alpha, np.eye(d))
    for _ in range(iterations):
        inverse = inverse @ (protocol.sub(2.0 * np.eye(d), gram @ inverse))
    beta = protocol.reveal(inverse @ moment, to=to)
    values = beta.value
    return LinearModel(
        values[:-1].copy(), float(values[-1]), protocol.trust_model, beta.receivers,
        protocol.network.traffic.minus(before),
    )


def _standardise(
    protocol: SecretSharing, x: SharedTensor
) -> tuple[SharedTensor, SharedTensor, SharedTensor]:
    """Secure column standardisation: returns (Z, mean, 1/std), all shared."""
    n = x.shape[0]
    mean = protocol.div_public(x.sum(axis=0), n)
    centred = x - mean
    var = protocol.div_public((centred * centred).sum(axis=0), n)
    inv_std = protocol.inv_sqrt(var + _VAR_FLOOR, lower=_VAR_FLOOR, upper=_VAR_CEILING)
    return centred * inv_std, mean, inv_std


def train_logistic_regression(
    protocol: SecretSharing, x: SharedTensor, y: SharedTensor, *, epochs: int = 60,
    learning_rate: float = 1.0, l2: float = 0.0, partition: str = "shared",
    scaling: tuple[SharedTensor, SharedTensor] | None = None,
    to: Iterable[int] | None = None,
) -> LogisticModel:
    """Gradient descent on shared X (n, d) and 0/1 labels y (n,).

    Without ``scaling`` the features are standardised securely; with ``scaling = (mean,
    inv_std)`` the caller says X is already standardised that way. The model is converted back
    to original units under sharing and only then opened to ``to``.
    """
    before = protocol.network.traffic.copy()
    if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise ShapeMismatch(f"need X (n, d) and y (n,), got {x.shape} and {y.shape}")
    if epochs < 1 or learning_rate <= 0:
        raise ShapeMismatch("epochs must be >= 1 and learning_rate > 0")
    n, d = x.shape
    if scaling is None:
        z, mean, inv_std = _standardise(protocol, x)
    else:
        z, (mean, inv_std) = x, scaling
    weights = protocol.public(np.zeros(d))
    bias = protocol.public(np.zeros(()))
    step = learning_rate / n
    zt = z.T
    for _ in range(epochs):
        error = protocol.sigmoid(z @ weights + bias) - y
        grad = zt @ error
        if l2:
            grad = grad + weights * (l2 * n)
        weights = weights - grad * step
        bias = bias - error.sum() * step
    coef = weights * inv_std
    intercept = bias - protocol.dot(coef, mean)
    opened = protocol.reveal(protocol.concatenate([coef, intercept.reshape(1)]), to=to)
    values = opened.value
    return LogisticModel(
        values[:-1].copy(), float(values[-1]), protocol.trust_model, opened.receivers,
        epochs, partition, protocol.network.traffic.minus(before),
    )


def logistic_regression_vertical(
    protocol: SecretSharing, columns_by_party: Mapping[int, Any], labels: tuple[int, Any],
    **options: Any,
) -> LogisticModel:
    """Vertical partition: each party standardises its own columns locally and shares them
    (with its column means and 1/std); ``labels = (owner, y)``. Rows must be aligned."""
    owner, y = labels
    scaled: dict[int, np.ndarray] = {}
    means: dict[int, np.ndarray] = {}
    inv_stds: dict[int, np.ndarray] = {}
    for party in sorted(columns_by_party):
        cols = np.asarray(columns_by_party[party], dtype=np.float64)
        if cols.ndim == 1:
            cols = cols.reshape(-1, 1)
        mu = cols.mean(axis=0)
        sd = cols.std(axis=0)
        sd = np.where(sd > 0, sd, 1.0)
        scaled[party], means[party], inv_stds[party] = (cols - mu) / sd, mu, 1.0 / sd
    x = share_columns(protocol, scaled)
    y_arr = np.asarray(y, dtype=np.float64)
    if y_arr.shape != (x.shape[0],):
        raise ShapeMismatch(f"labels must be ({x.shape[0]},), got {y_arr.shape}")
    if owner not in range(protocol.n_parties):
        raise PartyError(f"label owner {owner!r} is not a party")
    y_shared = protocol.share(y_arr, owner)
    mean = protocol.concatenate([protocol.share(means[p], p) for p in sorted(means)])
    inv_std = protocol.concatenate([protocol.share(inv_stds[p], p) for p in sorted(inv_stds)])
    return train_logistic_regression(
        protocol, x, y_shared, scaling=(mean, inv_std), partition="vertical", **options
    )


def logistic_regression_horizontal(
    protocol: SecretSharing, data_by_party: Mapping[int, tuple[Any, Any]], **options: Any
) -> LogisticModel:
    """Horizontal partition: each party holds ``(X_rows, y_rows)``; standardisation is secure."""
    if not data_by_party:
        raise PartyError("no party supplied data")
    x = share_rows(protocol, {p: data_by_party[p][0] for p in data_by_party})
    y = protocol.concatenate(
        [
            protocol.share(np.asarray(data_by_party[p][1], dtype=np.float64), p)
            for p in sorted(data_by_party)
        ]
    )
    if y.shape != (x.shape[0],):
        raise ShapeMismatch("each party needs one label per row")
    return train_logistic_regression(protocol, x, y, partition="horizontal", **options)
