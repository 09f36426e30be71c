"""The CLI as a user runs it: `python -m lib ...` in a subprocess, JSON on stdout, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures import cli

ROOT = Path(__file__).resolve().parents[2]


def test_data_extract_train_evaluate_runs_export(assets: dict[str, Path], cache_dir: Path, tmp_path: Path) -> None:
    """A user converts a dataset, extracts features twice (the second is a cache hit), trains, evaluates and exports."""
    src, bb = str(assets["cifar_tar"]), str(assets["savedmodel"])
    summary = cli("data", "--source", src, "--json", cache=cache_dir)
    assert summary["splits"]["train"]["total"] == 60 and summary["classes"][0] == "airplane"
    text = cli("data", "--source", src, cache=cache_dir)
    assert "airplane" in text and "total" in text

    first = cli(
        "extract", "--source", src, "--backbone", bb, "--image-size", "40", "--split", "all", "--json", cache=cache_dir
    )
    for key in ("images", "feature_dim", "seconds", "images_per_second", "cache_hit", "cache_path"):
        assert key in first
    assert first["images"] == 90 and first["feature_dim"] == 16 and first["cache_hit"] is False
    second = cli(
        "extract", "--source", src, "--backbone", bb, "--image-size", "40", "--split", "all", "--json", cache=cache_dir
    )
    assert second["cache_hit"] is True and second["images"] == 90

    trained = cli(
        "train",
        "--source",
        src,
        "--backbone",
        bb,
        "--image-size",
        "40",
        "--head",
        "mlp",
        "--hidden",
        "16",
        "--epochs",
        "3",
        "--flip-train",
        "--tta",
        "--label",
        "cli run",
        "--json",
        cache=cache_dir,
    )
    for key in ("run_id", "test_accuracy", "train_seconds", "extract_seconds"):
        assert key in trained
    assert 0 <= trained["test_accuracy"] <= 1
    rid = trained["run_id"]
    listed = cli("runs", "list", "--json", cache=cache_dir)
    assert listed["runs"][0]["run_id"] == rid and listed["runs"][0]["label"] == "cli run"
    report = cli("evaluate", rid, "--json", cache=cache_dir)
    assert report["accuracy"] == trained["test_accuracy"] and len(report["per_class"]) == 10
    assert "top confused pairs" in cli("evaluate", rid, cache=cache_dir)
    shown = cli("runs", "show", rid, "--json", cache=cache_dir)
    assert shown["head"]["hidden"] == 16 and shown["train_views"] == ["original", "flip"]
    exported = cli("runs", "export", rid, "--out", str(tmp_path / "model"), "--zip", "--json", cache=cache_dir)
    assert Path(exported["export_path"], "saved_model.pb").exists() and Path(exported["zip_path"]).exists()
    cli("runs", "delete", rid, "--json", cache=cache_dir)
    assert cli("runs", "list", "--json", cache=cache_dir)["runs"] == []


def test_backbones_lists_registry(cache_dir: Path) -> None:
    out = cli("backbones", "--json", cache=cache_dir)
    names = [b["name"] for b in out["backbones"]]
    assert out["default"] == "mobilenet_v1_100_128" and "inception_v3" in names


@pytest.mark.parametrize(
    "args, message",
    [
        (["data", "--source", "/no/such/data"], "neither 'cifar10' nor an existing path"),
        (["extract", "--source", "{cifar}", "--backbone", "/no/such/model"], "Unknown backbone"),
        (["evaluate", "20260101-000000-mlp-abcdef"], "not found"),
        (["runs", "delete", "nonsense"], "not a run id"),
        (["runs", "show", "../../etc/passwd"], "not a run id"),
        (["data", "--source", "x" * 5000], "characters long"),
        (["extract", "--source", "{cifar}", "--backbone", "y" * 5000], "characters long"),
        (["extract", "--source", "{cifar}", "--backbone", "/" + "a" * 300 + "/m"], "Unknown backbone"),
        (["train", "--source", "{cifar}", "--backbone", "/no/such/model", "--dropout", "3"], "dropout"),
        (
            ["train", "--source", "{cifar}", "--backbone", "/no/such/model", "--finetune", "--engine", "ray"],
            "fine-tuning trains from the images",
        ),
    ],
)
def test_errors_are_one_line_without_traceback(
    assets: dict[str, Path], cache_dir: Path, args: list[str], message: str
) -> None:
    args = [a.replace("{cifar}", str(assets["cifar_tar"])) for a in args]
    proc = cli(*args, cache=cache_dir, ok=False)
    assert proc.returncode != 0
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")


def test_not_a_feature_vector_module_is_refused(assets: dict[str, Path], cache_dir: Path, tmp_path: Path) -> None:
    from tests import fixtures

    classifier = fixtures.make_classifier_savedmodel(tmp_path / "classifier")
    proc = cli(
        "extract", "--source", str(assets["cifar_tar"]), "--backbone", str(classifier), cache=cache_dir, ok=False
    )
    assert proc.returncode == 2 and "classification module" in proc.stderr and "Traceback" not in proc.stderr


def test_export_refuses_the_cache_dir_and_closed_pipes_are_quiet(assets: dict[str, Path], cache_dir: Path) -> None:
    src, bb = str(assets["cifar_tar"]), str(assets["savedmodel"])
    rid = cli(
        "train", "--source", src, "--backbone", bb, "--image-size", "32", "--epochs", "2", "--json", cache=cache_dir
    )["run_id"]
    before = sorted(str(p) for p in cache_dir.rglob("*"))
    proc = cli("runs", "export", rid, "--out", str(cache_dir), "--force", cache=cache_dir, ok=False)
    assert proc.returncode == 2 and "not an export of this project" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(str(p) for p in cache_dir.rglob("*")) == before  # every run, feature and dataset is still there
    # `evaluate ID | head -1`: the reader is gone before Python writes (`true` exits at once); no BrokenPipeError
    # traceback.
    shell = f"{sys.executable} -m lib evaluate {rid} --cache-dir {cache_dir} | true"
    piped = subprocess.run(["bash", "-c", shell], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in piped.stderr and "BrokenPipe" not in piped.stderr, piped.stderr


def test_two_classes_train_evaluate_and_list_with_escapes_shown_as_text(
    assets: dict[str, Path], tmp_path: Path, cache_dir: Path
) -> None:
    """`train` on <split>/{cats,dogs} gives a run (top-5 is "n/a": it says nothing with two classes); `evaluate` and
    `runs list` print a class name and a run label holding terminal escapes as text."""
    from tests import fixtures

    root = fixtures.make_image_folder(
        tmp_path / "imgs", classes=("cats", "dogs\x1b[2J"), per_class=8, test_per_class=4, corrupt=False
    )
    out = cli(
        "train",
        "--source",
        str(root),
        "--backbone",
        str(assets["savedmodel"]),
        "--image-size",
        "32",
        "--epochs",
        "3",
        "--label",
        "mine\x1b]0;pwned\x07",
        "--json",
        cache=cache_dir,
    )
    assert out["top5_accuracy"] is None and 0.0 <= out["test_accuracy"] <= 1.0
    text = cli("evaluate", out["run_id"], cache=cache_dir)
    assert "top-5 n/a" in text and "dogs\\x1b[2J" in text and "\x1b" not in text
    listed = cli("runs", "list", cache=cache_dir)
    assert out["run_id"] in listed and "\x1b" not in listed and "\x07" not in listed and "mine" in listed
