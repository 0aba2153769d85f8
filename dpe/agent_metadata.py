"""A resource agent named as Pacemaker names it (``ocf:heartbeat:IPaddr2``,
``lsb:httpd``, ``systemd:nginx``): is it on this host, and what does it say of itself?

OCF agents describe themselves (``meta-data``): a description, their parameters with
their meaning and whether they are required, and the timeouts and monitor interval
they advise.  LSB init scripts and systemd units do not: their spec is all there is.
``read_agent`` looks on this host (the local infrastructure runs the host's agents,
and an image is made from the same Debian packages) and runs ``meta-data`` with a
timeout; ``parse_metadata`` is the pure part.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from foundation.errors import InvalidInput
from foundation.model import NAME_RE, OPERATIONS, parse_duration

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

# subprocess and the XML parser are imported when an agent is read: the shell's
# one-shot commands import this module and most never read one

OCF_ROOT = Path("/usr/lib/ocf")
INIT_D = Path("/etc/init.d")
SYSTEMD_UNIT_DIRS = (
    Path("/etc/systemd/system"),
    Path("/run/systemd/system"),
    Path("/lib/systemd/system"),
    Path("/usr/lib/systemd/system"),
)
METADATA_TIMEOUT = 10.0
MAX_METADATA = 1 << 20  # bytes of meta-data read: an agent's is a few kB


@dataclass(frozen=True)
class AgentSpec:
    rclass: str
    type: str
    provider: str = ""  # OCF only

    def __str__(self) -> str:
        if self.rclass == "ocf":
            return f"ocf:{self.provider}:{self.type}"
        return f"{self.rclass}:{self.type}"

    def resource_fields(self) -> dict[str, str]:
        """``class``, ``provider`` and ``type`` as a resource document has them."""
        fields = {"class": self.rclass, "type": self.type}
        return fields | ({"provider": self.provider} if self.rclass == "ocf" else {})


@dataclass(frozen=True)
class Parameter:
    name: str
    meaning: str = ""
    required: bool = False


@dataclass(frozen=True)
class AgentInfo:
    spec: AgentSpec
    description: str = ""
    parameters: tuple[Parameter, ...] = ()
    timeouts: dict[str, float] = field(default_factory=dict)
    monitor_interval: float | None = None
    described: bool = False  # the agent gave its meta-data

    def resource(self, parameters: dict[str, object]) -> dict[str, object]:
        """A resource document without name: the agent, its advised interval and
        timeouts, and ``parameters``."""
        doc: dict[str, object] = {**self.spec.resource_fields(), "parameters": parameters}
        if self.monitor_interval is not None:
            doc["monitor_interval"] = self.monitor_interval
        return doc | {"timeouts": dict(self.timeouts)}

    def parameters_help(self) -> dict[str, str]:
        """What each parameter means, as a template shows it."""
        return {
            p.name: f"{p.meaning or p.name}{' (required)' if p.required else ''}"
            for p in self.parameters
        }


def is_agent_spec(text: str) -> bool:
    """An agent rather than a template name (a name never has a colon)."""
    return ":" in text


def parse_spec(text: str) -> AgentSpec:
    """``ocf:PROVIDER:TYPE``, ``lsb:NAME`` or ``systemd:UNIT``; InvalidInput otherwise."""
    words = text.split(":")
    if words[0] == "ocf" and len(words) == 3 and all(map(NAME_RE.match, words[1:])):
        return AgentSpec("ocf", words[2], words[1])
    if words[0] in ("lsb", "systemd") and len(words) == 2 and NAME_RE.match(words[1]):
        return AgentSpec(words[0], words[1].removesuffix(".service"))
    raise InvalidInput(
        f"invalid agent {text!r}: expected ocf:PROVIDER:TYPE, lsb:NAME or systemd:UNIT"
    )


def agent_file(spec: AgentSpec) -> Path | None:
    """Where the agent is on this host, or None."""
    if spec.rclass == "ocf":
        path = OCF_ROOT / "resource.d" / spec.provider / spec.type
        return path if path.is_file() and os.access(path, os.X_OK) else None
    if spec.rclass == "lsb":
        path = INIT_D / spec.type
        return path if path.is_file() else None
    units = (folder / f"{spec.type}.service" for folder in SYSTEMD_UNIT_DIRS)
    return next((unit for unit in units if unit.exists()), None)


def installed_agent(spec: AgentSpec) -> Path:
    """Where the agent is on this host; InvalidInput saying where it was looked for."""
    path = agent_file(spec)
    if path is None:
        raise InvalidInput(f"no such agent on this host: {spec} ({_where(spec)})")
    return path


def read_agent(text: str) -> AgentInfo:
    """The agent ``text`` names, as this host has it; InvalidInput when it has not."""
    spec = parse_spec(text)
    path = installed_agent(spec)
    if spec.rclass != "ocf":
        return AgentInfo(spec, description=str(spec))
    return parse_metadata(spec, _metadata(path))


def _where(spec: AgentSpec) -> str:
    if spec.rclass == "ocf":
        return f"no executable {OCF_ROOT / 'resource.d' / spec.provider / spec.type}"
    if spec.rclass == "lsb":
        return f"no {INIT_D / spec.type}"
    return f"no unit {spec.type}.service in {', '.join(map(str, SYSTEMD_UNIT_DIRS))}"


def _metadata(path: Path) -> str:
    """The agent's ``meta-data``, or "" when it gives none in time."""
    import subprocess

    env = {"OCF_ROOT": str(OCF_ROOT), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    try:
        done = subprocess.run(
            [str(path), "meta-data"],
            capture_output=True,
            env=env,
            timeout=METADATA_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout[:MAX_METADATA].decode(errors="replace") if done.returncode == 0 else ""


def parse_metadata(spec: AgentSpec, text: str) -> AgentInfo:
    """What an OCF agent's meta-data says (its spec alone when it says nothing usable)."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(text)  # the host's own agent, not a file a user gave
    except ET.ParseError:
        return AgentInfo(spec, description=f"{spec} (no meta-data)")
    parameters = tuple(
        Parameter(
            str(item.get("name")),
            _text(item.find("shortdesc")),
            item.get("required") in ("1", "true", "yes"),
        )
        for item in root.iterfind("parameters/parameter")
        if item.get("name")
    )
    actions = {a.get("name"): a for a in root.iterfind("actions/action")}
    timeouts = {
        op: seconds
        for op in OPERATIONS
        if op in actions and (seconds := _seconds(actions[op].get("timeout"))) is not None
    }
    interval = _seconds(actions["monitor"].get("interval")) if "monitor" in actions else None
    description = _text(root.find("shortdesc")) or str(spec)
    return AgentInfo(spec, description, parameters, timeouts, interval or None, described=True)


def check_parameters(info: AgentInfo, names: list[str]) -> None:
    """Every name one the agent takes (when it said which it takes)."""
    if not info.described:
        return
    known = [p.name for p in info.parameters]
    unknown = [name for name in names if name not in known]
    if unknown:
        takes = ", ".join(known) or "none"
        raise InvalidInput(
            f"unknown parameter {', '.join(map(repr, unknown))} of {info.spec} (it takes: {takes})"
        )


def _text(element: Element | None) -> str:
    return " ".join((element.text or "").split()) if element is not None else ""


def _seconds(value: str | None) -> float | None:
    try:
        return parse_duration(value) if value else None
    except ValueError:
        return None
