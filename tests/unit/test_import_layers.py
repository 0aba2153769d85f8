"""The layers of DESIGN.md hold, and would catch a new back-edge.

``lint-imports`` (in ``make lint``) checks the contracts of pyproject.toml; here
the same layers are read from there and checked on grimp's import graph, once
as the code is and once with a back-edge added on purpose, and the module graph
is checked for cycles.  grimp reads every import statement, those inside
functions included, so a cycle cannot hide behind a function-level import.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
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
    assert list(cycles(graph)) == []


def cycles(graph: grimp.ImportGraph) -> Iterator[list[str]]:
    """Strongly connected groups of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            module, edges = work[-1]
            for imported in edges:
                if imported not in index:
                    index[imported] = low[imported] = len(index)
                    stack.append(imported)
                    on_stack.add(imported)
                    work.append(
                        (imported, iter(sorted(graph.find_modules_directly_imported_by(imported))))
                    )
                    break
                if imported in on_stack:
                    low[module] = min(low[module], index[imported])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[module])
                if low[module] == index[module]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == module:
                            break
                    if len(group) > 1:
                        yield sorted(group)
