"""Entry point of the ``pcloudsh`` console script."""

from __future__ import annotations

from foundation.warning_policy import quiet_third_party_warnings

# before anything else is imported: a third-party import may warn
quiet_third_party_warnings()

import sys

from pcloudsh.environment import Environment


def main(argv: list[str] | None = None) -> int:
    """No arguments: the interactive shell; otherwise one command, then exit."""
    args = sys.argv[1:] if argv is None else argv
    env = Environment()
    if not args:
        from pcloudsh.shell import run_shell

        return run_shell(env)
    from pcloudsh.interrupts import raise_on_terminate
    from pcloudsh.oneshot import run

    raise_on_terminate()  # a killed command cleans up as an interrupted one does
    return run(args, env)
