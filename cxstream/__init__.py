"""cxstream: real-time churn signals from customer activity.

``engine/`` decides (pure), ``schemas/`` and ``agents/`` are the contracts and the
Faust layer, ``settings`` and ``errors`` are shared by all, ``replay`` runs a file
through the engine, ``sim/`` simulates and evaluates, ``devtools/`` and ``cli/``
sit on top. See the README's folder map.
"""
