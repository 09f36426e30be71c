"""The hosting form of a bundle (`bundle --hosting`): small, and what it leaves out does not change what a visitor
sees."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest

from lib.bundles.install import install_bundle
from lib.bundles.make import make_bundle
from lib.data.sources import load_dataset
from lib.errors import BundleError
from lib.models.heads import HeadConfig
from lib.pipeline.training import RunRequest, train_run
from lib.store.installed import backbone_stand_ins
from lib.store.layout import CacheLayout
from tests import fixtures


def _cache_with_run(source: str, backbone: str, cache: Path) -> str:
    from lib.analysis.full_map import compute_full_map

    req = RunRequest(
        source,
        backbone,
        HeadConfig(head="mlp", hidden=16, epochs=10, batch_size=16),
        image_sizes=(32,),
        train_views=("original", "flip"),
        tta=True,
    )
    run_id = train_run(req, CacheLayout(cache)).run_id
    compute_full_map(source, backbone, 32, CacheLayout(cache), "pca")
    return run_id


@pytest.fixture(scope="module")
def jpeg_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An image-folder tar of 32 px JPEG and PNG files (no unreadable file): its files travel as they are."""
    root = tmp_path_factory.mktemp("hosting_src")
    folder = fixtures.make_image_folder(root / "imgs", corrupt=False, mixed=False)
    out = root / "imgs.tar.gz"
    with tarfile.open(out, "w:gz") as tar:
        tar.add(folder, arcname="imgs")
    return out


@pytest.fixture(scope="module")
def hosted(jpeg_tar: Path, assets: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    cache = tmp_path_factory.mktemp("hosting_cache")
    run_id = _cache_with_run(str(jpeg_tar), str(assets["savedmodel"]), cache)
    out = tmp_path_factory.mktemp("hosting_out") / "host.tar"
    report = make_bundle(CacheLayout(cache), out, hosting=True)
    target, thumbs = tmp_path_factory.mktemp("hosted") / "cache", tmp_path_factory.mktemp("thumbs")
    info = install_bundle(str(out), CacheLayout(target), sprites_root=thumbs)
    return {
        "cache": cache,
        "run": run_id,
        "out": out,
        "report": report,
        "target": target,
        "thumbs": thumbs,
        "info": info,
    }


def test_hosting_bundle_carries_no_savedmodel_no_full_features_and_exact_images(
    hosted: dict, assets: dict[str, Path]
) -> None:
    """No SavedModel, no full features, no image arrays travel; installed, every image is the stored one, byte for byte,
    the hover thumbnails are written, and the backbone's stand-in keys the same features."""
    from lib.data.thumbs import find_sprites
    from lib.models.specs import resolve_backbone, set_aliases

    with tarfile.open(hosted["out"]) as tar:
        names = tar.getnames()
    assert not [n for n in names if n.startswith("backbones/") or n.endswith("_images.npy") or n.endswith(".f16.npy")]
    assert [n for n in names if n.endswith("_originals.bin")] and [n for n in names if n.endswith(".basis.npy")]
    assert [n for n in names if n.startswith("converted/")] and [
        n for n in names if n.endswith("split_predictions.npz")
    ]
    assert hosted["info"]["notices"] == []
    src = load_dataset(hosted["info"]["defaults"]["source"], CacheLayout(hosted["cache"]))
    got = load_dataset(hosted["info"]["defaults"]["source"], CacheLayout(hosted["target"]))
    for split in src.splits:
        assert np.array_equal(src.images(split), got.images(split)) and np.array_equal(
            src.labels(split), got.labels(split)
        )
    assert find_sprites(got, hosted["thumbs"]) is not None
    identity = resolve_backbone(str(assets["savedmodel"])).identity()
    try:
        set_aliases(
            {},
            {
                str(assets["savedmodel"]) + "-gone": backbone_stand_ins(CacheLayout(hosted["target"]))[
                    str(assets["savedmodel"])
                ]
            },
        )
        assert (
            resolve_backbone(str(assets["savedmodel"]) + "-gone").identity() == identity
        )  # a path that does not exist here
    finally:
        set_aliases({})


def test_reduced_features_search_exactly_and_are_never_trained_on(hosted: dict, assets: dict[str, Path]) -> None:
    """Reduced features are a miss for anything but neighbour search (and stay on disk); re-ranked by the LiteRT
    backbone,
    the neighbours of every image equal exact search on the real features; the map's predictions came along."""
    from lib.models.specs import resolve_backbone
    from lib.pipeline.feature_store import load_cached_features
    from lib.pipeline.features import cached_feature_result
    from lib.pipeline.neighbours import nearest_to
    from lib.pipeline.predictions import run_predictions
    from lib.pipeline.reduced import nearest_search
    from lib.runs.registry import load_run
    from lib.runtimes.lite_parts import lite_backbone
    from lib.store.layout import CacheLayout

    source = hosted["info"]["defaults"]["source"]
    spec = resolve_backbone(str(assets["savedmodel"]))
    hosted_layout = CacheLayout(hosted["target"])
    source_layout = CacheLayout(hosted["cache"])
    ds, src = load_dataset(source, hosted_layout), load_dataset(source, source_layout)
    key = hosted["info"]["hosting"]["reduced_features"][0]
    runtime = load_run(source_layout, hosted["run"]).manifest.runtime
    assert (
        load_cached_features(hosted_layout, key) is None
        and load_cached_features(hosted_layout, key, reduced_ok=True) is not None
    )
    assert cached_feature_result(ds, "train", spec, 32, "original", None, hosted_layout, runtime) is None
    reduced = {
        s: cached_feature_result(ds, s, spec, 32, "original", None, hosted_layout, runtime, reduced_ok=True)
        for s in ds.splits
    }
    real = {s: cached_feature_result(src, s, spec, 32, "original", None, source_layout, runtime) for s in src.splits}
    assert all(r is not None and r.basis is not None for r in reduced.values()) and all(
        r is not None for r in real.values()
    )
    model = lite_backbone(str(assets["savedmodel"]), spec.identity(), spec.name, [32], ds, hosted_layout)
    images = {s: ds.images(s) for s in ds.splits}
    feats = {s: r.features for s, r in real.items()}
    for split in ds.splits:
        for i in range(ds.size(split)):
            exact = nearest_to(feats, np.asarray(feats[split][i]), 5, skip=(split, i))
            hits, is_exact = nearest_search(
                reduced, None, 5, skip=(split, i), embed=lambda x: model.embed(x, 32), images=images
            )
            # the same neighbours, up to ties within LiteRT's 1e-4 of TensorFlow (the run's features): compare their
            # true similarities
            true = {(s, j): sim for s, j, sim in nearest_to(feats, np.asarray(feats[split][i]), 10**6, skip=(split, i))}
            assert is_exact and np.allclose(
                [true[(s, j)] for s, j, _ in hits], [sim for _s, _j, sim in exact], atol=1e-4
            ), (split, i)
    run = load_run(hosted_layout, hosted["run"])
    brought = run_predictions(run, ds, spec, hosted_layout, ["train"])
    assert np.array_equal(
        brought["train"],
        run_predictions(load_run(source_layout, hosted["run"]), src, spec, source_layout, ["train"])["train"],
    )
    assert (brought["train"] >= 0).all()


def test_sprite_sheets_travel_when_the_source_files_cannot(assets: dict[str, Path], tmp_path: Path) -> None:
    """A CIFAR pickle source has no image files: images travel as sprite sheets (JPEG, close to the stored pixels). A
    read-only thumbnail folder is a notice; the install itself succeeds."""
    cache = tmp_path / "src"
    _cache_with_run(str(assets["cifar_tar"]), str(assets["savedmodel"]), cache)
    out = tmp_path / "host.tar"
    make_bundle(CacheLayout(cache), out, hosting=True)
    with tarfile.open(out) as tar:
        assert [n for n in tar.getnames() if "/sprites/" in n] and not [
            n for n in tar.getnames() if n.endswith("_originals.bin")
        ]
    blocker = tmp_path / "static"
    blocker.write_text("a file where the app's folder should be: nothing can be written under it (even by root)")
    info = install_bundle(str(out), CacheLayout(tmp_path / "hosted"), sprites_root=blocker / "thumbs")
    assert any("Hover thumbnails are off" in n for n in info["notices"]) and blocker.is_file()
    src, got = (
        load_dataset(info["defaults"]["source"], CacheLayout(cache)),
        load_dataset(info["defaults"]["source"], CacheLayout(tmp_path / "hosted")),
    )
    for (
        split
    ) in src.splits:  # each image is its tile of the sheet as JPEG (quality 90) decodes it: nothing else changed
        expected = _through_a_sheet(np.asarray(src.images(split)))
        assert np.array_equal(np.asarray(got.images(split)), expected) and np.array_equal(
            src.labels(split), got.labels(split)
        )


def _through_a_sheet(images: np.ndarray) -> np.ndarray:
    import io

    from PIL import Image

    from lib.data.thumbs import PER_SHEET, THUMBS_PER_ROW, _sheet

    out = []
    for start in range(0, len(images), PER_SHEET):
        buf = io.BytesIO()
        Image.fromarray(_sheet(images[start : start + PER_SHEET], 32)).save(buf, format="JPEG", quality=90)
        pixels = np.asarray(Image.open(buf).convert("RGB"))
        tiles = (
            pixels.reshape(THUMBS_PER_ROW, 32, THUMBS_PER_ROW, 32, 3)
            .transpose(0, 2, 1, 3, 4)
            .reshape(PER_SHEET, 32, 32, 3)
        )
        out.append(tiles[: len(images) - start])
    return np.concatenate(out)


def test_images_larger_than_a_thumbnail_without_their_files_are_refused(
    assets: dict[str, Path], tmp_path: Path
) -> None:
    """96 px images from a folder (whose files are not packed as they are): thumbnails are at most 64 px, so they cannot
    travel as sprite sheets; the bundle says to make a normal one, and writes nothing."""
    from PIL import Image

    root = tmp_path / "big"
    for split in ("train", "test"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(np.full((96, 96, 3), 40 * i + (100 if c == "b" else 0), np.uint8)).save(
                    root / split / c / f"{i}.png"
                )
    cache = tmp_path / "src"
    _cache_with_run(str(root), str(assets["savedmodel"]), cache)
    with pytest.raises(BundleError, match="without --hosting"):
        make_bundle(CacheLayout(cache), tmp_path / "host.tar", hosting=True)
    assert not (tmp_path / "host.tar").exists()
