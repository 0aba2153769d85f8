"""Running another program in pcloudsh's place (``assembly_ssh``)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence

from foundation.errors import Unavailable


def exec_program(argv: Sequence[str]) -> None:
    """Replace this process with the program; returns only by raising."""
    try:
        os.execvp(argv[0], list(argv))
    except OSError as error:
        raise Unavailable(f"cannot run {argv[0]}: {error.strerror or error}") from None


def run_program(argv: Sequence[str]) -> int:
    """Run the program on this terminal and wait; its exit status (128+N for signal N)."""
    try:
        done = subprocess.run(list(argv), check=False)
    except OSError as error:
        raise Unavailable(f"cannot run {argv[0]}: {error.strerror or error}") from None
    return 128 - done.returncode if done.returncode < 0 else done.returncode
