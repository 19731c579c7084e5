"""The engine: customer state and one event in, alerts, health and metric deltas out.

Pure Python (standard library only), no clock, no I/O, deterministic on event
time; imports nothing of cxstream outside this folder. The streaming worker
(``cxstream.agents``) and file replay (``cxstream.replay``) both drive it.
"""
