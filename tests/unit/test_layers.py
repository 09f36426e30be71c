"""The house rules a change cannot quietly break: lib's layers run one way (lib/layers.py), code is formatted rather
than squeezed, and the README stays short enough to read in five minutes."""

from __future__ import annotations

import ast
from pathlib import Path

from lib import layers

ROOT = Path(__file__).resolve().parents[2]
FORMATTED = ("app.py", "lib", "ui", "views", "bench", "tests")
SKIP_MARKERS = ("# fmt" + ": skip", "# fmt" + ": off")  # spelled apart, so this file does not match itself


def _python_files() -> list[Path]:
    out = []
    for name in FORMATTED:
        path = ROOT / name
        out += [path] if path.is_file() else sorted(path.rglob("*.py"))
    return out


def test_lib_has_no_import_cycle_no_upward_import_and_few_inner_imports() -> None:
    report = layers.check()
    assert report.ok, report.text()


def test_every_lib_module_has_a_layer() -> None:
    for module in layers.modules():
        layers.layer_of(module)  # KeyError for a package that no layer names


def test_the_layer_check_sees_a_cycle_and_an_upward_import(tmp_path: Path) -> None:
    """The checker itself: an import inside a function counts, and TYPE_CHECKING imports do not."""
    code = (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import lib.cli\n"
        "from lib.store import layout\ndef f():\n    from lib.cli import main\n"
    )
    tree = ast.parse(code)
    found = [(node, inner) for node, inner in layers._walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
    modules = [(n.module, inner) for n, inner in found if isinstance(n, ast.ImportFrom)]
    assert modules == [("typing", False), ("lib.store", False), ("lib.cli", True)]  # the TYPE_CHECKING one is left out
    assert layers.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert (
        layers.layer_of("lib.store.layout") < layers.layer_of("lib.pipeline.features") < layers.layer_of("lib.cli.main")
    )


def test_code_is_formatted_not_squeezed() -> None:
    skips = [
        f"{p.relative_to(ROOT)}:{i}"
        for p in _python_files()
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if any(marker in line for marker in SKIP_MARKERS)
    ]
    long = [
        f"{p.relative_to(ROOT)}:{i}"
        for p in _python_files()
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if len(line) > 120
    ]
    assert not skips and not long, (skips[:10], long[:10])


def test_the_readme_reads_in_five_minutes() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 300, len(lines)
