"""Tooling the project promises: ruff is clean, and mypy (disallow_untyped_defs) passes on lib/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ruff_is_clean() -> None:
    # ruff and mypy are in requirements-dev.txt: a missing tool is a failure, not a silent skip.
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:]


def test_mypy_passes_on_lib() -> None:
    out = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:]


def test_lib_never_imports_streamlit_and_imports_tensorflow_lazily() -> None:
    """Every lib module imports without Streamlit or TensorFlow (the app's first paint and the CLI's start-up need
    that)."""
    modules = sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts)
        for p in (ROOT / "lib").rglob("*.py")
        if p.name != "__main__.py"
    )
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + "print(sorted(m for m in ('streamlit', 'tensorflow', 'keras', 'tf_keras') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]", out.stdout
    assert len(modules) > 20


def test_no_module_outside_the_store_spells_cache_folder_names() -> None:
    """One owner of the cache layout: folder names under the cache appear only in lib/store/layout.py."""
    import re

    names = "datasets|features|runs|exports|projections|downloads|tfhub"
    pattern = re.compile(
        rf"""/\s*["']({names})["']|["']({names})/"""
    )  # a path join (/ "runs") or a path string ("runs/...")
    offenders = []
    for path in [*(ROOT / "lib").rglob("*.py"), *(ROOT / "ui").rglob("*.py"), *(ROOT / "views").rglob("*.py")]:
        if path.name == "layout.py":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line) and not line.lstrip().startswith(("#", '"""', "``")) and "import" not in line:
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
