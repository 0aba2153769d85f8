"""The catalog: the rules behind every request the store alone answers, each
one store transaction.

One module per noun: JEOS images (``jeos``), assemblies and their resources
(``assemblies``), resource templates (``templates``), deployables and their
membership (``deployables``), whole documents imported (``imports``), order
constraints (``constraints``), services and colocations (``services``), the
event log (``events``), and what starting and stopping need (``runstate``).
Each function takes the ``Catalog`` first, validates (every problem listed
with its path), then changes the store inside one transaction, so a rejected
request changes nothing.  Functions are synchronous (the API runs them on its
store thread) and return JSON-ready values.

One invariant keeps the rest simple: every stored deployable, with its
assemblies expanded, is a valid document (``documents.parse_catalog_document``).
A change that would break it (a constraint naming a removed resource, a cycle)
is refused, by re-validating the affected deployable inside the transaction
before it commits (``documents.revalidate``).  The one thing the catalog
tolerates is a reference parameter to an assembly not (yet) in the deployable:
a catalog is built one command at a time, in any order.  Starting a deployable
needs the complete document (``Store.get_document``), which refuses such a
reference.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dpe.agent_metadata import AgentSpec, installed_agent
from foundation.store import Store


@dataclass
class Catalog:
    """The store the rules apply to, the clock, where assembly key pairs are, and how
    this host's resource agents are found (what the local infrastructure runs)."""

    store: Store
    clock: Callable[[], float] = field(default=time.time)
    keys_dir: Path | None = None  # None: key pairs are not checked
    host_agent: Callable[[AgentSpec], object] = installed_agent  # InvalidInput: not here
