"""Where an assembly's keys live, and loading them.

``keys/<assembly>`` is root's login key (PEM, 0600) and ``<assembly>.pub`` its
OpenSSH public line; ``<assembly>.host`` is the SSH host key the instance
presents (PEM, 0600) and ``<assembly>.host.pub`` the line the engine pins.
Keys are made by ``images.keys``; the engine only reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from foundation.errors import NotFound


@dataclass(frozen=True)
class AssemblyKeys:
    """What it takes to reach an assembly's instance as root, and to trust it."""

    private_key: Path  # root's login key (PEM)
    public_key: str  # its OpenSSH public line, for authorized_keys
    host_private_key: Path  # the instance's SSH host key (PEM), for drivers that start sshd
    host_public_key: str  # the pinned host key, as an OpenSSH public line


def key_paths(keys_dir: Path, assembly: str) -> tuple[Path, Path, Path, Path]:
    """(private, public, host private, host public) for one assembly."""
    base = keys_dir / assembly
    return (
        base,
        base.with_name(f"{assembly}.pub"),
        base.with_name(f"{assembly}.host"),
        base.with_name(f"{assembly}.host.pub"),
    )


def load_assembly_keys(keys_dir: Path, assembly: str) -> AssemblyKeys:
    private, public, host_private, host_public = key_paths(keys_dir, assembly)
    missing = [p.name for p in (private, public, host_private, host_public) if not p.is_file()]
    if missing:
        raise NotFound(
            f"assembly {assembly!r} has no keys ({', '.join(missing)} missing in the key "
            "directory): re-create it with pcloudsh assembly_create",
            assembly=assembly,
        )
    return AssemblyKeys(
        private_key=private,
        public_key=public.read_text().strip(),
        host_private_key=host_private,
        host_public_key=host_public.read_text().strip(),
    )
