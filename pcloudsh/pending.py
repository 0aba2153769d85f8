"""``deployable_diff``: what ``deployable_reload`` would change in a running deployable.

cped compares the stored document with the one the DPE runs; this module
turns its answer into lines for people, one per part that differs
(``--json`` prints the answer as it is).
"""

from __future__ import annotations

from typing import Any

from pcloudsh.environment import Environment
from pcloudsh.output import Result, Text
from pcloudsh.values import check_name

PARTS = ("assemblies", "resources", "constraints", "services", "colocations")
SIGNS = {"added": "+", "removed": "-", "changed": "~"}


def diff(env: Environment, name: str) -> Result:
    name = check_name(name, "deployable")
    answer = env.api().diff_deployable(name)
    return Result(answer, Text("\n".join(describe(answer))))


def describe(answer: dict[str, Any]) -> list[str]:
    name = answer.get("deployable")
    if not answer.get("running"):
        return [f"deployable {name} is not running: a start runs the stored document"]
    if not answer.get("pending"):
        return [f"deployable {name}: no changes pending reload"]
    lines = [f"deployable {name}: changes pending reload (deployable_reload {name} applies them)"]
    for part in PARTS:
        lines += _part(part, answer.get(part) or {})
    for setting in (answer.get("settings") or {}).get("changed") or []:
        lines.append(
            f"~ setting {setting['name']}: {_value(setting.get('running'))}"
            f" -> {_value(setting.get('stored'))}"
        )
    return lines


def _part(part: str, changes: dict[str, Any]) -> list[str]:
    noun = {"assemblies": "assembly"}.get(part, part[:-1])
    lines = []
    for verb in ("added", "removed", "changed"):
        for item in changes.get(verb) or []:
            if isinstance(item, dict):
                fields = ", ".join(item.get("fields") or [])
                lines.append(f"{SIGNS[verb]} {noun} {item['name']}: {fields}")
            else:
                lines.append(f"{SIGNS[verb]} {noun} {item}")
    return lines


def _value(value: Any) -> str:
    return "(unset)" if value is None else str(value)
