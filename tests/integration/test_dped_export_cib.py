"""``dped --document FILE --export-cib``: the document file as a CIB that
crm_verify accepts (no status: nothing observed), exit 0; a bad file or an
invalid document: a clear message and exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from dpe.pacemaker import available, verify
from tests.integration.test_engine_local import trio

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not available(), reason="crm_verify is not installed"),
]


def dped(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dpe.main", *args],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


def test_a_document_file_exports_to_a_cib_crm_verify_accepts(tmp_path: Path) -> None:
    document = tmp_path / "trio.json"
    document.write_text(json.dumps(trio(tmp_path)))
    done = dped("--document", str(document), "--export-cib")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    result = verify(done.stdout)
    assert result.ok, result.messages
    cib = ET.fromstring(done.stdout)
    assert [n.get("uname") for n in cib.iterfind("configuration/nodes/node")] == ["a1", "a2", "a3"]
    orders = [(o.get("first"), o.get("then")) for o in cib.iter("rsc_order")]
    assert orders == [("rsc_a1_d1", "rsc_a3_app")]
    status = cib.find("status")
    assert status is not None and len(status) == 0


def test_bad_files_and_usage_exit_2_with_a_message(tmp_path: Path) -> None:
    missing = dped("--document", str(tmp_path / "nope.json"), "--export-cib")
    assert missing.returncode == 2 and missing.stdout == ""
    assert f"dped: cannot read {tmp_path / 'nope.json'}: No such file or directory" in (
        missing.stderr
    )
    invalid = tmp_path / "bad.json"
    invalid.write_text(json.dumps({"name": "x", "assemblies": [{"name": "a", "resources": [{}]}]}))
    done = dped("--document", str(invalid), "--export-cib")
    assert done.returncode == 2 and done.stdout == ""
    assert "assemblies[0].resources[0].name" in done.stderr
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00")
    done = dped("--document", str(binary), "--export-cib")
    assert done.returncode == 2 and "not UTF-8 text" in done.stderr
    usage = dped("--export-cib", "trio")
    assert usage.returncode == 2 and "--export-cib goes with --document FILE only" in usage.stderr
    document = tmp_path / "trio.json"
    document.write_text(json.dumps(trio(tmp_path)))
    for extra in ("--leave-running", "--clear-failed"):
        mixed = dped("--document", str(document), "--export-cib", extra)
        assert mixed.returncode == 2 and mixed.stdout == "", extra
    for answer in (missing, done, usage):
        assert "Traceback" not in answer.stderr
