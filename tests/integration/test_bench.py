"""``cxstream bench --smoke`` against the session broker: every section, positive numbers.

The smoke sizes make this a test of the benchmark's plumbing (workload, the
baseline loops, a real worker with RocksDB, the latency run, the RSS
subprocesses, the JSON and the generated doc section), not of any speed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cxstream.devtools.bench.common import DOC_END, DOC_START
from cxstream.devtools.broker import BrokerStatus

from .helpers import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]


def _positive(section: dict[str, Any], *keys: str) -> None:
    for key in keys:
        value = section[key]
        assert isinstance(value, int | float) and value > 0, f"{key} = {value!r}"


def test_bench_smoke(broker: BrokerStatus, tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Benchmarks\n\nHand-written intro.\n\n{DOC_START}\nold\n{DOC_END}\n\n"
                   "Hand-written tail.\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXSTREAM_")}
    proc = subprocess.run(
        [sys.executable, "-m", "cxstream.cli.bench", "--smoke", "--bootstrap", broker.bootstrap,
         "--out", str(out), "--docs", str(doc), "--workdir", str(tmp_path / "work")],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=110, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    r = json.loads(out.read_text())

    assert r["machine"]["nproc"] >= 1 and r["machine"]["python"]
    assert r["machine"]["versions"]["faust-streaming"] and r["machine"]["versions"]["aiokafka"]
    assert r["workload"]["events"] > 1000
    _positive(r["engine"], "orjson_loads_eps", "parse_validate_eps", "replay_eps",
              "ratio_replay_to_orjson", "ratio_replay_to_parse")
    assert r["engine"]["events"] == r["workload"]["events"]
    # Two weeks of the default stream: the learned churn risk is still warming up.
    assert r["engine"]["applied"] == r["workload"]["events"]
    learn = r["engine"]["learning"]
    assert learn["per_decision_us"] > 0 and learn["decisions_timed"] > 0
    assert learn["retrain_rows"] > 0 and learn["retrain_seconds"] > 0
    assert r["profile"]["top"] and r["profile"]["top"][0]["own_seconds"] > 0

    _positive(r["e2e"], "publish_eps", "raw_aiokafka_eps", "worker_eps", "ratio_worker_to_raw",
              "ratio_worker_to_engine_replay")
    assert r["e2e"]["events"] == 2000 and r["e2e"]["store"] == "rocksdb://"

    lat = r["latency"]
    assert lat["triggers_sent"] > 0 and lat["alerts_received"] > 0
    _positive(lat, "rate_achieved_eps", "p50_ms", "p99_ms")
    assert lat["p50_ms"] <= lat["p99_ms"] <= lat["max_ms"]

    mem = r["memory"]
    _positive(mem["state"], "customers", "serialized_median_bytes", "serialized_max_bytes",
              "in_memory_median_bytes")
    _positive(mem["worker"], "rss_bytes", "customers")
    assert [row["customers_requested"] for row in mem["rss"]] == [1000, 3000]
    for row in mem["rss"]:
        assert row["complete"] and row["customers"] == row["customers_requested"]
        _positive(row, "rss_bytes", "rss_peak_bytes", "rss_bytes_per_customer",
                  "state_serialized_median_bytes")

    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\nHand-written intro.")
    assert text.rstrip().endswith("Hand-written tail.")
    assert text.count(DOC_START) == 1 and text.count(DOC_END) == 1 and "\nold\n" not in text
    for needle in ("engine replay", "raw aiokafka", "event → alert latency", "state per customer",
                   "replay process RSS", "worker RSS", r["machine"]["python"]):
        assert needle in text, needle
