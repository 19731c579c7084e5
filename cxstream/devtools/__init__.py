"""Development and operations aids: the local Kafka broker, the demo, the benchmark, Prometheus.

Not part of the service: the worker never imports them. They may import the
engine, the agents, ``cxstream.sim``, settings and replay.
"""
