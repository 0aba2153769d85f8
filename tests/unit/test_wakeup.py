"""Wake-ups: what a DPE sends cped after storing an event or a lease change."""

from __future__ import annotations

from dpe.runtime import StoreRuntime
from foundation.events import Event
from foundation.store import Store
from foundation.wakeup import EVENT, LEASE, Wake, decode, encode


def test_a_wake_up_reads_back_as_it_was_sent() -> None:
    assert decode(encode(EVENT, "shop")) == Wake(EVENT, "shop")
    assert decode(encode(LEASE, "a.b-c_1")) == Wake(LEASE, "a.b-c_1")


def test_anything_else_is_not_a_wake_up() -> None:
    for junk in (b"", b"event", b"event ", b"poke shop", b"event a b", b"\xff\xfe", b"lease\nx"):
        assert decode(junk) is None, junk


def test_the_store_runtime_wakes_cped_after_what_cped_acts_on(store: Store) -> None:
    store.insert_deployable({"name": "shop", "uuid": "u-1", "assemblies": []})
    sent: list[tuple[str, str]] = []
    runtime = StoreRuntime(store, "shop", lambda kind, name: sent.append((kind, name)))
    now = store.now()  # the store judges its writer's lease on its own clock
    epoch = runtime.acquire_lease("h:1", 1, 5.0, now)
    assert epoch is not None
    assert runtime.renew_lease("h:1", epoch, 5.0, now + 1)
    runtime.put("resource", "web/www", {"state": "running"})
    runtime.append_event(Event(now + 1, "shop", "running", "up"))
    assert runtime.acquire_lease("h:2", 2, 5.0, now + 2) is None  # held: not taken, no wake-up
    runtime.release_lease("h:1", epoch)
    # renewals and runtime documents are not worth a wake-up: cped does not act on them
    assert sent == [(LEASE, "shop"), (EVENT, "shop"), (LEASE, "shop")]
