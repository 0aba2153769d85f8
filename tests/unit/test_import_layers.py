"""The layers of DESIGN.md hold, and would catch a new back-edge.

``lint-imports`` (in ``make lint``) checks the contracts of pyproject.toml; here
the same layers are read from there and checked on grimp's import graph, once
as the code is and once with a back-edge added on purpose, and the module graph
is checked for cycles.  grimp reads every import statement, those inside
functions included, so a cycle cannot hide behind a function-level import.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[2]
CONFIG = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
LAYERS = next(c["layers"] for c in CONFIG["contracts"] if c["type"] == "layers")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*CONFIG["root_packages"], cache_dir=None)


def illegal(graph: grimp.ImportGraph) -> set[tuple[str, str]]:
    found = graph.find_illegal_dependencies_for_layers(layers=LAYERS)
    return {(d.importer, d.imported) for d in found}


def test_the_layers_are_pcloudsh_cpe_dpe_foundation() -> None:
    assert LAYERS == ["pcloudsh", "cpe", "dpe", "foundation"]


def test_no_import_goes_up_a_layer(graph: grimp.ImportGraph) -> None:
    assert illegal(graph) == set()


def test_a_back_edge_breaks_the_layers(graph: grimp.ImportGraph) -> None:
    graph.add_import(importer="foundation.model", imported="dpe.engine")
    try:
        assert illegal(graph) == {("foundation", "dpe")}
    finally:
        graph.remove_import(importer="foundation.model", imported="dpe.engine")


def test_no_module_imports_itself_round_a_cycle(graph: grimp.ImportGraph) -> None:
    assert cycles(graph) == []


def cycles(graph: grimp.ImportGraph) -> list[tuple[str, ...]]:
    """Each import ``a -> b`` from which a chain of imports leads back to ``a``."""
    found = set()
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back:
                found.add(tuple(sorted({module, *back})))
    return sorted(found)


def test_a_cycle_is_found(graph: grimp.ImportGraph) -> None:
    importer = "dpe.policy"
    imported = sorted(graph.find_modules_directly_imported_by(importer))[0]
    graph.add_import(importer=imported, imported=importer)
    try:
        assert cycles(graph) == [tuple(sorted({importer, imported}))]
    finally:
        graph.remove_import(importer=imported, imported=importer)
