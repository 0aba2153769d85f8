"""Deployable documents as text, for the shell's import and export."""

from __future__ import annotations

from typing import Any

from foundation.document import dump_document, load_document


class DpeCodec:
    """The document formats of ``foundation.document`` (json, yaml, and the original XML)."""

    def load(self, text: str, fmt: str | None) -> dict[str, Any]:
        return load_document(text, fmt)

    def dump(self, doc: dict[str, Any], fmt: str) -> str:
        return dump_document(doc, fmt)
