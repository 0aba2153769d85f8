"""Pydantic's validation errors in the project's words, and what of a document
with such errors can still be checked across.

``problems_of`` turns each error into ``{path, message}``: the path as the
document writes it (``assemblies[1].resources[0].monitor_interval``), the
message as the project words it (``unknown field``, ``must be a list, not an
object``, or the text of the value's own check).

A document whose shape is wrong somewhere still gets its references, order
constraints and names checked, so that every problem is reported at once:
``repaired`` takes out what was wrong (a value that has a default falls back
to it; a list that is missing is empty; an element that cannot be repaired is
left out) and the rest is validated again with ``LENIENT`` names, which keeps
a misspelt name in place so that what refers to it is not reported as well.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from foundation.problems import join, kind

LENIENT = {"lenient": True}  # validation context: any string passes as a name
KEY = "[key]"  # pydantic's mark of a mapping's key in an error's location
Loc = tuple[int | str, ...]
FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,62}")  # what an unknown field may echo
UNSHOWN_KEY = "unknown field whose name is not a field name (not shown)"

_OBJECT_ERRORS = {"model_type", "dict_type", "model_attributes_type", "dataclass_type"}
_LIST_ERRORS = {"tuple_type", "list_type", "iterable_type"}


def problems_of(
    error: ValidationError, model: type[BaseModel], path: str = ""
) -> list[dict[str, str]]:
    return [_problem(path, item, model) for item in error.errors(include_url=False)]


def _problem(prefix: str, item: Any, model: type[BaseModel]) -> dict[str, str]:
    loc: Loc = item["loc"]
    if item["type"] == "extra_forbidden" and not _shown_as_key(loc[-1]):
        # never echoed: a file that is no document (/etc/shadow read as YAML, say)
        # would have its lines, secrets included, printed back as unknown fields
        return {"path": _path(prefix, loc[:-1]), "message": UNSHOWN_KEY}
    return {"path": _path(prefix, loc), "message": _message(item, model)}


def _shown_as_key(key: int | str) -> bool:
    return isinstance(key, int) or FIELD_NAME.fullmatch(key) is not None


def is_lenient(context: Any) -> bool:
    return isinstance(context, dict) and bool(context.get("lenient"))


def _path(prefix: str, loc: Loc) -> str:
    path = prefix
    for part in loc:
        if part != KEY:  # a mapping's key: the problem is the key's own
            path = join(path, part)
    return path


def _message(item: Any, model: type[BaseModel]) -> str:
    kind_of_input = kind(item.get("input"))
    own = len(item["loc"]) == 1  # a field of the model itself, worded by the model
    match item["type"]:
        case "missing":
            field = field_at(model, item["loc"])
            hint = field.description if field is not None else None
            required = getattr(model, "required", "required") if own else "required"
            return f"{required}: {hint}" if hint else required
        case "extra_forbidden":
            return getattr(model, "unknown_field", "unknown field") if own else "unknown field"
        case error if error in _OBJECT_ERRORS:
            return f"must be an object, not {kind_of_input}"
        case error if error in _LIST_ERRORS:
            return f"must be a list, not {kind_of_input}"
        case "string_type":
            return f"must be a string, not {kind_of_input}"
    return str(item["msg"])


def field_at(model: type[BaseModel], loc: Loc) -> FieldInfo | None:
    """The model field at ``loc`` (list indexes skipped), or None."""
    current: Any = model
    field = None
    for part in loc:
        if isinstance(part, int):
            continue  # an item of a list: the item's model is already current
        fields: dict[str, FieldInfo] | None = getattr(current, "model_fields", None)
        if fields is None:
            return None
        field = next((f for n, f in fields.items() if (f.alias or n) == part), None)
        if field is None:
            return None
        current = _held_model(field.annotation)
    return field


def _held_model(annotation: Any) -> Any:
    """The model a field holds: itself, or the items of its tuple."""
    args = getattr(annotation, "__args__", ())
    return args[0] if args else annotation


# ---------------------------------------------------------------------------
# repair


class Repair:
    """A document without what its errors found wrong; ``original_path`` maps a
    path in it back to the document's (items left out shift those after them)."""

    def __init__(self, data: dict[str, Any], error: ValidationError, model: type[BaseModel]):
        self.data = copy.deepcopy(data)
        self.kept: dict[Loc, list[int]] = {}  # list -> the original index of each item left
        removals: list[Loc] = []
        for item in error.errors(include_url=False):
            loc: Loc = item["loc"]
            action = _repair(model, loc, item["type"])
            if action in ("empty", "blank"):
                _set(self.data, loc, [] if action == "empty" else "")
            elif action != "keep":
                removals.append(loc if action == "drop" else _enclosing_element(loc))
        for loc in sorted(set(removals), key=_sort_key, reverse=True):
            self._remove(loc)

    def _remove(self, loc: Loc) -> None:
        if loc[-1] == KEY:
            loc = loc[:-1]
        parent = _parent(self.data, loc)
        last = loc[-1]
        if isinstance(parent, dict):
            parent.pop(last, None)
        elif isinstance(parent, list) and isinstance(last, int) and last < len(parent):
            kept = self.kept.setdefault(loc[:-1], list(range(len(parent))))
            del parent[last]
            del kept[last]

    def original_path(self, path: str) -> str:
        """``constraints[0].first`` -> ``constraints[1].first`` if item 0 was left out."""
        loc: Loc = ()
        for name, index in _PATH_PART.findall(path):
            if name:
                loc = (*loc, name)
            else:
                kept = self.kept.get(loc)
                loc = (*loc, kept[int(index)] if kept else int(index))
        return _path("", loc)


_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def repaired(data: Any, error: ValidationError, model: type[BaseModel]) -> Repair | None:
    """``data`` without what ``error`` found wrong, or None if it is not an object."""
    if not isinstance(data, dict) or any(not item["loc"] for item in error.errors()):
        return None
    return Repair(data, error, model)


def _repair(model: type[BaseModel], loc: Loc, error_type: str) -> str:
    """``drop`` the key or item at ``loc``, make it an ``empty`` list or a ``blank``
    name, ``keep`` it (a misspelt name, which LENIENT lets through), or drop the
    list ``element`` it is in."""
    if loc[-1] == KEY:
        return "drop"
    if isinstance(loc[-1], int) or error_type == "extra_forbidden":
        return "drop"
    field = field_at(model, loc)
    if field is None:
        return "drop" if _in_mapping(model, loc) else "element"
    if _is_list(field) and field.is_required():
        return "empty"
    if error_type == "missing":
        return "blank" if _is_name(field) else "element"
    if not field.is_required():
        return "drop"
    return "keep" if _is_name(field) else "element"


def _in_mapping(model: type[BaseModel], loc: Loc) -> bool:
    """Whether ``loc`` is an entry of a mapping (a resource's parameters, say)."""
    holder = field_at(model, loc[:-1])
    return holder is not None and getattr(holder.annotation, "__origin__", None) is dict


def _is_list(field: FieldInfo) -> bool:
    return getattr(field.annotation, "__origin__", None) is tuple


def _is_name(field: FieldInfo) -> bool:
    return field.annotation is str


def _enclosing_element(loc: Loc) -> Loc:
    """The list item ``loc`` is in (``assemblies[0].name`` -> ``assemblies[0]``)."""
    for end in range(len(loc) - 1, 0, -1):
        if isinstance(loc[end], int):
            return loc[: end + 1]
    return loc


def _sort_key(loc: Loc) -> tuple[tuple[int, int, str], ...]:
    return tuple((0, p, "") if isinstance(p, int) else (1, 0, p) for p in loc)


def _parent(data: Any, loc: Loc) -> Any:
    for part in loc[:-1]:
        if part == KEY:
            continue
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _set(data: Any, loc: Loc, value: Any) -> None:
    parent = _parent(data, loc)
    if isinstance(parent, dict):
        parent[loc[-1]] = value
