"""The JSON Schema files: which schemas are published, and their exact bytes.

This module decides what ``schemas/json/`` holds: ``event.schema.json`` (the input
union, validation mode: what cxstream accepts) and ``alert``, ``metric-update`` and
``dead-letter`` (serialization mode: what cxstream emits), each rendered with sorted
keys, two-space indent and a trailing newline so the bytes are stable. The files are
generated, never edited: ``check_schemas`` reports any file that differs from the
models, and a unit test fails on it. Run ``python -m cxstream.schemas.export [--check]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from cxstream.schemas.events import EVENT_ADAPTER
from cxstream.schemas.outputs import (
    AlertOut,
    DeadLetterOut,
    HealthOut,
    MetricUpdateOut,
    ModelVersionOut,
)

__all__ = ["DEFAULT_DIR", "SCHEMA_FILES", "check_schemas", "export_schemas", "render_schemas"]

DEFAULT_DIR: Final = Path(__file__).resolve().parent / "json"
_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"


def _titled(schema: dict[str, Any], title: str, description: str) -> dict[str, Any]:
    """``schema`` with the dialect, a title and a description at the top."""
    return {**schema, "$schema": _DIALECT, "title": title, "description": description}


SCHEMA_FILES: Final[dict[str, Callable[[], dict[str, Any]]]] = {
    "event.schema.json": lambda: _titled(
        EVENT_ADAPTER.json_schema(mode="validation"),
        "cxstream event",
        "One customer event: a Kafka message value keyed by customer_id, or one JSON Lines "
        "line. At most 65536 bytes; unknown extra fields are ignored; occurred_at must carry "
        "an offset and fall within years 2000-2100; survey scores must be within the scale.",
    ),
    "alert.schema.json": lambda: _titled(
        AlertOut.model_json_schema(mode="serialization"),
        "cxstream alert",
        "One transition of an at-risk episode; consumers dedupe on (alert_id, seq).",
    ),
    "metric-update.schema.json": lambda: _titled(
        MetricUpdateOut.model_json_schema(mode="serialization"),
        "cxstream metric update",
        "A rolling CX metric over one event-time window; segment null means all customers.",
    ),
    "health.schema.json": lambda: _titled(
        HealthOut.model_json_schema(mode="serialization"),
        "cxstream customer health",
        "A customer's latest health score, its inputs and open alerts (compacted topic, keyed "
        "by customer_id; also GET /customers/{customer_id}).",
    ),
    "model-version.schema.json": lambda: _titled(
        ModelVersionOut.model_json_schema(mode="serialization"),
        "cxstream churn model version",
        "A settled version of the learned churn risk, with its training cut-off (compacted "
        "topic {prefix}.models, keyed by version).",
    ),
    "dead-letter.schema.json": lambda: _titled(
        DeadLetterOut.model_json_schema(mode="serialization"),
        "cxstream dead letter",
        "An input message that failed validation, with its origin and the reason.",
    ),
}


def render_schemas() -> dict[str, bytes]:
    """Each schema file's name and exact bytes, as the models generate them today."""
    return {
        name: (json.dumps(build(), indent=2, sort_keys=True) + "\n").encode("utf-8")
        for name, build in SCHEMA_FILES.items()
    }


def export_schemas(out_dir: Path = DEFAULT_DIR) -> list[Path]:
    """Write every schema file into ``out_dir``; return their paths (unchanged files too)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in render_schemas().items():
        path = out_dir / name
        if not path.is_file() or path.read_bytes() != data:  # keep mtimes of unchanged files
            path.write_bytes(data)
        paths.append(path)
    return paths


def check_schemas(out_dir: Path = DEFAULT_DIR) -> list[str]:
    """Names of schema files in ``out_dir`` that are missing or differ from the models."""
    return [
        name
        for name, data in render_schemas().items()
        if not (out_dir / name).is_file() or (out_dir / name).read_bytes() != data
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cxstream.schemas.export [--check] [--out DIR]``; exit 1 on drift."""
    parser = argparse.ArgumentParser(prog="python -m cxstream.schemas.export")
    parser.add_argument("--check", action="store_true", help="report drift, write nothing")
    parser.add_argument("--out", type=Path, default=DEFAULT_DIR, help="schema directory")
    args = parser.parse_args(argv)
    if args.check:
        stale = check_schemas(args.out)
        for name in stale:
            print(
                f"{args.out / name} is out of date; run: python -m cxstream.schemas.export",
                file=sys.stderr,
            )
        return 1 if stale else 0
    for path in export_schemas(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
