"""The engine imports the standard library only: no Faust, Kafka client, Prometheus or pydantic."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# The engine: its entry points and every module they are built from.
ENGINE_MODULES = [
    "cxstream.engine",
    "cxstream.partition",
    "cxstream.replay",
    "cxstream.metrics",
    "cxstream.measures",
    "cxstream.signals",
    "cxstream.episodes",
    "cxstream.scoring",
    "cxstream.state",
    "cxstream.config",
    "cxstream.alerts",
    "cxstream.events",
]
ADAPTER_PACKAGES = ["faust", "aiokafka", "prometheus_client", "pydantic"]


def modules_loaded_by(imports: list[str]) -> set[str]:
    """Top-level names in ``sys.modules`` after importing ``imports`` in a fresh interpreter."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {imports!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return set(json.loads(done.stdout))


def test_importing_the_engine_loads_no_adapter_library() -> None:
    loaded = modules_loaded_by(ENGINE_MODULES)

    assert "cxstream" in loaded
    assert loaded.isdisjoint(ADAPTER_PACKAGES), sorted(loaded & set(ADAPTER_PACKAGES))


@pytest.mark.parametrize("module", ENGINE_MODULES)
def test_each_engine_module_alone_loads_no_adapter_library(module: str) -> None:
    loaded = modules_loaded_by([module])

    assert loaded.isdisjoint(ADAPTER_PACKAGES), sorted(loaded & set(ADAPTER_PACKAGES))


def test_the_check_would_notice_an_adapter_import() -> None:
    # Guards the guard: the same subprocess does see pydantic when it is imported.
    assert "pydantic" in modules_loaded_by(["pydantic"])
