"""The kinds of runtime documents a DPE records in the store, and cped reads.

Each document is free-form JSON keyed by ``(deployable, kind, key)``:

- ``instance`` (key: assembly): the instance the driver made or adopted;
- ``assembly`` (key: assembly): its state, reason and failure window;
- ``resource`` (key: ``assembly/resource``): state, last rc, failure window;
- ``deployable`` (key: ""): the deployable's own state;
- ``service`` (key: service): its fail counts on each assembly;
- ``move`` (key: service): a move an administrator asked for, written by cped,
  deleted by the DPE once the service runs there;
- ``document`` (key: ""): the document the DPE runs (``Deployable.to_dict``),
  written on start and after each reload: what ``deployable_diff`` compares the
  stored document with;
- ``cleanup`` (key: "", ``assembly`` or ``assembly/resource``): a clean-up of
  failures an administrator asked for, written by cped, deleted by the DPE once done.
"""

from __future__ import annotations

from typing import Any

INSTANCE = "instance"
ASSEMBLY = "assembly"
RESOURCE = "resource"
DEPLOYABLE = "deployable"
SERVICE = "service"
MOVE = "move"
DOCUMENT = "document"
CLEANUP = "cleanup"

Docs = dict[str, dict[str, dict[str, Any]]]  # kind -> key -> document
