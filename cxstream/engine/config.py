"""The engine's knobs, as frozen values (standard library only).

A ``Profile`` holds every threshold and weight the engine decides with; the
default profile applies to every customer, and a segment may override it.
Service settings (Kafka, ports, stores) live in ``cxstream.settings``, which
validates the environment and the config file with pydantic and then builds
this ``EngineConfig``; the engine itself never reads the environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

__all__ = ["ALERT_KINDS", "DAY_SECONDS", "DEFAULT_ALERT_KINDS", "EngineConfig", "LearnConfig",
           "Profile", "WEIGHT_NAMES"]

DAY_SECONDS = 86_400.0
WEIGHT_NAMES = ("inactivity", "decay", "email", "support", "feedback", "alive")
ALERT_KINDS = (
    "churn_risk", "inactivity", "engagement_decay", "email_disengagement", "support_friction",
    "feedback", "at_risk", "score_drop", "participation", "renewal_risk",
)
# What a CS team receives with no configuration: the learned churn risk (with its
# warm-up fallback). The other kinds stay signals (health topic, GET /customers/{id})
# and can be routed with ``alert_kinds``.
DEFAULT_ALERT_KINDS = ("churn_risk",)


@dataclass(frozen=True, slots=True)
class Profile:
    """Thresholds and weights for one segment (or the default for all).

    Each knob's default and the reason for it are in docs/configuration.md.
    """

    # Personalised inactivity: the line is the customer's usual gap between
    # active days times a multiplier, kept within [min, max] days.
    inactivity_multiplier: float = 4.0
    inactivity_min_days: float = 7.0
    inactivity_max_days: float = 21.0
    inactivity_prior_gap_days: float = 2.0
    escalate_factor: float = 2.0
    # Engagement decay: last 7 days against the trailing 28 before them.
    decay_raise_pct: float = 60.0
    decay_resolve_pct: float = 30.0
    decay_min_baseline: int = 6
    # Email disengagement.
    unopened_streak: int = 5
    # Support friction.
    ticket_overdue_days: float = 5.0
    contacts_per_week: int = 3
    repeat_contact_days: float = 3.0
    # Feedback.
    nps_detractor_max: float = 6.0
    csat_low_max: float = 2.0
    ces_high_min: float = 5.0
    score_fall_points: float = 3.0
    # Learned participation threshold: warn this many active days (of 28) above it.
    participation_margin_days: int = 2
    # Health score bands (hysteresis), score drop, episode hygiene.
    at_risk_enter: float = 40.0
    at_risk_exit: float = 55.0
    at_risk_critical: float = 25.0
    score_drop_points: float = 25.0
    score_drop_days: int = 14
    cooldown_days: float = 7.0
    churn_cooldown_days: float = 30.0  # after a churn_risk episode resolves
    max_raises_per_30d: int = 4
    # Renewal risk (cxstream/renewal.py): an established decline against the customer's
    # own baseline, raised in the weeks before the next renewal.
    renewal_cycle_days: float = 30.0
    renewal_window_days: float = 28.0
    renewal_min_notice_days: float = 7.0
    renewal_recovery_ratio: float = 0.5
    baseline_half_life_days: float = 28.0
    baseline_min_days: int = 7
    decline_days: int = 14
    decline_max_ratio: float = 0.2
    decline_alpha: float = 0.03
    decline_min_rate: float = 0.2
    crisis_contacts: int = 4
    crisis_decline_days: int = 7
    crisis_max_ratio: float = 0.5
    crisis_alpha: float = 0.05
    # BG/NBD population parameters (time unit: days), Fader-Hardie-Lee style.
    bgnbd_r: float = 0.25
    bgnbd_alpha: float = 4.0
    bgnbd_a: float = 0.8
    bgnbd_b: float = 2.5
    # Score weights; a missing input drops out and the rest renormalise.
    w_inactivity: float = 0.30
    w_decay: float = 0.20
    w_email: float = 0.10
    w_support: float = 0.15
    w_feedback: float = 0.15
    w_alive: float = 0.10
    # Which alert kinds this segment publishes (the learned churn risk by default).
    alert_kinds: tuple[str, ...] = DEFAULT_ALERT_KINDS

    def __post_init__(self) -> None:
        problems = []
        unknown = sorted(set(self.alert_kinds) - set(ALERT_KINDS))
        if unknown:
            problems.append(f"unknown alert kinds {unknown}; known: {list(ALERT_KINDS)}")
        if not 0 < self.inactivity_min_days <= self.inactivity_max_days:
            problems.append("need 0 < inactivity_min_days <= inactivity_max_days")
        if self.escalate_factor <= 1:
            problems.append("escalate_factor must be > 1")
        if not self.decay_resolve_pct < self.decay_raise_pct:
            problems.append("decay_resolve_pct must be below decay_raise_pct")
        if not self.at_risk_critical < self.at_risk_enter < self.at_risk_exit:
            problems.append("need at_risk_critical < at_risk_enter < at_risk_exit")
        if not 0 <= self.participation_margin_days <= 27:
            problems.append("participation_margin_days must be within 0..27")
        if not 0 <= self.renewal_min_notice_days < self.renewal_window_days <= (
                self.renewal_cycle_days):
            problems.append("need 0 <= renewal_min_notice_days < renewal_window_days "
                            "<= renewal_cycle_days")
        if not (1 <= self.decline_days <= 28 and 1 <= self.crisis_decline_days <= 28):
            problems.append("decline_days and crisis_decline_days must be within 1..28 "
                            "(the daily ring)")
        for name in ("decline_max_ratio", "decline_alpha", "crisis_max_ratio", "crisis_alpha",
                     "decline_min_rate", "renewal_recovery_ratio"):
            if not 0 < getattr(self, name) <= 1:
                problems.append(f"{name} must be within (0, 1]")
        if self.baseline_half_life_days <= 0 or self.baseline_min_days < 1:
            problems.append("need baseline_half_life_days > 0 and baseline_min_days >= 1")
        if self.crisis_contacts < 1:
            problems.append("crisis_contacts must be >= 1")
        if min(self.weights.values()) < 0 or sum(self.weights.values()) <= 0:
            problems.append("weights must be >= 0 and not all 0")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def kinds(self) -> frozenset[str]:
        """The published kinds as a set (what the engine needs to observe)."""
        return frozenset(self.alert_kinds)

    @property
    def weights(self) -> dict[str, float]:
        """Score weights by input name."""
        return {name: getattr(self, f"w_{name}") for name in WEIGHT_NAMES}

    def merged(self, overrides: Mapping[str, Any]) -> Profile:
        """This profile with some knobs replaced (for a segment)."""
        return replace(self, **dict(overrides))

    @classmethod
    def knob_names(cls) -> tuple[str, ...]:
        """Every knob, for settings validation and docs."""
        return tuple(f.name for f in fields(cls))


@dataclass(frozen=True, slots=True)
class LearnConfig:
    """How the churn model learns; the defaults are documented in docs/configuration.md."""

    horizon_days: float = 30.0
    window_weeks: int = 12
    min_churned: int = 20
    budget_per_1k_week: float = 15.0
    rows_per_week: int = 20_000
    effective_delay_days: float = 1.0

    def __post_init__(self) -> None:
        if self.horizon_days <= 0 or self.window_weeks < 1 or self.min_churned < 1:
            raise ValueError("need horizon_days > 0, window_weeks >= 1, min_churned >= 1")
        if not 0 < self.budget_per_1k_week < 1000 or self.rows_per_week < 100:
            raise ValueError("need 0 < budget_per_1k_week < 1000 and rows_per_week >= 100")
        if not 0 <= self.effective_delay_days < 7:
            raise ValueError("effective_delay_days must be within [0, 7)")


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Everything the engine decides with.

    ``allowed_lateness_seconds``: how far behind a partition's stream time an
    event may arrive and still be applied in event-time order; later ones are
    rejected as late. Every decision waits until the watermark (stream time
    minus this) has passed it, so none depends on arrival order within it.
    ``max_future_seconds``: how far after its publish time an event may be
    dated; later ones are refused as ``future`` (a wrong clock), so one bad
    clock cannot move a partition's stream time.
    ``dedupe_ids``: how many recent event ids each customer remembers.
    ``metric_windows_seconds``: tumbling event-time windows for rolling metrics.
    ``rolling_windows_days``: windows of that many days ending at every day
    boundary (WAU, MAU, 28-day churn).
    ``include_comments``: survey comments are personal data; they are copied
    into feedback alerts only when this is on.
    """

    profile: Profile = field(default_factory=Profile)
    segments: Mapping[str, Profile] = field(default_factory=dict)
    allowed_lateness_seconds: float = 300.0
    max_future_seconds: float = 3_600.0
    dedupe_ids: int = 16
    metric_windows_seconds: tuple[int, ...] = (3_600, 86_400)
    rolling_windows_days: tuple[int, ...] = (7, 28)
    include_comments: bool = False
    learning: LearnConfig = field(default_factory=LearnConfig)

    def __post_init__(self) -> None:
        if any(d < 2 for d in self.rolling_windows_days):
            raise ValueError("rolling_windows_days must be >= 2 (one day is the 1d window)")
        if any(d * DAY_SECONDS in self.metric_windows_seconds for d in self.rolling_windows_days):
            raise ValueError("a rolling window may not also be a tumbling window")
        if self.allowed_lateness_seconds < 0:
            raise ValueError("allowed_lateness_seconds must be >= 0")
        if self.max_future_seconds < 0:
            raise ValueError("max_future_seconds must be >= 0")
        if self.dedupe_ids < 1:
            raise ValueError("dedupe_ids must be >= 1")
        if not self.metric_windows_seconds or min(self.metric_windows_seconds) <= 0:
            raise ValueError("metric_windows_seconds must be positive")

    @property
    def learns_churn(self) -> bool:
        """Whether any profile alerts on the learned churn risk (decisions then wait for
        the model version they need)."""
        return any("churn_risk" in p.alert_kinds for p in (self.profile, *self.segments.values()))

    def profile_for(self, segment: str | None) -> Profile:
        """The segment's profile, or the default."""
        if segment is not None:
            prof = self.segments.get(segment)
            if prof is not None:
                return prof
        return self.profile
