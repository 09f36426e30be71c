"""Ray is optional: the CLI and the app never import it unless `--engine ray` extracts, and without it that flag
says how to install it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lib.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_default_paths_never_import_ray(assets: dict[str, Path], tmp_path: Path) -> None:
    """`extract` and `train` on the local engine, and the Home and Train pages, leave `ray` out of sys.modules."""
    script = textwrap.dedent(f"""
        import sys
        from lib.cli.main import main
        for args in (["extract"], ["train", "--epochs", "1"]):
            try:
                main([*args, "--source", {str(assets["cifar_tar"])!r}, "--backbone", {str(assets["savedmodel"])!r},
                      "--image-size", "32", "--cache-dir", {str(tmp_path / "cache")!r}, "--json"])
            except SystemExit as exit:
                assert not exit.code, exit.code
        from streamlit.testing.v1 import AppTest
        at = AppTest.from_file("app.py", default_timeout=120).run()
        for page in ("views/home.py", "views/train.py"):
            at.switch_page(page)
            at.run()
            assert not at.exception, [e.value for e in at.exception]
        # drawn on the Train page (and on Home while features are missing)
        assert any(e.label == "Extraction engine" for e in at.expander)
        print("RAY_LOADED" if any(m == "ray" or m.startswith("ray.") for m in sys.modules) else "RAY_ABSENT")
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={
            "PATH": "/usr/bin:/bin",
            "TLX_CACHE_DIR": str(tmp_path / "cache"),
            "TLX_SOURCE": str(assets["cifar_tar"]),
            "TLX_BACKBONE": str(assets["savedmodel"]),
            "TLX_IMAGE_SIZE": "32",
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "HOME": str(tmp_path),
        },
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "RAY_ABSENT"


def test_ray_engine_without_ray_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from lib.pipeline.ray_engine import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` does when the package is not installed
    with pytest.raises(ConfigError, match=r"pip install -r requirements-scale\.txt"):
        import_ray()
