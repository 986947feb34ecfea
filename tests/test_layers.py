"""The import-layer contract: no circles, no upward imports, leaves import nothing, the edge side never reaches
TensorFlow or the CLI, no private name crosses modules. The layers are tools/import_graph.py's LAYERS table
(`python tools/import_graph.py` prints the same graph); module-level and in-function imports both count."""
from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load_tool():
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "tools" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


G = _load_tool()


@pytest.fixture(scope="module")
def graph():
    return G.graph(ROOT)


def _show(edges) -> str:
    return "\n".join(f"  {e.src} -> {e.dst} (line {e.line}{', in a function' if e.in_function else ''})"
                     for e in edges)


def test_no_circles(graph):
    modules, edges = graph
    assert G.circles(modules, edges) == []


def test_no_upward_imports(graph):
    modules, edges = graph
    up = G.upward(modules, edges)
    assert up == [], "imports into a higher layer (tools/import_graph.py LAYERS):\n" + _show(up)


def test_every_module_has_a_layer(graph):
    modules, _ = graph
    assert [m for m in modules if G.layer_of(m) == len(G.LAYERS)] == [], "add new modules to LAYERS"


def test_leaves_import_nothing_from_the_package(graph):
    modules, edges = graph
    assert set(G.LEAVES) <= set(modules)
    assert [e for e in edges if e.src in G.LEAVES] == []


def test_edge_never_imports_training_conversion_or_cli(graph):
    _, edges = graph
    bad = [e for e in edges if e.src.startswith("cxredge.edge")
           and (e.dst.split(".") + [""])[1] in ("keras", "model_file", "convert", "train", "cli")]
    assert bad == [], _show(bad)
    bad = [e for e in edges if e.dst.startswith("cxredge.cli") and not e.src.startswith("cxredge.cli")
           and e.src != "cxredge.__main__"]
    assert bad == [], "only the CLI imports the CLI:\n" + _show(bad)


def test_no_private_name_crosses_modules(graph):
    modules, _ = graph
    found = []
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cxredge"):
                found += [f"{name}: from {node.module} import {a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    assert found == []


def test_the_checker_sees_circles_and_upward_imports(tmp_path):
    """The contract can fail: a synthetic package with a hidden in-function circle and an upward import."""
    pkg = tmp_path / "cxredge"
    (pkg / "edge").mkdir(parents=True)
    (pkg / "train").mkdir()
    for f in ("__init__.py", "edge/__init__.py", "train/__init__.py", "vocab.py"):
        (pkg / f).write_text("")
    (pkg / "edge" / "bench.py").write_text("from cxredge.edge.results import fmt\n")
    (pkg / "edge" / "results.py").write_text("def fmt():\n    from cxredge.edge import bench\n")
    (pkg / "edge" / "sources.py").write_text("import cxredge.train.variants\n")
    (pkg / "train" / "variants.py").write_text("")
    (pkg / "vocab.py").write_text("from cxredge.edge import bench\n")
    modules, edges = G.graph(tmp_path)
    assert G.circles(modules, edges) == [["cxredge.edge.bench", "cxredge.edge.results"]]
    up = {(e.src, e.dst) for e in G.upward(modules, edges)}
    assert ("cxredge.edge.sources", "cxredge.train.variants") in up
    assert ("cxredge.vocab", "cxredge.edge.bench") in up
    assert any(e.in_function for e in edges if e.src == "cxredge.edge.results")
