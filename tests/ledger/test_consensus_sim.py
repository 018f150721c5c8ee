"""The consensus protocol under the deterministic network simulator.

Every seed checks agreement, validity, certificate validity, no honest double-signing and
liveness after GST. A failing seed prints the command that replays it:

    TABLECHAIN_SIM_SEED=<seed> pytest tests/ledger/test_consensus_sim.py -k replay

(set TABLECHAIN_SIM_VERBOSE=1 as well for the event trace). ``-k soak`` runs
$TABLECHAIN_SOAK_SEEDS seeds (20 when unset; ``make soak`` sets 10000) in shards of about
100 seeds, so that ``pytest -n 2`` runs them in parallel; soak seeds start at 100000.
"""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from tablechain.ledger.consensus.simulator import (
    BYZANTINE_BEHAVIOURS,
    Scenario,
    SimResult,
    make_scenario,
    replay_command,
    run_scenario,
    run_seed,
)
from tablechain.ledger.consensus.validators import ValidatorSet

PROPERTY_SEEDS = 250
PROPERTY_CHUNKS = 5
SOAK_FIRST_SEED = 100_000


def _run_all(seeds: range | list[int]) -> None:
    failed: list[SimResult] = []
    for seed in seeds:
        result = run_seed(seed, trace=False)
        if not result.ok:
            failed.append(result)
    if failed:
        pytest.fail(
            f"{len(failed)} of {len(seeds)} seeds failed:\n"
            + "\n".join(r.report() for r in failed),
            pytrace=False,
        )


@pytest.mark.parametrize("chunk", range(PROPERTY_CHUNKS))
def test_property_seeds(chunk: int) -> None:
    size = PROPERTY_SEEDS // PROPERTY_CHUNKS
    _run_all(range(chunk * size, (chunk + 1) * size))


def _soak_seeds() -> int:
    raw = os.environ.get("TABLECHAIN_SOAK_SEEDS", "20")
    try:
        count = int(raw)
    except ValueError:
        raise pytest.UsageError(f"TABLECHAIN_SOAK_SEEDS must be an integer, got {raw!r}") from None
    if count < 1:
        raise pytest.UsageError("TABLECHAIN_SOAK_SEEDS must be at least 1")
    return count


# About 100 seeds per shard (each shard stays well inside the per-test timeout), at most 128.
SOAK_COUNT = _soak_seeds()
SOAK_SHARDS = min(128, -(-SOAK_COUNT // 100))


@pytest.mark.parametrize("shard", range(SOAK_SHARDS))
def test_soak(shard: int) -> None:
    seeds = [SOAK_FIRST_SEED + i for i in range(SOAK_COUNT) if i % SOAK_SHARDS == shard]
    _run_all(seeds)


def test_replay() -> None:
    """Replays $TABLECHAIN_SIM_SEED (seed 0 when unset) with the event trace on failure."""
    seed = int(os.environ.get("TABLECHAIN_SIM_SEED", "0"))
    result = run_seed(seed, trace=True)
    if not result.ok:
        print("\n".join(result.trace[-200:]))
        pytest.fail(result.report(), pytrace=False)
    assert all(h >= 1 for v, h in result.heights.items()
               if v not in {f"v{i}" for i, _ in result.scenario.byzantine})


# --- fixed scenarios ------------------------------------------------------------------------


def _scenario(**changes) -> Scenario:
    base = make_scenario(4)
    defaults = dict(seed=424242, n=4, byzantine=(), partitions=(), crashes=(), drop_permille=0,
                    dup_permille=0, wire_encoding=False, mempool_delay_ms=0)
    defaults.update(changes)
    return replace(base, **defaults)


def test_long_outage_catches_up_hundreds_of_blocks() -> None:
    txs = tuple((20 * i, f"tx-long-{i}") for i in range(300))
    sc = _scenario(txs=txs, max_block_txs=1, crashes=((3, 50, 9000, False),), gst_ms=9000,
                   deadline_ms=60_000, max_delay_ms=5, post_gst_max_delay_ms=5)
    result = run_scenario(sc)
    assert result.ok, result.report()
    assert set(result.heights.values()) == {300}


def test_all_byzantine_behaviours_at_once_with_f_equal_two() -> None:
    txs = tuple((50 * i, f"tx-byz-{i}") for i in range(30))
    sc = _scenario(n=7, byzantine=((1, BYZANTINE_BEHAVIOURS[1:5]), (4, BYZANTINE_BEHAVIOURS[5:])),
                   txs=txs, max_block_txs=3, gst_ms=2000, deadline_ms=40_000,
                   max_delay_ms=100, drop_permille=100, dup_permille=100)
    result = run_scenario(sc)
    assert result.ok, result.report()
    assert result.equivocations > 0  # honest validators noticed the equivocation


def test_partition_without_quorum_stalls_then_heals() -> None:
    txs = tuple((10 * i, f"tx-part-{i}") for i in range(10))
    # v0, v1 | v2, v3 until GST: no side has a quorum of 3, nothing can commit before 4000ms.
    sc = _scenario(txs=txs, partitions=((0, 4000, (0, 1)),), gst_ms=4000, deadline_ms=30_000,
                   max_block_txs=2)
    result = run_scenario(sc, trace=True)
    assert result.ok, result.report()
    first_commit = min(int(line.split("ms")[0]) for line in result.trace if " commit h=" in line)
    assert first_commit >= 4000


def test_checker_catches_a_broken_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the quorum broken to 1, an equivocating proposer splits the honest validators:
    the property check must say so and print how to replay."""
    monkeypatch.setattr(ValidatorSet, "quorum", property(lambda self: 1))
    txs = tuple((0, f"tx-split-{i}") for i in range(6))
    sc = _scenario(byzantine=((1, ("equivocate_proposals",)),), txs=txs, max_block_txs=3,
                   gst_ms=500, deadline_ms=5000)
    result = run_scenario(sc)
    assert not result.ok
    assert any("agreement" in f for f in result.failures)
    assert replay_command(sc.seed) in result.report()


def test_seeds_replay_identically() -> None:
    a, b = run_seed(7, trace=True), run_seed(7, trace=True)
    assert a.trace == b.trace and a.heights == b.heights and a.end_ms == b.end_ms
