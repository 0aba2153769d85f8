"""What a reload would change: the stored document against the one the DPE runs
(cped's ``deployable_diff``), and what one changed (the DPE's ``reloaded`` event).

Both are canonical documents (``Deployable.to_dict``).  The difference is
told by part, as ``pcloudsh deployable_diff`` shows it: assemblies and
resources added, removed or changed (with the fields that changed), order
constraints and colocations added or removed, services added, removed or
changed, and the deployable's own settings (infrastructure settings,
heartbeat, escalation, monitoring) with both values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

Doc = Mapping[str, Any]
SECTIONS = ("assemblies", "resources", "constraints", "services", "colocations", "settings")
_LEVEL = ("infrastructure", "settings", "heartbeat", "escalation", "monitoring")


def document_diff(running: Doc, stored: Doc) -> dict[str, Any]:
    """Each section's ``added``, ``removed`` and ``changed`` (settings: ``changed``)."""
    return {
        "assemblies": _keyed(_by_name(running["assemblies"]), _by_name(stored["assemblies"]), "resources"),
        "resources": _keyed(_resources(running), _resources(stored)),
        "constraints": _listed(running.get("constraints", []), stored.get("constraints", []), _order),
        "services": _keyed(_by_name(running.get("services", [])), _by_name(stored.get("services", []))),
        "colocations": _listed(
            running.get("colocations", []), stored.get("colocations", []), _colocation
        ),
        "settings": {"changed": _settings(running, stored)},
    }  # fmt: skip


def is_empty(diff: Mapping[str, Any]) -> bool:
    return not any(values for section in diff.values() for values in section.values())


def summary(diff: Mapping[str, Any]) -> str:
    """``1 resource changed (web/www), 1 constraint added``: a line for events and status."""
    parts = []
    for section in SECTIONS:
        for verb, items in diff.get(section, {}).items():
            if items:
                parts.append(f"{_count(len(items), section)} {verb} ({_names(items)})")
    return ", ".join(parts)


def _by_name(items: Iterable[Doc]) -> dict[str, Doc]:
    return {item["name"]: item for item in items}


def _resources(document: Doc) -> dict[str, Doc]:
    return {
        f"{assembly['name']}/{resource['name']}": resource
        for assembly in document["assemblies"]
        for resource in assembly.get("resources", [])
    }


def _keyed(old: Mapping[str, Doc], new: Mapping[str, Doc], *ignored: str) -> dict[str, Any]:
    changed = []
    for name in (n for n in new if n in old):
        fields = _changed_fields(old[name], new[name], ignored)
        if fields:
            changed.append({"name": name, "fields": fields})
    return {
        "added": [n for n in new if n not in old],
        "removed": [n for n in old if n not in new],
        "changed": changed,
    }


def _changed_fields(old: Doc, new: Doc, ignored: Iterable[str] = ()) -> list[str]:
    """Dotted paths of what differs (one level into mappings: ``parameters.state``)."""
    fields = []
    for key in sorted({*old, *new} - set(ignored)):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if isinstance(before, Mapping) and isinstance(after, Mapping):
            inner = sorted(k for k in {*before, *after} if before.get(k) != after.get(k))
            fields += [f"{key}.{k}" for k in inner]
        else:
            fields.append(key)
    return fields


def _listed(old: list[Doc], new: list[Doc], text: Any) -> dict[str, list[str]]:
    before, after = [text(c) for c in old], [text(c) for c in new]
    return {
        "added": [c for c in after if c not in before],
        "removed": [c for c in before if c not in after],
    }


def _order(constraint: Doc) -> str:
    return f"{constraint['first']} then {constraint['then']}"


def _colocation(colocation: Doc) -> str:
    return f"{colocation['service']} with {colocation['with']} ({colocation['score']})"


def _settings(running: Doc, stored: Doc) -> list[dict[str, Any]]:
    old = {key: running.get(key) for key in _LEVEL}
    new = {key: stored.get(key) for key in _LEVEL}
    return [
        {"name": path, "running": _at(old, path), "stored": _at(new, path)}
        for path in _changed_fields(old, new)
    ]


def _at(doc: Doc, path: str) -> Any:
    value: Any = doc
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _count(n: int, section: str) -> str:
    singular = {"assemblies": "assembly", "settings": "setting"}.get(section, section[:-1])
    return f"{n} {singular if n == 1 else section}"


def _names(items: list[Any]) -> str:
    names = [item["name"] if isinstance(item, Mapping) else str(item) for item in items]
    shown = ", ".join(names[:3])
    return shown + (f", {len(names) - 3} more" if len(names) > 3 else "")
