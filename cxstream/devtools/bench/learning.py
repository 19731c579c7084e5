"""Learning section: the learned churn risk's cost per decision, and one retrain at scale.

* **per decision**: computing a customer's features and the model's probability,
  what every ``churn_risk`` evaluation does (once a day per customer, and at each
  of its events), timed over the customers of the replayed workload;
* **retrain**: one version trained on the snapshots of ``customers`` customers
  (default 100,000) over the training window, as the learner keeps them (at most
  ``learn_rows_per_week`` a week): the rows, the seconds and the peak memory.
"""

from __future__ import annotations

import random
import resource
import time
from typing import Any

__all__ = ["bench_learning"]


def bench_learning(replayer: Any, settings: Any, customers: int = 100_000) -> dict[str, Any]:
    """Per-decision cost on the replayed customers, and one retrain at ``customers``."""
    from cxstream.engine.config import DAY_SECONDS
    from cxstream.engine.features import FEATURES, features, pack
    from cxstream.engine.learning import WEEK, Cancellation, Learner, Marker, Snapshot
    from cxstream.learn.fit import logistic_fit

    config = settings.engine_config()
    learner = replayer.learner
    model = next((learner.versions[v] for v in sorted(learner.versions, reverse=True)
                  if learner.versions[v] is not None), None)
    states = [st for store in replayer.stores for st in store.values()]
    t = max(st.max_seen_at for st in states)
    rounds = max(1, 20_000 // max(1, len(states)))
    started = time.perf_counter()
    n = 0
    for _ in range(rounds):
        for st in states:
            x = features(st, t, config.profile_for(st.segment))
            if model is not None:
                model.probability(x, st.segment)
            n += 1
    per_decision_us = (time.perf_counter() - started) / n * 1e6

    # A retrain as the learner holds it: weekly snapshots of every customer over the
    # window, ~2% of them followed by a cancellation within the horizon.
    rng = random.Random(1)
    lc = config.learning
    weeks = lc.window_weeks + int(lc.horizon_days * DAY_SECONDS // WEEK) + 1
    big = Learner(1, logistic_fit, lc)
    names = list(FEATURES)
    logins = names.index("logins_28d")
    since = names.index("days_since_activity")
    for k in range(weeks):
        rows: list[Any] = []
        for i in range(customers):
            x = [rng.random() * 3 for _ in names]
            churner = i % 50 == k % 50
            x[logins] = rng.random() * (3 if churner else 40)
            x[since] = rng.random() * (20 if churner else 3)
            cid = f"c{i}"
            rows.append(Snapshot(cid, k * WEEK, None, pack(x)))
            if churner:
                rows.append(Cancellation(cid, k * WEEK + 10 * DAY_SECONDS))
        rows.append(Marker(0, k * WEEK))
        big.add(rows, 0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    boundary = (weeks - 1) * WEEK
    trained = big._train(boundary)  # one version: what a week boundary costs
    retrain_s = time.perf_counter() - started
    return {
        "per_decision_us": round(per_decision_us, 1),
        "decisions_timed": n,
        "model_in_force": None if model is None else model.version,
        "retrain_customers": customers,
        "retrain_rows": None if trained is None else trained.rows,
        "retrain_churned": None if trained is None else trained.churned,
        "retrain_seconds": round(retrain_s, 2),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "rss_before_retrain_bytes": before * 1024,
    }
