"""Secret-shared tensors over Z/2^64 and the operations common to every trust model.

A :class:`SecretSharing` protocol instance runs all parties of one computation in this process,
keeping each party's state apart and passing everything that crosses from one party to another
through its :class:`~tablechain.mpc.channel.Network` (so traffic is counted and taps see it).
Subclasses supply the interactive primitives (input, open, multiply, matrix product, truncate,
most-significant bit, zero test); everything else -- comparison, ReLU, max, Newton iterations
for reciprocal and square root, the sigmoid approximation -- is built here from them.

Shares of one value are a tuple of ``uint64`` arrays, ``parts``. Their meaning is the trust
model's: the additive share of party ``i`` (dealer model), or the ``i``-th of three additive
components, held by parties ``i`` and ``i-1`` (replicated model). Linear operations act on every
part alike in both models.
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import numpy as np

from tablechain.mpc.channel import Network, Traffic
from tablechain.mpc.errors import PartyError, ProtocolMismatch, ShapeMismatch
from tablechain.mpc.fixedpoint import FixedPoint, to_ring

__all__ = [
    "OperationCost",
    "Revealed",
    "SecretSharing",
    "SharedTensor",
]

Parts = tuple[np.ndarray, ...]
F = TypeVar("F", bound=Callable[..., Any])

_ONE = np.uint64(1)
_DIV_BITS = 24  # relative precision of div_public's factor
_MAX_DIVISOR = 1 << 61  # div_public truncates by bit_length(d) - 1 < 61 bits


def _iterations(value: int | None) -> int | None:
    """A Newton iteration count given by the caller: None for the default, else at least 1
    (0 used to mean the default and a negative count ran no iteration at all)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ShapeMismatch(f"iterations must be a positive integer or None, got {value!r}")
    return int(value)


def _u64(value: int) -> np.uint64:
    return np.uint64(value % (1 << 64))


@dataclass
class OperationCost:
    """Accumulated communication of one kind of operation (nested operations included)."""

    calls: int
    bytes_sent: list[int]
    bytes_received: list[int]
    rounds: int

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes_sent)

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "bytes_sent": list(self.bytes_sent),
            "bytes_received": list(self.bytes_received),
            "rounds": self.rounds,
            "total_bytes": self.total_bytes,
        }


@dataclass(frozen=True)
class Revealed:
    """An opened value and who learned it. ``values`` maps each receiver to what it learned."""

    operation: str
    trust_model: str
    values: dict[int, np.ndarray]
    cost: Traffic = field(repr=False)

    @property
    def receivers(self) -> tuple[int, ...]:
        return tuple(sorted(self.values))

    @property
    def value(self) -> np.ndarray:
        """The opened value (every receiver learns the same)."""
        return self.values[self.receivers[0]]


def _accounted(name: str) -> Callable[[F], F]:
    """Record the traffic of a protocol operation under ``name`` and attach it to its result."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(self: SecretSharing, *args: Any, **kwargs: Any) -> Any:
            before = self.network.traffic.copy()
            with np.errstate(over="ignore"):  # ring arithmetic wraps by design
                result = fn(self, *args, **kwargs)
            cost = self.network.traffic.minus(before)
            self._record(name, cost)
            if isinstance(result, SharedTensor):
                result.cost = cost
            return result

        return cast(F, wrapper)

    return decorate


class SharedTensor:
    """A secret-shared array; ``frac_bits`` is its fixed-point scale (0 for ring integers)."""

    __slots__ = ("protocol", "parts", "frac_bits", "cost")
    __array_ufunc__ = None  # numpy defers to our reflected operators

    def __init__(
        self, protocol: SecretSharing, parts: Parts, frac_bits: int, cost: Traffic | None = None
    ) -> None:
        self.protocol = protocol
        self.parts = parts
        self.frac_bits = frac_bits
        self.cost = cost

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.parts[0].shape)

    @property
    def size(self) -> int:
        return int(self.parts[0].size)

    @property
    def ndim(self) -> int:
        return int(self.parts[0].ndim)

    @property
    def trust_model(self) -> str:
        return self.protocol.trust_model

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return (
            f"SharedTensor(shape={self.shape}, frac_bits={self.frac_bits}, "
            f"trust_model={self.protocol.trust_model!r})"
        )

    # local restructuring: every party applies it to its own parts
    def _map(self, fn: Callable[[np.ndarray], np.ndarray]) -> SharedTensor:
        return SharedTensor(
            self.protocol, tuple(np.asarray(fn(p), dtype=np.uint64) for p in self.parts),
            self.frac_bits,
        )

    def __getitem__(self, index: Any) -> SharedTensor:
        return self._map(lambda p: p[index])

    @property
    def T(self) -> SharedTensor:  # noqa: N802 - numpy's name
        return self._map(lambda p: p.T)

    def reshape(self, *shape: Any) -> SharedTensor:
        return self._map(lambda p: p.reshape(*shape))

    def sum(self, axis: int | None = None) -> SharedTensor:
        return self.protocol.sum(self, axis=axis)

    def __add__(self, other: Any) -> SharedTensor:
        return self.protocol.add(self, other)

    def __radd__(self, other: Any) -> SharedTensor:
        return self.protocol.add(self, other)

    def __sub__(self, other: Any) -> SharedTensor:
        return self.protocol.sub(self, other)

    def __rsub__(self, other: Any) -> SharedTensor:
        return self.protocol.add(self.protocol.neg(self), other)

    def __neg__(self) -> SharedTensor:
        return self.protocol.neg(self)

    def __mul__(self, other: Any) -> SharedTensor:
        return self.protocol.mul(self, other)

    def __rmul__(self, other: Any) -> SharedTensor:
        return self.protocol.mul(self, other)

    def __matmul__(self, other: Any) -> SharedTensor:
        return self.protocol.matmul(self, other)

    def __rmatmul__(self, other: Any) -> SharedTensor:
        return self.protocol.matmul(other, self)

    def __lt__(self, other: Any) -> SharedTensor:
        return self.protocol.lt(self, other)

    def __gt__(self, other: Any) -> SharedTensor:
        return self.protocol.gt(self, other)

    def __le__(self, other: Any) -> SharedTensor:
        return self.protocol.le(self, other)

    def __ge__(self, other: Any) -> SharedTensor:
        return self.protocol.ge(self, other)


class SecretSharing(ABC):
    """Operations on secret-shared tensors; subclasses implement one trust model."""

    trust_model: str = ""
    trust_model_description: str = ""

    def __init__(self, network: Network, n_parties: int, fixed: FixedPoint) -> None:
        self.network = network
        self.n_parties = n_parties
        self.fixed = fixed
        self._costs: dict[str, OperationCost] = {}

    # ------------------------------------------------------------------ boolean circuits
    @abstractmethod
    def _and(self, x: Parts, y: Parts) -> Parts:
        """Bitwise AND of two boolean-shared words (one round); each trust model has its own."""

    def _prefix_carries(self, generate: Parts, propagate: Parts) -> Parts:
        """Kogge-Stone prefix over 64-bit words: the carry generated over bits [0..i].

        Six AND layers; while both generate and propagate still widen (shift < 32) their two
        ANDs go out stacked in one round.
        """
        shift = 1
        while shift < 64:
            g_shift = tuple(g << np.uint64(shift) for g in generate)
            if shift < 32:
                p_shift = tuple(p << np.uint64(shift) for p in propagate)
                both = self._and(
                    tuple(np.stack([p, p]) for p in propagate),
                    tuple(np.stack([gs, ps]) for gs, ps in zip(g_shift, p_shift, strict=True)),
                )
                generate = tuple(g ^ w[0] for g, w in zip(generate, both, strict=True))
                propagate = tuple(w[1] for w in both)
            else:
                carried = self._and(propagate, g_shift)
                generate = tuple(g ^ w for g, w in zip(generate, carried, strict=True))
            shift *= 2
        return generate

    # ------------------------------------------------------------------ accounting
    def _record(self, name: str, cost: Traffic) -> None:
        entry = self._costs.get(name)
        if entry is None:
            self._costs[name] = OperationCost(
                1, list(cost.bytes_sent), list(cost.bytes_received), cost.rounds
            )
            return
        entry.calls += 1
        entry.rounds += cost.rounds
        for i, b in enumerate(cost.bytes_sent):
            entry.bytes_sent[i] += b
        for i, b in enumerate(cost.bytes_received):
            entry.bytes_received[i] += b

    @property
    def costs(self) -> dict[str, OperationCost]:
        """Traffic per operation name since this instance was made (inclusive of nested ops)."""
        return {k: self._costs[k] for k in sorted(self._costs)}

    def reset_costs(self) -> None:
        self._costs.clear()

    # ------------------------------------------------------------------ primitives
    @property
    @abstractmethod
    def n_parts(self) -> int:
        """How many share arrays represent one value."""

    @abstractmethod
    def _input_parts(self, owner: int, ring: np.ndarray) -> Parts:
        """Party ``owner`` secret-shares its ring elements ``ring``."""

    @abstractmethod
    def _open_parts(self, values: Sequence[Parts], receivers: Sequence[int]) -> list[np.ndarray]:
        """Open several shared values to ``receivers`` in one round."""

    @abstractmethod
    def _mul_parts(self, x: Parts, y: Parts) -> Parts:
        """Element-wise ring product of two sharings of one shape."""

    @abstractmethod
    def _matmul_parts(self, x: Parts, y: Parts) -> Parts:
        """Ring matrix product."""

    @abstractmethod
    def _truncate_parts(self, x: Parts, bits: int) -> Parts:
        """Signed division by 2^bits (error at most one unit in the last place)."""

    @abstractmethod
    def _msb_parts(self, x: Parts) -> Parts:
        """Sharing of the sign bit (0/1) of each signed ring element."""

    @abstractmethod
    def _is_zero_parts(self, x: Parts) -> Parts:
        """Sharing of 1 where the element is 0, else 0."""

    # ------------------------------------------------------------------ helpers
    def _check_party(self, party: int) -> int:
        if (isinstance(party, bool) or not isinstance(party, (int, np.integer))
                or not 0 <= int(party) < self.n_parties):
            raise PartyError(f"party {party!r} is not one of the {self.n_parties} parties")
        return int(party)

    def _own(self, x: SharedTensor) -> SharedTensor:
        if not isinstance(x, SharedTensor):
            raise ProtocolMismatch(f"expected a SharedTensor, got {type(x).__name__}")
        if x.protocol is not self:
            raise ProtocolMismatch(
                "these shares belong to another protocol instance "
                f"(trust model {x.protocol.trust_model!r}); share the inputs with this one"
            )
        return x

    def _zero_parts(self, shape: tuple[int, ...]) -> Parts:
        return tuple(np.zeros(shape, dtype=np.uint64) for _ in range(self.n_parts))

    def _public_parts(self, ring: np.ndarray) -> Parts:
        """A trivial sharing of a public value: part 0 holds it."""
        parts = list(self._zero_parts(ring.shape))
        parts[0] = np.array(ring, dtype=np.uint64)
        return tuple(parts)

    @staticmethod
    def _broadcast(parts: Parts, shape: tuple[int, ...]) -> Parts:
        if parts[0].shape == shape:
            return parts
        return tuple(np.ascontiguousarray(np.broadcast_to(p, shape)) for p in parts)

    @staticmethod
    def _result_shape(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
        try:
            return tuple(np.broadcast_shapes(a, b))
        except ValueError:
            raise ShapeMismatch(f"shapes {a} and {b} do not broadcast") from None

    def _lift(self, x: SharedTensor, frac_bits: int) -> SharedTensor:
        """Rescale (locally) to more fractional bits."""
        if x.frac_bits == frac_bits:
            return x
        factor = _u64(1 << (frac_bits - x.frac_bits))
        return SharedTensor(self, tuple(p * factor for p in x.parts), frac_bits)

    def _public_ring(self, value: Any, frac_bits: int) -> tuple[np.ndarray, int]:
        """A public operand as ring elements and its scale (integers stay unscaled)."""
        arr = np.asarray(value)
        if arr.dtype.kind in "iub":
            return to_ring(arr), 0
        if arr.dtype.kind != "f":
            raise ShapeMismatch(f"cannot use a public value of dtype {arr.dtype}")
        return FixedPoint(frac_bits).encode(arr) if frac_bits else self.fixed.encode(arr), (
            frac_bits or self.fixed.frac_bits
        )

    def _normalise(self, parts: Parts, frac_bits: int) -> SharedTensor:
        """Truncate a product back to the working precision when it has more fractional bits."""
        if frac_bits > self.fixed.frac_bits:
            drop = frac_bits - self.fixed.frac_bits
            return SharedTensor(self, self._truncate_parts(parts, drop), self.fixed.frac_bits)
        return SharedTensor(self, parts, frac_bits)

    # ------------------------------------------------------------------ input / output
    @_accounted("share")
    def share(self, values: Any, owner: int, *, fixed: bool | None = None) -> SharedTensor:
        """Party ``owner`` secret-shares ``values``.

        Floats are fixed-point encoded; integer arrays are ring integers unless ``fixed=True``.
        """
        owner = self._check_party(owner)
        arr = np.asarray(values)
        if arr.dtype.kind not in "iubf":
            raise ShapeMismatch(f"cannot share values of dtype {arr.dtype}")
        as_fixed = arr.dtype.kind == "f" if fixed is None else fixed
        if as_fixed:
            ring, frac = self.fixed.encode(arr), self.fixed.frac_bits
        else:
            if arr.dtype.kind == "f":
                raise ShapeMismatch("fixed=False needs integer values")
            ring, frac = to_ring(arr), 0
        with np.errstate(over="ignore"):
            parts = self._input_parts(owner, np.ascontiguousarray(ring))
        return SharedTensor(self, parts, frac)

    def public(self, values: Any) -> SharedTensor:
        """A value every party knows, as a (trivial) sharing."""
        arr = np.asarray(values)
        ring, frac = self._public_ring(arr, 0)
        return SharedTensor(self, self._public_parts(ring), frac)

    def reveal(self, x: SharedTensor, to: Iterable[int] | None = None) -> Revealed:
        """Open ``x`` to the parties ``to`` (default: all); only they receive anything."""
        x = self._own(x)
        receivers = (
            list(range(self.n_parties))
            if to is None
            else sorted({self._check_party(p) for p in to})
        )
        if not receivers:
            raise PartyError("reveal needs at least one receiving party")
        before = self.network.traffic.copy()
        with np.errstate(over="ignore"):
            (ring,) = self._open_parts([x.parts], receivers)
        cost = self.network.traffic.minus(before)
        self._record("reveal", cost)
        if x.frac_bits:
            decoded = self.fixed.decode(ring, x.frac_bits)
        else:
            decoded = ring.view(np.int64).copy()
        return Revealed(
            "reveal", self.trust_model, {p: decoded.copy() for p in receivers}, cost
        )

    # ------------------------------------------------------------------ linear, local
    def _coerce_pair(self, x: Any, y: Any) -> tuple[SharedTensor, SharedTensor]:
        x = self._own(x) if isinstance(x, SharedTensor) else self.public(x)
        y = self._own(y) if isinstance(y, SharedTensor) else self.public(y)
        frac = max(x.frac_bits, y.frac_bits)
        return self._lift(x, frac), self._lift(y, frac)

    @_accounted("add")
    def add(self, x: Any, y: Any) -> SharedTensor:
        a, b = self._coerce_pair(x, y)
        shape = self._result_shape(a.shape, b.shape)
        pa, pb = self._broadcast(a.parts, shape), self._broadcast(b.parts, shape)
        return SharedTensor(self, tuple(p + q for p, q in zip(pa, pb, strict=True)), a.frac_bits)

    def neg(self, x: SharedTensor) -> SharedTensor:
        x = self._own(x)
        return SharedTensor(self, tuple(np.negative(p) for p in x.parts), x.frac_bits)

    @_accounted("sub")
    def sub(self, x: Any, y: Any) -> SharedTensor:
        a, b = self._coerce_pair(x, y)
        shape = self._result_shape(a.shape, b.shape)
        pa, pb = self._broadcast(a.parts, shape), self._broadcast(b.parts, shape)
        return SharedTensor(self, tuple(p - q for p, q in zip(pa, pb, strict=True)), a.frac_bits)

    @_accounted("sum")
    def sum(self, x: SharedTensor, axis: int | None = None) -> SharedTensor:
        x = self._own(x)
        return SharedTensor(
            self,
            tuple(np.asarray(np.sum(p, axis=axis, dtype=np.uint64)) for p in x.parts),
            x.frac_bits,
        )

    @_accounted("div_public")
    def div_public(self, x: SharedTensor, divisor: int) -> SharedTensor:
        """x / d for a public positive integer d, to about 2^-24 relative precision (+2 ulp).

        First truncates x by k bits (2^k <= d), then multiplies by round(2^(24+k) / d) (at
        most 2^24) and truncates by 24. Truncating first keeps the product's magnitude that of
        the quotient, not of x: valid while ``|x / d| < 2^(37 - frac_bits)`` (and
        ``|x| < 2^(62 - frac_bits)``), whatever d is -- so a mean is right whenever the
        values are, not only while their sum is small.
        """
        x = self._own(x)
        if (
            isinstance(divisor, bool)
            or not isinstance(divisor, (int, np.integer))
            or not 0 < int(divisor) < _MAX_DIVISOR
        ):
            raise ShapeMismatch(f"divisor must be an integer in [1, 2^61), got {divisor!r}")
        d = int(divisor)
        if d == 1:
            return x
        k = d.bit_length() - 1
        high = SharedTensor(self, self._truncate_parts(x.parts, k), x.frac_bits) if k else x
        factor = _u64(round((1 << (_DIV_BITS + k)) / d))
        parts = tuple(p * factor for p in high.parts)
        return SharedTensor(self, self._truncate_parts(parts, _DIV_BITS), x.frac_bits)

    def concatenate(self, items: Sequence[SharedTensor], axis: int = 0) -> SharedTensor:
        """Join shared tensors (aligned to the finest scale) along ``axis``."""
        if not items:
            raise ShapeMismatch("nothing to concatenate")
        owned = [self._own(t) for t in items]
        frac = max(t.frac_bits for t in owned)
        lifted = [self._lift(t, frac) for t in owned]
        try:
            parts = tuple(
                np.concatenate([t.parts[k] for t in lifted], axis=axis)
                for k in range(self.n_parts)
            )
        except ValueError as exc:
            raise ShapeMismatch(f"cannot concatenate: {exc}") from None
        return SharedTensor(self, parts, frac)

    # ------------------------------------------------------------------ products
    @_accounted("mul")
    def mul(self, x: Any, y: Any) -> SharedTensor:
        """Element-wise product (with broadcasting); fixed-point products are truncated."""
        if not isinstance(x, SharedTensor):
            x, y = y, x
        x = self._own(x)
        if not isinstance(y, SharedTensor):
            ring, frac = self._public_ring(y, 0)
            shape = self._result_shape(x.shape, ring.shape)
            parts = tuple(p * ring for p in self._broadcast(x.parts, shape))
            return self._normalise(parts, x.frac_bits + frac)
        y = self._own(y)
        shape = self._result_shape(x.shape, y.shape)
        parts = self._mul_parts(self._broadcast(x.parts, shape), self._broadcast(y.parts, shape))
        return self._normalise(parts, x.frac_bits + y.frac_bits)

    def square(self, x: SharedTensor) -> SharedTensor:
        return self.mul(x, x)

    @_accounted("matmul")
    def matmul(self, x: Any, y: Any) -> SharedTensor:
        """Matrix product (numpy ``@`` shape rules for 1-D and 2-D operands)."""
        if not isinstance(x, SharedTensor) and not isinstance(y, SharedTensor):
            raise ProtocolMismatch("matmul needs at least one shared operand")
        if not isinstance(x, SharedTensor) or not isinstance(y, SharedTensor):
            shared = x if isinstance(x, SharedTensor) else y
            shared = self._own(shared)
            ring, frac = self._public_ring(y if shared is x else x, 0)
            try:
                if shared is x:
                    parts = tuple(p @ ring for p in shared.parts)
                else:
                    parts = tuple(ring @ p for p in shared.parts)
            except ValueError as exc:
                raise ShapeMismatch(f"matmul shapes: {exc}") from None
            return self._normalise(parts, shared.frac_bits + frac)
        x, y = self._own(x), self._own(y)
        if x.ndim == 0 or y.ndim == 0 or x.ndim > 2 or y.ndim > 2:
            raise ShapeMismatch("matmul takes 1-D or 2-D operands")
        if x.shape[-1] != y.shape[0]:
            raise ShapeMismatch(f"matmul shapes {x.shape} and {y.shape} do not align")
        return self._normalise(self._matmul_parts(x.parts, y.parts), x.frac_bits + y.frac_bits)

    def dot(self, x: SharedTensor, y: Any) -> SharedTensor:
        """Inner product of two vectors (one truncation for the whole sum)."""
        x = self._own(x)
        shape_y = y.shape if isinstance(y, SharedTensor) else np.shape(y)
        if x.ndim != 1 or len(shape_y) != 1:
            raise ShapeMismatch("dot takes two 1-D vectors")
        return self.matmul(x, y)

    @_accounted("truncate")
    def truncate(self, x: SharedTensor, bits: int | None = None) -> SharedTensor:
        """Divide by 2^bits (default: the fractional bits), lowering the scale by ``bits``."""
        x = self._own(x)
        drop = self.fixed.frac_bits if bits is None else bits
        if not 0 < drop < 62:
            raise ShapeMismatch(f"truncation by {drop} bits is out of range")
        return SharedTensor(self, self._truncate_parts(x.parts, drop), max(0, x.frac_bits - drop))

    # ------------------------------------------------------------------ comparison
    def _bit(self, parts: Parts) -> SharedTensor:
        return SharedTensor(self, parts, 0)

    @_accounted("lt")
    def lt(self, x: Any, y: Any) -> SharedTensor:
        """1 where ``x < y`` else 0 (valid while ``|x - y| < 2^63`` as ring values)."""
        a, b = self._coerce_pair(x, y)
        d = self.sub(a, b)
        return self._bit(self._msb_parts(d.parts))

    def gt(self, x: Any, y: Any) -> SharedTensor:
        return self.lt(y, x)

    def le(self, x: Any, y: Any) -> SharedTensor:
        return self.sub(1, self.lt(y, x))

    def ge(self, x: Any, y: Any) -> SharedTensor:
        return self.sub(1, self.lt(x, y))

    @_accounted("eq")
    def eq(self, x: Any, y: Any) -> SharedTensor:
        """1 where ``x == y`` else 0."""
        a, b = self._coerce_pair(x, y)
        d = self.sub(a, b)
        return self._bit(self._is_zero_parts(d.parts))

    @_accounted("sign_bit")
    def is_negative(self, x: SharedTensor) -> SharedTensor:
        x = self._own(x)
        return self._bit(self._msb_parts(x.parts))

    @_accounted("relu")
    def relu(self, x: SharedTensor) -> SharedTensor:
        x = self._own(x)
        negative = self._bit(self._msb_parts(x.parts))
        return self.mul(x, self.sub(1, negative))

    def abs(self, x: SharedTensor) -> SharedTensor:
        x = self._own(x)
        negative = self._bit(self._msb_parts(x.parts))
        return self.mul(x, self.sub(1, self.mul(negative, 2)))

    def where(self, condition: SharedTensor, x: Any, y: Any) -> SharedTensor:
        """``condition ? x : y`` for a shared 0/1 condition."""
        a, b = self._coerce_pair(x, y)
        return self.add(b, self.mul(self._own(condition), self.sub(a, b)))

    @_accounted("maximum")
    def maximum(self, x: Any, y: Any) -> SharedTensor:
        a, b = self._coerce_pair(x, y)
        return self.add(b, self.relu(self.sub(a, b)))

    @_accounted("minimum")
    def minimum(self, x: Any, y: Any) -> SharedTensor:
        a, b = self._coerce_pair(x, y)
        return self.sub(a, self.relu(self.sub(a, b)))

    @_accounted("max")
    def max(self, x: SharedTensor, axis: int = 0) -> SharedTensor:
        """Maximum along ``axis`` by a tree of pairwise maxima (log2 n comparison layers)."""
        x = self._own(x)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not (
            -x.ndim <= int(axis) < x.ndim
        ):
            raise ShapeMismatch(f"axis {axis!r} is not an axis of a {x.ndim}-d tensor")
        if x.ndim == 0 or x.shape[axis] == 0:
            raise ShapeMismatch("max of an empty or 0-d tensor")
        cur = x._map(lambda p: np.moveaxis(p, axis, 0))
        while cur.shape[0] > 1:
            half = cur.shape[0] // 2
            paired = self.maximum(cur[:half], cur[half : 2 * half])
            cur = self.concatenate([paired, cur[2 * half :]]) if cur.shape[0] % 2 else paired
        return cur[0]

    # ------------------------------------------------------------------ iterations
    @staticmethod
    def _newton_steps(ratio: float, frac_bits: int, rate: float) -> int:
        """Newton steps to reach 2^-f relative error from a start ``ratio`` below the answer."""
        return int(math.ceil(math.log(max(ratio, 2.0), rate))) + int(
            math.ceil(math.log2(frac_bits + 1))
        ) + 1

    def _check_range(self, lower: float, upper: float, start: float) -> None:
        if not (0 < lower < upper < self.fixed.max_value):
            raise ShapeMismatch(f"need 0 < lower < upper within range, got [{lower}, {upper}]")
        if start < 8 * self.fixed.resolution:
            raise ShapeMismatch(
                f"upper={upper:g} is too large for {self.fixed.frac_bits} fractional bits: "
                f"the Newton start value {start:g} is below 8 units in the last place"
            )

    @_accounted("reciprocal")
    def reciprocal(
        self, x: SharedTensor, lower: float = 2.0**-6, upper: float = 2.0**10,
        iterations: int | None = None,
    ) -> SharedTensor:
        """1/x for ``lower <= x <= upper`` by Newton's iteration y <- y(2 - xy) from 1/upper."""
        x = self._lift(self._own(x), self.fixed.frac_bits)
        self._check_range(lower, upper, 1.0 / upper)
        steps = _iterations(iterations) or self._newton_steps(upper / lower,
                                                               self.fixed.frac_bits, 2.0)
        y = self.public(np.full(x.shape, 1.0 / upper))
        for _ in range(steps):
            y = self.mul(y, self.sub(2.0, self.mul(x, y)))
        return y

    @_accounted("inv_sqrt")
    def inv_sqrt(
        self, x: SharedTensor, lower: float = 2.0**-6, upper: float = 2.0**10,
        iterations: int | None = None,
    ) -> SharedTensor:
        """1/sqrt(x) for ``lower <= x <= upper``: y <- y(3 - x y^2)/2 from 1/sqrt(upper)."""
        x = self._lift(self._own(x), self.fixed.frac_bits)
        self._check_range(lower, upper, 1.0 / math.sqrt(upper))
        steps = _iterations(iterations) or self._newton_steps(
            math.sqrt(upper / lower), self.fixed.frac_bits, 1.5
        )
        y = self.public(np.full(x.shape, 1.0 / math.sqrt(upper)))
        for _ in range(steps):
            # (x*y)*y keeps precision where y*y would underflow the fixed point
            y = self.mul(y, self.sub(1.5, self.mul(self.mul(self.mul(x, y), y), 0.5)))
        return y

    @_accounted("sqrt")
    def sqrt(
        self, x: SharedTensor, lower: float = 2.0**-6, upper: float = 2.0**10,
        iterations: int | None = None,
    ) -> SharedTensor:
        """sqrt(x) = x / sqrt(x) for ``lower <= x <= upper`` (0 maps to 0)."""
        x = self._lift(self._own(x), self.fixed.frac_bits)
        return self.mul(x, self.inv_sqrt(x, lower, upper, iterations))

    @_accounted("sigmoid")
    def sigmoid(self, x: SharedTensor) -> SharedTensor:
        """Logistic function: an odd polynomial on [-B, B], clipped to 0 / 1 outside.

        Maximum absolute error about 2.5e-3 (plus fixed-point rounding); see ``_sigmoid_poly``.
        """
        x = self._lift(self._own(x), self.fixed.frac_bits)
        shape = x.shape
        x = x.reshape(-1)
        n = x.shape[0]
        bound, coefs = _sigmoid_poly()
        # one batched comparison layer for both clips: x < -B and B < x
        flags = self._bit(self._msb_parts(self.concatenate([x + bound, self.sub(bound, x)]).parts))
        below, above = flags[:n], flags[n:]
        t = self.mul(x, 1.0 / bound)
        t2 = self.mul(t, t)
        acc = self.public(np.full(x.shape, coefs[-1]))
        for c in reversed(coefs[:-1]):
            acc = self.add(self.mul(acc, t2), c)
        poly = self.add(self.mul(acc, t), 0.5)
        inside = self.sub(self.sub(1, below), above)
        out = self.add(self.mul(inside, poly), self._lift(above, self.fixed.frac_bits))
        return out.reshape(shape)


@functools.lru_cache(maxsize=1)
def _sigmoid_poly() -> tuple[float, tuple[float, ...]]:
    """Bound B and coefficients c_k of sigmoid(B t) - 1/2 ~ t * sum_k c_k t^(2k) on [-1, 1].

    A least-squares fit on Chebyshev nodes (deterministic); odd polynomial of degree 11 with
    B = 6: the fit and the clip (sigmoid(6) = 0.9975) each err by under 2.5e-3.
    """
    bound = 6.0
    nodes = np.cos(np.pi * (np.arange(400) + 0.5) / 400)
    target = 1.0 / (1.0 + np.exp(-bound * nodes)) - 0.5
    degree = 5
    basis = np.stack([nodes ** (2 * k + 1) for k in range(degree + 1)], axis=1)
    coefs, *_ = np.linalg.lstsq(basis, target, rcond=None)
    return bound, tuple(float(c) for c in coefs)
