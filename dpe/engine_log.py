"""Log lines that say what they are about: ``deployable=web assembly=a1: ...``."""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any


class Context(logging.LoggerAdapter):  # type: ignore[type-arg]
    def __init__(self, logger: logging.Logger, **context: str | None) -> None:
        super().__init__(logger, {k: v for k, v in context.items() if v})

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        prefix = " ".join(f"{key}={value}" for key, value in (self.extra or {}).items())
        return f"{prefix}: {msg}", kwargs
