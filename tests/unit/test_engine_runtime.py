"""The runtime seam: the in-memory and the store-backed runtime behave alike."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dpe.runtime import MemoryRuntime, Runtime, StoreRuntime
from foundation.events import Event
from foundation.paths import Paths
from foundation.store import Store


@pytest.fixture(params=["memory", "store"])
def runtime(request: pytest.FixtureRequest, pcloud_home: Paths) -> Iterator[Runtime]:
    if request.param == "memory":
        yield MemoryRuntime("web")
        return
    store = Store.open(pcloud_home.store_file)
    try:
        yield StoreRuntime(store, "web")
    finally:
        store.close()


def test_documents_are_put_loaded_and_deleted(runtime: Runtime) -> None:
    runtime.put("instance", "a1", {"instance_id": "i-1", "address": "10.0.0.1"})
    runtime.put("resource", "a1/x", {"state": "running", "failures": [1.5]})
    runtime.put("resource", "a1/y", {"state": "stopped", "failures": []})
    runtime.put("resource", "a1/x", {"state": "failed", "failures": [1.5, 2.5]})
    assert runtime.load() == {
        "instance": {"a1": {"instance_id": "i-1", "address": "10.0.0.1"}},
        "resource": {
            "a1/x": {"state": "failed", "failures": [1.5, 2.5]},
            "a1/y": {"state": "stopped", "failures": []},
        },
    }
    runtime.delete("resource", "a1/y")
    assert list(runtime.load()["resource"]) == ["a1/x"]
    runtime.delete("resource")
    assert "resource" not in runtime.load()
    runtime.delete()
    assert runtime.load() == {}


def test_a_loaded_document_is_a_copy(runtime: Runtime) -> None:
    doc = {"failures": [1.0]}
    runtime.put("assembly", "a1", doc)
    doc["failures"].append(2.0)
    runtime.load()["assembly"]["a1"]["failures"].append(3.0)
    assert runtime.load()["assembly"]["a1"] == {"failures": [1.0]}


def test_events_get_increasing_ids(runtime: Runtime) -> None:
    first = runtime.append_event(Event(1.0, "web", "running", "started", "a1", "x"))
    second = runtime.append_event(Event(2.0, "web", "failed", "monitor returned 7 (not running)"))
    assert first.id is not None and second.id is not None and second.id > first.id
    assert (second.state, second.reason, second.assembly) == (
        "failed",
        "monitor returned 7 (not running)",
        None,
    )


def test_the_lease_is_held_renewed_taken_over_after_expiry_and_released(runtime: Runtime) -> None:
    epoch = runtime.acquire_lease("h:1", 1, 5.0, now=100.0)
    assert epoch is not None
    assert runtime.acquire_lease("h:1", 1, 5.0, now=101.0) == epoch  # ours already
    assert runtime.acquire_lease("h:2", 2, 5.0, now=102.0) is None  # held
    assert runtime.renew_lease("h:1", epoch, 5.0, now=104.0)
    assert runtime.acquire_lease("h:2", 2, 5.0, now=108.0) is None  # renewed until 109
    taken = runtime.acquire_lease("h:2", 2, 5.0, now=109.5)
    assert taken == epoch + 1
    assert not runtime.renew_lease("h:1", epoch, 5.0, now=110.0)  # lost
    runtime.release_lease("h:1", epoch)  # not ours any more: nothing happens
    assert runtime.acquire_lease("h:3", 3, 5.0, now=110.0) is None
    runtime.release_lease("h:2", taken)
    assert runtime.acquire_lease("h:3", 3, 5.0, now=110.0) == taken + 1


def test_a_store_runtime_writes_under_its_lease_and_is_refused_after_it(
    pcloud_home: Paths,
) -> None:
    from foundation.errors import LeaseLost

    store = Store.open(pcloud_home.store_file)
    try:
        mine = StoreRuntime(store, "web", store_clock=True)
        theirs = StoreRuntime(store, "web", store_clock=True)
        assert mine.acquire_lease("m1:1", 1, 30.0, now=0.0) == 1  # the store's clock, not 0
        assert store.get_lease("web")["expires_at"] > 1e9  # type: ignore[index]
        mine.put("instance", "a1", {"instance_id": "i-1"})
        assert mine.renew_lease("m1:1", 1, -1.0, now=0.0)  # as if its time ran out: expired
        assert theirs.acquire_lease("m2:2", 2, 30.0, now=0.0) == 2
        with pytest.raises(LeaseLost):
            mine.put("instance", "a1", {"instance_id": "stale"})
        with pytest.raises(LeaseLost):
            mine.append_event(Event(1.0, "web", "failed", "stale"))
        theirs.put("instance", "a1", {"instance_id": "i-2"})
        assert store.get_runtime("web")["instance"]["a1"] == {"instance_id": "i-2"}
    finally:
        store.close()
