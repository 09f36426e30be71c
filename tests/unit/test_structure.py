"""The codebase keeps its shape: one owner of the cache layout, runtimes only through their registry, an engine that
stands alone, short modules and thin pages. Each check reads the source, so a change that breaks the shape fails
here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("lib", "ui", "views", "bench")


def _sources(folders: tuple[str, ...] = PRODUCT) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def _docstring_nodes(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                ids.add(id(first.value))
    return ids


def _strings(path: Path) -> list[tuple[int, str]]:
    """Every string literal of a file (f-string pieces included), docstrings left out, with its line."""
    tree = ast.parse(path.read_text())
    docs = _docstring_nodes(tree)
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
    ]


def test_no_string_under_the_cache_is_spelled_outside_the_layout() -> None:
    """Every file and folder name under the cache lives in lib/store/layout.py; everything else asks the layout."""
    from lib.store import layout

    files = {layout.BUNDLE_MANIFEST, layout.STAGING_DOWNLOAD, layout.STAGING_TREE}
    for group in (layout.RUN_FILES, layout.DATASET_FILES, layout.FINETUNE_FILES):
        files |= {v for v in vars(group).values() if isinstance(v, str)} if hasattr(group, "__dict__") else set()
        files |= {getattr(group, f) for f in group.__dataclass_fields__}
    files.discard(
        layout.RUN_FILES.model
    )  # "model" is also an ordinary word; its folder is only reached through RUN_FILES
    fragments = (layout.FLOAT16_SUFFIX, layout.STAGING_PREFIX, "_images.npy", "_labels.npy", "chunk_", ".partial")
    folders = {kind.folder for kind in layout.ARTIFACTS} | {
        "exports",
        "downloads",
        "tfhub",
        "converted",
        "excludes",
        "finetune",
        "ray",
    }
    join = re.compile(r"""/\s*["'](""" + "|".join(folders) + r""")["']|["'](""" + "|".join(folders) + r""")/""")
    offenders = []
    for path in _sources():
        if path.name == "layout.py":
            continue
        for line, text in _strings(path):
            if text in files or any(f in text for f in fragments):
                offenders.append(f"{path.relative_to(ROOT)}:{line}: {text[:60]!r}")
        for n, line_text in enumerate(path.read_text().splitlines(), 1):
            if join.search(line_text) and not line_text.lstrip().startswith("#"):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line_text.strip()[:80]}")
    assert not offenders, "\n".join(offenders)


# Where a CacheLayout is built from a folder: the entry points, and folders that are a layout of their own (a job's
# folder names its cache; a bundle's staging and scratch trees are laid out like a cache).
LAYOUT_BUILDERS = {
    "app.py": 0,  # through ui.state.startup_layout
    "lib/cli/main.py": 1,
    "lib/jobs/queue.py": 1,
    "lib/bundles/install.py": 1,
    "lib/bundles/hosting.py": 2,
    "ui/state.py": 2,  # the server's layout, and each session's settings.layout (equal to it)
}


def test_the_cache_travels_as_one_layout_from_the_entry_points_down() -> None:
    """lib, ui and views take the cache as a ``CacheLayout`` (annotated so, and mypy checks the callers); only the
    entry points in LAYOUT_BUILDERS build one from a folder, and no code converts a path on the way down."""
    offenders = []
    for path in [*_sources(("lib", "ui", "views")), ROOT / "app.py"]:
        rel = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text())
        built = 0
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for arg in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]:
                    ann = ast.unparse(arg.annotation) if arg.annotation is not None else ""
                    if arg.arg in ("layout", "cache") and ann != "CacheLayout":
                        offenders.append(f"{rel}:{node.lineno}: {node.name}({arg.arg}: {ann or 'no annotation'})")
            if isinstance(node, ast.Name) and node.id == "CacheLike":
                offenders.append(f"{rel}:{node.lineno}: CacheLike")
            if isinstance(node, ast.Attribute) and node.attr == "at" and ast.unparse(node.value) == "CacheLayout":
                offenders.append(f"{rel}:{node.lineno}: CacheLayout.at")
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "CacheLayout" and rel != "lib/store/layout.py":
                built += 1
        if built > LAYOUT_BUILDERS.get(rel, 0):
            offenders.append(
                f"{rel}: builds {built} CacheLayout(s) from a folder (allowed: {LAYOUT_BUILDERS.get(rel, 0)})"
            )
    assert not offenders, "\n".join(offenders)


def test_no_runtime_name_is_compared_outside_the_runtimes_package() -> None:
    """Code asks the registry (lib/runtimes) what a runtime can do; it never compares a runtime's name."""
    from lib.runtimes import TFLITE_FILE, registry

    names = set(registry()) | {TFLITE_FILE}
    offenders = []
    for path in _sources():
        if "runtimes" in path.relative_to(ROOT).parts[:2] and path.parts[-2] == "runtimes":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Compare):
                continue
            for part in [node.left, *node.comparators]:
                values = (
                    [part]
                    if isinstance(part, ast.Constant)
                    else list(part.elts)
                    if isinstance(part, (ast.Tuple, ast.List, ast.Set))
                    else []
                )
                if any(isinstance(v, ast.Constant) and v.value in names for v in values):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, "\n".join(offenders)


def test_the_engine_stands_alone() -> None:
    """Nothing under lib/ imports the CLI (but the CLI itself) or the app's ui/ and views/."""
    offenders = []
    for path in _sources(("lib",)):
        rel = path.relative_to(ROOT)
        if rel.parts[1] == "cli" or path.name == "__main__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [
                f"{rel}:{node.lineno}: {n}" for n in names if n.startswith(("lib.cli", "ui", "views", "streamlit"))
            ]
    assert not offenders, "\n".join(offenders)


def test_pages_are_thin() -> None:
    """A page draws and calls lib; its sections live in views/_*.py. (Modules have no line cap: they split where a
    concern ends, not at a count, and a cap was once met by squeezing code.)"""
    fat_pages = [
        f"{p.relative_to(ROOT)}: {n}"
        for p in sorted((ROOT / "views").glob("*.py"))
        if not p.name.startswith("_") and (n := len(p.read_text().splitlines())) > 120
    ]
    assert not fat_pages, fat_pages


def test_every_page_is_in_the_one_table() -> None:
    """app.py and bench/visitors.py draw their pages from ui/pages.py; every page file is in it."""
    from ui.pages import PAGES

    listed = {p.path for p in PAGES}
    assert listed == {f"views/{p.name}" for p in (ROOT / "views").glob("*.py") if not p.name.startswith("_")}
    for user in ("app.py", "bench/visitors.py"):
        text = (ROOT / user).read_text()
        assert "PAGES" in text and '"views/' not in text, user
