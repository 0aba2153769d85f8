"""Events: every state change of a deployable, assembly or resource."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Event:
    time: float  # seconds since the epoch
    deployable: str
    state: str
    reason: str
    assembly: str | None = None
    resource: str | None = None
    id: int | None = None  # assigned by the store

    @property
    def subject(self) -> str:
        """``deployable``, ``deployable/assembly`` or ``deployable/assembly/resource``."""
        parts = [self.deployable, self.assembly, self.resource]
        return "/".join(p for p in parts if p)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        return cls(
            time=float(data["time"]),
            deployable=str(data["deployable"]),
            state=str(data["state"]),
            reason=str(data["reason"]),
            assembly=data.get("assembly"),
            resource=data.get("resource"),
            id=data.get("id"),
        )
