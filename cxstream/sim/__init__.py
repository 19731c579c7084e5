"""Behaviour simulator, the small event generator, and the evaluation of alerts against truth.

May import ``cxstream.engine`` (event and alert types) and ``cxstream.errors``;
nothing here talks to Kafka.
"""
