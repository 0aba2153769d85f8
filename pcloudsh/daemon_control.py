"""Starting and stopping cped, through ``cpe.control``."""

from __future__ import annotations

from typing import Any

from foundation.paths import Paths


class CpedControl:
    def __init__(self, paths: Paths) -> None:
        self.paths = paths

    def start(self, timeout: float) -> dict[str, Any]:
        from cpe import control

        return control.start(self.paths, timeout)

    def stop(self) -> dict[str, Any]:
        from cpe import control

        return control.stop(self.paths)

    def status(self) -> dict[str, Any] | None:
        from cpe import control

        return control.status(self.paths)
