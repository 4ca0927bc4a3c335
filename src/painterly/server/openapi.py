"""The studio's API described as OpenAPI 3.1, served at ``/api/openapi.json``.

Written by hand (Starlette generates schemas only from YAML docstrings), but the job form's
settings are made from their declarations (:mod:`.form`), with the limits and defaults of the
running server filled in, so the description cannot drift from what the server enforces.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ..options import json_schema
from .form import STUDIO_FIELDS, Limits
from .jobs import METHODS


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _png(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}}


def job_form(*, limits: Limits, examples: list[str]) -> dict[str, Any]:
    """The schema of ``POST /api/jobs``'s form: the images, and every studio setting."""
    image_or_example = {
        "oneOf": [
            {"type": "string", "format": "binary", "description": "an image file (any format Pillow reads)"},
            {"type": "string", "enum": examples, "description": "the name of a bundled example"},
        ]
    }
    defaults = limits.defaults()
    properties: dict[str, Any] = {
        "content": {**image_or_example, "description": "the image to repaint"},
        "style": {"type": "array", "items": image_or_example, "minItems": 1, "maxItems": limits.max_styles,
                  "description": "one or more style images (repeat the field)"},
    }
    for name, (setting, methods) in STUDIO_FIELDS.items():
        only = f"{methods[0]} only: " if len(methods) == 1 and len(METHODS) > 1 else ""
        properties[name] = json_schema(setting, maximum=limits.maximum(setting), default=defaults.get(name),
                                       description=only + setting.help_with(defaults.get(name, "the preset's")))
    return {"type": "object", "required": ["content", "style"], "properties": properties, "additionalProperties": False}


def openapi_document(*, limits: Limits, examples: list[str]) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "painterly web studio",
            "version": "1",
            "description": "Style transfer jobs on this machine. Jobs run one at a time per device; "
            f"limits: {asdict(limits)}.",
        },
        "paths": _paths(limits=limits, examples=examples),
        "components": {"schemas": {"Error": {"type": "object", "properties": {"error": {"type": "string"}},
                                             "required": ["error"]},
                                   "Job": JOB_SCHEMA}},
    }


def _paths(*, limits: Limits, examples: list[str]) -> dict[str, Any]:
    job_id = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
    unknown = _error("no such job (never created, forgotten, or evicted)")
    job = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}}
    return {
        "/api/info": {"get": {"summary": "Version, device, methods available, limits, defaults, examples",
                              "responses": {"200": {"description": "the studio's settings", "content": {"application/json": {}}}}}},
        "/api/examples": {"get": {"summary": "The bundled example images",
                                  "responses": {"200": {"description": "[{name, url}]", "content": {"application/json": {}}}}}},
        "/api/examples/{name}": {
            "get": {
                "summary": "One bundled example image",
                "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string", "enum": examples}}],
                "responses": {"200": {"description": "the JPEG", "content": {"image/jpeg": {}}}, "404": _error("no such example")},
            }
        },
        "/api/jobs": {
            "post": {
                "summary": "Start a style transfer",
                "requestBody": {"required": True, "content": {"multipart/form-data": {
                    "schema": job_form(limits=limits, examples=examples)}}},
                "responses": {
                    "202": {"description": "queued; poll its status", **job},
                    "400": _error("a file that is not an image, one whose header declares more than "
                                  f"{limits.max_decode_pixels} pixels, one too small or thin for the method, "
                                  "an unknown example, an unknown field, or a setting out of range"),
                    "403": _error("sent by another site's page (an Origin not the studio's, or Sec-Fetch-Site cross-site)"),
                    "413": _error(f"the request is over {limits.max_upload_bytes} bytes"),
                    "429": _error("the queue is full: retry after the Retry-After header's seconds"),
                },
            }
        },
        "/api/jobs/{id}": {
            "get": {"summary": "A job's status, progress and losses", "parameters": job_id,
                    "responses": {"200": {"description": "the job", **job}, "404": unknown}},
            "delete": {"summary": "Cancel a queued or running job; forget a finished one", "parameters": job_id,
                       "responses": {"200": {"description": "cancelled or forgotten"},
                                     "202": {"description": "running: it stops after the current iteration"},
                                     "404": unknown}},
        },
        "/api/jobs/{id}/preview": {"get": {"summary": "The image so far (optimize)", "parameters": job_id,
                                           "responses": {"200": _png("the latest iterate"), "404": unknown}}},
        "/api/jobs/{id}/result": {"get": {"summary": "The finished image, its settings in PNG text chunks", "parameters": job_id,
                                          "responses": {"200": _png("the result"), "404": unknown,
                                                        "409": _error("not finished, failed or cancelled")}}},
    }


JOB_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "method": {"type": "string"},
        "status": {"type": "string", "enum": ["queued", "running", "done", "failed", "cancelled"]},
        "position": {"type": ["integer", "null"], "description": "place in the queue while queued"},
        "iteration": {"type": "integer"},
        "iterations": {"type": "integer"},
        "losses": {"type": "object", "additionalProperties": {"type": "number"},
                   "description": "content, style, tv and total at the latest iteration"},
        "history": {"type": "array", "items": {"type": "number"}, "description": "total loss per iteration"},
        "note": {"type": ["string", "null"], "description": "what the worker is doing, or which weights it fell back to"},
        "error": {"type": ["string", "null"]},
        "weights": {"type": ["string", "null"]},
        "content": {"type": "string"},
        "styles": {"type": "array", "items": {"type": "string"}},
        "settings": {"type": "object"},
        "seconds": {"type": "number"},
        "preview_iteration": {"type": "integer"},
        "preview_url": {"type": ["string", "null"]},
        "result_url": {"type": ["string", "null"]},
    },
}
