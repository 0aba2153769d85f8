"""A real cped process on a temporary PCLOUD_HOME, driven through cpe.client.Client."""

from __future__ import annotations

import grp
import json
import os
import signal
import socket
import stat
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from cpe import control
from cpe.client import Client
from cpe.pidfile import is_locked
from foundation.errors import Conflict, InvalidInput, NotFound, PcloudError, Unavailable
from foundation.events import Event
from foundation.paths import Paths, resolve
from foundation.store import Store
from tests.integration.conftest import CpedFactory, CpedProcess
from tests.integration.test_pcloudsh_session import pcloudsh_command

pytestmark = pytest.mark.integration


def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def assert_nothing_left(paths: Paths, pid: int) -> None:
    assert not control.process_alive(pid)
    assert not paths.pidfile.exists()
    assert not paths.socket.exists()


# -- process life ----------------------------------------------------------------------------


def test_foreground_start_health_stop_leaves_nothing(cped: CpedProcess) -> None:
    health = cped.client.health()
    assert health["status"] == "ok" and health["pid"] == cped.pid
    assert cped.paths.pidfile.read_text().strip() == str(cped.pid)
    assert cped.stop() == 0
    assert_nothing_left(cped.paths, cped.pid)
    assert "SIGTERM received: stopping" in cped.log()


def test_sigint_stops_in_order_too(cped: CpedProcess) -> None:
    cped.signal(signal.SIGINT)
    assert cped.proc is not None and cped.proc.wait(10) == 0
    assert_nothing_left(cped.paths, cped.pid)


def test_daemonized_start_and_stop(pcloud_home: Paths) -> None:
    pid = control.start_daemon(pcloud_home)
    try:
        assert control.is_cped(pid) and pid != os.getpid()
        assert os.getsid(pid) != os.getsid(0)  # detached: a session of its own
        status = control.daemon_status(pcloud_home)
        assert status is not None and status["pid"] == pid
        with pytest.raises(Conflict, match="already running"):
            control.start_daemon(pcloud_home)
    finally:
        stopped = control.stop_daemon(pcloud_home)
    assert stopped == pid
    assert_nothing_left(pcloud_home, pid)
    assert control.daemon_status(pcloud_home) is None
    assert control.stop_daemon(pcloud_home) is None
    log = (pcloud_home.log_dir / "cped.log").read_text()
    assert f"cped[{pid}]" in log and "cped stopped" in log


def test_the_socket_is_0660_with_the_configured_group(cped_factory: CpedFactory) -> None:
    group = next(g for g in grp.getgrall() if g.gr_gid != os.getgid())
    cped = cped_factory(f"[cped]\nsocket_group = {group.gr_name}\n")
    info = os.stat(cped.paths.socket)
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o660
    assert info.st_gid == group.gr_gid


def test_a_second_cped_refuses_to_start(cped: CpedProcess, cped_factory: CpedFactory) -> None:
    second = cped_factory(start=False)
    proc = second.spawn()
    assert proc.wait(10) == 1
    assert f"already running (pid {cped.pid})" in second.log()
    assert cped.client.health()["pid"] == cped.pid


def test_a_live_socket_is_refused_even_without_the_pidfile(
    cped: CpedProcess, cped_factory: CpedFactory
) -> None:
    cped.paths.pidfile.unlink()  # the lock stays with the deleted file
    second = cped_factory(start=False)
    assert second.spawn().wait(10) == 1
    assert "another cped is already listening" in second.log()
    assert cped.client.health()["pid"] == cped.pid


def test_a_killed_cped_leaves_nothing_that_blocks_a_restart(cped: CpedProcess) -> None:
    cped.client.create_assembly({"name": "kept"})
    cped.kill()
    assert cped.paths.socket.exists() and cped.paths.pidfile.exists()
    with pytest.raises(Unavailable, match="not running"):
        cped.client.health()
    cped.start()
    assert cped.client.get_assembly("kept")["name"] == "kept"


def test_stop_ends_event_streams(cped: CpedProcess) -> None:
    outcome: list[BaseException] = []
    stream = cped.client.stream_events(after_id=0)

    def follow() -> None:
        try:
            for _ in stream:
                pass
        except PcloudError as error:
            outcome.append(error)

    reader = threading.Thread(target=follow)
    reader.start()
    time.sleep(0.3)
    started = time.monotonic()
    assert cped.stop() == 0
    reader.join(10)
    assert time.monotonic() - started < 5
    assert len(outcome) == 1 and isinstance(outcome[0], Unavailable)


# -- configuration ----------------------------------------------------------------------------


def test_sighup_reloads_the_configuration(cped_factory: CpedFactory) -> None:
    cped = cped_factory("[cped]\nlog_level = info\n")
    cped.paths.config_file.write_text("[cped]\nlog_level = debug\n")
    cped.signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in cped.log())
    cped.client.create_jeos({"name": "j1", "path": "/x.qcow2"})
    wait_for(lambda: "change by uid=0" in cped.log())
    cped.paths.config_file.write_text("[cped]\nlog_level = loud\nlease_ttl = never\n")
    cped.signal(signal.SIGHUP)
    wait_for(lambda: "keeping the previous configuration" in cped.log())
    assert "[cped] lease_ttl" in cped.log()
    assert cped.client.health()["status"] == "ok"
    assert cped.stop() == 0


def test_a_sighup_that_changes_a_setting_read_at_start_names_it(
    cped_factory: CpedFactory,
) -> None:
    cped = cped_factory("[cped]\nshutdown_timeout = 10s\n")
    cped.paths.config_file.write_text("[cped]\nshutdown_timeout = 30s\nmember = other\n")
    cped.signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in cped.log())
    assert (
        "[cped] member, shutdown_timeout changed: cped uses the new values from its next start"
    ) in cped.log()


def test_a_bad_config_exits_2_before_forking(pcloud_home: Paths) -> None:
    pcloud_home.config_file.write_text("[cped]\nlog_level = loud\n[dped]\npolicy_engine = x\n")
    with pytest.raises(InvalidInput) as caught:
        control.start_daemon(pcloud_home)
    message = str(caught.value)
    assert "exit status 2" in message
    assert "[cped] log_level" in message and "[dped] policy_engine" in message
    assert str(pcloud_home.config_file) in message
    assert not pcloud_home.pidfile.exists() and not pcloud_home.socket.exists()


def test_a_missing_config_named_on_the_command_line_exits_2(pcloud_home: Paths) -> None:
    missing = pcloud_home.config_dir / "nope.conf"
    result = subprocess.run(
        [*control.cped_command(), "--config", str(missing)],
        env=control.cped_environment(pcloud_home),
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 2
    assert "no such file" in result.stderr and str(missing) in result.stderr


def test_usage_errors_exit_2(pcloud_home: Paths) -> None:
    result = subprocess.run(
        [*control.cped_command(), "--no-such-option"],
        env=control.cped_environment(pcloud_home),
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 2 and "usage" in result.stderr


# -- the API through the client -----------------------------------------------------------------


def test_client_crud_and_errors(cped: CpedProcess) -> None:
    client = cped.client
    client.create_assembly({"name": "db", "resources": [{"name": "pgsql", "type": "Dummy"}]})
    client.create_assembly({"name": "web"})
    client.add_resource("web", {"name": "httpd", "type": "Dummy"})
    client.create_deployable({"name": "shop", "infrastructure": "local"})
    client.add_deployable_assembly("shop", {"assembly": "db"})
    client.add_deployable_assembly("shop", {"assembly": "web"})
    client.add_constraint("shop", {"first": "db/pgsql", "then": "web/httpd"})
    client.set_deployable_escalation("shop", {"failures": 3, "period": "1m"})
    client.set_assembly_escalation("web", {"failures": 2, "period": 30})
    document = client.get_deployable("shop")
    assert client.put_deployable("shop", document) == document
    assert [row["name"] for row in client.list_deployables()] == ["shop"]
    with pytest.raises(NotFound):
        client.get_assembly("nope")
    with pytest.raises(Conflict):
        client.delete_assembly("db")
    with pytest.raises(InvalidInput) as caught:
        client.add_constraint("shop", {"first": "web/httpd", "then": "db/pgsql"})
    assert "cycle" in caught.value.message
    with pytest.raises(Conflict, match="no key pair for assembly db, web"):
        client.start_deployable("shop")
    assert client.deployable_status("shop")["desired"] == "stopped"
    client.remove_constraint("shop", first="db/pgsql", then="web/httpd")
    client.remove_deployable_assembly("shop", "web")
    client.remove_resource("web", "httpd")
    client.delete_assembly("web")
    client.delete_deployable("shop")
    assert client.get_template("dummy")["builtin"] is True
    assert {op for op in client.openapi()["paths"]} >= {"/v1/health", "/v1/events/stream"}


def test_events_written_by_another_process_reach_query_and_stream(cped: CpedProcess) -> None:
    writer = Store.open(cped.paths.store_file)  # as a dped would
    try:
        first = writer.append_event(Event(time.time(), "shop", "running", "all assemblies active"))
        stream = cped.client.stream_events(after_id=0)
        assert next(stream)["id"] == first.id
        second = writer.append_event(Event(time.time(), "shop", "failed", "monitor returned 7"))
        assert next(stream) == second.to_dict()
        stream.close()
    finally:
        writer.close()
    rows = cped.client.query_events(deployable="shop", order="desc", limit=1)
    assert rows == [second.to_dict()]


def test_a_body_cut_short_is_refused_and_logged_with_its_peer_not_as_an_internal_error(
    cped: CpedProcess,
) -> None:
    request = (
        b"POST /v1/assemblies HTTP/1.1\r\nHost: cped\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"name": "web"'
    )
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(str(cped.paths.socket))
        client.sendall(request)
    audit = f"change by uid={os.getuid()} pid={os.getpid()}: POST /v1/assemblies -> 400"
    wait_for(lambda: audit in cped.log())
    assert "internal error" not in cped.log() and "Traceback" not in cped.log()
    assert cped.client.list_assemblies() == []


def test_stop_waits_as_long_as_the_configured_shutdown_timeout_lets_cped_take(
    cped_factory: CpedFactory,
) -> None:
    cped = cped_factory("[cped]\nshutdown_timeout = 12s\n")
    with socket.socket(socket.AF_UNIX) as slow:  # a request in flight: its body never ends
        slow.connect(str(cped.paths.socket))
        slow.sendall(
            b"POST /v1/assemblies HTTP/1.1\r\nHost: cped\r\nContent-Type: application/json"
            b'\r\nContent-Length: 100\r\n\r\n{"name":'
        )
        time.sleep(0.2)
        began = time.monotonic()
        stopped = control.stop(cped.paths)  # as ``pcloudsh stop`` does
    assert stopped["pid"] == cped.pid and time.monotonic() - began > 10
    assert_nothing_left(cped.paths, cped.pid)


def test_a_request_that_is_not_valid_http_is_a_warning_not_a_traceback(
    cped: CpedProcess,
) -> None:
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(str(cped.paths.socket))
        client.sendall(b"GET /v1/assemblies/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: cped\r\n\r\n")
        answer = client.recv(1000)
    head = answer.split(b"\r\n\r\n")[0].decode()
    # answered by aiohttp before any of cped's code: plain text, as the man page says
    assert head.split(" ")[1] == "400" and "Content-Type: text/plain" in head
    with pytest.raises(PcloudError, match="cped answered HTTP 400: Got more than 8190 bytes"):
        cped.client.get_assembly("a" * 9000)
    wait_for(lambda: "refused a request that is not valid HTTP from the UNIX socket" in cped.log())
    assert "Traceback" not in cped.log() and " ERROR " not in cped.log()


def test_client_without_cped_says_how_to_start_it(pcloud_home: Paths) -> None:
    with pytest.raises(Unavailable, match="pcloudsh start"):
        Client(pcloud_home.socket, timeout=1).list_jeos()


def test_the_event_hook_runs_for_every_new_event(
    pcloud_home: Paths, cped_factory: CpedFactory
) -> None:
    out = pcloud_home.state_dir / "hook.out"
    script = f'cat >> {out}; echo >> {out}; test "$PCLOUD_STATE" != failed'
    cped = cped_factory(f"[cped]\nevent_hook = /bin/sh -c '{script}'\n")
    writer = Store.open(cped.paths.store_file)
    try:
        events = [
            writer.append_event(Event(time.time(), "shop", state, f"test {state}", "web"))
            for state in ("running", "failed", "recovering")
        ]
    finally:
        writer.close()
    wait_for(lambda: out.exists() and len(out.read_text().splitlines()) == 3)
    received = [json.loads(line) for line in out.read_text().splitlines()]
    assert received == [e.to_dict() for e in events]
    wait_for(lambda: "event hook exited 1" in cped.log())


def test_stop_never_signals_a_process_that_is_not_cped(pcloud_home: Paths) -> None:
    holder = subprocess.Popen(["flock", str(pcloud_home.pidfile), "sleep", "30"])
    try:
        wait_for(lambda: is_locked(pcloud_home.pidfile))
        pcloud_home.pidfile.write_text(f"{holder.pid}\n")
        with pytest.raises(Conflict, match="not cped"):
            control.stop_daemon(pcloud_home, timeout=2)
        assert holder.poll() is None
    finally:
        holder.kill()
        holder.wait()


def test_a_pcloud_home_that_is_a_file_is_reported_not_a_traceback(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("")
    env = control.cped_environment(resolve({"PCLOUD_HOME": str(home)}))
    status = subprocess.run(
        [*pcloudsh_command(), "status"], env=env, capture_output=True, text=True, timeout=30
    )
    assert (status.returncode, status.stdout.strip()) == (3, "cped is not running")
    start = subprocess.run(
        [*pcloudsh_command(), "start"], env=env, capture_output=True, text=True, timeout=30
    )
    assert start.returncode == 1 and "Not a directory" in start.stderr, start.stderr
    assert str(home) in start.stderr and "Traceback" not in start.stderr + status.stderr


def test_starts_at_the_same_moment_all_succeed_with_one_cped(pcloud_home: Paths) -> None:
    env = control.cped_environment(pcloud_home)
    starts = [
        subprocess.Popen(
            [*pcloudsh_command(), "--json", "start"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    try:
        answers = [start.communicate(timeout=60) for start in starts]
        assert [start.returncode for start in starts] == [0, 0, 0], answers
        said = [json.loads(out) for out, _ in answers]
        assert sorted(answer["started"] for answer in said) == [False, False, True]
        assert len({answer["pid"] for answer in said}) == 1
    finally:
        control.stop_daemon(pcloud_home)


def test_events_older_than_the_retention_are_deleted_when_cped_starts(
    cped_factory: CpedFactory,
) -> None:
    cped = cped_factory("[cped]\nevent_retention = 1h\n", start=False)
    store = Store.open(cped.paths.store_file)
    try:
        store.append_event(Event(time.time() - 7200, "shop", "running", "two hours ago"))
        store.append_event(Event(time.time() - 60, "shop", "running", "a minute ago"))
    finally:
        store.close()
    cped.start()
    wait_for(lambda: [e["reason"] for e in cped.client.query_events()] == ["a minute ago"])
    assert "event retention: deleted 1 events older than 3600 s" in cped.log()


# -- agents the local infrastructure runs ------------------------------------------------------


def _agent_document(infrastructure: str, agent_type: str) -> dict[str, Any]:
    resource = {"name": "www", "class": "ocf", "provider": "heartbeat", "type": agent_type}
    assembly = {"name": "web", "resources": [resource]}
    if infrastructure != "local":
        assembly["image"] = "j1"
    return {"name": "shop", "infrastructure": infrastructure, "assemblies": [assembly]}


def test_a_local_deployable_naming_an_agent_this_host_has_not_is_refused(
    cped: CpedProcess,
) -> None:
    client = cped.client
    with pytest.raises(InvalidInput) as caught:
        client.put_deployable("shop", _agent_document("local", "NoSuchAgent"))
    assert caught.value.details == [
        {
            "path": "assemblies[0].resources[0].type",
            "message": "resource www: no such agent on this host: ocf:heartbeat:NoSuchAgent"
            " (no executable /usr/lib/ocf/resource.d/heartbeat/NoSuchAgent), and the local"
            " infrastructure runs this host's agents",
        }
    ]
    assert client.list_deployables() == [] and client.list_assemblies() == []
    client.put_deployable("shop", _agent_document("local", "Dummy"))
    with pytest.raises(InvalidInput, match="resource db: no such agent on this host"):
        client.add_resource("web", {"name": "db", "type": "NoSuchAgent"})
    with pytest.raises(InvalidInput, match="no such agent on this host: lsb:no-such-script"):
        client.add_resource("web", {"name": "db", "class": "lsb", "type": "no-such-script"})
    assert [r["name"] for r in client.get_assembly("web")["resources"]] == ["www"]


def test_a_user_template_of_an_agent_this_host_has_not_cannot_make_a_local_resource(
    cped: CpedProcess,
) -> None:
    client = cped.client
    client.create_template(
        {"name": "absent", "resource": {"type": "NoSuchAgent"}}  # may live in an image
    )
    client.put_deployable("shop", _agent_document("local", "Dummy"))
    resource = {"name": "db", **client.get_template("absent")["resource"]}
    with pytest.raises(InvalidInput, match="resource db: no such agent on this host"):
        client.add_resource("web", resource)


def test_an_image_deployable_may_name_an_agent_this_host_has_not(cped: CpedProcess) -> None:
    cped.client.create_jeos({"name": "j1", "path": "/x.qcow2"})
    stored = cped.client.put_deployable("shop", _agent_document("libvirt", "NoSuchAgent"))
    assert stored["assemblies"][0]["resources"][0]["type"] == "NoSuchAgent"
