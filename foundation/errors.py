"""One exception root for pacemaker-cloud, with codes defined once.

Errors cross process boundaries as data: ``{code, message, details}``.  The
codes below are stable; the shell maps them to exit codes, the API to HTTP
statuses.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Code(StrEnum):
    INVALID = "invalid"  # the request or document is malformed
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"  # duplicate name, object in use, wrong state
    TIMEOUT = "timeout"
    UNAVAILABLE = "unavailable"  # cped, a guest or the store cannot be reached
    UNAUTHORIZED = "unauthorized"  # no valid credentials (the API's bearer token over TCP)
    FORBIDDEN = "forbidden"  # known, but not allowed (a peer uid the API does not accept)
    AGENT = "agent_error"  # a resource agent failed
    STORE = "store_error"  # the store failed (disk full, locked, corrupt)
    INTERNAL = "internal"


class PcloudError(Exception):
    """Root of every error pacemaker-cloud raises on purpose."""

    code: Code = Code.INTERNAL

    def __init__(self, message: str, *, details: Any = None, **context: str) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.context = context

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"code": str(self.code), "message": self.message}
        data["details"] = self.details if self.details is not None else self.context or None
        return data

    def __str__(self) -> str:
        return self.message


class InvalidInput(PcloudError, ValueError):
    code = Code.INVALID


class NotFound(PcloudError, LookupError):
    code = Code.NOT_FOUND


class Conflict(PcloudError):
    code = Code.CONFLICT


class LeaseLost(Conflict):
    """A DPE's write refused: its lease epoch is no longer the deployable's (fenced)."""


class OperationTimeout(PcloudError, TimeoutError):
    code = Code.TIMEOUT


class Unavailable(PcloudError, ConnectionError):
    code = Code.UNAVAILABLE


class Unauthorized(PcloudError, PermissionError):
    code = Code.UNAUTHORIZED


class Forbidden(PcloudError, PermissionError):
    code = Code.FORBIDDEN


class AgentError(PcloudError):
    code = Code.AGENT


class StoreError(PcloudError, OSError):
    code = Code.STORE


_BY_CODE: dict[str, type[PcloudError]] = {
    cls.code: cls
    for cls in (
        InvalidInput,
        NotFound,
        Conflict,
        OperationTimeout,
        Unavailable,
        Unauthorized,
        Forbidden,
        AgentError,
        StoreError,
    )
}


def from_dict(data: dict[str, Any]) -> PcloudError:
    """Rebuild an error received as data (for example from the API)."""
    cls = _BY_CODE.get(str(data.get("code")), PcloudError)
    return cls(str(data.get("message", "unknown error")), details=data.get("details"))
