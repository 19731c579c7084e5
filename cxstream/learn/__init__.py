"""Fitting the churn model with scikit-learn: the one part of learning that is not pure.

The engine (``cxstream.engine.learning``) chooses the rows, standardises them and
turns the weights into a ``ChurnModel``; this folder only fits. May import the
engine; the engine never imports it (it receives ``logistic_fit`` as a callable).
"""
