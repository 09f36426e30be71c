"""lib/defaults.py: what the CLI and the app start from when nothing is said, in one order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lib import config
from lib.defaults import choose_defaults
from lib.store.layout import CacheLayout


def test_flag_then_environment_then_bundle_then_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (config.ENV_SOURCE, config.ENV_BACKBONE, config.ENV_IMAGE_SIZE):
        monkeypatch.delenv(name, raising=False)
    layout = CacheLayout(tmp_path)
    d = choose_defaults(layout)
    assert (d.source, d.backbone, d.image_size, d.run_id) == ("cifar10", "mobilenet_v1_100_128", 128, "")
    run = "20260101-000000-mlp-abcdef"
    (tmp_path / "bundle.json").write_text(
        json.dumps(
            {
                "version": 1,
                "runs": [run],
                "datasets": [],
                "aliases": {},
                "float16_features": [],
                "defaults": {"source": "cache:abc", "backbone": "bb", "image_size": 96, "run": run},
            }
        )
    )
    d = choose_defaults(layout)
    assert (d.source, d.backbone, d.image_size, d.run_id) == ("cache:abc", "bb", 96, run)
    monkeypatch.setenv(config.ENV_BACKBONE, "from-env")
    monkeypatch.setenv(config.ENV_IMAGE_SIZE, "100000")  # out of range: ignored
    d = choose_defaults(layout, source="flag-source")
    assert (d.source, d.backbone, d.image_size) == ("flag-source", "from-env", 96)


def test_users_get_the_auto_runtime_unless_pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    """`extract`/`train` default to --runtime auto; $TLX_RUNTIME pins another (the test suite pins tf); a value that is
    not a runtime is ignored."""
    from lib.cli.main import build_parser
    from lib.runtimes import ENV_RUNTIME, entry_default

    monkeypatch.delenv(ENV_RUNTIME, raising=False)
    assert entry_default() == "auto"
    assert build_parser().parse_args(["extract"]).runtime == "auto"
    monkeypatch.setenv(ENV_RUNTIME, "litert")
    assert entry_default() == "litert" and build_parser().parse_args(["train"]).runtime == "litert"
    monkeypatch.setenv(ENV_RUNTIME, "../../etc")
    assert entry_default() == "auto"
