"""Running pcloudsh in-process, with string streams and a fixed-width console.

``run(env, "deployable_list --json")`` runs one command the way the console
script does; ``run(shell, "...")`` runs one line in an interactive shell
object.  Both return ``(out, err, status)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import shlex
from typing import TYPE_CHECKING, NamedTuple

from pcloudsh.environment import Environment

if TYPE_CHECKING:
    from pcloudsh.shell import PcloudShell

CONSOLE_WIDTH = 100


class Ran(NamedTuple):
    out: str
    err: str
    status: int


def run(target: Environment | PcloudShell, line: str, stdin: str = "") -> Ran:
    if isinstance(target, Environment):
        return _run_oneshot(target, line, stdin)
    return _run_in_shell(target, line)


def _run_oneshot(env: Environment, line: str, stdin: str) -> Ran:
    from pcloudsh.oneshot import run as run_oneshot

    out, err = io.StringIO(), io.StringIO()
    env = dataclasses.replace(env, stdin=io.StringIO(stdin), stdout=out, stderr=err)
    status = run_oneshot(shlex.split(line), env)
    return Ran(out.getvalue(), err.getvalue(), int(status))


def _run_in_shell(shell: PcloudShell, line: str) -> Ran:
    out, err = io.StringIO(), io.StringIO()
    shell.stdout = out
    shell.env.stdout, shell.env.stderr = out, err
    with contextlib.redirect_stderr(err):
        shell.onecmd_plus_hooks(line)
    return Ran(out.getvalue(), err.getvalue(), int(shell.last_status))


def shell_for(env: Environment) -> PcloudShell:
    """An interactive shell object without a history file, for driving in-process."""
    from pcloudsh.shell import PcloudShell

    return PcloudShell(env, history=False)
