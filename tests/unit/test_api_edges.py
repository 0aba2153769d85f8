"""Edges schemathesis found (tests/integration/test_api_schema.py), kept as
plain regression tests: each is a 400 that names the field, never a 500."""

from __future__ import annotations

import pytest

from foundation.store import Store
from tests.unit.test_api import Client, api, call, refused

__all__ = ["api"]


@pytest.mark.parametrize(
    "query",
    [
        f"before_id={2**63}",
        f"after_id={10**25}",
        "after_id=%C2%B2",  # "²": a digit to str.isdigit(), not to int()
        "limit=%D9%A3",  # "٣": an Arabic-Indic digit
    ],
)
async def test_event_ids_beyond_sqlite_integers_are_invalid(
    api: Client, store: Store, query: str
) -> None:
    error = await refused(api, store, 400, "GET", f"/events?{query}")
    assert error["code"] == "invalid" and error["details"][0]["path"] == query.split("=")[0]


async def test_the_largest_event_id_is_a_valid_query(api: Client) -> None:
    status, rows = await call(api, "GET", f"/events?after_id={2**63 - 1}&before_id=0")
    assert (status, rows) == (200, [])


async def test_a_provider_that_is_not_text_is_invalid_for_every_class(
    api: Client, store: Store
) -> None:
    for rclass in ("ocf", "lsb", "systemd"):
        body = {"name": "web", "resources": [{"name": "x", "class": rclass, "type": "t"}]}
        body["resources"][0]["provider"] = False
        error = await refused(api, store, 400, "POST", "/assemblies", body)
        assert error["details"][0]["path"] == "resources[0].provider"


@pytest.mark.parametrize("force", ["", "1", "yes", "TRUE"])
async def test_a_flag_is_true_or_false_as_the_document_says(
    api: Client, store: Store, force: str
) -> None:
    await call(api, "POST", "/deployables", {"name": "shop"})
    error = await refused(api, store, 400, "DELETE", f"/deployables/shop?force={force}")
    assert error["details"][0]["path"] == "force"


@pytest.mark.parametrize("depth", [900, 100_000])
@pytest.mark.parametrize("path", ["/deployables", "/assemblies"])
async def test_a_body_nested_too_deeply_is_invalid_at_any_depth(
    api: Client, store: Store, depth: int, path: str
) -> None:
    nested = b'{"name": "x", "resources": ' + b"[" * depth + b"]" * depth + b"}"
    error = await refused(api, store, 400, "POST", path, data=nested)
    assert "nested too deeply" in error["message"]


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"null", "not null"),
        (b'"shop"', "not a string"),
        (b"7", "not a number"),
        (b"true", "not true"),
        (b'{"name": ' + b"9" * 5000 + b"}", "a number is too long"),
    ],
)
async def test_a_body_that_is_no_object_is_named_in_json_words(
    api: Client, store: Store, raw: bytes, words: str
) -> None:
    error = await refused(api, store, 400, "POST", "/deployables", data=raw)
    assert words in error["message"] and "sys." not in error["message"]
