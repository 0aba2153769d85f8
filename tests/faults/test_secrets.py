"""Key material stays secret and private.

After a run that starts, breaks and stops a deployable (and one whose login
key is corrupt), no fragment of any private key appears in cped's log, the
DPE logs, the guests' sshd logs, the event log or an API error message; every
private key file (the key directory and each instance's copy) is mode 0600.
The wrong-host-key case is covered by
``tests/integration/test_transport.py::test_a_guest_presenting_another_host_key_is_refused``
and ``test_connecting_does_not_retry_a_wrong_host_key``.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import time
from pathlib import Path

import pytest

from foundation.errors import PcloudError
from tests.integration.test_lifecycle import Rig, shop

pytestmark = pytest.mark.integration

CHUNK = 24  # long enough that a match is never chance


def private_keys(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.is_file() and b"PRIVATE KEY" in p.read_bytes()]


def fragments(keys: list[Path]) -> set[str]:
    """Chunks of every base64 line of the private keys (headers excluded)."""
    found = set()
    for key in keys:
        for line in key.read_text().splitlines():
            if line and not line.startswith("-----"):
                found |= {line[i : i + CHUNK] for i in range(0, len(line) - CHUNK + 1, CHUNK)}
    return found


def leaks(text: str, secrets: set[str]) -> list[str]:
    hits = [s for s in secrets if s in text]
    return hits + (["PRIVATE KEY"] if "PRIVATE KEY" in text else [])


def all_events(rig: Rig) -> str:
    rows, after = [], 0
    while page := rig.client.query_events(after_id=after, limit=1000):
        rows += page
        after = page[-1]["id"]
    return json.dumps(rows)


def run_a_story(rig: Rig) -> list[str]:
    """Start, kill an instance and the DPE, stop; a start with a corrupt key. Errors seen."""
    rig.client.put_deployable("shop", shop("a1", "a2"))
    rig.client.start_deployable("shop")
    rig.running()
    inits = [p for p, argv in rig.processes().items() if "_guest_init.py" in " ".join(argv)]
    os.kill(inits[0], signal.SIGKILL)
    os.kill(rig.status()["dpe"]["pid"], signal.SIGKILL)
    rig.running(within=25.0)
    rig.client.stop_deployable("shop")
    private = rig.paths.keys_dir / "a3"
    corrupt = private.read_text()
    private.write_text(corrupt[: len(corrupt) // 2])  # a truncated PEM: unreadable
    rig.client.put_deployable("other", shop("a3", name="other"))
    errors = []
    try:
        rig.client.start_deployable("other")
        time.sleep(3.0)  # the DPE tries to use the key, and fails
    except PcloudError as error:
        errors.append(str(error))
    errors += [json.dumps(rig.status("other"))]
    assert "a3: unusable key" in errors[-1], "the corrupt key was not the reported failure"
    rig.client.stop_deployable("other")
    return errors


def test_no_private_key_material_in_logs_events_or_errors(rig: Rig) -> None:
    keys = private_keys(rig.paths.keys_dir)
    secrets = fragments(keys)
    # an ECDSA P-256 key (the default) gives 5 chunks, an RSA key far more
    assert len(keys) >= 3 and len(secrets) >= 5 * len(keys), (len(keys), len(secrets))
    errors = run_a_story(rig)
    texts = {"cped log": rig.cped.log(), "events": all_events(rig), "errors": "\n".join(errors)}
    for log in rig.paths.log_dir.rglob("*"):
        if log.is_file():
            texts[str(log.relative_to(rig.paths.log_dir))] = log.read_text(errors="replace")
    for log in rig.paths.state_dir.rglob("*.log"):
        texts[log.name] = log.read_text(errors="replace")
    assert any("dped" in name for name in texts), sorted(texts)
    found = {name: leaks(text, secrets) for name, text in texts.items()}
    assert {name: hits for name, hits in found.items() if hits} == {}


def test_private_key_files_are_0600(rig: Rig) -> None:
    rig.client.put_deployable("shop", shop("a1"))
    rig.client.start_deployable("shop")
    rig.running()
    keys = private_keys(rig.paths.keys_dir) + private_keys(rig.paths.instances_dir)
    assert len(keys) >= 3, keys  # the key directory's and the running instance's host key
    modes = {str(k): oct(stat.S_IMODE(k.stat().st_mode)) for k in keys}
    assert set(modes.values()) == {"0o600"}, modes
