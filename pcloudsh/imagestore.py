"""JEOS images on this machine, made by ``images.jeos``, in ``<state>/images/jeos/<name>/``.

This adapter keeps the image builder out of the one-shot path until a JEOS
command runs, and turns the file system's errors into pcloudsh's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dpe.errors import NotFound, PcloudError
from dpe.paths import Paths

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
