"""Privacy checks through the network taps: what parties receive is uniformly random, and no
channel carries another party's plaintext input (or a result revealed to someone else)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy.stats import chisquare

from tests.mpc._protocols import MODES, make

Message = tuple[int, int, Any]


def _arrays(payload: Any) -> list[np.ndarray]:
    if isinstance(payload, np.ndarray):
        return [payload]
    if isinstance(payload, (tuple, list)):
        return [a for item in payload for a in _arrays(item)]
    return []


def _run_workload(mode: str, inputs: dict[int, np.ndarray], **kw: Any) -> tuple[list[Message], Any]:
    log: list[Message] = []
    proto = make(mode, taps=[lambda s, r, p: log.append((s, r, p))], **kw)
    x = proto.share(inputs[0], 0)
    y = proto.share(inputs[1], 1)
    prod = x * y
    cmp = x < y
    mixed = proto.sigmoid(prod * 0.01) + proto.relu(x - y) + proto.eq(x, y)
    out = proto.reveal(mixed + cmp, to=[2])
    return log, out


@pytest.mark.parametrize("mode", MODES)
def test_received_words_are_uniform_even_for_constant_inputs(mode: str) -> None:
    n = 4096
    const = {0: np.full(n, 1.0), 1: np.full(n, 1.0)}  # any leak of plaintext is far from uniform
    log, _ = _run_workload(mode, const)
    checked = 0
    for _sender, _receiver, payload in log:
        for arr in _arrays(payload):
            if arr.dtype == np.uint64 and arr.size >= n:
                raw = arr.reshape(-1).view(np.uint8).reshape(-1, 8)
                for byte in (0, 3, 7):  # low, middle and top byte of each word
                    counts = np.bincount(raw[:, byte], minlength=256)
                    assert chisquare(counts).pvalue > 1e-6
                bits = np.unpackbits(arr.reshape(-1).view(np.uint8)).reshape(-1, 64).mean(axis=0)
                assert np.all(np.abs(bits - 0.5) < 0.05)  # every bit position balanced
                checked += 1
            elif arr.dtype == np.uint8 and arr.size >= n:  # masked bits in bit conversion
                assert abs(arr.mean() - 0.5) < 0.05
                checked += 1
    assert checked >= 20


@pytest.mark.parametrize("mode", MODES)
def test_no_channel_carries_a_plaintext_input_or_a_private_result(mode: str) -> None:
    rng = np.random.default_rng(5)
    inputs = {0: rng.uniform(-500, 500, 600), 1: rng.uniform(-500, 500, 600)}
    log, out = _run_workload(mode, inputs)
    fixed = make(mode).fixed
    secrets = {
        "input of party 0": fixed.encode(inputs[0]),
        "input of party 1": fixed.encode(inputs[1]),
        "result revealed only to party 2": fixed.encode(out.value),
    }
    for sender, receiver, payload in log:
        for arr in _arrays(payload):
            if arr.dtype != np.uint64:
                continue
            for label, secret in secrets.items():
                hits = np.isin(arr.reshape(-1), secret).sum()
                assert hits == 0, f"{label} seen on channel {sender}->{receiver}"
    assert out.receivers == (2,)


@pytest.mark.parametrize("mode", MODES)
def test_reveal_to_one_party_sends_nothing_to_the_others(mode: str) -> None:
    log: list[Message] = []
    proto = make(mode, taps=[lambda s, r, p: log.append((s, r, p))])
    x = proto.share(np.arange(10.0), 0)
    log.clear()
    result = proto.reveal(x, to=[1])
    assert {r for _, r, _ in log} == {1}
    assert list(result.values) == [1]


def test_dealer_correlated_randomness_goes_only_through_the_network() -> None:
    log: list[Message] = []
    proto = make("dealer", taps=[lambda s, r, p: log.append((s, r, p))])
    # the setup round: the dealer (party 3) gives each party its 16-byte seed
    assert [(s, r) for s, r, _ in log] == [(3, 0), (3, 1), (3, 2)]
    assert all(isinstance(p, bytes) and len(p) == 16 for _, _, p in log)
    x, y = proto.share(np.arange(4), 0), proto.share(np.arange(4), 1)
    log.clear()
    proto.mul(x, y)  # ring product: one Beaver triple
    dealer_msgs = [(s, r) for s, r, _ in log if s == 3]
    assert dealer_msgs == [(3, 2)]  # only the last party receives an explicit correction
    log.clear()
    proto.mul(x * 1.0, y * 1.0)  # fixed-point product: a triple and a truncation pair
    assert [(s, r) for s, r, _ in log if s == 3] == [(3, 2), (3, 2)]
