"""How a route is answered: its request checked by the models it names, then its
target called.

The path's names, then the body (validated by the route's request model), then
the query parameters (validated by its query model; none allowed without one)
become the target's arguments, the query's by keyword.  A target is called by
what it is:

- a plain function answers from the store alone (``cpe.catalog``): it runs on
  the store thread and takes the ``Catalog`` first;
- a coroutine function (``cpe.operations``) runs on the loop and takes the
  ``Context`` first;
- a method (``cpe.lifecycle:Lifecycle.start``) is called on the object of its
  class the context holds, on the loop if it is a coroutine.

Its answer is the JSON body, with the route's status, or an ``Answer`` with
another.  Every refusal is a ``PcloudError`` (``InvalidInput`` listing every
problem with its path); nothing here knows HTTP, so cped's handlers
(``cpe.api``) and the tests' in-process calls answer alike.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache, partial
from typing import Any

from pydantic import BaseModel

from cpe.bodies import MODELS
from cpe.context import Context
from cpe.pending_notice import catalog_write
from cpe.routes import Answer, Route
from foundation.problems import refusal
from foundation.schema import validated

Arguments = tuple[list[Any], dict[str, Any]]


@dataclass(frozen=True)
class Target:
    function: Callable[..., Any]
    owner: type | None  # a method's class
    is_async: bool

    def bound(self, context: Context) -> Callable[..., Any]:
        if self.owner is not None:
            return partial(self.function, context.holding(self.owner))
        return partial(self.function, context if self.is_async else context.catalog)


@cache
def target_of(route: Route) -> Target:
    """The function of ``module:function`` (or ``module:Class.method``)."""
    module_name, _, name = route.target.partition(":")
    found: Any = importlib.import_module(module_name)
    owner = None
    for part in name.split("."):
        owner = found if inspect.isclass(found) else None
        found = getattr(found, part)
    return Target(found, owner, inspect.iscoroutinefunction(found))


def model_named(name: str) -> type[BaseModel]:
    return MODELS[name]


def body_required(model: str) -> bool:
    """Whether a request of ``model`` needs a body: some field of it is required."""
    return any(field.is_required() for field in model_named(model).model_fields.values())


def arguments(route: Route, names: list[str], query: Mapping[str, str], body: Any) -> Arguments:
    """The target's arguments: the path's names and the body, then the query by keyword."""
    args: list[Any] = list(names)
    if route.request is not None:
        validated(model_named(route.request), body)
        args.append(body)
    return args, query_arguments(route, query)


def query_arguments(route: Route, query: Mapping[str, str]) -> dict[str, Any]:
    if route.query is None:
        unknown = [{"path": key, "message": "unknown query parameter"} for key in query]
        if unknown:
            raise refusal("invalid query", unknown)
        return {}
    parsed = validated(model_named(route.query), dict(query))
    return {name: getattr(parsed, name) for name in type(parsed).model_fields}


async def answer(
    context: Context, route: Route, names: list[str], query: Mapping[str, str], body: Any
) -> Answer:
    """The route's answer to a request (a PcloudError if it is refused)."""
    args, kwargs = arguments(route, names, query, body)
    target = target_of(route)
    function = target.bound(context)
    if target.is_async:
        result = await function(*args, **kwargs)
    else:
        result = await context.in_store(function, *args, **kwargs)
    await _tell_pending(context, route, names)
    return result if isinstance(result, Answer) else Answer(result, route.status)


async def _tell_pending(context: Context, route: Route, names: list[str]) -> None:
    """A change a running DPE has not applied yet gets an event (``cpe.pending_notice``)."""
    if not catalog_write(route):
        return
    told = await context.in_store(context.pending.after_change, context.store, route, names)
    if told is not None and context.feed is not None:
        context.feed.poke()
