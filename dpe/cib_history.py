"""What the engine knows of a resource, as Pacemaker's op history reads it.

``rsc_op_records`` turns a resource's status (its last op, rc, whether it is
monitored, what it was started with) into the ``lrm_rsc_op`` records of a
CIB's status section; ``op_digest`` is the digest Pacemaker keeps of the
parameters an op ran with, computed byte for byte as Pacemaker 2.1 does, so
that changed parameters restart a resource there as they do in the planner.
``dpe.cib`` writes these into the CIB.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from dpe.planner import ResourceStatus
from dpe.states import ResourceState
from foundation.model import Resource

# lrm_rsc_op execution statuses (Pacemaker's PCMK_EXEC_*)
EXEC_DONE = 0
EXEC_TIMEOUT = 2

_OK = 0
_UNKNOWN_ERROR = 1
_NOT_INSTALLED = 5
_NOT_RUNNING = 7
_RUNNING_MASTER = 8
# the rc codes that are not a failure of each op (as the engine reads them)
_SUCCESS = {
    "probe": (_OK, _NOT_RUNNING, _RUNNING_MASTER),
    "start": (_OK,),
    "stop": (_OK, _NOT_RUNNING),
    "monitor": (_OK, _RUNNING_MASTER),
}
_HARD_ERRORS = range(2, 7)
_NEEDS_PROBE = (ResourceState.UNKNOWN, ResourceState.STARTING, ResourceState.STOPPING)
# characters XML 1.0 cannot carry, not even as character references
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


@dataclass(frozen=True)
class OpRecord:
    """One ``lrm_rsc_op``: an operation that ran and its outcome."""

    operation: str  # start, stop, monitor
    interval_ms: int
    rc: int
    status: int = EXEC_DONE
    digest_params: Mapping[str, str] | None = None  # the parameters it ran with

    @property
    def probe(self) -> bool:
        return self.operation == "monitor" and self.interval_ms == 0

    @property
    def target_rc(self) -> int:
        return _NOT_RUNNING if self.probe else _OK


def rsc_op_records(
    definition: Resource, status: ResourceStatus, params: Mapping[str, str]
) -> list[OpRecord]:
    """The op history that tells Pacemaker what the planner knows of a resource.

    ``params`` are the parameters it runs with (when nothing recorded them).
    """
    state = status.state
    if state in _NEEDS_PROBE:
        return []
    ran_with = dict(status.applied.params) if status.applied else dict(params)
    monitor_ms = interval_ms(definition.monitor_interval)
    if state is ResourceState.STOPPED:
        return [_stopped_record(status)]
    if state is ResourceState.RUNNING:
        return _running_records(status, ran_with, monitor_ms)
    if state is ResourceState.UNRECOVERABLE:
        return _unrecoverable_records(status, ran_with)
    return _failed_records(status, ran_with, monitor_ms)


def _stopped_record(status: ResourceStatus) -> OpRecord:
    if status.last_op == "stop":
        return OpRecord("stop", 0, _OK)
    rc = status.last_rc
    if status.last_op == "probe" and rc is not None and _hard(rc):
        return OpRecord("monitor", 0, rc)  # as the engine reads it: not running
    return OpRecord("monitor", 0, _NOT_RUNNING)


def _running_records(
    status: ResourceStatus, ran_with: Mapping[str, str], monitor_ms: int
) -> list[OpRecord]:
    found = "monitor" if status.last_op == "probe" else "start"  # probed running, or started
    records = [OpRecord(found, 0, _OK, digest_params=ran_with)]
    if status.monitoring:
        records.append(OpRecord("monitor", monitor_ms, _OK, digest_params=ran_with))
    return records


def _unrecoverable_records(status: ResourceStatus, ran_with: Mapping[str, str]) -> list[OpRecord]:
    rc = status.last_rc
    if rc is None or not _hard(rc):
        rc = _NOT_INSTALLED  # recorded without its rc (restored): a hard error all the same
    if status.last_op == "stop":
        return [OpRecord("start", 0, _OK, digest_params=ran_with), OpRecord("stop", 0, rc)]
    return [OpRecord("start", 0, rc, digest_params=ran_with)]


def _failed_records(
    status: ResourceStatus, ran_with: Mapping[str, str], monitor_ms: int
) -> list[OpRecord]:
    """A soft failure: the op that failed, with its rc.

    A timeout records no rc (the last op is still the last success), so it
    shows as the op that came next, timed out.
    """
    op, rc = status.last_op, status.last_rc
    started = OpRecord("start", 0, _OK, digest_params=ran_with)
    if rc is not None and op in _SUCCESS and rc not in _SUCCESS[op]:
        if op == "probe":
            return [OpRecord("monitor", 0, rc, digest_params=ran_with)]
        if op == "start":
            return [OpRecord("start", 0, rc, digest_params=ran_with)]
        if op == "stop":
            return [started, OpRecord("stop", 0, rc)]
        return [started, OpRecord("monitor", monitor_ms, rc, digest_params=ran_with)]
    if op == "stop" or (op == "probe" and rc == _NOT_RUNNING):
        timed_out = OpRecord("start", 0, _UNKNOWN_ERROR, EXEC_TIMEOUT, ran_with)
        return [OpRecord("monitor", 0, _NOT_RUNNING), timed_out]
    timed_out = OpRecord("monitor", monitor_ms, _UNKNOWN_ERROR, EXEC_TIMEOUT, ran_with)
    return [started, timed_out]


def _hard(rc: int) -> bool:
    return rc in _HARD_ERRORS


def interval_ms(seconds: float) -> int:
    """A recurring interval in whole milliseconds (at least 1: 0 is a probe)."""
    return max(1, round(seconds * 1000))


def timeout_ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def op_digest(params: Mapping[str, str], timeout_ms: int | None = None) -> str:
    """Pacemaker's ``op-digest`` of an op run with ``params``.

    The md5 of the sorted parameters as Pacemaker writes them; a recurring
    op's digest also covers its timeout (``CRM_meta_timeout`` in ms).
    """
    values = {k: xml_text(v) for k, v in params.items()}
    if timeout_ms is not None:
        values["CRM_meta_timeout"] = str(timeout_ms)
    attributes = "".join(f' {k}="{_pcmk_escape(values[k])}"' for k in sorted(values))
    return hashlib.md5(f" <parameters{attributes}/>\n".encode()).hexdigest()


def _pcmk_escape(text: str) -> str:
    """Attribute values escaped as Pacemaker 2.1 does before hashing them.

    Byte for byte like its ``crm_xml_escape``, which stops escaping at the
    first multi-byte UTF-8 character.
    """
    data = text.encode()
    out = bytearray()
    for i, byte in enumerate(data):
        if byte & 0x80 and i + 1 < len(data) and data[i + 1] & 0x80:
            return bytes(out + data[i:]).decode()
        out += _PCMK_ESCAPES.get(byte) or _octal(byte)
    return bytes(out).decode()


_PCMK_ESCAPES = {
    ord("<"): b"&lt;",
    ord(">"): b"&gt;",
    ord('"'): b"&quot;",
    ord("'"): b"&apos;",
    ord("&"): b"&amp;",
    ord("\t"): b"    ",
    ord("\n"): b"\\n",
    ord("\r"): b"\\r",
}


def _octal(byte: int) -> bytes:
    if ord(" ") <= byte <= ord("~"):
        return bytes([byte])
    signed = byte - 256 if byte & 0x80 else byte  # a C char is signed
    return f"\\{signed & 0xFFFFFFFF:03o}".encode()


def xml_text(value: str) -> str:
    """A parameter value as it survives Pacemaker 2.1.5 unchanged.

    Characters XML cannot carry become U+FFFD.  Pacemaker writes its copy of
    the CIB with the escaping of ``_pcmk_escape``, which stops at the first
    non-ASCII character: after it, characters that would break its XML
    (``"``, ``<``, ``&``) become U+FFFD, and tabs and line breaks (which it
    would read back as spaces) become spaces.
    """
    value = _NOT_XML.sub("\ufffd", value)
    first = next((i for i, char in enumerate(value) if ord(char) > 0x7F), len(value))
    return value[:first] + value[first:].translate(_AFTER_NON_ASCII)


_AFTER_NON_ASCII = str.maketrans(
    {'"': "\ufffd", "<": "\ufffd", "&": "\ufffd"} | dict.fromkeys("\t\n\r", " ")
)
