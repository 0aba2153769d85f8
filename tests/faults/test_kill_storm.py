"""Rounds of SIGKILLs: dped, cped or both, at a random moment of a start, a
recovery or a reload of a running deployable.

The short form (``make test``) runs one round of each phase; the long form
(``PCLOUD_SOAK=1``) runs rounds until both dped and cped have been killed at
least 50 times.  After every round the invariants are checked and counted:
the deployable converges (every assembly and resource running again, as
recorded by the DPE that holds the lease now), exactly one DPE, exactly one
instance per assembly, a DPE killed is replaced under a higher lease epoch,
every event acknowledged before the kill is still in the log, event ids only
grow, and a reload's resources are all there.  ``PCLOUD_FAULT_SEED`` replays
a run (the seed is in every failure message).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
from typing import Any

import pytest

from foundation.errors import PcloudError
from tests.faults.soaking import SOAK, Tally
from tests.faults.test_kills import SEED, event_ids, guest_inits, lease_epoch
from tests.integration.test_lifecycle import Rig, dummy, shop

pytestmark = pytest.mark.integration

ASSEMBLIES = ("a1", "a2")
PHASES = ("start", "recovery", "reload")
VICTIMS = ("dped", "cped", "both")
KILLS_EACH = 50  # the long form's minimum of SIGKILLs of dped and of cped


class Storm:
    def __init__(self, rig: Rig, chance: random.Random, tally: Tally) -> None:
        self.rig, self.chance, self.tally = rig, chance, tally
        self.extra = False  # does the document have a1's extra resource now
        self.round = 0

    # -- bringing the deployable to the moment of the kill --------------------------

    def prepare(self, phase: str) -> None:
        rig = self.rig
        if phase == "start":
            rig.client.stop_deployable("shop")
            rig.client.start_deployable("shop")
            time.sleep(self.chance.uniform(0.0, 1.2))
        elif phase == "recovery":
            os.kill(self.chance.choice(guest_inits(rig)), signal.SIGKILL)
            self.tally.fault("SIGKILL of an instance (to recover)")
            time.sleep(self.chance.uniform(0.0, 1.0))
        else:
            if self.extra:
                rig.client.remove_resource("a1", "extra")
            else:
                rig.client.add_resource("a1", dummy("extra"))
            self.extra = not self.extra
            rig.client.reload_deployable("shop")
            time.sleep(self.chance.uniform(0.0, 0.8))

    def kill(self, victim: str) -> int:
        """SIGKILL the victim(s); the DPE pid killed (0 if none)."""
        rig, killed = self.rig, 0
        if victim in ("cped", "both"):
            rig.cped.kill()
            self.tally.fault("SIGKILL of cped")
        if victim in ("dped", "both"):
            dpes = rig.until(rig.dpes, 15.0, "a dped to kill")
            killed = int(self.chance.choice(dpes))
            os.kill(killed, signal.SIGKILL)
            self.tally.fault("SIGKILL of dped")
        if victim in ("cped", "both"):
            rig.new_cped()
        return killed

    # -- one round ------------------------------------------------------------------

    def one_round(self, phase: str, victim: str) -> None:
        self.round += 1
        self.rig.running(within=40.0)
        before = self.rig.status()
        self.prepare(phase)
        acknowledged, epoch = event_ids(self.rig), lease_epoch(self.rig)
        killed = self.kill(victim)
        self.tally.fault(f"during {phase}")
        self.invariants(f"round {self.round}: {victim} killed during {phase}", killed, epoch)
        self.checked(phase, acknowledged, before)

    def invariants(self, what: str, killed: int, epoch: int) -> None:
        rig, check = self.rig, self.tally.check
        context = f"{what} (PCLOUD_FAULT_SEED={SEED})"
        if killed:
            replaced = _within(rig, lambda: rig.status()["dpe"]["pid"] not in (None, killed), 20)
            check("a killed DPE is replaced", replaced, context)
            higher = _within(rig, lambda: lease_epoch(rig) > epoch, 20)
            check("the new DPE holds a higher lease epoch", higher, context)
        self.status: dict[str, Any] | None = None
        with contextlib.suppress(AssertionError):
            self.status = rig.running(within=40.0)
        why = "" if self.status else f"{context}\n{self.diagnosis()}"
        check("the deployable converges (every resource running)", bool(self.status), why)
        self.context = context

    def diagnosis(self) -> str:
        """What a run that did not converge looked like: status, events, dped's log."""
        rig, lines = self.rig, []
        with contextlib.suppress(PcloudError):
            status = rig.status()
            lines.append(f"status: {status['state']} {status['dpe']}")
            lines += [f"  {a['name']}: {a['state']} {a['instance']}" for a in status["assemblies"]]
            events = rig.events()[-25:]
            lines += [f"  {e['id']} {e['assembly']} {e['state']}: {e['reason']}" for e in events]
        lines.append(f"dpes: {rig.dpes()}")
        log = rig.paths.log_dir / "dped-shop.log"
        tail = log.read_text(errors="replace").splitlines()[-40:] if log.exists() else []
        return "\n".join(lines + tail)

    def checked(self, phase: str, acknowledged: list[int], before: dict[str, Any]) -> None:
        rig, check, context, status = self.rig, self.tally.check, self.context, self.status
        if status is None:
            return
        time.sleep(0.6)  # a duplicate would show up as a second guest by now
        instances = {a["instance"] for a in status["assemblies"]}
        check("one instance per assembly (status)", len(instances) == len(ASSEMBLIES), context)
        guests = len(guest_inits(rig))
        check("one instance per assembly (processes)", guests == len(ASSEMBLIES), context)
        check("exactly one DPE", len(rig.dpes()) == 1, f"{rig.dpes()}: {context}")
        ids = event_ids(rig)
        check("event ids only grow", ids == sorted(set(ids)), context)
        lost = sorted(set(acknowledged) - set(ids))
        check("no acknowledged event lost", not lost, f"{lost[:10]}: {context}")
        if phase == "reload":
            a1 = next(a for a in status["assemblies"] if a["name"] == "a1")
            wanted = {"a1-d", "extra"} if self.extra else {"a1-d"}
            names = {r["name"] for r in a1["resources"]}
            check("a reload's resources are applied", names == wanted, f"{names}: {context}")
            same = instances == {a["instance"] for a in before["assemblies"]}
            check("a reload re-creates no instance", same, context)


def _within(rig: Rig, condition: Any, seconds: float) -> bool:
    try:
        rig.until(condition, seconds)
    except AssertionError:
        return False
    return True


def rounds(chance: random.Random) -> list[tuple[str, str]]:
    """Short form: each phase once, each victim once; long form: random rounds
    until dped and cped have each been killed ``KILLS_EACH`` times."""
    if not SOAK:
        return list(zip(PHASES, VICTIMS, strict=True))
    chosen: list[tuple[str, str]] = []
    dped = cped = 0
    while dped < KILLS_EACH or cped < KILLS_EACH:
        victim = chance.choice(VICTIMS)
        chosen.append((chance.choice(PHASES), victim))
        dped += victim != "cped"
        cped += victim != "dped"
    return chosen


def test_random_kills_of_dped_and_cped_leave_one_converged_deployable(rig: Rig) -> None:
    chance = random.Random(SEED)
    tally = Tally("kill storm")
    tally.figures["seed"] = SEED
    storm = Storm(rig, chance, tally)
    rig.client.put_deployable("shop", shop(*ASSEMBLIES))
    rig.client.start_deployable("shop")
    started = time.monotonic()
    try:
        for phase, victim in rounds(chance):
            storm.one_round(phase, victim)
            if tally.violations:
                break
        rig.client.stop_deployable("shop")
        tally.check("nothing left after the stop", guest_inits(rig) == [], "a guest is left")
    finally:
        tally.figures["rounds"] = storm.round
        tally.figures["seconds"] = round(time.monotonic() - started, 1)
        tally.save()
    assert tally.violations == [], tally.violations
