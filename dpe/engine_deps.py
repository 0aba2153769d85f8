"""What every part of one engine shares: its seams and where its events go."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dpe.engine_timing import EngineOptions
from dpe.interfaces import Driver, Transport
from dpe.loop_lag import LagClock
from foundation.events import Event
from foundation.keyfiles import AssemblyKeys


@dataclass(frozen=True)
class EngineDeps:
    deployable: str
    driver: Driver
    transport: Transport
    clock: LagClock  # every wait reports how late the loop was (``dpe.loop_lag``)
    keys: Callable[[str], AssemblyKeys]
    options: EngineOptions
    emit: Callable[[Event], None]  # every state change goes here (``dpe.engine_recorder``)
