"""Requests answered with more than one part of cped: its health, the members
sharing its store and this API's document, a deployable's settings (checked
against its infrastructure, then stored), a service move and a clean-up of
failures (the catalog, then the DPE), and the CIB and what-if (the store, then
the planner).  Each takes the ``Context`` first (``cpe.dispatch``)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from cpe.catalog import deployables, imports, runstate, services
from cpe.context import Context
from cpe.infrastructure import check_infrastructure
from cpe.routes import Answer
from cpe.whatif import cib_answer, parse_fail_query, read_recorded, simulate_answer
from foundation import __version__
from foundation.errors import Unavailable


async def health(api: Context) -> dict[str, Any]:
    config = api.info.config
    return {
        "status": "ok",
        "version": __version__,
        "pid": os.getpid(),
        "uptime": round(time.monotonic() - api.info.started, 3),
        "config": str(config.source) if config.source else None,
        "store": api.store.location,
    }


async def cluster_status(api: Context) -> dict[str, Any]:
    if api.cluster is None:
        raise Unavailable("this API runs without membership (no cluster to show)")
    return await api.cluster.status()


async def openapi(api: Context) -> dict[str, Any]:
    from cpe.openapi import openapi_document

    return openapi_document()


async def create_deployable(api: Context, body: dict[str, Any]) -> dict[str, Any]:
    """An empty deployable, once its infrastructure has what the settings name."""
    await check_infrastructure(body)
    created: dict[str, Any] = await api.in_store(deployables.create, api.catalog, body)
    return created


async def put_deployable(api: Context, name: str, body: dict[str, Any]) -> Answer:
    """The whole document, once its infrastructure has what the settings name."""
    await check_infrastructure(body)
    stored: Answer = await api.in_store(imports.put, api.catalog, name, body)
    return stored


async def move_service(api: Context, deployable: str, service: str, body: dict[str, Any]) -> Answer:
    """Record the move, then have a running DPE read it (a stopped one will on start),
    as a request and not a reload, which would apply the changes waiting for one too."""
    answer = await api.in_store(services.request_move, api.catalog, deployable, service, body)
    try:
        told = await api.lifecycle.tell_requests(deployable)
    except Unavailable:
        told = None
    if told is None:
        return Answer(answer | {"note": "the deployable is not running: moved when started"}, 202)
    return Answer(answer | {"note": told}, 202)


async def deployable_cib(api: Context, name: str) -> dict[str, Any]:
    recorded = await api.in_store(read_recorded, api.store, name)
    return cib_answer(recorded, api.lifecycle.clock())


async def simulate_deployable(
    api: Context, name: str, fail: str | None = None, policy_engine: str | None = None
) -> dict[str, Any]:
    """What-if; crm_simulate (policy_engine=pacemaker) runs in a thread of its own."""
    failures = parse_fail_query(fail)
    engine = policy_engine or api.info.config.dped.policy_engine
    recorded = await api.in_store(read_recorded, api.store, name)
    now = api.lifecycle.clock()
    return await asyncio.to_thread(simulate_answer, recorded, failures, engine, now)


async def cleanup_deployable(api: Context, name: str, body: dict[str, Any]) -> Answer:
    """Record the clean-up, then have the running DPE carry it out (``dpe.engine_cleanup``),
    on whichever member runs it."""
    scope = await api.in_store(runstate.request_cleanup, api.catalog, name, body)
    answer: dict[str, Any] = {"deployable": name}
    if scope is None:
        note = "not running: a stop forgets every failure, nothing to clean up"
        return Answer(answer | {"scope": _scope_of(body), "note": note}, 200)
    try:
        told = await api.lifecycle.tell_requests(name)
    except Unavailable:
        told = None
    note = told or "the next DPE does it"
    return Answer(answer | {"scope": scope, "note": f"clean-up requested: {note}"}, 202)


def _scope_of(body: dict[str, Any]) -> str:
    parts = [body.get("assembly"), body.get("resource")]
    return "/".join(str(p) for p in parts if p)
