"""The lifecycle routes through aiohttp's test client: a real store, fake DPE processes.

The supervisor runs in the application as in cped; the fake DPEs (from
``test_supervisor``) take their lease when a test says so.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import test_utils, web

from cpe.api import DaemonInfo, StreamSettings, make_app
from cpe.routes import PREFIX
from foundation.clock import SystemClock
from foundation.config import Config, CpedSettings, DpedSettings
from foundation.keyfiles import key_paths
from foundation.store import Store
from tests.unit.test_supervisor import FakeLauncher, FakeProcess

Client = test_utils.TestClient[web.Request, web.Application]
CONFIG = Config(CpedSettings(lease_ttl=1.0), DpedSettings(lease_renew_interval=0.2))


@pytest.fixture
def keys_dir() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="pc-keys-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def launcher(store: Store) -> FakeLauncher:
    return FakeLauncher(store, SystemClock())  # type: ignore[arg-type]


@pytest.fixture
async def api(store: Store, launcher: FakeLauncher, keys_dir: Path) -> AsyncIterator[Client]:
    app = make_app(
        store,
        DaemonInfo(CONFIG),
        StreamSettings(keepalive=0.2, poll_interval=0.02),
        launcher=launcher,
        keys_dir=keys_dir,
    )
    async with test_utils.TestClient(test_utils.TestServer(app)) as client:
        yield client


async def call(api: Client, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data is not None else {}
    async with api.request(method, PREFIX + path, data=data, headers=headers) as response:
        text = await response.text()
        return response.status, json.loads(text) if text else None


def make_keys(keys_dir: Path, *assemblies: str) -> None:
    for assembly in assemblies:
        for path in key_paths(keys_dir, assembly):
            path.write_text("key\n")


async def make_shop(api: Client, keys_dir: Path, *assemblies: str) -> None:
    document = {
        "name": "shop",
        "assemblies": [
            {"name": a, "resources": [{"name": f"{a}-r", "type": "Dummy"}]} for a in assemblies
        ],
    }
    status, body = await call(api, "PUT", "/deployables/shop", document)
    assert status == 201, body
    make_keys(keys_dir, *assemblies)


async def until(condition: Callable[[], Any], within: float = 5.0) -> Any:
    deadline = time.monotonic() + within
    while not (value := condition()):
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)
    return value


async def started(api: Client, launcher: FakeLauncher) -> FakeProcess:
    """Start shop; its DPE takes the lease; wait until the supervisor sees it run."""
    status, body = await call(api, "POST", "/deployables/shop/start")
    assert status == 200, body
    (process,) = launcher.live()
    assert body["pid"] == process.pid
    process.take_lease()
    await until(lambda: _supervision(api) == "running")
    return process


def _supervision(api: Client) -> str:
    from cpe.api import CONTEXT

    supervisor = api.app[CONTEXT].lifecycle.supervisor
    assert supervisor is not None
    return str(supervisor.info("shop")["supervision"])


# -- start -----------------------------------------------------------------------------------


async def test_start_runs_a_dpe_and_a_second_start_changes_nothing(
    api: Client, launcher: FakeLauncher, keys_dir: Path, store: Store
) -> None:
    await make_shop(api, keys_dir, "web")
    process = await started(api, launcher)
    assert store.get_desired_state("shop") == "started"
    status, body = await call(api, "POST", "/deployables/shop/start")
    assert (status, body["note"], body["pid"]) == (200, "already running", process.pid)
    assert launcher.live() == [process]


async def test_start_refuses_an_incomplete_document_and_changes_nothing(
    api: Client, launcher: FakeLauncher, keys_dir: Path, store: Store
) -> None:
    await make_shop(api, keys_dir, "web")
    status, body = await call(api, "POST", "/assemblies", {"name": "db"})  # not in shop
    assert status == 201, body
    resource = {"name": "app", "type": "Dummy", "parameters": {"peer": {"ref": "db:ipaddress"}}}
    status, body = await call(api, "POST", "/assemblies/web/resources", resource)
    assert status == 201, body
    status, error = await call(api, "POST", "/deployables/shop/start")
    assert status == 409 and "document is incomplete" in error["message"]
    assert "db" in error["message"]
    assert store.get_desired_state("shop") == "stopped" and launcher.spawned == []


async def test_start_refuses_assemblies_without_keys(
    api: Client, launcher: FakeLauncher, keys_dir: Path, store: Store
) -> None:
    await make_shop(api, keys_dir, "web", "db")
    key_paths(keys_dir, "db")[2].unlink()
    status, error = await call(api, "POST", "/deployables/shop/start")
    assert status == 409 and "no key pair for assembly db" in error["message"]
    assert error["details"] == {"assemblies": ["db"]}
    assert store.get_desired_state("shop") == "stopped" and launcher.spawned == []


async def test_lifecycle_of_an_unknown_deployable_is_404(api: Client) -> None:
    for method, action in (("POST", "start"), ("POST", "stop"), ("POST", "reload")):
        assert (await call(api, method, f"/deployables/nope/{action}"))[0] == 404
    assert (await call(api, "GET", "/deployables/nope/status"))[0] == 404


# -- stop, reload, delete --------------------------------------------------------------------


async def test_stop_answers_once_the_dpe_has_exited(
    api: Client, launcher: FakeLauncher, keys_dir: Path, store: Store
) -> None:
    await make_shop(api, keys_dir, "web")
    process = await started(api, launcher)
    status, body = await call(api, "POST", "/deployables/shop/stop")
    assert status == 200, body
    assert process.signals == [signal.SIGTERM] and not process.alive
    assert body["state"] == "stopped" and body["dpe"]["exit"] == "status 0"
    assert store.get_desired_state("shop") == "stopped"


async def test_stop_answers_202_while_the_dpe_is_still_stopping(
    api: Client, launcher: FakeLauncher, keys_dir: Path
) -> None:
    await make_shop(api, keys_dir, "web")
    launcher.obey_sigterm = False
    process = await started(api, launcher)
    status, body = await call(api, "POST", "/deployables/shop/stop?wait=100ms&kill_after=1h")
    assert status == 202 and body["state"] == "stopping", body
    assert process.alive and process.signals == [signal.SIGTERM]
    process.exit(0, release=True)
    status, body = await call(api, "POST", "/deployables/shop/stop")
    assert status == 200 and body["state"] == "stopped"


async def test_a_stop_asked_not_to_wait_with_nothing_to_stop_is_done(
    api: Client, launcher: FakeLauncher, keys_dir: Path
) -> None:
    """Nothing to stop: 200 stopped at once, not 202 "still stopping after 0 s"."""
    await make_shop(api, keys_dir, "web")
    status, body = await call(api, "POST", "/deployables/shop/stop?wait=0")
    assert (status, body["state"]) == (200, "stopped"), body
    assert launcher.spawned == []


@pytest.mark.parametrize("query", ["wait=soon", "wait=11m", "kill_after=-1", "kill_after=2h"])
async def test_stop_refuses_bad_durations(
    api: Client, launcher: FakeLauncher, keys_dir: Path, query: str
) -> None:
    await make_shop(api, keys_dir, "web")
    status, error = await call(api, "POST", f"/deployables/shop/stop?{query}")
    assert status == 400 and query.split("=")[0] in error["message"]


async def test_reload_signals_the_dpe_and_is_refused_when_stopped(
    api: Client, launcher: FakeLauncher, keys_dir: Path
) -> None:
    await make_shop(api, keys_dir, "web")
    status, error = await call(api, "POST", "/deployables/shop/reload")
    assert status == 409 and "not started" in error["message"]
    process = await started(api, launcher)
    status, body = await call(api, "POST", "/deployables/shop/reload")
    assert (status, body["pid"]) == (200, process.pid)
    assert process.signals == [signal.SIGHUP]


async def test_delete_refuses_a_running_deployable_and_force_stops_it_first(
    api: Client, launcher: FakeLauncher, keys_dir: Path, store: Store
) -> None:
    await make_shop(api, keys_dir, "web")
    process = await started(api, launcher)
    status, error = await call(api, "DELETE", "/deployables/shop")
    assert status == 409 and "running" in error["message"]
    assert process.alive
    assert (await call(api, "DELETE", "/deployables/shop?force=true")) == (204, None)
    assert process.signals == [signal.SIGTERM] and not process.alive
    assert (await call(api, "GET", "/deployables/shop"))[0] == 404


# -- status ----------------------------------------------------------------------------------


async def test_status_is_composed_from_the_runtime_the_dpe_recorded(
    api: Client, launcher: FakeLauncher, keys_dir: Path, store: Store
) -> None:
    await make_shop(api, keys_dir, "web", "db")
    process = await started(api, launcher)
    now = time.time()
    store.put_runtime("shop", "deployable", "", {"state": "running", "reason": "all up"})
    store.put_runtime("shop", "assembly", "web", {"state": "running", "failures": [now - 5]})
    store.put_runtime(
        "shop",
        "instance",
        "web",
        {
            "instance_id": "web-1",
            "address": "10.0.0.2",
            "hostname": "web",
            "created_at": now - 60,
            "ssh_host": "127.0.0.1",
            "ssh_port": 2201,
            "username": "root",
        },
    )
    store.put_runtime(
        "shop", "resource", "web/web-r", {"state": "running", "last_rc": 0, "failures": []}
    )
    status, body = await call(api, "GET", "/deployables/shop/status")
    assert status == 200, body
    assert (body["name"], body["state"], body["reason"], body["desired"]) == (
        "shop",
        "running",
        "all up",
        "started",
    )
    dpe = body["dpe"]
    assert dpe["pid"] == process.pid and dpe["alive"] is True and dpe["lease_epoch"] == 1
    assert dpe["supervision"] == "running" and dpe["adopted"] is False
    web, db = body["assemblies"]
    assert (web["name"], web["state"], web["instance"], web["address"]) == (
        "web",
        "running",
        "web-1",
        "10.0.0.2",
    )
    assert 59 <= web["uptime"] <= 70 and len(web["failures"]) == 1
    assert (web["ssh_host"], web["ssh_port"], web["username"]) == ("127.0.0.1", 2201, "root")
    assert web["resources"] == [
        {
            "name": "web-r",
            "agent": "ocf:heartbeat:Dummy",
            "state": "running",
            "failures": [],
            "escalation": {"failures": 0, "period": 0},  # the document's: off
            "last_op": None,
            "last_rc": 0,
            "blocked": None,
            "retry_at": None,
            "failures_in_a_row": None,
            "last_failure": None,
        }
    ]
    assert (db["state"], db["instance"], db["address"]) == ("stopped", None, None)
    assert db["resources"][0]["state"] == "stopped"
    states = [e["state"] for e in body["last_events"]]
    assert states[:2] == ["dpe-started", "dpe-running"]
