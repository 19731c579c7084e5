"""The health score: weighted risks from the signals, 0 (gone) to 100 (healthy).

Each input is a risk in [0, 1]; an input the customer has no data for drops
out and the remaining weights renormalise, so a customer who never raised a
ticket is not scored as if support were perfect or terrible.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["health"]


def health(inputs: Mapping[str, tuple[float, str]], weights: Mapping[str, float]) -> float:
    """Score 0–100 from the available inputs (100 when nothing is known)."""
    total = 0.0
    risk = 0.0
    for name, (r, _text) in inputs.items():
        w = weights.get(name, 0.0)
        total += w
        risk += w * r
    if total <= 0:
        return 100.0
    return round(100.0 * (1.0 - risk / total), 1)
