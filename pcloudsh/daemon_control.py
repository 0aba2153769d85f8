"""Starting and stopping cped, through ``cpe.control``."""

from __future__ import annotations

from typing import Any

from dpe.paths import Paths


class CpedControl:
    def __init__(self, paths: Paths) -> None:
        self.paths = paths

    def start(self) -> dict[str, Any]:
        control = _control()
        return dict(control.start(self.paths))

    def stop(self) -> dict[str, Any]:
        control = _control()
        return dict(control.stop(self.paths))

    def status(self) -> dict[str, Any] | None:
        control = _control()
        health = control.status(self.paths)
        return dict(health) if health is not None else None


def _control() -> Any:
    import importlib

    return importlib.import_module("cpe.control")
