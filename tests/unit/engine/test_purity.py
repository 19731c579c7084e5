"""The engine folder imports the standard library only: no Faust, Kafka, Prometheus or pydantic."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
# Every module of the engine's folder, found on disk so a new module is covered too.
ENGINE_DIR = REPO_ROOT / "cxstream" / "engine"
ENGINE_MODULES = sorted(
    "cxstream.engine" + ("" if p.stem == "__init__" else f".{p.stem}")
    for p in ENGINE_DIR.glob("*.py")
)
ADAPTER_PACKAGES = ["faust", "aiokafka", "prometheus_client", "pydantic"]


def modules_after(imports: list[str]) -> set[str]:
    """Every name in ``sys.modules`` after importing ``imports`` in a fresh interpreter."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {imports!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
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


def modules_loaded_by(imports: list[str]) -> set[str]:
    """Top-level package names loaded by importing ``imports`` in a fresh interpreter."""
    return {m.split(".")[0] for m in modules_after(imports)}


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


def test_the_engine_imports_nothing_of_cxstream_outside_its_folder() -> None:
    ours = {m for m in modules_after(ENGINE_MODULES) if m.startswith("cxstream")}

    assert "cxstream.engine.engine" in ours
    assert {m for m in ours if m != "cxstream" and not m.startswith("cxstream.engine")} == set()
