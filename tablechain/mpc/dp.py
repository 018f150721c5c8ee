"""Differential privacy: Laplace and Gaussian mechanisms with per-data-set budget accounting.

``PrivacyAccountant`` keeps an (epsilon, delta) budget for each data set and charges every
release against it by basic sequential composition (epsilons add, deltas add). The sums are kept
as exact fractions of the given floats, so the same releases always give the same verdict, and
a release that would exceed the budget is refused with ``PrivacyBudgetExhausted`` before any
noise is drawn or anything is recorded.

Noise comes from numpy's PCG64 seeded from the operating system's CSPRNG (``secrets``), unless
a test passes a seed or a generator. Like most libraries, the mechanisms add floating-point
noise to floating-point values; Mironov's attack on the low-order bits of such outputs (CCS
2012) is not mitigated here, so outputs are rounded to ``round_to`` decimals when asked.
"""

from __future__ import annotations

import math
import secrets
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from tablechain.mpc.he_errors import InvalidPrivacyParameter, PrivacyBudgetExhausted

__all__ = [
    "Charge",
    "PrivacyAccountant",
    "make_rng",
    "laplace_scale",
    "gaussian_sigma",
    "laplace_mechanism",
    "gaussian_mechanism",
    "dp_count",
    "dp_sum",
    "dp_mean",
]


def make_rng(seed: int | None = None) -> np.random.Generator:
    """A PCG64 generator seeded from the OS CSPRNG, or from ``seed`` (tests only)."""
    if seed is None:
        seed = secrets.randbits(128)
    return np.random.Generator(np.random.PCG64(seed))


def _check_positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidPrivacyParameter(f"{name} must be a number")
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise InvalidPrivacyParameter(f"{name} must be positive and finite, got {value!r}")
    return v


def _check_delta(value: float, *, allow_zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidPrivacyParameter("delta must be a number")
    v = float(value)
    low_ok = v >= 0 if allow_zero else v > 0
    if not (math.isfinite(v) and low_ok and v < 1):
        bound = "[0, 1)" if allow_zero else "(0, 1)"
        raise InvalidPrivacyParameter(f"delta must lie in {bound}, got {value!r}")
    return v


@dataclass(frozen=True)
class Charge:
    """One release charged to a data set's budget."""

    dataset: str
    epsilon: float
    delta: float
    mechanism: str
    label: str


class PrivacyAccountant:
    """Per-data-set (epsilon, delta) budgets under basic sequential composition."""

    def __init__(self, budgets: Mapping[str, tuple[float, float]] | None = None) -> None:
        self._budgets: dict[str, tuple[Fraction, Fraction]] = {}
        self._charges: dict[str, list[Charge]] = {}
        self._lock = threading.Lock()
        for dataset, (epsilon, delta) in (budgets or {}).items():
            self.set_budget(dataset, epsilon, delta)

    def set_budget(self, dataset: str, epsilon: float, delta: float = 0.0) -> None:
        """Give a data set its total budget; an existing budget may only be kept or lowered
        to no less than what has been spent (raising it would undo the accounting: a spent
        budget could be refilled)."""
        if not isinstance(dataset, str) or not dataset:
            raise InvalidPrivacyParameter("a data set is named by a non-empty string")
        eps = Fraction(_check_positive("epsilon", epsilon))
        dlt = Fraction(_check_delta(delta, allow_zero=True))
        with self._lock:
            current = self._budgets.get(dataset)
            if current is not None and (eps > current[0] or dlt > current[1]):
                raise InvalidPrivacyParameter(
                    f"data set {dataset!r} has a budget of epsilon {float(current[0]):g}, "
                    f"delta {float(current[1]):g}; a budget can be lowered, never raised"
                )
            spent_eps, spent_delta = self._spent(dataset)
            if eps < spent_eps or dlt < spent_delta:
                raise InvalidPrivacyParameter(
                    f"data set {dataset!r} has already spent more than the new budget"
                )
            self._budgets[dataset] = (eps, dlt)
            self._charges.setdefault(dataset, [])

    def _spent(self, dataset: str) -> tuple[Fraction, Fraction]:
        charges = self._charges.get(dataset, [])
        return (
            sum((Fraction(c.epsilon) for c in charges), Fraction(0)),
            sum((Fraction(c.delta) for c in charges), Fraction(0)),
        )

    def budget(self, dataset: str) -> tuple[float, float]:
        eps, dlt = self._require(dataset)
        return float(eps), float(dlt)

    def spent(self, dataset: str) -> tuple[float, float]:
        self._require(dataset)
        eps, dlt = self._spent(dataset)
        return float(eps), float(dlt)

    def remaining(self, dataset: str) -> tuple[float, float]:
        budget_eps, budget_delta = self._require(dataset)
        eps, dlt = self._spent(dataset)
        return float(budget_eps - eps), float(budget_delta - dlt)

    def charges(self, dataset: str) -> tuple[Charge, ...]:
        self._require(dataset)
        return tuple(self._charges[dataset])

    def _require(self, dataset: str) -> tuple[Fraction, Fraction]:
        if dataset not in self._budgets:
            raise InvalidPrivacyParameter(f"data set {dataset!r} has no privacy budget")
        return self._budgets[dataset]

    def charge(
        self, dataset: str, epsilon: float, delta: float = 0.0, *, mechanism: str, label: str = ""
    ) -> Charge:
        """Record a release, or refuse it (changing nothing) if it would exceed the budget."""
        (charge,) = self.charge_all(dataset, [(epsilon, delta, mechanism, label)])
        return charge

    def charge_all(
        self, dataset: str, releases: Sequence[tuple[float, float, str, str]]
    ) -> tuple[Charge, ...]:
        """Record several releases ``(epsilon, delta, mechanism, label)`` of one query at once,
        or refuse them all (changing nothing) if together they would exceed the budget.

        The check is exact (fractions), so a query split into parts (``dp_mean``) is never
        charged for one part and refused for the next.
        """
        checked = [
            (_check_positive("epsilon", eps), _check_delta(dlt, allow_zero=True), mech, label)
            for eps, dlt, mech, label in releases
        ]
        if not checked:
            raise InvalidPrivacyParameter("nothing to charge")
        eps_total = sum((Fraction(c[0]) for c in checked), Fraction(0))
        delta_total = sum((Fraction(c[1]) for c in checked), Fraction(0))
        with self._lock:
            budget_eps, budget_delta = self._require(dataset)
            spent_eps, spent_delta = self._spent(dataset)
            if spent_eps + eps_total > budget_eps or spent_delta + delta_total > budget_delta:
                mechanisms = "+".join(c[2] for c in checked)
                raise PrivacyBudgetExhausted(
                    f"data set {dataset!r}: releasing {mechanisms} with epsilon="
                    f"{float(eps_total):g}, delta={float(delta_total):g} would exceed the budget "
                    f"(epsilon {float(budget_eps):g}, delta {float(budget_delta):g}; already "
                    f"spent epsilon {float(spent_eps):g}, delta {float(spent_delta):g})"
                )
            charges = tuple(Charge(dataset, *c) for c in checked)
            self._charges[dataset].extend(charges)
            return charges


def laplace_scale(sensitivity: float, epsilon: float) -> float:
    """b = sensitivity / epsilon: Laplace(b) noise gives epsilon-DP for that L1 sensitivity."""
    return _check_positive("sensitivity", sensitivity) / _check_positive("epsilon", epsilon)


def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _analytic_delta(sigma: float, sensitivity: float, epsilon: float) -> float:
    a = sensitivity / (2.0 * sigma)
    b = epsilon * sigma / sensitivity
    return _phi(a - b) - math.exp(epsilon) * _phi(-a - b)


def gaussian_sigma(
    sensitivity: float, epsilon: float, delta: float, *, calibration: str = "analytic"
) -> float:
    """Noise standard deviation for (epsilon, delta)-DP at this L2 sensitivity.

    ``analytic`` (default) is the exact calibration of Balle and Wang (ICML 2018), valid for any
    epsilon: the smallest sigma with Phi(D/2s - e s/D) - e^e Phi(-D/2s - e s/D) <= delta, found by
    bisection. ``classic`` is Dwork and Roth's sigma = D sqrt(2 ln(1.25/delta)) / e, only for
    epsilon < 1.
    """
    d = _check_positive("sensitivity", sensitivity)
    eps = _check_positive("epsilon", epsilon)
    dlt = _check_delta(delta, allow_zero=False)
    if calibration == "classic":
        if eps >= 1:
            raise InvalidPrivacyParameter("the classic Gaussian calibration needs epsilon < 1")
        return d * math.sqrt(2.0 * math.log(1.25 / dlt)) / eps
    if calibration != "analytic":
        raise InvalidPrivacyParameter("calibration must be 'analytic' or 'classic'")
    if eps > 50:
        raise InvalidPrivacyParameter("epsilon above 50 is not supported for the Gaussian")
    low, high = d * 1e-6, d
    while _analytic_delta(high, d, eps) > dlt:
        high *= 2.0
    for _ in range(200):
        mid = 0.5 * (low + high)
        if _analytic_delta(mid, d, eps) > dlt:
            low = mid
        else:
            high = mid
        if high - low <= 1e-12 * high:
            break
    return high


def _values(value: Any) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise InvalidPrivacyParameter("the value to release must be finite")
    return arr


def _charge_if(
    accountant: PrivacyAccountant | None,
    dataset: str | None,
    epsilon: float,
    delta: float,
    mechanism: str,
    label: str,
) -> None:
    if accountant is None:
        return
    if dataset is None:
        raise InvalidPrivacyParameter("name the data set the release is charged to")
    accountant.charge(dataset, epsilon, delta, mechanism=mechanism, label=label)


def _finish(noisy: np.ndarray, scalar: bool, round_to: int | None) -> Any:
    if round_to is not None:
        noisy = np.round(noisy, round_to)
    return float(noisy) if scalar else noisy


def laplace_mechanism(
    value: Any,
    *,
    sensitivity: float,
    epsilon: float,
    accountant: PrivacyAccountant | None = None,
    dataset: str | None = None,
    rng: np.random.Generator | None = None,
    label: str = "",
    round_to: int | None = None,
) -> Any:
    """value + Laplace(sensitivity / epsilon) noise per coordinate (epsilon-DP for that L1
    sensitivity of the whole vector); charged to ``dataset`` first if an accountant is given."""
    scale = laplace_scale(sensitivity, epsilon)
    arr = _values(value)
    _charge_if(accountant, dataset, epsilon, 0.0, "laplace", label)
    rng = rng or make_rng()
    noisy = arr + rng.laplace(0.0, scale, size=arr.shape)
    return _finish(noisy, arr.ndim == 0, round_to)


def gaussian_mechanism(
    value: Any,
    *,
    sensitivity: float,
    epsilon: float,
    delta: float,
    accountant: PrivacyAccountant | None = None,
    dataset: str | None = None,
    rng: np.random.Generator | None = None,
    calibration: str = "analytic",
    label: str = "",
    round_to: int | None = None,
) -> Any:
    """value + N(0, sigma^2) per coordinate, sigma from ``gaussian_sigma`` for this L2
    sensitivity; charged to ``dataset`` first if an accountant is given."""
    sigma = gaussian_sigma(sensitivity, epsilon, delta, calibration=calibration)
    arr = _values(value)
    _charge_if(accountant, dataset, epsilon, delta, "gaussian", label)
    rng = rng or make_rng()
    noisy = arr + rng.normal(0.0, sigma, size=arr.shape)
    return _finish(noisy, arr.ndim == 0, round_to)


def _bounds(lower: float, upper: float) -> tuple[float, float]:
    lo, hi = float(lower), float(upper)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise InvalidPrivacyParameter("bounds must be finite with lower < upper")
    return lo, hi


def dp_count(
    values: Any,
    *,
    epsilon: float,
    accountant: PrivacyAccountant | None = None,
    dataset: str | None = None,
    rng: np.random.Generator | None = None,
) -> float:
    """Number of rows plus Laplace(1/epsilon) noise (adding or removing a row changes it by 1)."""
    count = len(np.asarray(values).reshape(-1)) if np.ndim(values) else 1
    return float(
        laplace_mechanism(
            float(count),
            sensitivity=1.0,
            epsilon=epsilon,
            accountant=accountant,
            dataset=dataset,
            rng=rng,
            label="count",
        )
    )


def dp_sum(
    values: Any,
    *,
    lower: float,
    upper: float,
    epsilon: float,
    accountant: PrivacyAccountant | None = None,
    dataset: str | None = None,
    rng: np.random.Generator | None = None,
) -> float:
    """Sum of the values clamped to [lower, upper], plus Laplace(max(|lower|, |upper|)/epsilon)."""
    lo, hi = _bounds(lower, upper)
    clamped = np.clip(_values(values).reshape(-1), lo, hi)
    return float(
        laplace_mechanism(
            float(clamped.sum()),
            sensitivity=max(abs(lo), abs(hi)),
            epsilon=epsilon,
            accountant=accountant,
            dataset=dataset,
            rng=rng,
            label="sum",
        )
    )


def dp_mean(
    values: Any,
    *,
    lower: float,
    upper: float,
    epsilon: float,
    accountant: PrivacyAccountant | None = None,
    dataset: str | None = None,
    rng: np.random.Generator | None = None,
) -> float:
    """Noisy sum / noisy count, each with half of epsilon; clamped into [lower, upper].

    Both halves are charged together (``charge_all``) before any noise is drawn, so the budget
    is spent on both or on neither.
    """
    lo, hi = _bounds(lower, upper)
    half = _check_positive("epsilon", epsilon) / 2.0
    _values(values)  # refuse non-finite values before anything is charged
    if accountant is not None:
        if dataset is None:
            raise InvalidPrivacyParameter("name the data set the release is charged to")
        accountant.charge_all(
            dataset, [(half, 0.0, "laplace", "sum"), (half, 0.0, "laplace", "count")]
        )
    rng = rng or make_rng()
    total = dp_sum(values, lower=lo, upper=hi, epsilon=half, rng=rng)
    count = dp_count(values, epsilon=half, rng=rng)
    return float(np.clip(total / max(count, 1.0), lo, hi))
