"""Starting, stopping and asking about cped, through ``cpe.control``.

Starting and stopping stay local; asking follows ``PCLOUD_URL`` as API commands do.
"""

from __future__ import annotations

import os
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
        """The local cped's, or with ``PCLOUD_URL`` the listener's, as other commands ask."""
        from cpe import control
        from cpe.client import remote_from_environment

        remote = remote_from_environment(os.environ)
        return control.status(self.paths) if remote is None else control.remote_status(remote)
