"""OpenSSH accepts the keys made with M2Crypto: ssh-keygen, sshd's HostKey and ssh -i."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from foundation.keyfiles import AssemblyKeys
from images import keys

SSHD = Path("/usr/sbin/sshd")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="OpenSSH client not installed"),
]


def _run(*argv: str | Path) -> str:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_an_rsa_pair_is_read_by_ssh_keygen_too(tmp_path: Path) -> None:
    pair = keys.generate_rsa_keypair(comment="root@old")
    private = tmp_path / "old"
    private.write_bytes(pair.private_pem)
    private.chmod(0o600)
    assert _run("ssh-keygen", "-y", "-f", private).split()[:2] == pair.public_line.split()[:2]


def test_ssh_keygen_reads_public_line_and_derives_the_same_key(tmp_path: Path) -> None:
    made = keys.write_assembly_keys(tmp_path, "web")
    for private, public in (
        (made.private_key, made.public_key),
        (made.host_private_key, made.host_public_key),
    ):
        fingerprint = _run("ssh-keygen", "-l", "-f", private.with_name(private.name + ".pub"))
        assert fingerprint.startswith("256 SHA256:") and fingerprint.rstrip().endswith("(ECDSA)")
        derived = _run("ssh-keygen", "-y", "-f", private).split()
        assert derived[:2] == public.split()[:2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_listening(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"sshd did not listen on {port}")


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[tuple[AssemblyKeys, int]]:
    if not SSHD.exists() or os.geteuid() != 0:
        pytest.skip("needs the OpenSSH server and root")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    made = keys.write_assembly_keys(tmp_path / "keys", "web")
    authorized = tmp_path / "authorized_keys"
    authorized.write_text(made.public_key + "\n")
    authorized.chmod(0o600)
    port = _free_port()
    config = tmp_path / "sshd_config"
    config.write_text(
        f"HostKey {made.host_private_key}\nListenAddress 127.0.0.1:{port}\n"
        f"AuthorizedKeysFile {authorized}\nPidFile none\nUsePAM no\n"
        "StrictModes no\n"  # the temp dir lies under world-writable /tmp
    )
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", config], stderr=subprocess.DEVNULL)
    try:
        _wait_listening(port, time.monotonic() + 10)
        yield made, port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_sshd_presents_the_host_key_and_accepts_the_login_key(
    sshd: tuple[AssemblyKeys, int], tmp_path: Path
) -> None:
    made, port = sshd
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {made.host_public_key}\n")
    out = _run(
        "ssh", "-i", made.private_key, "-p", str(port), "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "HostKeyAlgorithms=ecdsa-sha2-nistp256", "-o", "IdentitiesOnly=yes",
        "root@127.0.0.1", "echo", "in",
    )  # fmt: skip
    assert out.strip() == "in"
