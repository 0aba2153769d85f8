"""Assembly key pairs on disk, made by the image builder (``images.keys``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from foundation.keyfiles import key_paths


class FileKeyStore:
    def __init__(self, keys_dir: Path) -> None:
        self.keys_dir = keys_dir

    def exists(self, assembly: str) -> bool:
        return all(path.is_file() for path in key_paths(self.keys_dir, assembly))

    def write(self, assembly: str) -> None:
        """New key pairs for the assembly (left-overs of an old one are replaced)."""
        from images.keys import write_assembly_keys  # M2Crypto: only when keys are made

        write_assembly_keys(self.keys_dir, assembly, overwrite=True)

    def write_many(self, assemblies: Sequence[str], on_made: Callable[[int], None]) -> None:
        """New key pairs for each assembly; all written, or none (Ctrl-C included)."""
        from images.keys import write_many_assembly_keys

        write_many_assembly_keys(self.keys_dir, assemblies, on_made)

    def delete_many(self, assemblies: Sequence[str]) -> None:
        from images.keys import delete_many_assembly_keys

        delete_many_assembly_keys(self.keys_dir, assemblies)

    def delete(self, assembly: str) -> None:
        from images.keys import delete_assembly_keys

        delete_assembly_keys(self.keys_dir, assembly)
