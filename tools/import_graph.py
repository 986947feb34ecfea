"""The package's import graph from its source (ast, nothing imported): modules per package, circles, upward imports.

    python tools/import_graph.py            # counts, then every circle and every upward import
    python tools/import_graph.py --edges    # also every edge (importer -> imported, "fn" = in a function)

Every `import` counts, module-level and in-function alike (an import hidden in a function is still a
dependency, only a later one). `from cxredge.a import b` is an edge to cxredge.a.b when that is a module,
else to cxredge.a. The parent packages a dotted import loads implicitly are not edges.

Layers, lowest first (LAYERS): a module may import its own layer or lower ones, never a higher one. The
same table is the contract tests/test_layers.py checks, so the numbers printed here are what CI enforces.
"""
from __future__ import annotations

import argparse
import ast
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "cxredge"

# Leaf modules: the package's vocabulary, its one error type, its paths. They import nothing from cxredge.
LEAVES = ("cxredge", "cxredge.errors", "cxredge.paths", "cxredge.vocab")

# Lowest first. A module's layer is the entry with the longest prefix that matches it.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("leaf", LEAVES),
    ("contracts", ("cxredge.formats",)),  # the on-disk formats: import leaves only
    ("core", ("cxredge.io", "cxredge.markdown", "cxredge.plots", "cxredge.keras", "cxredge.model_file")),
    # The edge side, by job: inputs, runtime and document primitives; data sets and model sources; what
    # evaluates; what writes and renders results; the fronts that run one verb end to end. It is TF-free:
    # it never imports keras, convert, train or cli (EDGE_FORBIDDEN).
    ("edge.base", ("cxredge.edge", "cxredge.edge.formats.sidecar", "cxredge.edge.formats.fingerprint",
                   "cxredge.edge.data.images", "cxredge.edge.data.stream", "cxredge.edge.data.limits",
                   "cxredge.edge.data.dicom", "cxredge.edge.data.table", "cxredge.edge.data.patients",
                   "cxredge.edge.runtime.interpreter", "cxredge.edge.runtime.device", "cxredge.edge.evaluate.metrics",
                   "cxredge.edge.render.document")),
    ("edge.data", ("cxredge.edge.data.dataset", "cxredge.edge.data.sources", "cxredge.edge.formats.bundle")),
    ("edge.evaluate", ("cxredge.edge.bench.measure", "cxredge.edge.bench.store", "cxredge.edge.evaluate",
                       "cxredge.edge.ood", "cxredge.edge.explain.occlusion", "cxredge.edge.audit")),
    ("edge.render", ("cxredge.edge.bench.results", "cxredge.edge.runtime.benchmark_model", "cxredge.edge.render",
                     "cxredge.edge.explain.render", "cxredge.edge.audit.writers", "cxredge.edge.audit.console",
                     "cxredge.edge.report")),
    ("edge.run", ("cxredge.edge.report.page", "cxredge.edge.explain.run", "cxredge.edge.audit.run",
                  "cxredge.edge.bench.run", "cxredge.edge.runtime.predict")),
    ("remote", ("cxredge.remote",)),
    ("convert", ("cxredge.convert",)),
    ("train", ("cxredge.train",)),
    ("cli", ("cxredge.cli", "cxredge.__main__")),
)
EDGE_FORBIDDEN = ("cxredge.keras", "cxredge.model_file", "cxredge.convert", "cxredge.train", "cxredge.cli")


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    line: int
    in_function: bool


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def find_modules(root: Path = ROOT) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted((root / PACKAGE).rglob("*.py"))}


def _resolve(node: ast.ImportFrom, src: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = src.split(".") if is_package else src.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(src: str, path: Path, modules: dict[str, Path]) -> list[Edge]:
    """Every cxredge module `src` imports, with the line and whether the import sits in a function."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    in_fn: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            in_fn.update(id(n) for n in ast.walk(node) if n is not node)
    out: list[Edge] = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = _resolve(node, src, path.name == "__init__.py")
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod for a in node.names]
        for t in targets:
            while t and t not in modules:  # `import cxredge.edge.bench.measure.x` -> the deepest module that exists
                t = t.rpartition(".")[0]
            edge = Edge(src, t, node.lineno, id(node) in in_fn)
            if t.split(".")[0] == PACKAGE and t in modules and t != src and edge not in out:
                out.append(edge)
    return out


def graph(root: Path = ROOT) -> tuple[dict[str, Path], list[Edge]]:
    modules = find_modules(root)
    edges = [e for name, path in modules.items() for e in imports_of(name, path, modules)]
    return modules, edges


def circles(modules, edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    succ: dict[str, set[str]] = {m: set() for m in modules}
    for e in edges:
        succ[e.src].add(e.dst)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # recursion depth is bounded by the module count (~150)
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(succ[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for m in sorted(modules):
        if m not in index:
            visit(m)
    return sorted(out)


def layer_of(module: str) -> int:
    best, best_len = len(LAYERS), -1
    for rank, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".") or (p.endswith("_") and module.startswith(p))) \
                    and len(p) > best_len:
                best, best_len = rank, len(p)
    return best


def layers(modules, edges: list[Edge]) -> dict[str, int]:
    """Each module's layer. A package's __init__ that re-exports its own modules (a facade) sits as high
    as the highest of them, so importing the facade counts as importing what is behind it."""
    out = {m: layer_of(m) for m in modules}
    for e in edges:
        if modules[e.src].name == "__init__.py" and e.dst.startswith(e.src + "."):
            out[e.src] = max(out[e.src], out[e.dst])
    return out


def upward(modules, edges: list[Edge]) -> list[Edge]:
    """Edges into a higher layer, plus any import by a leaf module and any edge-side import of TF or the CLI."""
    rank = layers(modules, edges)
    bad = []
    for e in edges:
        leaf = e.src in LEAVES
        tf_side = e.src.startswith("cxredge.edge") and any(e.dst == f or e.dst.startswith(f + ".")
                                                           for f in EDGE_FORBIDDEN)
        facade = modules[e.src].name == "__init__.py" and e.dst.startswith(e.src + ".")
        if leaf or tf_side or (rank[e.dst] > rank[e.src] and not facade):
            bad.append(e)
    return bad


def package_of(module: str, modules) -> str:
    return module if modules[module].name == "__init__.py" else module.rpartition(".")[0]


def report(root: Path = ROOT, show_edges: bool = False) -> str:
    modules, edges = graph(root)
    cyc, up = circles(modules, edges), upward(modules, edges)
    per_pkg = Counter(package_of(m, modules) for m in modules)
    lines = [f"modules: {len(modules)}; import edges: {len(edges)} ({sum(e.in_function for e in edges)} in functions)",
             "modules per package: " + ", ".join(f"{p} {n}" for p, n in sorted(per_pkg.items())),
             f"circles (strongly connected groups of modules): {len(cyc)}",
             *(f"  circle: {' <-> '.join(c)}" for c in cyc),
             f"upward imports (into a higher layer; LAYERS in tools/import_graph.py): {len(up)}",
             *(f"  up: {e.src} -> {e.dst} (line {e.line}{', in a function' if e.in_function else ''})" for e in up)]
    if show_edges:
        lines += [f"  edge: {e.src} -> {e.dst}{' (fn)' if e.in_function else ''}" for e in edges]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", action="store_true", help="also print every edge")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this checkout)")
    args = parser.parse_args(argv)
    print(report(args.root.resolve(), args.edges))
    return 0


if __name__ == "__main__":
    sys.exit(main())
