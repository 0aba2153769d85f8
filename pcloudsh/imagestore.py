"""JEOS images on this machine, made by ``images.jeos``, in ``<state>/images/jeos/<name>/``.

This adapter keeps the image builder out of the one-shot path until a JEOS
command runs, and turns the file system's errors into pcloudsh's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from foundation.errors import NotFound, PcloudError
from foundation.paths import Paths

Report = Callable[[str, float], None]


class JeosImages:
    def __init__(self, paths: Paths) -> None:
        self.out_dir = paths.images_dir / "jeos"

    def build(
        self, name: str, release: str, arch: str, packages: Sequence[str], progress: Report
    ) -> dict[str, Any]:
        from images.jeos import build_jeos

        with _file_errors(f"building JEOS {name!r}"):
            record = build_jeos(
                name, release, arch, packages, out_dir=self.out_dir, progress=progress
            )
        return record.to_dict()

    def import_image(
        self, name: str, file: Path, progress: Report, **options: Any
    ) -> dict[str, Any]:
        """Options: release, arch, kernel, initrd, cmdline (see ``images.jeos.import_jeos``)."""
        from images.jeos import import_jeos

        with _file_errors(f"importing {file} as JEOS {name!r}"):
            record = import_jeos(name, file, self.out_dir, progress=progress, **options)
        return record.to_dict()

    def delete(self, name: str) -> bool:
        """Remove the image's directory; False when this machine has none."""
        from images.jeos import delete_jeos

        try:
            with _file_errors(f"deleting the files of JEOS {name!r}"):
                delete_jeos(self.out_dir, name)
        except NotFound:
            return False
        return True


@contextmanager
def _file_errors(doing: str) -> Iterator[None]:
    try:
        yield
    except PcloudError:
        raise
    except OSError as error:
        raise PcloudError(f"{doing}: {error.strerror or error}") from None


class AssemblyDisks:
    """Assembly disks (``images.customize``) in ``<state>/images/assemblies/<name>.qcow2``.

    A disk is made from a JEOS of this machine and given the assembly's
    identity; one that fails or is interrupted halfway leaves no file.
    """

    def __init__(self, paths: Paths) -> None:
        self.jeos_dir = paths.images_dir / "jeos"
        self.out_dir = paths.images_dir / "assemblies"
        self.keys_dir = paths.keys_dir

    def create(
        self, assembly: str, assembly_uuid: str, jeos: str, overlay: bool, progress: Report
    ) -> dict[str, Any]:
        """The disk of a new assembly, from ``jeos`` (an overlay of it, or a full copy)."""
        from foundation.keyfiles import load_assembly_keys
        from images.customize import create_assembly_image
        from images.jeos import load_jeos

        final = self.path(assembly)
        existed = final.exists()
        try:
            with _file_errors(f"making the disk of assembly {assembly!r}"):
                record = load_jeos(self.jeos_dir, jeos)
                keys = load_assembly_keys(self.keys_dir, assembly)
                image = create_assembly_image(
                    record, assembly, assembly_uuid, keys, self.out_dir, overlay, progress
                )
        except BaseException:
            if not existed:  # published just before the failure: not a disk to keep
                final.unlink(missing_ok=True)
            raise
        return image.to_dict()

    def delete(self, assembly: str) -> bool:
        """Remove the assembly's disk; False when it has none."""
        final = self.path(assembly)
        if not final.exists():
            return False
        with _file_errors(f"deleting the disk of assembly {assembly!r}"):
            final.unlink(missing_ok=True)
        return True

    def path(self, assembly: str) -> Path:
        from foundation.model import validate_name

        return self.out_dir / f"{validate_name(assembly, 'assembly name')}.qcow2"
