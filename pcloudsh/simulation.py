"""``deployable_simulate``: what the DPE would do if parts failed now.

cped plans from what the deployable's DPE recorded (or, not running, from
everything up as the document asks) and changes nothing; this module only
turns its answer into lines for people (``--json`` prints the answer as it is)
and writes the Graphviz file of ``--dot``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from foundation.errors import InvalidInput
from pcloudsh.environment import Environment
from pcloudsh.output import Result, Text
from pcloudsh.values import check_name

SOURCES = {
    "runtime": "from what its DPE recorded",
    "steady_state": "not running: from the steady state (everything up as the document asks)",
}


def simulate(env: Environment, args: argparse.Namespace) -> Result:
    name = check_name(args.deployable, "deployable")
    for part in args.fail:
        if "," in part:  # cped takes the parts comma-separated: no name has a comma
            raise InvalidInput(f"invalid --fail {part!r}: one ASSEMBLY or ASSEMBLY/RESOURCE each")
    dot = Path(args.dot) if args.dot else None
    if dot is not None and not dot.parent.is_dir():
        raise InvalidInput(f"cannot write {dot}: no such directory {dot.parent}")
    fail = list(args.fail) or None
    answer = env.api().simulate_deployable(name, fail=fail, policy_engine=args.policy_engine)
    if dot is not None:
        _write(dot, str(answer.get("dot", "")))
    return Result(answer, Text("\n".join(describe(answer, dot))))


def describe(answer: dict[str, Any], dot: Path | None = None) -> list[str]:
    """The heading, the escalations that come first, then each action in order."""
    failures = ", ".join(answer.get("failures") or []) or "nothing"
    source = SOURCES.get(str(answer.get("source")), str(answer.get("source")))
    engine = answer.get("policy_engine", "builtin")
    lines = [f"deployable {answer.get('deployable')}: if {failures} failed now ({engine} planner)"]
    lines.append(f"planned {source}")
    lines += [f"note: {note}" for note in answer.get("notes") or []]
    lines += _placements(answer)
    lines += _actions(answer)
    lines += [f"cannot start {b['resource']}: {b['reason']}" for b in answer.get("blocked") or []]
    if dot is not None:
        lines.append(f"graph written to {dot}")
    return lines


def _placements(answer: dict[str, Any]) -> list[str]:
    """Where each service goes and why: each candidate's score, term by term."""
    if answer.get("given_up"):
        return []
    return [line for p in answer.get("placements") or [] for line in p.get("explanation", [])]


def _actions(answer: dict[str, Any]) -> list[str]:
    if answer.get("given_up"):
        return ["no actions: the deployable would be failed until started again"]
    actions = answer.get("actions") or []
    if not actions:
        return ["no actions: nothing to do"]
    width = len(str(len(actions)))
    lines = []
    for action in actions:
        after = action.get("after") or []
        waits = f"  (after {', '.join(map(str, after))})" if after else ""
        lines.append(f"{action['step']:>{width}}. {action['text']}{waits}")
    return lines


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        raise InvalidInput(f"cannot write {path}: {error.strerror or error}") from None
