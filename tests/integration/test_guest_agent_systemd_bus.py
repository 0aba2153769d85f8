"""The guest agent asking systemd for a unit's state on its private socket.

There is no systemd here, so a small stand-in serves the two properties the
agent asks for (a unit's ``ActiveState``, a service's ``MainPID``) on a Unix
socket, the way systemd answers on ``/run/systemd/private``.  The stand-in is
first held to the real D-Bus client of systemd's own tools: ``busctl`` must
read the same properties from it.  The libvirt end-to-end tests and
``bench/agent_systemd.py`` ask the real systemd inside a VM.
"""

from __future__ import annotations

import asyncio
import shutil
import struct
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dpe.guest_agent import pcloud_agent as ga

pytestmark = pytest.mark.integration

WAIT = 15.0
GUID = b"0123456789abcdef0123456789abcdef"


@dataclass
class FakeSystemd:
    """Units' properties served over D-Bus's peer-to-peer protocol, as systemd does."""

    socket: Path
    units: dict[str, dict[str, object]] = field(default_factory=dict)
    calls: list[tuple[str, str, list[str]]] = field(default_factory=list)  # path, member, args
    garble: bool = False  # answer with bytes that are no D-Bus message
    serial: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._authenticate(reader, writer)
            while True:
                kind, serial, fields, body = await self._read(reader)
                if kind == 1:
                    writer.write(self._answer(serial, fields, body))
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _authenticate(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        assert await reader.readexactly(1) == b"\0"
        while (line := await reader.readline()) != b"BEGIN\r\n":
            if line == b"AUTH EXTERNAL\r\n":  # sd-bus: no initial response, an empty DATA
                writer.write(b"DATA\r\n")
            elif line.startswith((b"AUTH EXTERNAL ", b"DATA")):
                writer.write(b"OK " + GUID + b"\r\n")
            elif line.startswith(b"NEGOTIATE_UNIX_FD"):
                writer.write(b"AGREE_UNIX_FD\r\n")
            else:
                writer.write(b"ERROR\r\n")

    async def _read(
        self, reader: asyncio.StreamReader
    ) -> tuple[int, int, dict[int, object], bytes]:
        fixed = await reader.readexactly(16)
        assert fixed[:1] == b"l"
        body_length, serial, fields_length = struct.unpack("<III", fixed[4:16])
        raw = await reader.readexactly(fields_length + (-fields_length % 8))
        body = await reader.readexactly(body_length)
        fields: dict[int, object] = {}
        parse = ga._BusIn(raw[:fields_length])
        while parse.left():
            parse.align(8)
            code = parse.byte()
            fields[code] = parse.value(parse.signature())
        return fixed[1], serial, fields, body

    def _answer(self, serial: int, fields: dict[int, object], body: bytes) -> bytes:
        member, path = str(fields.get(3)), str(fields.get(1))
        args = _strings(body, str(fields.get(8, "")))
        self.calls.append((path, member, args))
        if self.garble:
            return b"HTTP/1.1 400 Bad Request\r\n\r\n" + bytes(32)
        if member == "Hello":  # busctl says hello first; the agent, on a private socket, not
            return self._reply(serial, "s", _string(":1.1"))
        unit = self.units.get(path.rsplit("/", 1)[-1])
        if member != "Get" or unit is None or args[1] not in unit:
            return self._reply(serial, "s", _string("no such unit"), error=True)
        value = unit[args[1]]
        body_out = ga._BusOut()
        if isinstance(value, int):
            body_out.signature("u")
            body_out.u32(value)
        else:
            body_out.signature("s")
            body_out.string(str(value))
        return self._reply(serial, "v", bytes(body_out.data))

    def _reply(self, serial: int, signature: str, body: bytes, error: bool = False) -> bytes:
        self.serial += 1
        out = ga._BusOut()
        out.data += b"l" + bytes([3 if error else 2, 1, 1])
        out.u32(len(body))
        out.u32(self.serial)
        out.u32(0)
        start = len(out.data)
        fields: list[tuple[int, str, object]] = [(5, "u", serial), (8, "g", signature)]
        if error:
            fields.append((4, "s", "org.freedesktop.systemd1.NoSuchUnit"))
        for code, kind, value in fields:
            out.align(8)
            out.data.append(code)
            out.signature(kind)
            if kind == "u":
                out.u32(int(str(value)))
            elif kind == "g":
                out.signature(str(value))
            else:
                out.string(str(value))
        struct.pack_into("<I", out.data, start - 4, len(out.data) - start)
        out.align(8)
        return bytes(out.data) + body


def _string(text: str) -> bytes:
    out = ga._BusOut()
    out.string(text)
    return bytes(out.data)


def _strings(body: bytes, signature: str) -> list[str]:
    parse = ga._BusIn(body)
    return [str(parse.value(kind)) for kind in signature if kind in "sog"]


@pytest.fixture
async def systemd(tmp_path: Path) -> AsyncIterator[FakeSystemd]:
    fake = FakeSystemd(tmp_path / "private")
    fake.units["web_2eservice"] = {"ActiveState": "active", "MainPID": 4242}
    server = await asyncio.start_unix_server(fake.serve, path=str(fake.socket))
    yield fake
    server.close()
    await server.wait_closed()


@pytest.fixture
def bus(systemd: FakeSystemd, monkeypatch: pytest.MonkeyPatch) -> ga.SystemdBus:
    monkeypatch.setattr(ga.os, "geteuid", lambda: 0)  # the private socket is root's
    return ga.SystemdBus(str(systemd.socket))


async def test_the_stand_in_answers_systemds_own_client_too(systemd: FakeSystemd) -> None:
    busctl = shutil.which("busctl")
    assert busctl, "busctl (Debian's systemd package) is needed to hold the stand-in to sd-bus"
    command = [
        busctl, f"--address=unix:path={systemd.socket}", "get-property",
        "org.freedesktop.systemd1", "/org/freedesktop/systemd1/unit/web_2eservice",
        "org.freedesktop.systemd1.Unit",
    ]  # fmt: skip
    for name, printed in (("ActiveState", 's "active"'), ("MainPID", "u 4242")):
        done = await asyncio.to_thread(
            subprocess.run, [*command, name], capture_output=True, text=True, timeout=WAIT
        )
        assert (done.returncode, done.stdout.strip()) == (0, printed), done.stderr
    assert ("/org/freedesktop/systemd1/unit/web_2eservice", "Get", [ga.UNIT_INTERFACE,
            "ActiveState"]) in systemd.calls  # fmt: skip


async def test_the_agent_reads_a_units_state_and_main_pid(
    systemd: FakeSystemd, bus: ga.SystemdBus
) -> None:
    state = await bus.unit_property("web.service", ga.UNIT_INTERFACE, "ActiveState", WAIT)
    pid = await bus.unit_property("web.service", ga.SERVICE_INTERFACE, "MainPID", WAIT)
    assert (state, pid) == ("active", 4242)
    assert len({path for path, _, _ in systemd.calls}) == 1
    assert [member for _, member, _ in systemd.calls] == ["Get", "Get"]  # no Hello: one peer


async def test_a_unit_name_is_escaped_as_systemd_does(
    systemd: FakeSystemd, bus: ga.SystemdBus
) -> None:
    systemd.units["getty_40tty1_2eservice"] = {"ActiveState": "failed"}
    state = await bus.unit_property("getty@tty1.service", ga.UNIT_INTERFACE, "ActiveState", WAIT)
    assert state == "failed"
    assert ga.bus_label("a-b_c.service") == "a_2db_5fc_2eservice"


async def test_an_error_or_garbage_answers_none_and_the_next_call_is_answered(
    systemd: FakeSystemd, bus: ga.SystemdBus
) -> None:
    assert await bus.unit_property("nope.service", ga.UNIT_INTERFACE, "ActiveState", WAIT) is None
    systemd.garble = True
    assert await bus.unit_property("web.service", ga.UNIT_INTERFACE, "ActiveState", WAIT) is None
    systemd.garble = False
    assert await bus.unit_property("web.service", ga.UNIT_INTERFACE, "ActiveState", WAIT) == (
        "active"
    )


async def test_no_socket_or_not_root_answers_none_without_trying(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, systemd: FakeSystemd
) -> None:
    missing = ga.SystemdBus(str(tmp_path / "absent"))
    assert await missing.unit_property("web.service", ga.UNIT_INTERFACE, "ActiveState", 1) is None
    monkeypatch.setattr(ga.os, "geteuid", lambda: 1000)
    not_root = ga.SystemdBus(str(systemd.socket))
    assert await not_root.unit_property("web.service", ga.UNIT_INTERFACE, "ActiveState", 1) is None
    assert systemd.calls == []


async def test_a_silent_systemd_answers_none_within_the_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ended = asyncio.Event()

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # the authentication, then the agent's close: never a word
        writer.close()
        ended.set()

    server = await asyncio.start_unix_server(never_answer, path=str(tmp_path / "silent"))
    monkeypatch.setattr(ga.os, "geteuid", lambda: 0)
    silent = ga.SystemdBus(str(tmp_path / "silent"))
    started = asyncio.get_running_loop().time()
    assert await silent.unit_property("web.service", ga.UNIT_INTERFACE, "ActiveState", 0.3) is None
    assert asyncio.get_running_loop().time() - started < WAIT
    await asyncio.wait_for(ended.wait(), WAIT)  # the agent closed its connection
    server.close()


class RecordingRunner:
    def __init__(self) -> None:
        self.ran: list[ga.OpSpec] = []

    async def run(self, spec: ga.OpSpec) -> ga.Outcome:
        self.ran.append(spec)
        return ga.Outcome(0, stdout="ran\n")


def _op(action: str, rclass: str = "systemd") -> ga.OpSpec:
    provider = "heartbeat" if rclass == "ocf" else ""
    return ga.OpSpec("r", rclass, provider, "web", action, {}, 20.0)


async def test_a_systemd_monitor_is_answered_as_is_active_would_without_a_process(
    systemd: FakeSystemd, bus: ga.SystemdBus
) -> None:
    processes = RecordingRunner()
    first = ga.SystemdFirst(processes, bus)  # type: ignore[arg-type]
    running = await first.run(_op("monitor"))
    systemd.units["web_2eservice"]["ActiveState"] = "deactivating"
    stopping = await first.run(_op("monitor"))
    assert (running.exit_status, running.stdout) == (0, "active\n")
    assert (stopping.exit_status, stopping.stdout) == (3, "deactivating\n")
    for action, rclass in (("start", "systemd"), ("stop", "systemd"), ("monitor", "ocf")):
        await first.run(_op(action, rclass))
    assert [(s.rclass, s.action) for s in processes.ran] == [
        ("systemd", "start"), ("systemd", "stop"), ("ocf", "monitor")
    ]  # fmt: skip


async def test_without_the_socket_the_monitor_runs_systemctl_within_its_timeout(
    tmp_path: Path,
) -> None:
    processes = RecordingRunner()
    first = ga.SystemdFirst(processes, ga.SystemdBus(str(tmp_path / "absent")))  # type: ignore[arg-type]
    outcome = await first.run(_op("monitor"))
    assert outcome.stdout == "ran\n"
    [spec] = processes.ran
    assert spec.action == "monitor" and 19.0 < spec.timeout <= 20.0
