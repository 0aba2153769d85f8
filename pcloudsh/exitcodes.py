"""Exit codes of pcloudsh, and the one place errors are mapped to them."""

from __future__ import annotations

from enum import IntEnum

from foundation.errors import Code, PcloudError
from pcloudsh.api import CpedUnreachable


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1  # the operation was tried and failed
    USAGE = 2  # bad usage or invalid input (unknown or duplicate names included)
    UNREACHABLE = 3  # cped is not running or does not answer
    INTERRUPTED = 130  # Ctrl-C


# Unknown and duplicate names are invalid input; "unavailable" from cped itself
# (a guest, the store) is a failure: only not reaching cped is UNREACHABLE.
_BY_CODE = {
    Code.INVALID: ExitCode.USAGE,
    Code.NOT_FOUND: ExitCode.USAGE,
    Code.CONFLICT: ExitCode.USAGE,
}


def exit_code_for(error: BaseException) -> ExitCode:
    """The exit status a failed command ends with."""
    if isinstance(error, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    if isinstance(error, CpedUnreachable):
        return ExitCode.UNREACHABLE
    if isinstance(error, PcloudError):
        return _BY_CODE.get(error.code, ExitCode.FAILURE)
    return ExitCode.FAILURE
