"""What names and identifies a nova server of ours: its name, its host name, its
nova key pair, what its status means, and the user data of its config drive.

The user data is both cloud-init's ``#cloud-config`` and what the JEOS's own
first-boot step (``pcloud-firstboot``, see ``images.rootfs``) reads: the
hostname, root's authorized key and the SSH host key the engine pins.
"""

from __future__ import annotations

import hashlib
import json
import secrets

from dpe.drivers._openstack_cloud import SERVER_PREFIX, Server
from dpe.interfaces import InstanceState
from foundation.errors import InvalidInput, NotFound
from foundation.keyfiles import AssemblyKeys

USER_DATA_MARK = "pacemaker_cloud"
# nova's statuses -> what they mean for an instance (others: still coming up)
_STATES = {
    "ACTIVE": InstanceState.RUNNING,
    "PAUSED": InstanceState.RUNNING,  # frozen, not dead: the heartbeat decides
    "SHUTOFF": InstanceState.STOPPED,
    "STOPPED": InstanceState.STOPPED,
    "SUSPENDED": InstanceState.STOPPED,
    "SHELVED": InstanceState.STOPPED,
    "SHELVED_OFFLOADED": InstanceState.STOPPED,
    "ERROR": InstanceState.STOPPED,
    "DELETED": InstanceState.GONE,
    "SOFT_DELETED": InstanceState.GONE,
}


def server_name(deployable: str, assembly: str) -> str:
    return f"{SERVER_PREFIX}{deployable}-{assembly}-{secrets.token_hex(4)}"


def hostname_for(assembly: str) -> str:
    """The guest's host name: the assembly name, with '_' (which systemd refuses) as '-'."""
    return assembly.replace("_", "-").rstrip("-.")


def keypair_name(public_key: str) -> str:
    """One nova key pair per root key, named by it."""
    return "pcloud-" + hashlib.sha256(public_key.strip().encode()).hexdigest()[:20]


def server_state(server: Server) -> InstanceState:
    return _STATES.get(server.status.upper(), InstanceState.PENDING)


def user_data(assembly: str, keys: AssemblyKeys) -> str:
    """``#cloud-config`` in JSON (a YAML subset): hostname, root's key and the host key.

    cloud-init reads it as is; the JEOS's ``pcloud-firstboot`` reads the same
    document (it is marked ``pacemaker_cloud``)."""
    key_type = host_key_type(keys.host_public_key)
    try:
        host_private = keys.host_private_key.read_text()
    except OSError as error:
        raise NotFound(
            f"host key of assembly {assembly!r} cannot be read: {error.strerror}",
            assembly=assembly,
        ) from None
    document = {
        USER_DATA_MARK: 1,
        "hostname": hostname_for(assembly),
        "preserve_hostname": False,
        "disable_root": False,
        "ssh_authorized_keys": [keys.public_key.strip()],
        "ssh_deletekeys": True,
        "ssh_genkeytypes": [],
        "ssh_keys": {
            f"{key_type}_private": host_private,
            f"{key_type}_public": keys.host_public_key.strip(),
        },
    }
    return "#cloud-config\n" + json.dumps(document, indent=1) + "\n"


def host_key_type(public_line: str) -> str:
    algorithm = public_line.split(" ", 1)[0]
    if algorithm == "ssh-rsa":
        return "rsa"
    if algorithm == "ssh-ed25519":
        return "ed25519"
    if algorithm.startswith("ecdsa-sha2-"):
        return "ecdsa"
    raise InvalidInput(f"unsupported SSH host key type {algorithm!r}")
