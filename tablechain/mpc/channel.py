"""An abstract channel among parties, with communication accounting.

Protocols talk in synchronous rounds: in each round every party may send one message to each
other party, and ``exchange`` delivers them all. The in-process ``LocalNetwork`` is used by tests
and benchmarks; the jobs layer provides a Ray-backed network with the same interface. Every
message is counted (bytes and rounds per party) and may be observed by a tap, so tests can check
that no channel carries another party's plaintext input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

__all__ = ["Network", "LocalNetwork", "Traffic", "payload_size"]

Tap = Callable[[int, int, Any], None]


def payload_size(payload: Any) -> int:
    """Bytes a payload would occupy on the wire (numpy buffers, ints, bytes, containers)."""
    if payload is None:
        return 0
    if isinstance(payload, (np.ndarray, np.generic)):
        return int(payload.nbytes)
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return len(payload)
    if isinstance(payload, bool):
        return 1
    if isinstance(payload, int):
        return max(1, (payload.bit_length() + 7) // 8)
    if isinstance(payload, str):
        return len(payload.encode("utf-8"))
    if isinstance(payload, Mapping):
        return sum(payload_size(k) + payload_size(v) for k, v in payload.items())
    if isinstance(payload, (list, tuple, set, frozenset)):
        return sum(payload_size(item) for item in payload)
    wire = getattr(payload, "wire_size", None)
    if callable(wire):
        return int(wire())
    ciphertext = getattr(payload, "ciphertext", None)  # phe.EncryptedNumber
    if callable(ciphertext):
        return payload_size(ciphertext(be_secure=False))
    raise TypeError(f"cannot size a payload of type {type(payload).__name__}")


@dataclass
class Traffic:
    """Communication of each party: bytes sent and received, messages, rounds."""

    n_parties: int
    bytes_sent: list[int] = field(default_factory=list)
    bytes_received: list[int] = field(default_factory=list)
    messages_sent: list[int] = field(default_factory=list)
    rounds: int = 0

    def __post_init__(self) -> None:
        for name in ("bytes_sent", "bytes_received", "messages_sent"):
            if not getattr(self, name):
                setattr(self, name, [0] * self.n_parties)

    def copy(self) -> Traffic:
        return Traffic(
            self.n_parties,
            list(self.bytes_sent),
            list(self.bytes_received),
            list(self.messages_sent),
            self.rounds,
        )

    def minus(self, earlier: Traffic) -> Traffic:
        return Traffic(
            self.n_parties,
            [a - b for a, b in zip(self.bytes_sent, earlier.bytes_sent, strict=True)],
            [a - b for a, b in zip(self.bytes_received, earlier.bytes_received, strict=True)],
            [a - b for a, b in zip(self.messages_sent, earlier.messages_sent, strict=True)],
            self.rounds - earlier.rounds,
        )

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes_sent)

    def as_dict(self) -> dict[str, Any]:
        return {
            "bytes_sent": list(self.bytes_sent),
            "bytes_received": list(self.bytes_received),
            "messages_sent": list(self.messages_sent),
            "rounds": self.rounds,
            "total_bytes": self.total_bytes,
        }


class Network(Protocol):
    """What a protocol needs from the parties' network."""

    n_parties: int
    traffic: Traffic

    def exchange(self, messages: Mapping[tuple[int, int], Any]) -> dict[tuple[int, int], Any]:
        """One round: deliver each ``(sender, receiver) -> payload``; returns what arrived."""
        ...


class LocalNetwork:
    """In-process network of ``n_parties``; every message is counted and shown to the taps."""

    def __init__(self, n_parties: int, taps: list[Tap] | None = None) -> None:
        if n_parties < 2:
            raise ValueError("a network needs at least two parties")
        self.n_parties = n_parties
        self.traffic = Traffic(n_parties)
        self.taps: list[Tap] = list(taps or [])
        self._measurements: dict[str, Traffic] = {}

    def exchange(self, messages: Mapping[tuple[int, int], Any]) -> dict[tuple[int, int], Any]:
        delivered: dict[tuple[int, int], Any] = {}
        for (sender, receiver), payload in sorted(messages.items(), key=lambda kv: kv[0]):
            if not (0 <= sender < self.n_parties and 0 <= receiver < self.n_parties):
                raise ValueError(f"no such party in ({sender}, {receiver})")
            if sender == receiver:
                raise ValueError("a party does not send to itself")
            size = payload_size(payload)
            self.traffic.bytes_sent[sender] += size
            self.traffic.bytes_received[receiver] += size
            self.traffic.messages_sent[sender] += 1
            for tap in self.taps:
                tap(sender, receiver, payload)
            delivered[(sender, receiver)] = payload
        if delivered:
            self.traffic.rounds += 1
        return delivered

    @contextmanager
    def measure(self, name: str) -> Iterator[dict[str, Traffic]]:
        """Record the traffic of the enclosed operations under ``name``."""
        before = self.traffic.copy()
        out: dict[str, Traffic] = {}
        try:
            yield out
        finally:
            out[name] = self.traffic.minus(before)
            self._measurements[name] = out[name]

    @property
    def measurements(self) -> dict[str, Traffic]:
        return dict(self._measurements)
