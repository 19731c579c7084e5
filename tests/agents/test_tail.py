"""``cxstream alerts tail`` lines: what a person reads first is the reason that decided."""

from __future__ import annotations

from cxstream.agents.tail import format_alert


def _alert(reasons: list[dict[str, object]], state: str = "raised") -> dict[str, object]:
    return {"decided_at": "2026-06-25T00:00:00.000Z", "state": state, "severity": "warning",
            "kind": "churn_risk", "customer_id": "cus000075", "segment": "starter",
            "reasons": reasons}


def test_a_warm_up_alert_shows_the_rule_reason_behind_a_short_tag() -> None:
    line = format_alert(_alert([
        {"code": "fallback_inactivity", "message": "Decided by the personalised inactivity "
                                                   "rule: the learned model is warming up."},
        {"code": "inactive_days", "message": "No login or email open for 14.3 days."},
    ]))

    assert line.endswith("(warm-up: inactivity rule) No login or email open for 14.3 days.")
    assert "RAISED" in line and "cus000075 (starter)" in line


def test_a_learned_alert_lists_its_reasons_in_order() -> None:
    line = format_alert(_alert([
        {"code": "churn_probability", "message": "30% chance of cancelling within 30 days."},
        {"code": "driver_repeat_contacts", "message": "Repeat contacts: 2, usually 0."},
    ]))

    assert line.endswith("30% chance of cancelling within 30 days. Repeat contacts: 2, usually 0.")
