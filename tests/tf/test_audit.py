"""Data quality: label issues on flipped labels, planted near-duplicates, the artifact (keys, damage), the
audit CLI's JSON contract, and exclude lists from file to run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lib.analysis import audit as au
from lib.analysis.duplicates import normalise
from lib.errors import ConfigError, DataSourceError
from lib.store.layout import CacheLayout
from tests.fixtures import cli


def _blobs(per_class: int, seed: int, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(centres)), per_class)
    return (centres[y] + rng.normal(size=(len(y), centres.shape[1]))).astype(np.float32), y


def test_flipped_labels_are_found() -> None:
    """Flip 5% of the labels of a separable set: the audit must flag most of them, and little else."""
    centres = np.random.default_rng(0).normal(scale=2.0, size=(10, 32))
    x_train, y_train = _blobs(60, 1, centres)
    x_test, y_test = _blobs(20, 2, centres)
    rng = np.random.default_rng(3)
    flipped = {}
    for name, y in (("train", y_train), ("test", y_test)):
        rows = rng.choice(len(y), size=len(y) // 20, replace=False)
        y[rows] = (y[rows] + rng.integers(1, 10, size=len(rows))) % 10
        flipped[name] = set(rows.tolist())
    audit = au.compute_audit(
        [f"c{i}" for i in range(10)], {"train": x_train, "test": x_test}, {"train": y_train, "test": y_test}, folds=5
    )
    for name in ("train", "test"):
        found = set(audit.issues[name].tolist())
        recall = len(found & flipped[name]) / len(flipped[name])
        precision = len(found & flipped[name]) / max(len(found), 1)
        assert recall >= 0.8 and precision >= 0.5, (name, recall, precision)
    issues = audit.label_issues()
    assert [r["score"] for r in issues] == sorted((r["score"] for r in issues), reverse=True)  # worst first
    assert {"split", "index", "given", "suggested", "score"} == set(issues[0])
    assert audit.label_issues(given=3) and all(r["given"] == "c3" for r in audit.label_issues(given=3))


def test_planted_duplicates_are_found_exactly() -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(size=(500, 64)).astype(np.float32)
    test = rng.normal(size=(100, 64)).astype(np.float32)
    test[7] = train[42]  # exact copy
    test[8] = train[43] + rng.normal(scale=0.05, size=64)  # a slightly changed copy
    train[400] = train[10] * 1.7  # within train, a rescaled copy: cosine 1
    audit = au.compute_audit(
        ["a", "b"], {"train": train, "test": test}, {"train": np.arange(500) % 2, "test": np.arange(100) % 2}, folds=2
    )
    pairs = audit.duplicates(0.99)
    keys = {(p["split_a"], p["index_a"], p["split_b"], p["index_b"]) for p in pairs}
    assert {("test", 7, "train", 42), ("test", 8, "train", 43), ("train", 10, "train", 400)} <= keys
    assert len(keys) == 3  # random vectors are nowhere near 0.99; the within-train pair is listed once
    assert pairs[0]["similarity"] >= pairs[-1]["similarity"] and pairs[0]["similarity"] == pytest.approx(1.0, abs=1e-5)
    assert set(audit.leaked_test_images(0.99).tolist()) == {7, 8}
    # Exact: the neighbour search agrees with a brute-force argmax everywhere.
    unit_train, unit_test = normalise(train), normalise(test)
    index, sims = audit.neighbours["test>train"]
    assert np.array_equal(index, (unit_test @ unit_train.T).argmax(1)) and np.allclose(
        sims, (unit_test @ unit_train.T).max(1), atol=1e-5
    )
    # Within a split each pair is computed once (upper triangle, in blocks): the same answer as the full matrix.
    within = unit_train @ unit_train.T
    np.fill_diagonal(within, -np.inf)
    index, sims = audit.neighbours["train>train"]
    assert np.allclose(sims, within.max(1), atol=1e-5) and np.all(within[np.arange(500), index] >= within.max(1) - 1e-5)


def test_fewer_images_per_class_than_folds_is_a_clear_error() -> None:
    x = np.zeros((12, 4), np.float32)
    with pytest.raises(ConfigError, match="fewer than the 5 folds"):
        au.compute_audit(["a", "b"], {"train": x}, {"train": np.array([0] * 9 + [1] * 3)}, folds=5)


def test_artifact_round_trip_and_damage_is_detected(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 8)).astype(np.float32)
    y = np.arange(40) % 2
    audit = au.compute_audit(["a", "b"], {"train": x, "test": x[:10]}, {"train": y, "test": y[:10]}, folds=2)
    path = tmp_path / "audits" / "0123456789abcdef.npz"
    au.save_audit(path, audit)
    back = au.load_audit(path, {"train": 40, "test": 10})
    assert (
        back is not None
        and back.duplicates(0.5) == audit.duplicates(0.5)
        and back.label_issues() == audit.label_issues()
    )
    assert au.load_audit(path, {"train": 41, "test": 10}) is None  # stale: the dataset has other sizes
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert au.load_audit(path, {"train": 40, "test": 10}) is None  # damaged: never shown
    path.write_bytes(b"")
    assert au.load_audit(path, {"train": 40, "test": 10}) is None
    assert not list(path.parent.glob("*.tmp*"))


def test_key_follows_features_folds_seed_and_head() -> None:
    head = au.audit_head()
    base = au.audit_key({"train": "a", "test": "b"}, 5, 0, head)
    assert base != au.audit_key({"train": "a", "test": "c"}, 5, 0, head)
    assert base != au.audit_key({"train": "a", "test": "b"}, 4, 0, head)
    assert base != au.audit_key({"train": "a", "test": "b"}, 5, 1, head)
    import dataclasses

    assert base != au.audit_key({"train": "a", "test": "b"}, 5, 0, dataclasses.replace(head, hidden=64))


def test_audit_cli_json_contract_and_cache(assets: dict[str, Path], cache_dir: Path) -> None:
    args = [
        "audit",
        "--source",
        str(assets["cifar_tar"]),
        "--backbone",
        str(assets["savedmodel"]),
        "--image-size",
        "32",
        "--folds",
        "3",
        "--threshold",
        "0.9",
        "--json",
    ]
    out = cli(*args, cache=cache_dir)  # the CLI's main(argv) in this process: its stdout is the JSON
    assert {"label_issues", "duplicates", "seconds"} <= set(out)
    for r in out["label_issues"]:
        assert (
            set(r) == {"split", "index", "given", "suggested", "score"}
            and r["split"] in ("train", "test")
            and 0 <= r["score"] <= 1
        )
    for d in out["duplicates"]:
        assert set(d) == {"split_a", "index_a", "split_b", "index_b", "similarity"} and d["similarity"] >= 0.9
    assert [d["similarity"] for d in out["duplicates"]] == sorted(
        (d["similarity"] for d in out["duplicates"]), reverse=True
    )
    assert len(list((cache_dir / "audits").glob("*.npz"))) == 1
    again = cli(*args, cache=cache_dir)
    assert (
        again["audit_seconds"] == out["audit_seconds"] and again["label_issues"] == out["label_issues"]
    )  # read back, not recomputed
    bad = cli(*args[:-3], "--folds", "10", cache=cache_dir, ok=False)
    assert (
        bad.returncode == 2 and "fewer than the 10 folds" in bad.stderr and "Traceback" not in bad.stderr
    )  # 6 train + 3 test images per class


def test_exclude_list_round_trip_into_a_run(
    assets: dict[str, Path], cache_dir: Path, layout: CacheLayout, tmp_path: Path
) -> None:
    from lib.data.excludes import parse_exclude, read_exclude_file, save_exclude_list
    from lib.data.sources import load_dataset
    from lib.runs.registry import load_run

    ds = load_dataset(str(assets["cifar_tar"]), layout)
    saved = save_exclude_list(layout, "mine", ds, {"train": np.array([3, 1, 3]), "test": np.array([0])})
    back = read_exclude_file(saved, ds)
    assert {k: v.tolist() for k, v in back.items()} == {"train": [1, 3], "test": [0]}
    csv_file = tmp_path / "issues.csv"
    csv_file.write_text("split,index,given,suggested,score\ntrain,5,cat,dog,0.9\n")
    assert read_exclude_file(csv_file, ds)["train"].tolist() == [5]
    with pytest.raises(DataSourceError, match=r"train/60.*test/99"):
        parse_exclude(
            "split,index\ntrain,60\ntest,99\ntrain,2\n", ds
        )  # 60 train and 30 test images: these do not exist
    with pytest.raises(DataSourceError, match="another dataset"):
        parse_exclude(json.dumps({"format": "transfer-explorer-exclude-list", "dataset": "other", "images": {}}), ds)
    args = [
        "train",
        "--source",
        str(assets["cifar_tar"]),
        "--backbone",
        str(assets["savedmodel"]),
        "--image-size",
        "32",
        "--head",
        "linear",
        "--epochs",
        "2",
        "--exclude",
        str(saved),
        "--json",
    ]
    out = cli(*args, cache=cache_dir)
    assert out["excluded"] == {"train": 2, "test": 1}
    run = load_run(layout, out["run_id"])
    assert run.manifest.excluded == {"test": [0], "train": [1, 3]} and 0 not in run.indices and len(run.indices) == 29
    missing = cli(*args[:-3], "--exclude", str(tmp_path / "nope.json"), cache=cache_dir, ok=False)
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_candidates_are_confirmed_or_rejected_on_the_pixels() -> None:
    """Two test images have a training image with the same features; only the one that is really a (shifted, mirrored)
    copy of its photograph is reported as the same photo, and the leaked-test count follows the pixel check."""
    from tests.unit.test_duplicates import _scene

    rng = np.random.default_rng(0)
    train = rng.normal(size=(200, 32)).astype(np.float32)
    test = rng.normal(size=(40, 32)).astype(np.float32)
    images = {
        "train": np.stack([_scene(i) for i in range(200)]),
        "test": np.stack([_scene(1000 + i) for i in range(40)]),
    }
    test[3], images["test"][3] = (
        train[17],
        np.roll(images["train"][17], 2, axis=1)[:, ::-1],
    )  # a copy: shifted, mirrored
    test[5] = train[18]  # the same features, but another photograph
    audit = au.compute_audit(
        ["a", "b"],
        {"train": train, "test": test},
        {"train": np.arange(200) % 2, "test": np.arange(40) % 2},
        folds=2,
        images=images,
    )
    a, b, _sims, _scores = audit.photos["test>train"]
    assert {(3, 17), (5, 18)} <= set(zip(a.tolist(), b.tolist()))  # both were candidates
    confirmed = {(r["index_a"], r["index_b"]) for r in audit.same_photos() if r["split_a"] == "test"}
    assert confirmed == {(3, 17)}, audit.same_photos()
    assert audit.leaked_test_images(None).tolist() == [3] and set(audit.leaked_test_images(0.99).tolist()) == {3, 5}
