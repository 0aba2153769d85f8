"""The OpenAPI 3.1 document of cped's API, served at ``GET /v1/openapi.json``.

Made from the route table (``cpe.route_table``) and the models its routes
name: the document's parts (``foundation.schema``), the request bodies and
query parameters (``cpe.bodies``) and the answers (``cpe.answers``).  The
schemas are pydantic's JSON Schema of those models, the same models that
validate each request: nothing here describes a body by hand.  Every error is
the ``Error`` schema: ``{code, message, details}`` with the codes of
``foundation.errors.Code``.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from cpe import answers, bodies
from cpe.dispatch import body_required
from cpe.route_table import ROUTES
from cpe.routes import EVENT_STREAM, EVERY_ROUTE_ERRORS, JSON, PREFIX, Route
from foundation import __version__
from foundation.schema_values import NAME_SCHEMA

REF = "#/components/schemas/{model}"
EVENT_ID_SCHEMA = {"type": "integer", "minimum": 0, "maximum": bodies.MAX_EVENT_ID}
ERROR_TEXTS = {
    400: "invalid: malformed JSON, wrong content type, unknown fields or invalid values"
    " (details lists every problem with its path)",
    401: "unauthorized: on the TCP listener, a missing or wrong bearer token",
    403: "forbidden: the peer's uid may not use the API (UNIX socket)",
    404: "not_found: no such object (or no such route)",
    409: "conflict: duplicate name, object in use, or the wrong state",
    500: "internal or store_error",
    503: "unavailable: this API runs no DPE supervisor",
}


def model_named(name: str) -> type[BaseModel]:
    return {**bodies.MODELS, **answers.MODELS}[name]


@cache
def openapi_document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(PREFIX + route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "pacemaker-cloud CPE API",
            "version": __version__,
            "description": "cped's API, HTTP/1.1 + JSON on a UNIX socket (mode 0660; the"
            " peer's uid must be root, cped's own, one of allowed_users or a member of"
            " socket_group), and optionally on a TCP listener that requires TLS and a bearer"
            " token. Every error is an Error object; a rejected request changes nothing.",
        },
        # No credentials on the UNIX socket (the peer's uid decides); a bearer token on TCP.
        "security": [{}, {"bearerToken": []}],
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "responses": _error_responses(),
            "securitySchemes": {
                "bearerToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the token of cped's token_file; required on the TCP"
                    " listener only",
                }
            },
        },
    }


def _schemas() -> dict[str, Any]:
    """The JSON Schema of every model a route's body or answer is, and of the errors."""
    names = {"Error", "Problem"}
    for route in ROUTES:
        names |= {n.strip("[]") for n in (route.request, route.response) if n is not None}
    models = [(model_named(name), "validation") for name in sorted(names)]
    _, schemas = models_json_schema(models, ref_template=REF)  # type: ignore[arg-type]
    return {name: _untitled(schema) for name, schema in schemas["$defs"].items()}


def _operation(route: Route) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "parameters": [*_path_parameters(route), *_query_parameters(route)],
        "responses": _responses(route),
    }
    if route.request:
        required = route.method != "POST" or body_required(route.request)
        schema = {"schema": _ref(route.request)}
        spec["requestBody"] = {"required": required, "content": {JSON: schema}}
    return spec


def _path_parameters(route: Route) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "description": f"the {name}'s name",
            "schema": NAME_SCHEMA,
        }
        for name in route.path_params
    ]


def _query_parameters(route: Route) -> list[dict[str, Any]]:
    """The query model's fields as parameters (and a stream's Last-Event-ID header)."""
    if route.query is None:
        return []
    schema = model_named(route.query).model_json_schema()
    required = set(schema.get("required", []))
    parameters = []
    for name, field in schema["properties"].items():
        field = _untitled(field)
        description = field.pop("description", "")
        parameters.append(
            {
                "name": name,
                "in": "query",
                "required": name in required,
                "description": description,
                "schema": _not_null(field),
            }
        )
    if route.media == EVENT_STREAM:
        parameters.append(
            {
                "name": "Last-Event-ID",
                "in": "header",
                "required": False,
                "description": "resume after this event id",
                "schema": EVENT_ID_SCHEMA,
            }
        )
    return parameters


def _responses(route: Route) -> dict[str, Any]:
    success: dict[str, Any] = {"description": "success"}
    if route.response is not None:
        success["content"] = {route.media: {"schema": _ref(route.response)}}
    responses: dict[str, Any] = {str(status): success for status in (route.status, *route.also)}
    for status in sorted({*route.errors, *EVERY_ROUTE_ERRORS}):
        responses[str(status)] = {"$ref": f"#/components/responses/E{status}"}
    return responses


def _error_responses() -> dict[str, Any]:
    return {
        f"E{status}": {"description": text, "content": {JSON: {"schema": _ref("Error")}}}
        for status, text in ERROR_TEXTS.items()
    }


def _ref(name: str) -> dict[str, Any]:
    if name.startswith("["):
        return {"type": "array", "items": _ref(name[1:-1])}
    return {"$ref": REF.format(model=name)}


def _untitled(schema: Any) -> Any:
    """A schema without pydantic's titles (each repeats the name it is found under)."""
    if isinstance(schema, list):
        return [_untitled(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    return {
        key: (
            {name: _untitled(s) for name, s in value.items()}
            if key == "properties"
            else _untitled(value)
        )
        for key, value in schema.items()
        if not (key == "title" and isinstance(value, str))
    }


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema: a parameter is absent, never null."""
    if schema.get("default", ...) is None:
        schema = {k: v for k, v in schema.items() if k != "default"}
    choices = schema.get("anyOf")
    if not choices:
        return schema
    kept = [c for c in choices if c != {"type": "null"}]
    rest = {k: v for k, v in schema.items() if k != "anyOf"}
    return {**rest, **kept[0]} if len(kept) == 1 else {**rest, "anyOf": kept}
