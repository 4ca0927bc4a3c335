"""The studio's API described as OpenAPI 3.1, served at ``/api/openapi.json``.

Written by hand (Starlette generates schemas only from YAML docstrings), with the limits and
defaults of the running server filled in, so the description cannot drift from what it enforces.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import Limits


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _png(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}}


def openapi_document(*, limits: "Limits", defaults: dict[str, Any], examples: list[str]) -> dict[str, Any]:
    job_id = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
    unknown = _error("no such job (never created, forgotten, or evicted)")
    image_or_example = {
        "oneOf": [
            {"type": "string", "format": "binary", "description": "an image file (any format Pillow reads)"},
            {"type": "string", "enum": examples, "description": "the name of a bundled example"},
        ]
    }
    form = {
        "type": "object",
        "required": ["content", "style"],
        "properties": {
            "content": {**image_or_example, "description": "the image to repaint"},
            "style": {
                "type": "array",
                "items": image_or_example,
                "minItems": 1,
                "maxItems": limits.max_styles,
                "description": "one or more style images (repeat the field)",
            },
            "method": {"type": "string", "enum": ["optimize", "stylize"], "default": defaults["method"],
                       "description": "optimize (Gatys et al.) or stylize (AdaIN, only when GET /api/info says it is available)"},
            "size": {"type": "integer", "minimum": 16, "maximum": limits.max_size, "default": defaults["size"],
                     "description": "longer side of the output in pixels"},
            "iterations": {"type": "integer", "minimum": 1, "maximum": limits.max_iterations,
                           "default": defaults["iterations"], "description": "optimize only"},
            "alpha": {"type": "number", "minimum": 0, "maximum": 1, "default": defaults["alpha"],
                      "description": "stylize only: 0 keeps the content, 1 is full style"},
            "preserve_color": {"type": "string", "enum": ["none", "match", "luminance"],
                               "default": defaults["preserve_color"],
                               "description": "keep the content's colours: match (colour statistics) or luminance (transfer on luminance only)"},
            "style_weights": {"type": "string", "description": "blend weights, one per style, e.g. '3 7' (normalised)"},
            "preset": {"type": "string", "default": defaults["preset"], "description": "optimize only: see GET /api/info"},
            "init": {"type": "string", "enum": ["content", "noise"], "default": defaults["init"], "description": "optimize only"},
            "seed": {"type": "integer", "minimum": 0, "default": defaults["seed"],
                     "description": "optimize's seed; stylize's for random encoder weights"},
            "tv_weight": {"type": "number", "minimum": 0,
                          "description": "optimize only: total-variation (smoothing) weight (default: the preset's)"},
        },
        "additionalProperties": False,
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "painterly web studio",
            "version": "1",
            "description": "Style transfer jobs on this machine. Jobs run one at a time per device; "
            f"limits: {asdict(limits)}.",
        },
        "paths": {
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
                    "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": form}}},
                    "responses": {
                        "202": {"description": "queued; poll its status", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}},
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
                        "responses": {"200": {"description": "the job", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}},
                                      "404": unknown}},
                "delete": {"summary": "Cancel a queued or running job; forget a finished one", "parameters": job_id,
                           "responses": {"200": {"description": "cancelled or forgotten"},
                                         "202": {"description": "running: it stops after the current iteration"},
                                         "404": unknown}},
            },
            "/api/jobs/{id}/preview": {"get": {"summary": "The image so far (optimize)", "parameters": job_id,
                                               "responses": {"200": _png("the latest iterate"), "404": unknown}}},
            "/api/jobs/{id}/result": {"get": {"summary": "The finished image, its settings in PNG text chunks", "parameters": job_id,
                                              "responses": {"200": _png("the result"), "404": unknown, "409": _error("not finished, failed or cancelled")}}},
        },
        "components": {
            "schemas": {
                "Error": {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]},
                "Job": {
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
                },
            }
        },
    }
