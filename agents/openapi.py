"""The OpenAPI 3.1 document of the worker's HTTP API, built from the same pydantic contracts."""

from __future__ import annotations

from typing import Any

from cxstream.schemas.events import EVENT_ADAPTER
from cxstream.schemas.outputs import HealthOut
from cxstream.settings import Settings

__all__ = ["openapi_document"]

_REF = "#/components/schemas/{model}"


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def openapi_document(settings: Settings) -> dict[str, Any]:
    """The document served at ``/openapi.json``."""
    event_schema = EVENT_ADAPTER.json_schema(mode="validation", ref_template=_REF)
    health_schema = HealthOut.model_json_schema(mode="serialization", ref_template=_REF)
    components: dict[str, Any] = {}
    for schema in (event_schema, health_schema):
        components.update(schema.pop("$defs", {}))
    components["Event"] = event_schema
    components["Health"] = health_schema
    components["Error"] = {
        "type": "object",
        "properties": {
            "error": {"type": "string"},
            "retryable": {"type": "boolean"},
            "errors": {"type": "array", "items": {
                "type": "object",
                "properties": {"index": {"type": "integer"}, "code": {"type": "string"},
                               "reason": {"type": "string"}},
                "required": ["index", "code", "reason"]}},
        },
        "required": ["error"],
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "cxstream worker API", "version": "1",
                 "description": "Customer health lookups and event ingest for CS tooling."},
        "servers": [{"url": f"http://{settings.web_host}:{settings.web_port}"}],
        "paths": {
            "/customers/{customer_id}": {"get": {
                "summary": "A customer's health, score inputs and open alerts",
                "parameters": [{"name": "customer_id", "in": "path", "required": True,
                                "schema": {"type": "string", "maxLength": 128}}],
                "responses": {
                    "200": {"description": "The customer's latest health",
                            "content": {"application/json": {
                                "schema": {"$ref": "#/components/schemas/Health"}}}},
                    "404": _error("No such customer"),
                    "503": _error("Partition moving; retry (see Retry-After)"),
                }}},
            "/at-risk": {"get": {
                "summary": ("Customers with an open churn_risk or at_risk episode, "
                            "lowest health first"),
                "parameters": [
                    {"name": "segment", "in": "query", "schema": {"type": "string"}},
                    {"name": "limit", "in": "query",
                     "schema": {"type": "integer", "minimum": 1, "maximum": 1000,
                                "default": 50}}],
                "responses": {
                    "200": {"description": "At-risk customers",
                            "content": {"application/json": {"schema": {
                                "type": "object",
                                "properties": {
                                    "customers": {"type": "array", "items": {
                                        "$ref": "#/components/schemas/Health"}},
                                    "total": {"type": "integer"}},
                                "required": ["customers", "total"]}}}},
                    "400": _error("Bad parameter"),
                    "503": _error("Another worker did not answer; retry"),
                }}},
            "/events": {"post": {
                "summary": "Publish one event or a batch (all or nothing)",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "oneOf": [{"$ref": "#/components/schemas/Event"},
                              {"type": "array", "minItems": 1, "maxItems": 1000,
                               "items": {"$ref": "#/components/schemas/Event"}}]}}}},
                "responses": {
                    "202": {"description": "Published",
                            "content": {"application/json": {"schema": {
                                "type": "object",
                                "properties": {"accepted": {"type": "integer"}},
                                "required": ["accepted"]}}}},
                    "400": _error("Invalid events, each named with its index; none published"),
                    "413": _error("Body over 1 MiB"),
                    "422": _error("Valid events the worker would refuse, each named with its "
                                  "index and code (future: dated more than max_future_seconds "
                                  "ahead; late: before its partition's watermark); none "
                                  "published"),
                }}},
            "/metrics": {"get": {"summary": "Prometheus metrics",
                                 "responses": {"200": {"description": "Text exposition"}}}},
            "/openapi.json": {"get": {"summary": "This document",
                                      "responses": {"200": {"description": "OpenAPI 3.1"}}}},
        },
        "components": {"schemas": components},
    }
