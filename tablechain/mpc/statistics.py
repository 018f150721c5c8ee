"""Secure statistics over secret-shared data: sum, mean, variance, covariance.

Inputs are either a :class:`SharedTensor` already shared, or a mapping ``party -> rows`` (each
party's rows of one table, horizontally partitioned; the row counts are public). Only the final
statistic is opened, to the parties named in ``to`` (default: all).

Range, with f fractional bits (f = 16: the bounds in brackets): means need every value below
2^(37-f) in magnitude (2^21 ~ 2.1e6; rows given per party are checked, each party its own,
and refused with ``FixedPointRangeError``). Variances also need every deviation from the mean
below 2^(31-f) (32768) and the variance below 2^(37-f); covariances need ``|sum of the products
of deviations|`` below 2^(62-2f) (2^30). Shared tensors cannot be checked without opening
them: outside these bounds the result is wrong.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tablechain.mpc.channel import Traffic
from tablechain.mpc.errors import FixedPointRangeError, PartyError, ShapeMismatch
from tablechain.mpc.sharing import SecretSharing, SharedTensor

__all__ = [
    "StatisticResult",
    "share_columns",
    "share_rows",
    "secure_sum",
    "secure_mean",
    "secure_variance",
    "secure_covariance",
]


@dataclass(frozen=True)
class StatisticResult:
    """An opened statistic, the trust model that produced it and what it cost."""

    statistic: str
    value: np.ndarray
    trust_model: str
    receivers: tuple[int, ...]
    traffic: Traffic = field(repr=False)
    rows: int | None = None


def share_rows(protocol: SecretSharing, rows_by_party: Mapping[int, Any]) -> SharedTensor:
    """Each party shares its rows (same columns); the shared table is their concatenation."""
    if not rows_by_party:
        raise PartyError("no party supplied rows")
    blocks = []
    for party in sorted(rows_by_party):
        arr = np.asarray(rows_by_party[party], dtype=np.float64)
        if arr.ndim == 1:
            arr = arr.reshape(-1, 1)
        blocks.append(protocol.share(arr, party))
    width = {b.shape[1:] for b in blocks}
    if len(width) != 1:
        raise ShapeMismatch(f"parties' rows have different column counts: {sorted(width)}")
    return protocol.concatenate(blocks, axis=0)


def share_columns(protocol: SecretSharing, columns_by_party: Mapping[int, Any]) -> SharedTensor:
    """Each party shares its columns of the same rows (vertical partition), joined side by side."""
    if not columns_by_party:
        raise PartyError("no party supplied columns")
    blocks = []
    for party in sorted(columns_by_party):
        arr = np.asarray(columns_by_party[party], dtype=np.float64)
        if arr.ndim == 1:
            arr = arr.reshape(-1, 1)
        blocks.append(protocol.share(arr, party))
    heights = {b.shape[0] for b in blocks}
    if len(heights) != 1:
        raise ShapeMismatch(f"parties' columns have different row counts: {sorted(heights)}")
    return protocol.concatenate(blocks, axis=1)


def _check_mean_range(protocol: SecretSharing, rows_by_party: Mapping[int, Any]) -> None:
    """Each party refuses its own rows if a value is too large for a secure mean to be right.

    ``div_public`` is exact while the quotient is below 2^(37 - f); a mean is never larger than
    the largest value, so each party checking its own values (against a public bound, before
    sharing) guarantees it. The message names the bound, never a value.
    """
    limit = 2.0 ** (37 - protocol.fixed.frac_bits)
    for party in sorted(rows_by_party):
        arr = np.asarray(rows_by_party[party], dtype=np.float64)
        if arr.size and float(np.max(np.abs(arr))) >= limit:
            raise FixedPointRangeError(
                f"party {party} has a value of magnitude >= {limit:g}; secure means (and so "
                f"variances and covariances) need |x| < {limit:g} at "
                f"{protocol.fixed.frac_bits} fractional bits"
            )


def _as_table(protocol: SecretSharing, data: SharedTensor | Mapping[int, Any]) -> SharedTensor:
    if isinstance(data, SharedTensor):
        table = data if data.ndim == 2 else data.reshape(-1, 1)
    else:
        _check_mean_range(protocol, data)
        table = share_rows(protocol, data)
    if table.shape[0] == 0:
        raise ShapeMismatch("no rows")
    return table


def _open(
    protocol: SecretSharing, name: str, x: SharedTensor, to: Iterable[int] | None,
    before: Traffic, rows: int | None,
) -> StatisticResult:
    revealed = protocol.reveal(x, to=to)
    return StatisticResult(
        name, revealed.value, protocol.trust_model, revealed.receivers,
        protocol.network.traffic.minus(before), rows,
    )


def secure_sum(
    protocol: SecretSharing, inputs: Mapping[int, Any], to: Iterable[int] | None = None
) -> StatisticResult:
    """Element-wise sum of one vector per party; only the total is opened."""
    if not inputs:
        raise PartyError("no inputs to sum")
    before = protocol.network.traffic.copy()
    shapes = {np.shape(v) for v in inputs.values()}
    if len(shapes) != 1:
        raise ShapeMismatch(f"inputs have different shapes: {sorted(shapes)}")
    shared = [protocol.share(inputs[party], party) for party in sorted(inputs)]
    total = shared[0]
    for item in shared[1:]:
        total = total + item
    return _open(protocol, "sum", total, to, before, None)


def _mean(protocol: SecretSharing, table: SharedTensor) -> SharedTensor:
    return protocol.div_public(table.sum(axis=0), table.shape[0])


def secure_mean(
    protocol: SecretSharing, data: SharedTensor | Mapping[int, Any],
    to: Iterable[int] | None = None,
) -> StatisticResult:
    """Column means of the joint table."""
    before = protocol.network.traffic.copy()
    table = _as_table(protocol, data)
    return _open(protocol, "mean", _mean(protocol, table), to, before, table.shape[0])


def _centred(
    protocol: SecretSharing, data: SharedTensor | Mapping[int, Any], ddof: int
) -> tuple[int, SharedTensor]:
    """The joint table's row count and the table centred on its secure column means."""
    table = _as_table(protocol, data)
    n = table.shape[0]
    if n - ddof <= 0:
        raise ShapeMismatch(f"{n} rows are too few for ddof={ddof}")
    return n, table - _mean(protocol, table)


def secure_variance(
    protocol: SecretSharing, data: SharedTensor | Mapping[int, Any], ddof: int = 1,
    to: Iterable[int] | None = None,
) -> StatisticResult:
    """Column variances (two-pass: centre on the secure mean, then mean of squares)."""
    before = protocol.network.traffic.copy()
    n, centred = _centred(protocol, data, ddof)
    var = protocol.div_public((centred * centred).sum(axis=0), n - ddof)
    return _open(protocol, "variance", var, to, before, n)


def secure_covariance(
    protocol: SecretSharing, data: SharedTensor | Mapping[int, Any], ddof: int = 1,
    to: Iterable[int] | None = None,
) -> StatisticResult:
    """Covariance matrix of the columns (one matrix product of the centred table)."""
    before = protocol.network.traffic.copy()
    n, centred = _centred(protocol, data, ddof)
    cov = protocol.div_public(centred.T @ centred, n - ddof)
    return _open(protocol, "covariance", cov, to, before, n)
