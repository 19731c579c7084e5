"""Logistic regression with scikit-learn, deterministic, for ``engine.learning.Learner``.

Why logistic regression: each feature's weight times its standardised value is
that feature's push on the risk, which is what a reason ("logins in the last 28
days: 3, usually 19 for customers who stay") needs; it trains in well under a
second on the bounded window (lbfgs on at most ~250k weighted rows); and the
lbfgs solver with no random state gives the same weights for the same rows, so
replay and every worker learn the same version. L2 regularisation (C = 0.5) keeps
a young model's weights small on the few churners it has seen.
"""

from __future__ import annotations

import warnings

__all__ = ["logistic_fit"]

REGULARISATION_C = 0.5
MAX_ITER = 300


def logistic_fit(rows: list[list[float]], labels: list[int], weights: list[float]
                 ) -> tuple[list[float], float]:
    """Weights and intercept of a weighted L2 logistic regression."""
    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(rows, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    w = np.asarray(weights, dtype=np.float64)
    model = LogisticRegression(C=REGULARISATION_C, max_iter=MAX_ITER, solver="lbfgs")
    with warnings.catch_warnings():
        # A few hundred iterations are plenty for standardised features; the weights
        # are used as they are either way.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y, sample_weight=w)
    return [float(c) for c in model.coef_[0]], float(model.intercept_[0])
