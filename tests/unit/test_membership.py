"""Members on a real store (SQLite here; the same SQL runs on PostgreSQL in the
store tests): joining, heartbeats judged by the store's clock, rendezvous
placement that moves only what it must, requests between members, leaving."""

from __future__ import annotations

import os
import sqlite3
from collections import Counter
from typing import Any

import pytest

from cpe.membership import MemberOptions, Membership, rendezvous_owner
from foundation.errors import Conflict
from foundation.store import Store

NAMES = [f"d{i}" for i in range(300)]


async def direct(fn: Any, *args: Any) -> Any:
    return fn(*args)


def member(store: Store, name: str, pid: int, host: str = "h1") -> Membership:
    return Membership(store, direct, MemberOptions(name, None, ttl=3.0), host=host, pid=pid)


def age(store: Store, name: str, seconds: float) -> None:
    assert store.path is not None
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE members SET heartbeat = heartbeat - ? WHERE name = ?", (seconds, name))


# -- placement ------------------------------------------------------------------------


def test_a_member_that_goes_loses_only_its_deployables_spread_over_the_others() -> None:
    before = {n: rendezvous_owner(n, ["m1", "m2", "m3"]) for n in NAMES}
    after = {n: rendezvous_owner(n, ["m1", "m3"]) for n in NAMES}
    moved = [n for n in NAMES if before[n] != after[n]]
    assert moved and all(before[n] == "m2" for n in moved)
    assert set(Counter(after[n] for n in moved)) == {"m1", "m3"}


def test_a_member_that_joins_takes_about_its_share_and_nothing_else() -> None:
    before = {n: rendezvous_owner(n, ["m1", "m2", "m3"]) for n in NAMES}
    after = {n: rendezvous_owner(n, ["m1", "m2", "m3", "m4"]) for n in NAMES}
    moved = [n for n in NAMES if before[n] != after[n]]
    assert all(after[n] == "m4" for n in moved)
    assert len(NAMES) / 4 * 0.6 < len(moved) < len(NAMES) / 4 * 1.4
    assert rendezvous_owner("x", []) is None


# -- joining and heartbeats -------------------------------------------------------------


async def test_members_see_each_other_and_a_silent_one_goes(store: Store) -> None:
    m1, m2 = member(store, "m1", 11), member(store, "m2", 12)
    await m1.join()
    await m2.join()
    await m1.beat()
    assert m1.live == {"m1", "m2"} and m1.others_alive()
    age(store, "m2", 3.5)
    await m1.beat()
    assert m1.live == {"m1"} and not m1.is_alive("m2")
    assert m1.holder_gone("m2:77") and not m1.holder_gone("m1:5")
    assert all(m1.owns(n) for n in NAMES[:20])


async def test_a_member_coming_or_going_is_told_once_each_time(store: Store) -> None:
    m1, m2 = member(store, "m1", 11), member(store, "m2", 12)
    changes: list[frozenset[str]] = []
    m1.on_change = lambda: changes.append(m1.live)
    await m1.join()
    await m2.join()
    await m1.beat()
    await m1.beat()  # nothing new: no call
    age(store, "m2", 3.5)
    await m1.beat()
    assert changes == [{"m1", "m2"}, {"m1"}]


async def test_a_member_name_in_use_is_refused_unless_its_process_is_dead(store: Store) -> None:
    await member(store, "m1", 11).join()
    with pytest.raises(Conflict, match="in use by pid 11"):
        await member(store, "m1", 12, host="h2").join()
    # same host, the former pid no longer runs (a cped restarted at once): taken over
    dead = 2**22 + 12345
    assert not os.path.exists(f"/proc/{dead}")
    await member(store, "m9", dead).join()
    await member(store, "m9", os.getpid()).join()


async def test_requests_reach_the_owner_once(store: Store) -> None:
    m1, m2 = member(store, "m1", 11), member(store, "m2", 12)
    await m1.join()
    await m2.join()
    await m1.beat()
    mine = next(n for n in NAMES if m1.owner(n) == "m1")
    theirs = next(n for n in NAMES if m1.owner(n) == "m2")
    seen: list[tuple[str, str]] = []
    await m1.beat(lambda name, kind: seen.append((name, kind)))
    await m2.request(mine, "reload")
    await m2.request(theirs, "reload")
    await m1.request(mine, "start")
    await m1.beat(lambda name, kind: seen.append((name, kind)))
    await m1.beat(lambda name, kind: seen.append((name, kind)))
    assert sorted(seen) == [(mine, "reload"), (mine, "start")]
    with pytest.raises(ValueError):
        await m1.request(mine, "dance")


async def test_a_leaving_member_owns_nothing_and_shows_as_left(store: Store) -> None:
    m1, m2 = member(store, "m1", 11), member(store, "m2", 12)
    await m1.join()
    await m2.join()
    await m1.beat()
    await m1.leave()
    assert not any(m1.owns(n) for n in NAMES[:50])
    assert {m1.owner(n) for n in NAMES[:50]} == {"m2"}
    await m2.beat()
    store.acquire_lease("shop", "m2:99", 99, 30.0)
    status = m2.status(store.list_leases(), store.now())
    rows = {row["name"]: row for row in status["members"]}
    assert rows["m1"]["health"] == "left" and rows["m2"]["health"] == "alive"
    assert rows["m2"]["deployables"] == ["shop"] and rows["m2"]["self"]
