"""The console's sessions: random ids kept on the server, each with its user,
its CSRF token and an expiry.

A session is made by a login with the bearer token; the browser holds only
its id (an HttpOnly, Secure, SameSite=Strict cookie).  Sessions live in
cped's memory: a restart of cped asks for a new login, and so does a new
token (``close_all``).  The clock is
injectable so that expiry is tested without waiting.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

SESSION_LIFETIME = 8 * 3600.0  # seconds: a working day
MAX_SESSIONS = 1000  # the oldest go first: a flood of logins cannot grow memory


@dataclass(frozen=True)
class Session:
    id: str
    user: str
    csrf: str
    peer: str  # the address that logged in
    expires: float

    def csrf_matches(self, offered: str | None) -> bool:
        return offered is not None and hmac.compare_digest(offered.encode(), self.csrf.encode())


class Sessions:
    def __init__(
        self, clock: Callable[[], float] = time.time, lifetime: float = SESSION_LIFETIME
    ) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self._by_id: dict[str, Session] = {}

    def open(self, user: str, peer: str) -> Session:
        self._forget_expired()
        while len(self._by_id) >= MAX_SESSIONS:
            del self._by_id[next(iter(self._by_id))]
        session = Session(
            id=secrets.token_urlsafe(32),
            user=user,
            csrf=secrets.token_urlsafe(32),
            peer=peer,
            expires=self.clock() + self.lifetime,
        )
        self._by_id[session.id] = session
        return session

    def find(self, session_id: str | None) -> Session | None:
        """The live session of that id, or None (unknown, or expired: then forgotten)."""
        if not session_id:
            return None
        session = self._by_id.get(session_id)
        if session is None:
            return None
        if session.expires <= self.clock():
            del self._by_id[session_id]
            return None
        return session

    def close(self, session_id: str) -> None:
        self._by_id.pop(session_id, None)

    def close_all(self) -> int:
        """End every session (the token they were opened with was replaced); how many."""
        count = len(self._by_id)
        self._by_id.clear()
        return count

    def _forget_expired(self) -> None:
        now = self.clock()
        for session_id in [k for k, s in self._by_id.items() if s.expires <= now]:
            del self._by_id[session_id]
