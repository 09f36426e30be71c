"""lib/bounds.py: one range per number, shared by the CLI, the lib and the app; one-line refusals."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lib import bounds
from lib.cli.main import main
from lib.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "argv, flag_name",
    [
        (["train", "--lr", "inf"], "--lr"),
        (["train", "--lr", "nan"], "--lr"),
        (["train", "--seed", "-1"], "--seed"),
        (["train", "--image-sizes", "abc"], "--image-sizes"),
        (["train", "--image-size", "100000"], "--image-size"),
        (["train", "--image-sizes", "128,128"], "--image-sizes"),
        (["benchmark", "--image-sizes", "0"], "--image-sizes"),
        (["benchmark", "--image-sizes", "64,64"], "--image-sizes"),
        (["benchmark", "--runtimes", ","], "--runtimes"),
        (["project", "--perplexity", "0"], "--perplexity"),
        (["extract", "--ray-cpus-per-worker", "nan"], "--ray-cpus-per-worker"),
        (["extract", "--engine", "ray", "--ray-address", "a" * 5000], "--ray-address"),
        (["train", "--dropout", "1.5"], "--dropout"),
        (["audit", "--folds", "1"], "--folds"),
        (["train", "--epochs", "2.5"], "--epochs"),
    ],
)
def test_every_flag_has_bounds_and_a_one_line_error(
    argv: list[str], flag_name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main([*argv, "--cache-dir", str(tmp_path)])
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("error:") and flag_name in err, err
    assert "unexpected" not in err and len(err) < 400


def test_the_app_and_the_cli_share_the_bounds() -> None:
    assert bounds.widget("learning_rate") == {"min_value": 1e-7, "max_value": 1.0}
    assert bounds.widget("steps", zero_means_off=True)["min_value"] == 0
    with pytest.raises(ConfigError, match="seed"):
        bounds.check("seed", -1)
    assert not bounds.BOUNDS["image_size"].accepts(float("nan")) and not bounds.BOUNDS["epochs"].accepts(True)
    from lib.models.heads import HeadConfig

    with pytest.raises(ConfigError, match="learning rate"):
        HeadConfig(learning_rate=float("inf")).validate()


def test_a_bad_app_flag_stops_the_app_instead_of_serving_the_default_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    from ui import state

    monkeypatch.setattr(sys, "argv", ["app.py", "--demo", "--image-size", "abc", "--cache-dir", "/data/demo"])
    assert "image-size" in state.argv_problem()
    monkeypatch.setattr(sys, "argv", ["app.py", "--demo", "--image-size", "128", "--cache-dir", "/data/demo"])
    assert state.argv_problem() == "" and state.startup_cache_dir() == "/data/demo"


def test_a_local_backbone_with_a_bad_size_is_a_bad_size(tmp_path: Path) -> None:
    from lib.bounds import backbone_at_sizes
    from lib.errors import ConfigError

    model = tmp_path / "model"
    model.mkdir()
    with pytest.raises(ConfigError, match="'abc' is not a list of input sizes"):
        backbone_at_sizes(f"{model}@abc")
    assert backbone_at_sizes(f"{model}@64") == (str(model), (64,))
    assert backbone_at_sizes("https://tfhub.dev/x/y@v2") == ("https://tfhub.dev/x/y@v2", None)  # a handle's own @
