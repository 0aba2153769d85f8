"""The guest agent as dped ships it: ``pcloud_agent.py``, its bytes and its hash.

The agent is one standard-library file that runs on the guest's own python3
(see its docstring for the protocol).  dped uploads these exact bytes to the
guest, under a name made of their hash, when the guest's copy is missing or
differs, and starts it with ``LOADER``.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

AGENT_FILE = Path(__file__).with_name("pcloud_agent.py")

# ``python3 -I -S -c LOADER FILE OPTIONS...``: the guest's copy runs as a module, not
# as a script.  Run as ``python3 FILE`` it kept about 3 MB more for its whole life
# (measured with CPython 3.11), and a module's compiled code is cached beside it
# (``__pycache__``), so a restarted agent does not compile it again.  ``ssl`` is kept
# out: the agent speaks on pipes and a UNIX socket, and asyncio imports ssl (and
# OpenSSL's libssl with it) only where it can, 1.7 MB of every agent.
LOADER = (
    "import sys, importlib.util as u; "
    'sys.modules["ssl"] = None; '
    "del sys.argv[0]; "
    's = u.spec_from_file_location("pcloud_agent", sys.argv[0]); '
    'm = sys.modules["pcloud_agent"] = u.module_from_spec(s); '
    "s.loader.exec_module(m); "
    "sys.exit(m.main())"
)


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
