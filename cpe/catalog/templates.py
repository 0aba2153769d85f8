"""Resource templates: the shipped ones (``cpe.resource_templates``) and the users'."""

from __future__ import annotations

from typing import Any

from cpe.bodies import TemplateNew
from cpe.catalog import Catalog
from cpe.resource_templates import builtin_templates, normalised_resource, template_view
from foundation.errors import Conflict
from foundation.model import validate_name
from foundation.schema import validated


def rows(catalog: Catalog) -> list[dict[str, Any]]:
    users = [_user_template(t) for t in catalog.store.list_templates()]
    return sorted([*builtin_templates().values(), *users], key=lambda t: str(t["name"]))


def get(catalog: Catalog, name: str) -> dict[str, Any]:
    validate_name(name, "template name")
    builtin = builtin_templates().get(name)
    return builtin if builtin is not None else _user_template(catalog.store.get_template(name))


def create(catalog: Catalog, body: dict[str, Any]) -> dict[str, Any]:
    new = validated(TemplateNew, body)
    if new.name in builtin_templates():
        raise Conflict(f"{new.name!r} is a built-in resource template", template=new.name)
    resource = normalised_resource(new.resource, new.name, "resource")
    template = template_view(new.name, new.description, resource, new.parameters_help, False)
    stored = {k: v for k, v in template.items() if k not in ("name", "builtin")}
    catalog.store.insert_template(new.name, stored)
    return template


def delete(catalog: Catalog, name: str) -> None:
    validate_name(name, "template name")
    if name in builtin_templates():
        raise Conflict(f"{name!r} is a built-in resource template: it cannot be deleted")
    catalog.store.delete_template(name)


def _user_template(stored: dict[str, Any]) -> dict[str, Any]:
    return template_view(
        stored["name"],
        stored.get("description", ""),
        stored["resource"],
        stored.get("parameters_help", {}),
        False,
    )
