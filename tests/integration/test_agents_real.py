"""Real resource agents (Debian resource-agents) over SSH on local guests."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from dpe import agents
from dpe.agents import OcfRc
from dpe.transport import SshConnection, SshTransport
from foundation.errors import OperationTimeout
from foundation.keyfiles import AssemblyKeys
from foundation.model import Resource
from tests.integration import test_local_driver_support as support
from tests.integration.test_local_driver_support import (
    CONNECT_TIMEOUT,
    Guest,
    assembly,
    instance_processes,
)

# fixtures
key_dir, ssh_keys, local_driver, guest = (
    support.key_dir,
    support.ssh_keys,
    support.local_driver,
    support.guest,
)

pytestmark = pytest.mark.integration
DUMMY = Resource(name="www")


async def ops(connection: SshConnection, resource: Resource, *names: str) -> list[OcfRc]:
    return [(await agents.execute(connection, resource, op)).rc for op in names]


async def test_dummy_probe_start_monitor_stop(guest: Guest) -> None:
    rcs = await ops(guest.connection, DUMMY, "monitor", "start", "monitor", "stop", "monitor")
    assert rcs == [OcfRc.NOT_RUNNING, OcfRc.OK, OcfRc.OK, OcfRc.OK, OcfRc.NOT_RUNNING]


async def test_dummy_state_lives_in_the_instances_own_directory(guest: Guest) -> None:
    await agents.execute(guest.connection, DUMMY, "start")
    directory = Path(guest.instance.extra["dir"])
    assert [p.name for p in directory.rglob("Dummy-www.state")] == ["Dummy-www.state"]


async def test_two_instances_have_independent_agent_state(
    guest: Guest, ssh_keys: AssemblyKeys
) -> None:
    other = await guest.driver.create("shop", assembly("db"), ssh_keys)
    connection = await SshTransport().connect(other, ssh_keys, CONNECT_TIMEOUT)
    try:
        assert await ops(guest.connection, DUMMY, "start", "monitor") == [OcfRc.OK, OcfRc.OK]
        assert await ops(connection, DUMMY, "monitor") == [OcfRc.NOT_RUNNING]
        assert await ops(connection, DUMMY, "start", "stop") == [OcfRc.OK, OcfRc.OK]
        assert await ops(guest.connection, DUMMY, "monitor") == [OcfRc.OK]
    finally:
        await connection.close()


async def test_a_parameter_reaches_the_agent_as_inert_data(guest: Guest) -> None:
    directory = Path(guest.instance.extra["dir"])
    value = (
        f"$(touch {directory}/injected1) `touch {directory}/injected2`; "
        f'touch {directory}/injected3 && echo "$HOME" \\ end'
    )
    # trace_ra makes ocf-shellfuncs trace the agent, environment included, into HA_VARLIB
    resource = Resource(name="www", parameters={"fake": value, "trace_ra": "1"})
    result = await agents.execute(guest.connection, resource, "start")
    assert result.rc == OcfRc.OK, result.result.stderr
    assert list(directory.glob("injected*")) == []
    traces = list(directory.rglob("trace_ra/Dummy/www.start.*"))
    assert len(traces) == 1
    assert f"OCF_RESKEY_fake={value}\n" in traces[0].read_text()


async def test_anything_runs_a_daemon_and_sees_it_die(guest: Guest) -> None:
    resource = Resource(
        name="sleeper",
        type="anything",
        parameters={"binfile": "/bin/sleep", "cmdline_options": "1000"},
        timeouts={"start": 30, "monitor": 10, "stop": 30},
    )
    assert await ops(guest.connection, resource, "start", "monitor") == [OcfRc.OK, OcfRc.OK]
    pidfile = Path(guest.instance.extra["dir"]) / "run" / "anything_sleeper.pid"
    daemon = pidfile.read_text().strip()
    assert (await guest.connection.run(f"kill {daemon}", 5)).exit_status == 0
    # The guest's init reaps the orphan at once, so no zombie looks alive to the
    # agent's ``kill -0``; this agent reports "pidfile without a process" as a
    # generic error (1), not as 7.
    result = await agents.execute(guest.connection, resource, "monitor")
    assert result.rc == OcfRc.UNKNOWN_ERROR
    assert await ops(guest.connection, resource, "stop", "monitor") == [OcfRc.OK, OcfRc.NOT_RUNNING]


async def test_a_hung_agent_times_out_and_the_guest_kills_it(guest: Guest) -> None:
    resource = Resource(
        name="slow", type="Delay", parameters={"startdelay": "60"}, timeouts={"start": 1}
    )
    started = time.monotonic()
    with pytest.raises(OperationTimeout):
        await agents.execute(guest.connection, resource, "start")
    assert 0.9 < time.monotonic() - started < 2.5
    assert any("Delay" in _cmdline(p.pid) for p in instance_processes(guest.instance))
    for _ in range(100):  # the guest-side kill follows KILL_GRACE later
        if not any("Delay" in _cmdline(p.pid) for p in instance_processes(guest.instance)):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the hung agent was not killed on the guest")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


async def test_a_missing_agent_is_a_hard_error(guest: Guest) -> None:
    resource = Resource(name="ghost", type="NoSuchAgent")
    result = await agents.execute(guest.connection, resource, "start")
    assert result.rc == OcfRc.NOT_INSTALLED and result.hard_error


async def test_lsb_status_of_a_stopped_service_is_not_running(guest: Guest) -> None:
    if not Path("/etc/init.d/uuidd").exists():
        pytest.skip("no uuidd init script on this machine")
    resource = Resource(name="uuid", rclass="lsb", type="uuidd", provider="")
    assert await ops(guest.connection, resource, "monitor") == [OcfRc.NOT_RUNNING]


async def test_lsb_missing_script_is_not_installed(guest: Guest) -> None:
    resource = Resource(name="x", rclass="lsb", type="no-such-service", provider="")
    assert await ops(guest.connection, resource, "monitor") == [OcfRc.NOT_INSTALLED]
