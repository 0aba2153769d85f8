"""Every problem of an input at once, each with its path: ``path: message``.

Validation collects problems instead of stopping at the first one, then raises
them together as one ``InvalidInput`` whose details list them all.
"""

from __future__ import annotations

from foundation.errors import InvalidInput


class Problems:
    """Collects ``path: message`` problems; raises them together."""

    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, path: str, message: str) -> None:
        self.items.append({"path": path, "message": message})

    def extend(self, items: list[dict[str, str]]) -> None:
        self.items.extend(items)

    def raise_if_any(self, what: str = "invalid deployable document") -> None:
        if self.items:
            raise refusal(what, self.items)


def refusal(what: str, items: list[dict[str, str]]) -> InvalidInput:
    """``what``, then one line per problem; the problems as the details."""
    lines = [f"{p['path']}: {p['message']}" if p["path"] else p["message"] for p in items]
    return InvalidInput(f"{what}:\n  " + "\n  ".join(lines), details=items)


def join(path: str, key: str | int) -> str:
    """``assemblies`` + 1 -> ``assemblies[1]``; ``heartbeat`` + ``timeout`` -> ``heartbeat.timeout``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def kind(value: object) -> str:
    """What a JSON value is, in words: ``an object``, ``a list``, ``null``..."""
    names = {
        dict: "an object",
        list: "a list",
        str: "a string",
        type(None): "null",
        bool: "a boolean",
        int: "a number",  # JSON's word: "not int" is Python's
        float: "a number",
    }
    return names.get(type(value), type(value).__name__)
