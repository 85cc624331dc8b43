"""Medians with their spread, and percentiles: the only way the harness reports a figure."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between closest ranks."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    pos = (len(ordered) - 1) * q / 100
    low, high = math.floor(pos), math.ceil(pos)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (pos - low))


def summary(samples: Sequence[float]) -> dict[str, Any]:
    """A figure: the median of the rounds, their min and max, and the rounds themselves."""
    if not samples:
        raise ValueError("a figure needs at least one round")
    values = [float(v) for v in samples]
    return {"median": percentile(values, 50), "min": min(values), "max": max(values),
            "n": len(values), "samples": values}


def spread_pct(figure: dict[str, Any]) -> float:
    """Half the min-max range as a percentage of the median (how noisy the rounds were)."""
    median = figure["median"]
    return 0.0 if median == 0 else 50 * (figure["max"] - figure["min"]) / abs(median)


def ratio(numerator: dict[str, Any], denominator: dict[str, Any]) -> dict[str, Any]:
    """Per-round ratios (rounds were interleaved, so round i of both saw the same machine)."""
    pairs = list(zip(numerator["samples"], denominator["samples"]))
    return summary([a / b for a, b in pairs if b])
