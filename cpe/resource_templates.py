"""Resource templates: ready-made resource documents to add to an assembly.

Built-in templates ship as package data (``cpe/templates/<name>.json``, the
template's name is the file stem): a resource document without ``name``, plus a
``description`` and optionally ``parameters_help`` (what each agent parameter
means).  Users add their own through the API (``cpe.catalog.templates``); those
live in the store.

The API shows a template as ``{name, description, builtin, resource,
parameters_help}`` where ``resource`` is the normalised resource document
without its name: add a ``name`` and POST it to an assembly.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from foundation.errors import InvalidInput
from foundation.model import parse_resource

_META_KEYS = ("description", "parameters_help", "parameters_kind")
# What a template may say a parameter's value must be (``parameters_kind``); the rule
# holds for every resource of the template's agent, however it was written.
ABSOLUTE_PATH = "absolute path"
PARAMETER_KINDS = (ABSOLUTE_PATH,)


def template_view(
    name: str, description: str, resource: dict[str, Any], help_: dict[str, str], builtin: bool
) -> dict[str, Any]:
    return {
        "name": name,
        "description": description,
        "builtin": builtin,
        "resource": resource,
        "parameters_help": help_,
    }


@cache
def builtin_templates() -> dict[str, dict[str, Any]]:
    """Every shipped template by name (validated; a broken file is a packaging bug)."""
    folder = resources.files("cpe") / "templates"
    found: dict[str, dict[str, Any]] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            name = entry.name.removesuffix(".json")
            found[name] = _builtin(name, json.loads(entry.read_text(encoding="utf-8")))
    return found


def _builtin(name: str, data: dict[str, Any]) -> dict[str, Any]:
    fields = {k: v for k, v in data.items() if k not in _META_KEYS}
    resource = normalised_resource(fields, name)
    return template_view(
        name, str(data.get("description", "")), resource, data.get("parameters_help", {}), True
    )


@cache
def parameter_kinds() -> dict[str, dict[str, str]]:
    """``{agent: {parameter: kind}}`` from the shipped templates' ``parameters_kind``."""
    folder = resources.files("cpe") / "templates"
    kinds: dict[str, dict[str, str]] = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".json"):
            data = json.loads(entry.read_text(encoding="utf-8"))
            for param, kind in data.get("parameters_kind", {}).items():
                if kind not in PARAMETER_KINDS:
                    raise ValueError(f"{entry.name}: unknown parameter kind {kind!r}")
                kinds.setdefault(_agent(data), {})[param] = kind
    return kinds


def parameter_problems(resource: dict[str, Any], path: str) -> list[dict[str, str]]:
    """Each parameter of ``resource`` (a document) that breaks its agent's rule."""
    rules = parameter_kinds().get(_agent(resource), {})
    problems = []
    for param, value in resource.get("parameters", {}).items():
        kind = rules.get(param)
        if kind == ABSOLUTE_PATH and isinstance(value, str) and not value.startswith("/"):
            problems.append(
                {
                    "path": _at(_at(path, "parameters"), param),
                    "message": f"must be an absolute path (starting with /), not {value!r}",
                }
            )
    return problems


def _agent(doc: dict[str, Any]) -> str:
    rclass = doc.get("class", "ocf")
    provider = doc.get("provider") or "heartbeat"
    return f"ocf:{provider}:{doc.get('type')}" if rclass == "ocf" else f"{rclass}:{doc.get('type')}"


def normalised_resource(fields: dict[str, Any], template: str, path: str = "") -> dict[str, Any]:
    """Validate a template's resource fields; the resource document without name."""
    if "name" in fields:
        raise InvalidInput(
            "invalid resource template",
            details=[{"path": _at(path, "name"), "message": "a template has no name"}],
        )
    resource = parse_resource({**fields, "name": template}, path).to_dict()
    del resource["name"]
    return resource


def _at(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
