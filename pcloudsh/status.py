"""A deployable's status as a tree: deployable -> assemblies -> resources."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pcloudsh.output import Node


def status_tree(name: str, status: dict[str, Any]) -> Node:
    label = _label(f"deployable {name}", status, ("pid", "reason"))
    return Node(label, [_assembly(a) for a in _items(status.get("assemblies"))])


def _assembly(assembly: dict[str, Any]) -> Node:
    instance = assembly.get("instance")
    merged = {**instance, **assembly} if isinstance(instance, dict) else assembly
    label = _label(f"assembly {assembly.get('name')}", merged, ("address", "hostname", "reason"))
    return Node(label, [_resource(r) for r in _items(assembly.get("resources"))])


def _resource(resource: dict[str, Any]) -> Node:
    failures = resource.get("failures")
    count = len(failures) if isinstance(failures, list) else failures
    extra = {**resource, "failures": count} if count else resource
    return Node(_label(f"resource {resource.get('name')}", extra, ("failures", "reason")))


def _label(subject: str, data: dict[str, Any], keys: Iterable[str]) -> str:
    state = data.get("state", "unknown")
    details = [f"{key} {data[key]}" for key in keys if data.get(key) not in (None, "", [])]
    return f"{subject}: {state}" + (f" ({', '.join(details)})" if details else "")


def _items(value: Any) -> list[dict[str, Any]]:
    """A list of objects, or an object keyed by name, as a list of objects with names."""
    if isinstance(value, dict):
        return [{"name": key, **item} for key, item in value.items() if isinstance(item, dict)]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, dict)]
    return []
