"""The health score: weighted risks from the signals, 0 (gone) to 100 (healthy).

Each input is a risk in [0, 1]; an input the customer has no data for drops
out and the remaining weights renormalise, so a customer who never raised a
ticket is not scored as if support were perfect or terrible.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cxstream.engine.alerts import alert_id, rfc3339

__all__ = ["HealthSnapshot", "health"]


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    """A customer's latest health, for the compacted health topic and the HTTP API."""

    customer_id: str
    segment: str | None
    health_score: float | None
    evaluated_at: float | None
    open_alerts: tuple[tuple[str, str, str, float], ...]  # kind, alert_id, severity, since
    inputs: tuple[tuple[str, float, str], ...]  # input, risk, sentence (worst first)

    def to_dict(self) -> dict[str, Any]:
        """The wire form (``schemas/json/health.schema.json``)."""
        return {
            "customer_id": self.customer_id,
            "segment": self.segment,
            "health_score": self.health_score,
            "evaluated_at": rfc3339(self.evaluated_at) if self.evaluated_at is not None else None,
            "open_alerts": [
                {"kind": k, "alert_id": a, "severity": s, "since": rfc3339(t)}
                for k, a, s, t in self.open_alerts
            ],
            "inputs": [{"input": n, "risk": round(r, 3), "detail": d} for n, r, d in self.inputs],
        }

    @classmethod
    def of(cls, customer_id: str, segment: str | None, score: float | None,
           evaluated_at: float | None, episodes: Mapping[str, Any],
           inputs: Mapping[str, tuple[float, Callable[[], str]]]) -> HealthSnapshot:
        """Build from a customer's state parts."""
        return cls(
            customer_id, segment, score, evaluated_at,
            tuple((k, alert_id(customer_id, k, ep.started_at), ep.severity, ep.started_at)
                  for k, ep in sorted(episodes.items())),
            tuple((n, r, d()) for n, (r, d) in sorted(inputs.items(), key=lambda kv: -kv[1][0])),
        )


def health(inputs: Mapping[str, tuple[float, Any]], weights: Mapping[str, float]) -> float:
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
