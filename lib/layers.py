"""The layer order of ``lib/``, written once, and the import graph checked against it (no TensorFlow; reads sources).

Each package (or top-level module) sits in one layer; a module imports only from its own layer or those below it, and
no two modules import each other, directly or through others. Imports inside functions count too: a lazy import of our
own module is allowed only where that module imports a heavy library (TensorFlow, LiteRT, Ray, openTSNE,
scikit-learn...) at its top, so start-up stays fast; it never hides an upward import.

    python -m lib.layers            # the graph's cycles, upward imports and inner imports, as tests/unit/test_layers.py
    checks
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent

# Bottom first. A unit is a package of lib (its folder) or a top-level module; each may import its own layer and lower.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "config", "safe_text", "bounds", "process", "layers"),  # plain values, messages, the process's settings
    ("store",),  # the cache's layout, atomic writes, fingerprints: no knowledge of what the artifacts mean
    ("data",),  # datasets: sources, conversion, decoding, label and exclude lists, export
    (
        "models",
    ),  # backbone specs and sources, heads, protocols, metrics, calibration (TensorFlow only inside functions)
    ("jobs",),  # background jobs: records, queue, runner, the job side's reporting
    ("runtimes",),  # how a backbone runs: registry, loading, tf, litert, auto
    ("runs",),  # trained runs on disk: manifest, registry, export
    ("pipeline",),  # features, engines (local, Ray), training, fine-tuning, predictions
    ("analysis",),  # audit, duplicates, maps, projections, benchmark, compare, inventory
    ("bundles",),  # what a hosted demo downloads: make, hosting form, install
    ("defaults", "cli", "__main__"),  # entry points: the CLI and the defaults it fills in
)
HEAVY = (
    "tensorflow",
    "tf_keras",
    "tensorflow_hub",
    "ai_edge_litert",
    "ray",
    "openTSNE",
    "sklearn",
    "cleanlab",
    "scipy",
)
MAX_INNER = 20  # imports of lib modules inside functions, apart from lazy imports of heavy modules


@dataclass(frozen=True)
class Import:
    """One import of a lib module by another: where, and whether it is inside a function."""

    source: str  # the importing module, dotted (lib.store.atomic)
    target: str  # the imported module, dotted
    line: int
    inner: bool


def modules() -> dict[str, Path]:
    """Every module of lib by dotted name."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out[".".join(parts)] = path
    return out


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def _walk(tree: ast.AST, inner: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            continue  # annotations only: never run
        yield node, inner
        yield from _walk(node, inner or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))


def imports(known: dict[str, Path] | None = None) -> list[Import]:
    """Every import of one lib module by another (``TYPE_CHECKING`` blocks left out)."""
    known = known or modules()
    found = []
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node, inner in _walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(
                        package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                    )
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
            for t in dict.fromkeys(targets):
                resolved = _resolve(t, known) if t.startswith("lib") else None
                if resolved and resolved != name and not (name.startswith(resolved + ".") and resolved == "lib"):
                    found.append(Import(name, resolved, getattr(node, "lineno", 0), inner))
    return list(dict.fromkeys(found))


def unit(module: str) -> str:
    """A module's layer unit: its package under lib, or the top-level module's name."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "lib"


def layer_of(module: str) -> int:
    """The index of a module's layer (0 at the bottom)."""
    u = unit(module)
    for i, names in enumerate(LAYERS):
        if u in names:
            return i
    if u == "lib":  # lib/__init__.py, lib/__main__.py: the entry points' own layer
        return len(LAYERS) - 1
    raise KeyError(f"{module}: its unit {u!r} is in no layer of lib.layers.LAYERS")


def heavy(path: Path) -> bool:
    """Whether a module imports a heavy library at its top (a lazy import of it keeps start-up fast)."""
    for node in ast.parse(path.read_text()).body:
        names = (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else []
        )
        if any(n.split(".")[0] in HEAVY for n in names):
            return True
    return False


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
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

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


@dataclass
class Report:
    """What the checks found."""

    module_cycles: list[list[str]]
    package_cycles: list[list[str]]
    upward: list[Import]
    inner: list[Import]

    @property
    def ok(self) -> bool:
        """No cycle, no upward import, at most :data:`MAX_INNER` inner imports."""
        return not (self.module_cycles or self.package_cycles or self.upward) and len(self.inner) <= MAX_INNER

    def text(self) -> str:
        """The report as lines."""
        lines = [f"module cycles: {len(self.module_cycles)}"] + [f"  {' -> '.join(c)}" for c in self.module_cycles]
        lines += [f"package cycles: {len(self.package_cycles)}"] + [f"  {' -> '.join(c)}" for c in self.package_cycles]
        lines += [f"upward imports: {len(self.upward)}"] + [f"  {i.source}:{i.line} -> {i.target}" for i in self.upward]
        lines += [f"inner lib imports (not of heavy modules): {len(self.inner)} (at most {MAX_INNER})"]
        lines += [f"  {i.source}:{i.line} -> {i.target}" for i in self.inner]
        return "\n".join(lines)


def check() -> Report:
    """The import graph of lib against :data:`LAYERS`."""
    known = modules()
    found = imports(known)
    edges: dict[str, set[str]] = {}
    package_edges: dict[str, set[str]] = {}
    for i in found:
        edges.setdefault(i.source, set()).add(i.target)
        a, b = unit(i.source), unit(i.target)
        if a != b and "lib" not in (a, b):
            package_edges.setdefault(a, set()).add(b)
    upward = [i for i in found if layer_of(i.target) > layer_of(i.source)]
    inner = [i for i in found if i.inner and not heavy(known[i.target])]
    return Report(cycles(edges), cycles(package_edges), upward, inner)


if __name__ == "__main__":
    report = check()
    print(report.text())
    sys.exit(0 if report.ok else 1)
