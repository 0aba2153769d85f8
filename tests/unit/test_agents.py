"""Resource agent command lines, quoting and return-code mapping (no processes)."""

from __future__ import annotations

import shlex

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dpe import agents
from dpe.agents import OcfRc
from dpe.interfaces import CommandResult
from foundation.errors import InvalidInput, OperationTimeout
from foundation.model import Reference, Resource


def words(line: str) -> list[str]:
    return shlex.split(line)


def assignments(line: str) -> dict[str, str]:
    return dict(w.split("=", 1) for w in words(line) if "=" in w and not w.startswith("/"))


def dummy(**kwargs: object) -> Resource:
    return Resource(name="www", **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# ocf


def test_ocf_command_has_the_agent_path_and_action_last() -> None:
    line = agents.command(dummy(), "monitor", interval=10)
    assert words(line)[-2:] == ["/usr/lib/ocf/resource.d/heartbeat/Dummy", "monitor"]


def test_ocf_environment_names_the_resource_and_the_agent() -> None:
    env = assignments(agents.command(dummy(provider="pacemaker", type="Stateful"), "start"))
    assert env["OCF_ROOT"] == "/usr/lib/ocf"
    assert env["OCF_RA_VERSION_MAJOR"] == "1"
    assert env["OCF_RA_VERSION_MINOR"] == "0"
    assert env["OCF_RESOURCE_INSTANCE"] == "www"
    assert env["OCF_RESOURCE_TYPE"] == "Stateful"
    assert env["OCF_RESOURCE_PROVIDER"] == "pacemaker"


def test_ocf_meta_timeout_and_interval_are_milliseconds() -> None:
    resource = dummy(timeouts={"monitor": 2.5})
    env = assignments(agents.command(resource, "monitor", interval=10))
    assert env["OCF_RESKEY_CRM_meta_timeout"] == "2500"
    assert env["OCF_RESKEY_CRM_meta_interval"] == "10000"


def test_default_timeout_is_the_resources_op_timeout() -> None:
    env = assignments(agents.command(dummy(), "start"))
    assert env["OCF_RESKEY_CRM_meta_timeout"] == str(round(dummy().timeout("start") * 1000))
    assert env["OCF_RESKEY_CRM_meta_interval"] == "0"


def test_parameters_become_reskeys() -> None:
    resource = dummy(parameters={"state": "/tmp/x y", "fake": "1"})
    env = assignments(agents.command(resource, "start"))
    assert env["OCF_RESKEY_state"] == "/tmp/x y"
    assert env["OCF_RESKEY_fake"] == "1"


def test_explicit_params_replace_the_resources_own() -> None:
    resource = dummy(parameters={"peer": Reference("db", "ipaddress")})
    env = assignments(agents.command(resource, "start", params={"peer": "10.0.0.7"}))
    assert env["OCF_RESKEY_peer"] == "10.0.0.7"


def test_an_unresolved_reference_is_refused() -> None:
    resource = dummy(parameters={"peer": Reference("db", "ipaddress")})
    with pytest.raises(InvalidInput, match="peer"):
        agents.command(resource, "start")


def test_resolve_params_uses_the_lookup() -> None:
    resource = dummy(parameters={"peer": Reference("db", "hostname"), "port": "80"})
    resolved = agents.resolve_params(resource, lambda ref: f"{ref.assembly}-{ref.attribute}")
    assert resolved == {"peer": "db-hostname", "port": "80"}


def test_caller_environment_comes_first() -> None:
    line = agents.command(dummy(), "stop", environment={"HA_RSCTMP": "/srv/a b"})
    assert words(line)[0] == "HA_RSCTMP=/srv/a b"


@pytest.mark.parametrize("name", ["1abc", "a-b", "a b", "$(x)", ""])
def test_bad_parameter_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput, match="variable name"):
        agents.command(dummy(parameters={name: "v"}), "start")


@pytest.mark.parametrize("name", ["1abc", "a-b", "$(x)", ""])
def test_bad_environment_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput, match="variable name"):
        agents.command(dummy(), "start", environment={name: "v"})


def test_unknown_operation_is_refused() -> None:
    with pytest.raises(InvalidInput, match="operation"):
        agents.command(dummy(), "promote")


def test_unknown_class_is_refused() -> None:
    with pytest.raises(InvalidInput, match="class"):
        agents.command(dummy(rclass="stonith"), "start")


def test_injection_stays_one_word() -> None:
    line = agents.command(dummy(parameters={"state": "$(touch injected); `id` 'q' \"d\""}), "start")
    assert assignments(line)["OCF_RESKEY_state"] == "$(touch injected); `id` 'q' \"d\""
    assert "$(touch" not in line.replace("'$(touch", "")


@given(st.text())
def test_any_parameter_value_round_trips_through_the_shell_words(value: str) -> None:
    line = agents.command(dummy(parameters={"p": value}), "monitor")
    assert assignments(line)["OCF_RESKEY_p"] == value


@given(st.text(min_size=1))
def test_any_environment_value_round_trips(value: str) -> None:
    line = agents.command(dummy(), "monitor", environment={"HA_RSCTMP": value})
    assert assignments(line)["HA_RSCTMP"] == value


# ---------------------------------------------------------------------------
# lsb and systemd


@pytest.mark.parametrize(
    ("op", "action"), [("start", "start"), ("stop", "stop"), ("monitor", "status")]
)
def test_lsb_command(op: str, action: str) -> None:
    resource = Resource(name="pg", rclass="lsb", type="postgresql", provider="")
    assert words(agents.command(resource, op))[-2:] == ["/etc/init.d/postgresql", action]


@pytest.mark.parametrize(
    ("op", "action"), [("start", "start"), ("stop", "stop"), ("monitor", "is-active")]
)
def test_systemd_command(op: str, action: str) -> None:
    resource = Resource(name="web", rclass="systemd", type="nginx", provider="")
    assert words(agents.command(resource, op))[-3:] == ["systemctl", action, "nginx.service"]


@pytest.mark.parametrize("rclass", ["ocf", "lsb", "systemd"])
def test_the_guest_kills_the_operation_after_its_timeout(rclass: str) -> None:
    resource = Resource(name="r", rclass=rclass, type="t", timeouts={"stop": 7})
    argv = [
        w for w in words(agents.command(resource, "stop")) if "=" not in w or w.startswith("--")
    ]
    assert argv[:3] == ["timeout", "--signal=KILL", f"{7 + agents.KILL_GRACE:g}s"]


def test_systemd_type_that_names_a_unit_is_kept() -> None:
    resource = Resource(name="web", rclass="systemd", type="nginx.service", provider="")
    assert agents.systemd_unit(resource) == "nginx.service"


# ---------------------------------------------------------------------------
# return codes


@pytest.mark.parametrize("code", range(10))
def test_ocf_codes_pass_through(code: int) -> None:
    assert agents.map_rc("ocf", "monitor", code) == code


@pytest.mark.parametrize("code", [10, 42, 255, 137, -1])
def test_ocf_codes_out_of_range_are_unknown_errors(code: int) -> None:
    assert agents.map_rc("ocf", "start", code) == OcfRc.UNKNOWN_ERROR


@pytest.mark.parametrize(
    ("code", "rc"),
    [
        (0, OcfRc.OK),
        (1, OcfRc.NOT_RUNNING),
        (2, OcfRc.NOT_RUNNING),
        (3, OcfRc.NOT_RUNNING),
        (4, OcfRc.UNKNOWN_ERROR),
        (8, OcfRc.UNKNOWN_ERROR),
        (150, OcfRc.UNKNOWN_ERROR),
    ],
)
def test_lsb_status(code: int, rc: OcfRc) -> None:
    assert agents.map_rc("lsb", "monitor", code) == rc


@pytest.mark.parametrize(
    ("code", "rc"), [(0, OcfRc.OK), (1, OcfRc.UNKNOWN_ERROR), (8, OcfRc.UNKNOWN_ERROR)]
)
def test_lsb_start(code: int, rc: OcfRc) -> None:
    assert agents.map_rc("lsb", "start", code) == rc


@pytest.mark.parametrize("code", [1, 3, 4, 200])
def test_systemd_is_active_nonzero_is_not_running(code: int) -> None:
    assert agents.map_rc("systemd", "monitor", code) == OcfRc.NOT_RUNNING


def test_systemd_start_failure_is_an_error() -> None:
    assert agents.map_rc("systemd", "start", 0) == OcfRc.OK
    assert agents.map_rc("systemd", "start", 1) == OcfRc.UNKNOWN_ERROR


@pytest.mark.parametrize("rclass", ["ocf", "lsb", "systemd"])
def test_missing_agent_is_not_installed(rclass: str) -> None:
    assert agents.map_rc(rclass, "start", 127) == OcfRc.NOT_INSTALLED
    assert agents.map_rc(rclass, "monitor", 126) == OcfRc.INSUFFICIENT_PRIV


def test_hard_errors_are_two_to_six() -> None:
    assert [c for c in range(12) if agents.is_hard_error(c)] == [2, 3, 4, 5, 6]


def test_reason_texts() -> None:
    assert agents.reason("monitor", OcfRc.NOT_RUNNING) == "monitor returned 7 (not running)"
    assert agents.reason("start", 5, "no binary") == "start returned 5 (not installed): no binary"
    assert agents.describe(99) == "unknown error"
    assert agents.timeout_reason("stop", 20.0) == "stop timed out after 20 s"


def test_exit_reason_takes_the_last_marked_line() -> None:
    stderr = "noise\nocf-exit-reason:first\nmore\nocf-exit-reason: No process state file found\n"
    assert agents.exit_reason(stderr) == "No process state file found"
    assert agents.exit_reason("nothing here") is None


# ---------------------------------------------------------------------------
# execute, through a hand-written fake connection


class FakeConnection:
    def __init__(self, result: CommandResult | None = None) -> None:
        self.result = result
        self.calls: list[tuple[str, float]] = []

    async def run(self, command: str, timeout: float) -> CommandResult:
        self.calls.append((command, timeout))
        if self.result is None:
            raise OperationTimeout("timed out")
        return self.result

    async def keepalive(self, timeout: float) -> None:
        return None

    async def close(self) -> None:
        return None


async def test_execute_runs_with_the_op_timeout_and_maps_the_code() -> None:
    connection = FakeConnection(CommandResult(7, "", "ocf-exit-reason:gone\n"))
    result = await agents.execute(connection, dummy(timeouts={"monitor": 4}), "monitor", interval=5)
    assert connection.calls[0][1] == 4
    assert words(connection.calls[0][0])[-1] == "monitor"
    assert result.rc == OcfRc.NOT_RUNNING
    assert not result.ok and not result.hard_error
    assert result.reason == "monitor returned 7 (not running): gone"


async def test_execute_lets_timeouts_through() -> None:
    with pytest.raises(OperationTimeout):
        await agents.execute(FakeConnection(None), dummy(), "start")


def test_an_agent_killed_by_a_signal_says_which() -> None:
    killed = agents.AgentResult("monitor", OcfRc.UNKNOWN_ERROR, CommandResult(137, "", ""))
    assert killed.reason == "monitor returned 1 (unknown error): killed by SIGKILL"
    failed = agents.AgentResult("monitor", OcfRc.UNKNOWN_ERROR, CommandResult(1, "", ""))
    assert failed.reason == "monitor returned 1 (unknown error)"
    marked = CommandResult(143, "", "ocf-exit-reason:gave up\n")
    said = agents.AgentResult("stop", OcfRc.UNKNOWN_ERROR, marked)
    assert said.reason == "stop returned 1 (unknown error): gave up"
