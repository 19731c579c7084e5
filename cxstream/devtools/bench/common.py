"""What the benchmark's sections share: targets, the workload's seed and start, progress."""

from __future__ import annotations

import sys

__all__ = ["DOC_END", "DOC_START", "LATENCY_BACKGROUND_CUSTOMERS", "SIM_SEED", "SIM_START",
           "TARGET_ENGINE_EPS", "TARGET_P99_MS", "TARGET_STATE_BYTES", "TARGET_WORKER_RATIO",
           "say"]

DOC_START = "<!-- bench:start -->"
DOC_END = "<!-- bench:end -->"

# The targets of issue 6.
TARGET_ENGINE_EPS = 200_000.0
TARGET_WORKER_RATIO = 0.5
TARGET_P99_MS = 250.0
TARGET_STATE_BYTES = 2048

SIM_START = "2026-01-01T00:00:00+00:00"
SIM_SEED = 1
# The latency section's steady background: logins from this many customers, so every
# partition keeps moving its watermark; every k-th event is a trigger instead.
LATENCY_BACKGROUND_CUSTOMERS = 2000


def say(text: str) -> None:
    """A progress line on stderr (stdout stays for results)."""
    print(f"bench: {text}", file=sys.stderr, flush=True)
