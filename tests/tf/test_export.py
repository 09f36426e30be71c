"""Export: one SavedModel (backbone + head) that a fresh process reloads without this project."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

from lib.errors import RunError
from lib.models.heads import HeadConfig
from lib.models.predict import predict_images
from lib.pipeline.training import RunRequest, train_run
from lib.runs.export import EXPORT_MARKER, export_run, zip_folder
from lib.runs.registry import load_run
from lib.store.layout import CacheLayout
from tests import fixtures


def test_exported_model_predicts_in_a_fresh_process(
    assets: dict[str, Path], cache_dir: Path, layout: CacheLayout, tmp_path: Path
) -> None:
    req = RunRequest(
        str(assets["cifar_tar"]),
        str(assets["savedmodel"]),
        HeadConfig(head="mlp", hidden=16, epochs=5, batch_size=16),
        image_sizes=(32, 48),
        train_views=("original", "flip"),
        tta=True,
    )
    manifest = train_run(req, layout)
    out = export_run(layout, manifest.run_id, tmp_path / "exported")
    assert (out / "saved_model.pb").exists() and (out / "class_names.txt").read_text().split() == fixtures.CLASSES
    archive = zip_folder(out, tmp_path / "exported.zip")
    assert "exported/saved_model.pb" in zipfile.ZipFile(archive).namelist()

    images = np.concatenate([fixtures.class_images(c, 2, seed=1) for c in range(10)])
    np.save(tmp_path / "images.npy", images)
    # Only TensorFlow and numpy: run from an empty folder so `lib` is not importable.
    script = textwrap.dedent(f"""
        import json, numpy as np, tensorflow as tf
        model = tf.saved_model.load({str(out)!r})
        images = np.load({str(tmp_path / "images.npy")!r})
        probs = model(images).numpy()
        big = model(tf.image.resize(images, (70, 90)).numpy().astype("uint8")).numpy()
        serve = model.signatures["serving_default"](images=tf.constant(images))
        print(json.dumps({{"probs": probs.tolist(), "names": [n.decode() for n in model.class_names.numpy()],
                          "big_shape": list(big.shape), "serve_keys": list(serve)}}))
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        env={"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3", "HOME": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["names"] == fixtures.CLASSES and result["big_shape"] == [20, 10]
    # The exported model matches the run's own numpy head on the same images.
    run = load_run(layout, manifest.run_id)
    from lib.runtimes.backbones import load_backbone, resolve_backbone

    bb = load_backbone(resolve_backbone(str(assets["savedmodel"])))
    views = [np.concatenate([bb.embed(images, s, flip) for s in (32, 48)], axis=1) for flip in (False, True)]
    expected = np.mean([run.head.predict_proba(v) for v in views], axis=0)
    np.testing.assert_allclose(np.array(result["probs"]), expected, atol=1e-4)
    # ... and the one prediction path the upload classifier uses gives the same numbers.
    np.testing.assert_allclose(predict_images([bb], run.head, images, [32, 48], tta=True), expected, atol=1e-6)
    # A second export onto the same folder replaces it only with force, and a user's own folder never.
    with pytest.raises(RunError, match="--force"):
        export_run(layout, manifest.run_id, out)
    assert export_run(layout, manifest.run_id, out, force=True) == out and (out / EXPORT_MARKER).exists()


@pytest.fixture
def small_run(assets: dict[str, Path], cache_dir: Path, layout: CacheLayout) -> str:
    req = RunRequest(
        str(assets["cifar_tar"]),
        str(assets["savedmodel"]),
        HeadConfig(head="linear", epochs=2, batch_size=16),
        image_sizes=(32,),
    )
    return train_run(req, layout).run_id


def test_export_never_deletes_what_the_user_named(
    small_run: str, cache_dir: Path, layout: CacheLayout, tmp_path: Path
) -> None:
    """`runs export --out DIR` once wiped DIR: here the cache itself, a user folder and a file are all refused and left
    intact."""
    before = sorted(str(p) for p in cache_dir.rglob("*"))
    for force in (False, True):
        with pytest.raises(RunError, match="not an export of this project"):
            export_run(layout, small_run, cache_dir, force=force)
    assert sorted(str(p) for p in cache_dir.rglob("*")) == before
    mine = tmp_path / "my_stuff"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    with pytest.raises(RunError, match="not an export of this project"):
        export_run(layout, small_run, mine, force=True)
    assert (mine / "thesis.tex").read_text() == "precious" and len(list(mine.iterdir())) == 1
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    with pytest.raises(RunError, match="is an existing file"):
        export_run(layout, small_run, a_file)
    assert a_file.read_text() == "keep me"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left behind


def test_export_into_an_empty_folder_and_zip_rules(
    small_run: str, cache_dir: Path, layout: CacheLayout, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (export_run(layout, small_run, empty) / "saved_model.pb").exists()
    user_zip = tmp_path / "someone.zip"
    user_zip.write_bytes(b"not ours")
    with pytest.raises(RunError, match="not a zip of this project"):
        zip_folder(empty, user_zip)
    assert user_zip.read_bytes() == b"not ours"
    ours = zip_folder(empty, tmp_path / "ours.zip")
    with pytest.raises(RunError, match="--force"):
        zip_folder(empty, ours, force=False)
    assert zip_folder(empty, ours, force=True) == ours


def test_force_replaces_only_the_exports_own_files(
    small_run: str, cache_dir: Path, layout: CacheLayout, tmp_path: Path
) -> None:
    """`runs export --force` onto an earlier export that a user added NOTES.md and eval/results.csv to: refused, naming
    them, and both kept; without them it replaces the export. Class names travel exactly in class_names.json."""
    out = export_run(layout, small_run, tmp_path / "exp")
    marker = json.loads((out / EXPORT_MARKER).read_text())
    assert (
        "saved_model.pb" in marker["files"] and json.loads((out / "class_names.json").read_text()) == fixtures.CLASSES
    )
    (out / "NOTES.md").write_text("my notes")
    (out / "eval").mkdir()
    (out / "eval" / "results.csv").write_text("a,b\n1,2\n")
    with pytest.raises(RunError, match=r"NOTES\.md.*eval/results\.csv|eval.*NOTES\.md"):
        export_run(layout, small_run, out, force=True)
    assert (out / "NOTES.md").read_text() == "my notes" and (out / "eval" / "results.csv").read_text() == "a,b\n1,2\n"
    (out / "NOTES.md").unlink()
    (out / "eval" / "results.csv").unlink()
    (out / "eval").rmdir()
    assert export_run(layout, small_run, out, force=True) == out and (out / "saved_model.pb").exists()


def test_export_onto_a_full_disk_says_disk_full(
    small_run: str, cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """TensorFlow reports a full disk as its own error type: the CLI says "Disk full" in one line, and nothing is
    left."""
    from lib.cli.main import main
    from lib.runs import export

    def full(*_a: object, **_k: object) -> None:
        raise RuntimeError("could not write file: No space left on device")

    monkeypatch.setattr(export, "save_module", full)
    assert (
        main(["runs", "export", small_run, "--out", str(tmp_path / "exp"), "--zip", "--cache-dir", str(cache_dir)]) == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("error: Disk full") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "exp").exists() and not list(tmp_path.glob(".exp*")) and not (tmp_path / "exp.zip").exists()
