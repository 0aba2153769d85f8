"""Resource agents: the remote command line of an operation, and what its exit means.

Pure functions, no I/O but ``execute`` (which only goes through a
``dpe.interfaces.Connection``).  Every value that reaches the remote shell is
quoted with ``shlex.quote``, so a parameter such as ``$(touch x)`` reaches the
agent as inert data.

- ``ocf``: ``OCF_ROOT=/usr/lib/ocf ... OCF_RESKEY_<p>=<v> timeout ... /usr/lib/ocf/resource.d/<provider>/<type> <op>``;
  the exit status is the OCF code (above 9 is an unknown error).
- ``lsb``: ``/etc/init.d/<type> start|stop|status``; status 1-3 means not running.
- ``systemd``: ``systemctl start|stop|is-active <type>.service``; is-active other than 0
  means not running.

Each command runs under coreutils ``timeout``, which kills the operation's
process group on the guest ``KILL_GRACE`` seconds after the op timeout (sshd
does not deliver signal requests to root sessions, so closing the channel alone
would leave a hung agent running).

A shell exit of 127 (command not found) or 126 (not executable) means the agent
itself is missing or unusable; as in Pacemaker it maps to ``NOT_INSTALLED`` or
``INSUFFICIENT_PRIV`` (hard errors) rather than an unknown error retried forever.

The instance's own environment (for example a local guest's private
``HA_RSCTMP``) is normally set by the guest itself (the local driver's sshd
does it); ``environment`` adds variables from the caller when needed.
"""

from __future__ import annotations

import re
import shlex
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum

from dpe.interfaces import CommandResult, Connection
from foundation.errors import InvalidInput
from foundation.model import PARAM_NAME_RE, Reference, Resource

OCF_ROOT = "/usr/lib/ocf"
INIT_D = "/etc/init.d"
OPERATIONS = ("start", "stop", "monitor")
EXIT_REASON_PREFIX = "ocf-exit-reason:"
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SHELL_NOT_FOUND = 127
_SHELL_NOT_EXECUTABLE = 126
_SIGNALLED = 128  # the shell's exit status for a child killed by signal N: 128 + N
# The guest kills an operation this long after its timeout (coreutils
# ``timeout``, which kills the agent's whole process group): an abandoned
# operation must not linger.  Later than the transport's own timeout, so that
# the caller sees a timeout rather than the kill.
KILL_GRACE = 2.0


class OcfRc(IntEnum):
    """OCF return codes (the resource agent API, and Pacemaker's ``PCMK_OCF_*``)."""

    OK = 0
    UNKNOWN_ERROR = 1
    INVALID_PARAM = 2
    UNIMPLEMENTED = 3
    INSUFFICIENT_PRIV = 4
    NOT_INSTALLED = 5
    NOT_CONFIGURED = 6
    NOT_RUNNING = 7
    RUNNING_MASTER = 8
    FAILED_MASTER = 9


_DESCRIPTIONS = {
    OcfRc.OK: "ok",
    OcfRc.UNKNOWN_ERROR: "unknown error",
    OcfRc.INVALID_PARAM: "invalid parameter",
    OcfRc.UNIMPLEMENTED: "unimplemented feature",
    OcfRc.INSUFFICIENT_PRIV: "insufficient privileges",
    OcfRc.NOT_INSTALLED: "not installed",
    OcfRc.NOT_CONFIGURED: "not configured",
    OcfRc.NOT_RUNNING: "not running",
    OcfRc.RUNNING_MASTER: "running as master",
    OcfRc.FAILED_MASTER: "failed as master",
}

_HARD_ERRORS = frozenset(
    {
        OcfRc.INVALID_PARAM,
        OcfRc.UNIMPLEMENTED,
        OcfRc.INSUFFICIENT_PRIV,
        OcfRc.NOT_INSTALLED,
        OcfRc.NOT_CONFIGURED,
    }
)


# ---------------------------------------------------------------------------
# command lines


def command(
    resource: Resource,
    op: str,
    *,
    interval: float = 0.0,
    params: Mapping[str, str] | None = None,
    environment: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> str:
    """The remote shell command running ``op`` (start, stop, monitor) of ``resource``.

    ``interval`` is the monitor interval in seconds (0 for a probe or a one-shot
    op); ``params`` the resolved parameter values (default: the resource's own,
    which must then hold no reference, see ``resolve_params``); ``timeout``
    defaults to ``resource.timeout(op)``.  Raises ``InvalidInput`` for an
    unknown operation, class or variable name.
    """
    _check_operation(op)
    prefix = _assignments(environment or {})
    seconds = resource.timeout(op) if timeout is None else timeout
    killer = _kill_after(seconds)
    if resource.rclass == "ocf":
        values = resolve_params(resource) if params is None else params
        prefix += _assignments(ocf_environment(resource, values, interval, seconds))
        return _join(prefix, killer + _ocf_argv(resource, op))
    if resource.rclass == "lsb":
        return _join(prefix, [*killer, f"{INIT_D}/{resource.type}", _LSB_ACTIONS[op]])
    if resource.rclass == "systemd":
        return _join(prefix, [*killer, "systemctl", _SYSTEMD_ACTIONS[op], systemd_unit(resource)])
    raise InvalidInput(f"resource {resource.name!r}: unknown class {resource.rclass!r}")


def resolve_params(
    resource: Resource, lookup: Callable[[Reference], str] | None = None
) -> dict[str, str]:
    """The resource's parameters as strings, references resolved by ``lookup``.

    Without ``lookup`` a reference is an error (``InvalidInput``)."""
    values: dict[str, str] = {}
    for name, value in resource.parameters.items():
        if isinstance(value, Reference):
            if lookup is None:
                raise InvalidInput(
                    f"resource {resource.name!r}: parameter {name!r} is unresolved {value}"
                )
            values[name] = lookup(value)
        else:
            values[name] = value
    return values


def systemd_unit(resource: Resource) -> str:
    """``<type>.service``, unless the type already names a unit."""
    return resource.type if resource.type.endswith(".service") else f"{resource.type}.service"


_LSB_ACTIONS = {"start": "start", "stop": "stop", "monitor": "status"}
_SYSTEMD_ACTIONS = {"start": "start", "stop": "stop", "monitor": "is-active"}


def _check_operation(op: str) -> None:
    if op not in OPERATIONS:
        raise InvalidInput(f"unknown operation {op!r} (one of {', '.join(OPERATIONS)})")


def ocf_environment(
    resource: Resource, params: Mapping[str, str], interval: float, timeout: float
) -> dict[str, str]:
    """An OCF operation's variables: ``OCF_ROOT``, ``OCF_RESKEY_<param>``, meta timeout
    and interval (in milliseconds).  Raises ``InvalidInput`` for a bad parameter name."""
    env = {
        "OCF_ROOT": OCF_ROOT,
        "OCF_RA_VERSION_MAJOR": "1",
        "OCF_RA_VERSION_MINOR": "0",
        "OCF_RESOURCE_INSTANCE": resource.name,
        "OCF_RESOURCE_TYPE": resource.type,
        "OCF_RESOURCE_PROVIDER": resource.provider,
    }
    env |= {f"OCF_RESKEY_{_param_name(name)}": value for name, value in params.items()}
    env["OCF_RESKEY_CRM_meta_timeout"] = str(_milliseconds(timeout))
    env["OCF_RESKEY_CRM_meta_interval"] = str(_milliseconds(interval))
    return env


def _kill_after(timeout: float) -> list[str]:
    return ["timeout", "--signal=KILL", f"{timeout + KILL_GRACE:g}s"]


def _ocf_argv(resource: Resource, op: str) -> list[str]:
    return [f"{OCF_ROOT}/resource.d/{resource.provider}/{resource.type}", op]


def _param_name(name: str) -> str:
    if not PARAM_NAME_RE.match(name):
        raise InvalidInput(f"not a valid parameter name (a variable name): {name!r}")
    return name


def _assignments(env: Mapping[str, str]) -> list[str]:
    """``NAME=value`` words; the name is checked (it is not quoted), the value quoted."""
    for name in env:
        if not _ENV_NAME_RE.match(name):
            raise InvalidInput(f"not a valid environment variable name: {name!r}")
    return [f"{name}={shlex.quote(value)}" for name, value in env.items()]


def _join(assignments: list[str], argv: list[str]) -> str:
    return " ".join([*assignments, *(shlex.quote(arg) for arg in argv)])


def _milliseconds(seconds: float) -> int:
    return round(seconds * 1000)


# ---------------------------------------------------------------------------
# return codes


def map_rc(rclass: str, op: str, exit_status: int) -> OcfRc:
    """The OCF code an agent's exit status means, for its class and operation."""
    if exit_status == _SHELL_NOT_FOUND:
        return OcfRc.NOT_INSTALLED
    if exit_status == _SHELL_NOT_EXECUTABLE:
        return OcfRc.INSUFFICIENT_PRIV
    if rclass == "lsb" and op == "monitor":
        return _lsb_status(exit_status)
    if rclass == "systemd":
        return _systemd(op, exit_status)
    return _passthrough(exit_status, OcfRc.FAILED_MASTER if rclass == "ocf" else OcfRc.NOT_RUNNING)


def _lsb_status(exit_status: int) -> OcfRc:
    if exit_status == 0:
        return OcfRc.OK
    if exit_status in (1, 2, 3):
        return OcfRc.NOT_RUNNING
    return OcfRc.UNKNOWN_ERROR


def _systemd(op: str, exit_status: int) -> OcfRc:
    if exit_status == 0:
        return OcfRc.OK
    if op == "monitor":
        return OcfRc.NOT_RUNNING
    return _passthrough(exit_status, OcfRc.NOT_RUNNING)


def _passthrough(exit_status: int, highest: OcfRc) -> OcfRc:
    if 0 <= exit_status <= highest:
        return OcfRc(exit_status)
    return OcfRc.UNKNOWN_ERROR


def is_hard_error(rc: int) -> bool:
    """Codes 2-6: retrying cannot help (bad parameters, agent missing...)."""
    return rc in _HARD_ERRORS


def describe(rc: int) -> str:
    """``not running`` for 7; ``unknown error`` for anything out of range."""
    try:
        return _DESCRIPTIONS[OcfRc(rc)]
    except ValueError:
        return _DESCRIPTIONS[OcfRc.UNKNOWN_ERROR]


def reason(op: str, rc: int, exit_reason: str | None = None) -> str:
    """An event reason: ``monitor returned 7 (not running): <agent's exit reason>``."""
    text = f"{op} returned {int(rc)} ({describe(rc)})"
    return f"{text}: {exit_reason}" if exit_reason else text


def timeout_reason(op: str, seconds: float) -> str:
    """``start timed out after 20 s``."""
    return f"{op} timed out after {seconds:g} s"


def killed_by(exit_status: int) -> str | None:
    """``killed by SIGKILL`` for the shell's 128+N status of a signalled agent."""
    if not _SIGNALLED < exit_status < _SIGNALLED + signal.NSIG:
        return None
    try:
        return f"killed by {signal.Signals(exit_status - _SIGNALLED).name}"
    except ValueError:
        return f"killed by signal {exit_status - _SIGNALLED}"


def exit_reason(stderr: str) -> str | None:
    """The last ``ocf-exit-reason:`` message an OCF agent printed, if any."""
    found = None
    for line in stderr.splitlines():
        if line.startswith(EXIT_REASON_PREFIX):
            found = line[len(EXIT_REASON_PREFIX) :].strip() or found
    return found


# ---------------------------------------------------------------------------
# running an operation


@dataclass(frozen=True)
class AgentResult:
    """What one operation returned: the mapped code and the raw output."""

    op: str
    rc: OcfRc
    result: CommandResult

    @property
    def ok(self) -> bool:
        return self.rc == OcfRc.OK

    @property
    def hard_error(self) -> bool:
        return is_hard_error(self.rc)

    @property
    def reason(self) -> str:
        why = exit_reason(self.result.stderr) or killed_by(self.result.exit_status)
        return reason(self.op, self.rc, why)


async def execute(
    connection: Connection,
    resource: Resource,
    op: str,
    *,
    interval: float = 0.0,
    params: Mapping[str, str] | None = None,
    environment: Mapping[str, str] | None = None,
) -> AgentResult:
    """Run one operation over ``connection`` with the resource's op timeout.

    Raises ``OperationTimeout`` (see ``timeout_reason``) or ``Unavailable``
    from the connection; every exit status becomes an ``AgentResult``."""
    timeout = resource.timeout(op)
    line = command(
        resource, op, interval=interval, params=params, environment=environment, timeout=timeout
    )
    result = await connection.run(line, timeout)
    return AgentResult(op, map_rc(resource.rclass, op, result.exit_status), result)
