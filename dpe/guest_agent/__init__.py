"""The guest agent as dped ships it: ``pcloud_agent.py``, its bytes and its hash.

The agent is one standard-library file that runs on the guest's own python3
(see its docstring for the protocol).  dped uploads these exact bytes to the
guest, under a name made of their hash, when the guest's copy is missing or
differs.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

AGENT_FILE = Path(__file__).with_name("pcloud_agent.py")


@dataclass(frozen=True)
class AgentSource:
    text: bytes
    sha256: str

    @property
    def file_name(self) -> str:
        """``agent-<first 16 hex digits>.py``: each version has its own file."""
        return f"agent-{self.sha256[:16]}.py"


@functools.cache
def agent_source() -> AgentSource:
    text = AGENT_FILE.read_bytes()
    return AgentSource(text, hashlib.sha256(text).hexdigest())
