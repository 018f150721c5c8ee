"""Shared reporting for benchmarks: a readable table, then one JSON line (CONVENTIONS.md)."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Figure:
    metric: str
    value: float
    unit: str
    peer: str | None = None
    peer_value: float | None = None
    goal: str | None = None

    def as_dict(self) -> dict[str, Any]:
        ratio = None
        if self.peer_value:
            ratio = round(self.value / self.peer_value, 4)
        return {
            "metric": self.metric,
            "value": round(self.value, 3),
            "unit": self.unit,
            "peer": self.peer,
            "peer_value": None if self.peer_value is None else round(self.peer_value, 3),
            "ratio": ratio,
            "goal": self.goal,
        }


def busy_cpu_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (all cores, every process:
    Ray's own daemons included), from /proc/stat; None where there is no /proc/stat.

    The difference over a run divided by the work done is the machine's CPU cost per unit of
    work: steadier than a rate on a machine whose other tenants come and go."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(x) for x in fields[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    busy = sum(ticks[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / os.sysconf("SC_CLK_TCK")


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }


def median_rate(run: Callable[[], int], repeats: int) -> float:
    """Median of ``items / seconds`` over ``repeats`` runs of ``run`` (which returns items done)."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        items = run()
        rates.append(items / (time.perf_counter() - start))
    return statistics.median(rates)


def report(bench: str, figures: list[Figure], extra: dict[str, Any] | None = None) -> None:
    """Print the table, then the JSON line as the very last line."""
    width = max([len(f.metric) for f in figures] + [6])
    print(
        f"{'metric':<{width}}  {'value':>14}  {'unit':<8}  {'peer':<28}  {'peer value':>12}  ratio"
    )
    for f in figures:
        d = f.as_dict()
        pv = "" if d["peer_value"] is None else f"{d['peer_value']:,.2f}"
        ratio = "" if d["ratio"] is None else f"{d['ratio']:.3f}"
        print(
            f"{f.metric:<{width}}  {f.value:>14,.2f}  {f.unit:<8}  {f.peer or '':<28}  "
            f"{pv:>12}  {ratio}"
            + (f"   goal {f.goal}" if f.goal else "")
        )
    line: dict[str, Any] = {
        "bench": bench,
        "figures": [f.as_dict() for f in figures],
        "machine": machine(),
    }
    if extra:
        line.update(extra)
    print(json.dumps(line))
