"""The Grafana dashboard and the Prometheus rules against a real Prometheus.

A real worker consumes generated events (and two malformed messages) from the
session broker; a real ``prometheus`` server (``make prometheus``) scrapes its
/metrics every second and evaluates deploy/prometheus/rules. Then every query
of every panel of deploy/grafana/dashboards/cxstream.json, with Grafana's
variables substituted, must run and return data, every dashboard variable
must have values, and every rule must be loaded, healthy and (for recording
rules) produce a series.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cxstream.agents.publisher import publish_file
from cxstream.devtools.broker import BrokerStatus
from cxstream.devtools.promtools import PrometheusServer, find_prometheus, scrape_config
from cxstream.schemas.events import event_to_json
from cxstream.settings import Settings
from cxstream.sim.generator import generate_days, make_customers

from .helpers import REPO_ROOT, WorkerProcess, free_port, fresh_settings, produce_raw, run

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "dashboards" / "cxstream.json"
RULES = REPO_ROOT / "deploy" / "prometheus" / "rules" / "cxstream.rules.yml"

CUSTOMERS = 50
DAYS = 30
DAY = 86_400.0
PUBLISH_RATE = 600.0  # events/s: spreads processing over several 1 s scrapes
# Grafana's interval macros, replaced by a range that covers the whole run.
MACROS = {"__rate_interval": "1m", "__interval": "1m", "__range": "1m",
          "__interval_ms": "60000", "__range_s": "60", "__range_ms": "60000"}
_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


# ----------------------------------------------------------------- dashboard model

def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def iter_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for p in panels:
        yield p
        yield from iter_panels(p.get("panels", []))


def variable_values(dashboard: dict[str, Any]) -> dict[str, str]:
    """Each template variable as the 'All' selection: its allValue regex."""
    out: dict[str, str] = {}
    for v in dashboard["templating"]["list"]:
        if v["type"] == "datasource":
            continue
        assert v.get("includeAll") and v.get("allValue"), f"variable {v['name']} needs an All"
        out[v["name"]] = v["allValue"]
    return out


def substitute(expr: str, variables: dict[str, str]) -> str:
    """Grafana's macros and variables, as a query with 'All' selected would see them."""
    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name in MACROS:
            return MACROS[name]
        if name in variables:
            return variables[name]
        raise AssertionError(f"unknown variable ${name} in {expr!r}")

    return _VAR.sub(repl, expr)


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title/refId, substituted expr) for every target of every panel."""
    variables = variable_values(dashboard)
    out = []
    for p in iter_panels(dashboard["panels"]):
        for t in p.get("targets", []):
            out.append((f"{p['title']} [{t.get('refId', '?')}]", substitute(t["expr"], variables)))
    return out


def test_dashboard_is_well_formed() -> None:
    """Cheap structure checks that need no server."""
    dash = load_dashboard()
    assert dash["uid"] == "cxstream"
    ids = [p["id"] for p in iter_panels(dash["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    ds = next(v for v in dash["templating"]["list"] if v["type"] == "datasource")
    assert ds["name"] == "datasource" and ds["query"] == "prometheus"
    assert ds["current"]["value"] == "prometheus"
    for p in iter_panels(dash["panels"]):
        if p["type"] == "row":
            continue
        assert p.get("targets"), f"panel {p['title']!r} has no query"
        for t in [p, *p["targets"]]:
            assert t["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
    queries = panel_queries(dash)
    assert len(queries) >= 15
    for _, expr in queries:
        assert "$" not in expr and "[[" not in expr, expr
    for metric in ("cxstream_events_processed_total", "cxstream_dead_letters_total",
                   "cxstream_processing_seconds_bucket", "cxstream_alerts_total",
                   "cxstream_table_customers", "cxstream_watermark_seconds",
                   "cxstream_cx_metric", "cxstream_duplicate_events_total"):
        assert any(metric in e for _, e in queries), f"no panel shows {metric}"


# ----------------------------------------------------------------- the real thing

def rule_names() -> tuple[list[str], list[str]]:
    """(recording rule names, alert names) in the rule file, without a YAML parser."""
    text = RULES.read_text()
    return (re.findall(r"^\s*- record:\s*(\S+)", text, re.M),
            re.findall(r"^\s*- alert:\s*(\S+)", text, re.M))


def wait_for(check: Callable[[], bool], timeout: float, what: str,
             detail: Callable[[], str] = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    if check():
        return
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{detail()}")


def has_data(result: list[dict[str, Any]]) -> bool:
    """At least one sample that is a number (histogram_quantile over nothing gives NaN)."""
    return any(not math.isnan(float(r["value"][1])) for r in result)


def scalar(prom: PrometheusServer, expr: str) -> float:
    result = prom.query(expr)
    return float(result[0]["value"][1]) if result else math.nan


@pytest.fixture()
def events_file(tmp_path: Path) -> tuple[Path, int]:
    """~50 customers x 30 days of generated events ending now; some go silent (alerts)."""
    customers = make_customers(CUSTOMERS, DAYS)
    assert any(c.silent_from_day is not None for c in customers), "want inactivity alerts"
    start = float(int(time.time() // DAY) * DAY) - DAYS * DAY
    events = [e for day in generate_days(customers, DAYS, start) for e in day]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(event_to_json(e) + b"\n" for e in events))
    return path, len(events)


@pytest.fixture()
def settings(broker: BrokerStatus, tmp_path: Path) -> Settings:
    return fresh_settings(broker.bootstrap, tmp_path)


@pytest.fixture()
def prometheus(settings: Settings, tmp_path: Path) -> Iterator[PrometheusServer]:
    binary = find_prometheus()  # PrometheusNotFound names `make prometheus`
    config = tmp_path / "prometheus.yml"
    config.write_text(scrape_config([f"127.0.0.1:{settings.web_port}"], job="cxstream",
                                    interval="1s", rule_files=[RULES]))
    server = PrometheusServer(config, tmp_path / "tsdb", free_port(),
                              tmp_path / "prometheus.log", binary=binary)
    server.start(timeout=30)
    try:
        yield server
    finally:
        server.stop()


def test_every_panel_query_returns_data_on_real_prometheus(
    settings: Settings, prometheus: PrometheusServer, events_file: tuple[Path, int],
    tmp_path: Path,
) -> None:
    path, n_events = events_file
    prom = prometheus
    # Events first, then the worker, as after an outage: every input topic has a
    # backlog when the worker starts, so its watermark waits for all of them.
    sent, invalid = run(publish_file(settings, path))
    assert (sent, invalid) == (n_events, 0)
    bad_topic = settings.topic("logins")
    run(produce_raw(settings.kafka_bootstrap, bad_topic, [(b"bad-1", b"{not json")]))

    worker = WorkerProcess(settings, tmp_path / "worker.log")
    try:
        worker.wait_ready()

        def diag() -> str:
            try:
                page = "\n".join(x for x in worker.scrape().splitlines()
                                 if x.startswith("cxstream_") and "_created" not in x
                                 and "_bucket" not in x)
            except OSError as exc:
                page = f"(no /metrics: {exc})"
            return (f"--- worker /metrics\n{page}\n--- worker log\n{worker.log_tail(15)}"
                    f"\n--- prometheus log\n{prom.log_tail(15)}")

        wait_for(lambda: scalar(prom, 'up{job="cxstream"}') == 1, 20, "a scrape of the worker",
                 diag)
        # Every message handled: applied, or dead-lettered (the malformed one).
        handled = "sum(cxstream_events_processed_total) + sum(cxstream_dead_letters_total)"
        wait_for(lambda: scalar(prom, handled) == n_events + 1, 45,
                 f"Prometheus to see all {n_events + 1} messages handled", diag)
        # A second malformed message once the first is scraped: the dead-letter
        # counter then moves between scrapes, so its rate is not just 0.
        run(produce_raw(settings.kafka_bootstrap, bad_topic, [(b"bad-2", b"[1, 2")]))
        wait_for(lambda: scalar(prom, handled) == n_events + 2, 20,
                 "the second dead letter in Prometheus", diag)
        # A few more scrapes and rule evaluations after the last change.
        time.sleep(3)
        check_dashboard_and_rules(prom)
    finally:
        worker.stop()


def check_dashboard_and_rules(prom: PrometheusServer) -> None:
    dash = load_dashboard()
    failures = []
    queries = panel_queries(dash)
    for title, expr in queries:
        try:
            result = prom.query(expr)
        except Exception as exc:  # noqa: BLE001 - report every failing query at once
            failures.append(f"{title}: error {exc}\n    {expr}")
            continue
        if not has_data(result):
            failures.append(f"{title}: no data ({result})\n    {expr}")
    assert not failures, (f"{len(failures)} of {len(queries)} dashboard queries failed:\n"
                          + "\n".join(failures))

    # Every dashboard variable offers values.
    for v in dash["templating"]["list"]:
        if v["type"] != "query":
            continue
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", v["query"]["query"])
        assert m, f"variable {v['name']}: unsupported query {v['query']['query']!r}"
        selector = substitute(m.group(1), variable_values(dash))
        values = prom.api(f"label/{m.group(2)}/values", **{"match[]": selector})
        assert values, f"variable {v['name']} has no values ({v['query']['query']})"

    # Every rule loaded and healthy; every recording rule produced a series.
    records, alerts = rule_names()
    assert len(records) >= 4 and len(alerts) >= 5

    def rules_healthy() -> bool:
        rules = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
        return len(rules) == len(records) + len(alerts) and all(
            r["health"] == "ok" for r in rules)

    wait_for(rules_healthy, 10, "healthy rules", lambda: json.dumps(prom.api("rules"))[:2000])
    loaded = {r["name"] for g in prom.api("rules")["groups"] for r in g["rules"]}
    assert loaded == set(records) | set(alerts)
    empty = [name for name in records if not has_data(prom.query(name))]
    assert not empty, f"recording rules without data: {empty}"
