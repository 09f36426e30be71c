"""Demo bundles and the read-only cache: what a hosted demo stands on."""

from __future__ import annotations

import http.server
import io
import json
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from lib.bundles.install import install_bundle
from lib.bundles.make import make_bundle
from lib.errors import BundleError, ReadOnlyError
from lib.models.heads import HeadConfig
from lib.pipeline.training import RunRequest, train_run
from lib.store import atomic
from lib.store.installed import backbone_aliases, installed_bundle
from lib.store.layout import CacheLayout


@pytest.fixture(scope="module")
def source_cache(tmp_path_factory: pytest.TempPathFactory, assets: dict[str, Path]) -> dict[str, str]:
    """A cache with the tiny dataset, its features, a TTA run, and a full map."""
    from lib.analysis.full_map import compute_full_map

    cache = tmp_path_factory.mktemp("bundle_src")
    req = RunRequest(
        str(assets["cifar_tar"]),
        str(assets["savedmodel"]),
        HeadConfig(head="mlp", hidden=16, epochs=20, batch_size=16),
        image_sizes=(32,),
        train_views=("original", "flip"),
        tta=True,
    )
    run_id = train_run(req, CacheLayout(cache)).run_id
    compute_full_map(str(assets["cifar_tar"]), str(assets["savedmodel"]), 32, CacheLayout(cache), "pca")
    return {
        "cache": str(cache),
        "run": run_id,
        "source": str(assets["cifar_tar"]),
        "backbone": str(assets["savedmodel"]),
    }


@pytest.fixture(scope="module")
def bundle(source_cache: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("bundle_out") / "demo.tar"
    return out, make_bundle(CacheLayout(source_cache["cache"]), out)


def files_of(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_bundle_round_trip_reads_the_same(
    source_cache: dict[str, str], bundle: tuple[Path, dict], tmp_path: Path
) -> None:
    """A bundle installed into an empty cache gives the same run, dataset (as cache:<fingerprint>), features (float32
    again, with valid checksums), map, and a local copy of the backbone the run's path now points to."""
    from lib.analysis.full_map import find_full_map
    from lib.data.sources import load_dataset
    from lib.models.specs import resolve_backbone, set_aliases
    from lib.pipeline.features import cached_feature_result
    from lib.runs.registry import load_run

    path, report = bundle
    assert report["runs"] == [source_cache["run"]] and report["float16_features"] >= 4
    (check,) = report[
        "float16_check"
    ]  # the run's accuracy from float16-rounded features is reported next to the stored one
    assert abs(check["accuracy"] - check["accuracy_float16_features"]) <= 1 / check["test_images"] + 1e-9
    target = tmp_path / "demo_cache"
    target_layout = CacheLayout(target)
    info = install_bundle(str(path), target_layout)
    assert info["runs"] == [source_cache["run"]] and info["artifacts_added"] > 0
    assert not [p for p in target.iterdir() if p.name.startswith(".bundle-staging")]
    source_layout = CacheLayout(source_cache["cache"])
    original = load_run(source_layout, source_cache["run"])
    copy = load_run(target_layout, source_cache["run"])
    assert np.array_equal(copy.probs, original.probs) and copy.manifest.metrics == original.manifest.metrics
    ds = load_dataset(info["defaults"]["source"], target_layout)
    assert ds.fingerprint == original.manifest.dataset_fingerprint
    assert np.array_equal(ds.images("test"), load_dataset(source_cache["source"], source_layout).images("test"))
    aliases = backbone_aliases(target_layout)
    assert aliases[source_cache["backbone"]].startswith(str(target.resolve()))
    set_aliases(aliases)
    try:
        spec = resolve_backbone(source_cache["backbone"])
        assert spec.handle.startswith(str(target.resolve()))  # the bundled copy, same content, same feature keys
        got = cached_feature_result(ds, "train", spec, 32, "flip", None, target_layout)
        want = cached_feature_result(
            ds,
            "train",
            resolve_backbone(source_cache["backbone"]),
            32,
            "flip",
            None,
            source_layout,
        )
        assert got is not None and want is not None and got.features.dtype == np.float32
        assert np.allclose(got.features, want.features, rtol=1e-3, atol=1e-3)
        assert find_full_map(info["defaults"]["source"], source_cache["backbone"], 32, target_layout, "pca") is not None
    finally:
        set_aliases({})
    again = install_bundle(str(path), target_layout)
    assert again.get("already_installed") and installed_bundle(target_layout)["runs"] == [source_cache["run"]]


def _rewrite(src: Path, dst: Path, edit) -> None:
    """Copy a bundle member by member through ``edit(name, bytes) -> (name, bytes) | None``."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        for m in tin.getmembers():
            data = tin.extractfile(m).read() if m.isfile() else b""
            out = edit(m.name, data)
            if out is None:
                continue
            info = tarfile.TarInfo(out[0])
            info.size = len(out[1])
            tout.addfile(info, io.BytesIO(out[1]))


@pytest.mark.parametrize(
    "damage",
    [
        "flipped byte",
        "truncated",
        "missing member",
        "path escape",
        "not a bundle",
        "other version",
        "aliases a list",
        "size not a number",
        "run not a run id",
    ],
)
def test_bad_bundles_are_refused_and_leave_nothing(bundle: tuple[Path, dict], tmp_path: Path, damage: str) -> None:
    path, _ = bundle
    bad = tmp_path / "bad.tar"
    if damage == "truncated":
        bad.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "not a bundle":
        bad.write_bytes(b"hello, not a tar file at all" * 100)
    else:

        def edit(name: str, data: bytes):
            if damage == "flipped byte" and name.endswith(".f16.npy"):
                return name, data[:-1] + bytes([data[-1] ^ 1])
            if damage == "missing member" and name.startswith("datasets/") and name.endswith("meta.json"):
                return None
            if damage == "path escape" and name.startswith("projections/"):
                return "../../escaped.txt", data
            if name == "bundle.json" and damage in (
                "other version",
                "aliases a list",
                "size not a number",
                "run not a run id",
            ):
                meta = json.loads(data)
                if damage == "other version":
                    meta["version"] = 99
                elif damage == "aliases a list":
                    meta["aliases"] = ["a", "b"]
                elif damage == "size not a number":
                    meta["defaults"]["image_size"] = "big"
                else:
                    meta["runs"] = ["../../etc"]
                return name, json.dumps(meta).encode()
            return name, data

        _rewrite(path, bad, edit)
    target = tmp_path / "cache"
    with pytest.raises(BundleError):
        install_bundle(str(bad), CacheLayout(target))
    assert files_of(target) == set() if target.exists() else True  # nothing partial: no artifact, no staging folder
    assert not (tmp_path.parent / "escaped.txt").exists()


def test_bundle_over_http_with_checksum(bundle: tuple[Path, dict], tmp_path: Path) -> None:
    """A URL is downloaded with progress and installed; a wrong whole-file SHA-256 is refused."""
    import functools
    import hashlib

    path, _ = bundle
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(path.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{path.name}"
        with pytest.raises(BundleError, match="SHA-256"):
            install_bundle(url, CacheLayout(tmp_path / "a"), sha256="0" * 64)
        assert files_of(tmp_path / "a") == set()
        stages: list[str] = []
        info = install_bundle(
            url,
            CacheLayout(tmp_path / "b"),
            progress=lambda s, f: stages.append(s),
            sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        )
        assert info["artifacts_added"] > 0 and any(s.startswith("downloading the bundle") for s in stages)
        with pytest.raises(BundleError, match="download"):
            install_bundle(url + ".missing", CacheLayout(tmp_path / "c"))
    finally:
        server.shutdown()


def test_read_only_cache_refuses_every_write(source_cache: dict[str, str], tmp_path: Path) -> None:
    """With the cache read-only (the demo), writers and deletes raise ReadOnlyError and change nothing; other folders
    stay writable."""
    from lib.runs.registry import delete_run, set_label

    cache = Path(source_cache["cache"])
    before = files_of(cache)
    atomic.set_read_only(cache, "read-only demo")
    cache_layout = CacheLayout(cache)
    try:
        with pytest.raises(ReadOnlyError, match="read-only demo"):
            atomic.write_json_atomic(cache / "x.json", {})
        with pytest.raises(ReadOnlyError):
            set_label(cache_layout, source_cache["run"], "renamed")
        with pytest.raises(ReadOnlyError):
            delete_run(cache_layout, source_cache["run"])
        with pytest.raises(ReadOnlyError):
            install_bundle(str(tmp_path / "whatever.tar"), cache_layout)
        atomic.write_json_atomic(tmp_path / "elsewhere.json", {"ok": 1})  # outside the cache: fine
    finally:
        atomic.set_read_only(None)
    assert files_of(cache) == before


def test_bundle_cli_and_unknown_run(
    source_cache: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lib.cli.main import main

    assert (
        main(
            [
                "bundle",
                "--out",
                str(tmp_path / "b.tar"),
                "--run",
                "20200101-000000-mlp-abcdef",
                "--cache-dir",
                source_cache["cache"],
            ]
        )
        == 2
    )
    assert "No complete run" in capsys.readouterr().err
    assert main(["bundle", "--out", str(tmp_path / "b.tar"), "--cache-dir", source_cache["cache"], "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["runs"] == [source_cache["run"]] and out["bytes"] == (tmp_path / "b.tar").stat().st_size
    assert main(["install-bundle", str(tmp_path / "b.tar"), "--cache-dir", str(tmp_path / "c"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["runs"] == [source_cache["run"]]


def test_bundle_out_never_replaces_a_users_file(
    source_cache: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`bundle --out thesis.txt` is refused and the thesis kept; an earlier bundle at --out is replaced."""
    from lib.cli.main import main

    thesis = tmp_path / "thesis.txt"
    thesis.write_text("my thesis")
    assert main(["bundle", "--out", str(thesis), "--cache-dir", source_cache["cache"]]) == 2
    assert "not a bundle made by this project" in capsys.readouterr().err and thesis.read_text() == "my thesis"
    tar_of_mine = tmp_path / "photos.tar"
    with tarfile.open(tar_of_mine, "w") as tar:
        tar.add(thesis, arcname="thesis.txt")
    before = tar_of_mine.read_bytes()
    source_layout = CacheLayout(source_cache["cache"])
    with pytest.raises(BundleError, match="not a bundle"):
        make_bundle(source_layout, tar_of_mine)
    assert tar_of_mine.read_bytes() == before
    out = tmp_path / "demo.tar"
    first = make_bundle(source_layout, out)
    assert make_bundle(source_layout, out)["bytes"] == first["bytes"]  # an earlier bundle: replaced
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_gzip_bomb_member_is_refused_before_it_is_written(
    bundle: tuple[Path, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A member the manifest says is N bytes but whose header says 32 MiB (zeros, a few KB gzipped) is refused before a
    byte of it lands."""
    from lib.bundles import install as bundle_mod

    path, _ = bundle
    bomb = tmp_path / "bomb.tar.gz"
    with tarfile.open(path) as tin, tarfile.open(bomb, "w:gz") as tout:
        for m in tin.getmembers():
            data = tin.extractfile(m).read()
            if m.name.startswith("projections/"):
                data = bytes(32 << 20)
            info = tarfile.TarInfo(m.name)
            info.size = len(data)
            tout.addfile(info, io.BytesIO(data))
    assert bomb.stat().st_size < 4 << 20
    written: list[int] = []
    real_copy = bundle_mod.shutil.copyfileobj
    monkeypatch.setattr(
        bundle_mod.shutil, "copyfileobj", lambda src, dst, n=0: written.append(1) or real_copy(src, dst, n)
    )
    with pytest.raises(BundleError, match="manifest says"):
        install_bundle(str(bomb), CacheLayout(tmp_path / "cache"))
    assert written == [] and files_of(tmp_path / "cache") == set()


def test_an_updated_bundle_at_the_same_path_installs(source_cache: dict[str, str], tmp_path: Path) -> None:
    """The same path (or URL) with new contents is installed (decided by the manifest's checksums); the same contents
    are not."""
    import shutil

    cache = tmp_path / "src"
    shutil.copytree(source_cache["cache"], cache)
    out, target = tmp_path / "demo.tar", tmp_path / "demo_cache"
    cache_layout = CacheLayout(cache)
    make_bundle(cache_layout, out)
    target_layout = CacheLayout(target)
    assert install_bundle(str(out), target_layout)["runs"] == [source_cache["run"]]
    assert install_bundle(str(out), target_layout).get("already_installed")
    req = RunRequest(
        source_cache["source"],
        source_cache["backbone"],
        HeadConfig(head="linear", epochs=2, batch_size=16),
        image_sizes=(32,),
    )
    second = train_run(req, cache_layout).run_id
    make_bundle(cache_layout, out)
    info = install_bundle(str(out), target_layout)
    assert (
        not info.get("already_installed")
        and info["artifacts_added"] >= 1
        and set(info["runs"]) == {source_cache["run"], second}
    )
    assert (target / "runs" / second).is_dir() and set(installed_bundle(target_layout)["runs"]) == {
        source_cache["run"],
        second,
    }


def test_a_bundle_holds_only_its_runs_datasets(source_cache: dict[str, str], tmp_path: Path) -> None:
    """Audits, maps and speed results of another dataset (or too old to say which) stay out of `bundle --run`."""
    import shutil

    from lib.store.atomic import save_npz_checked, write_json_atomic

    cache = tmp_path / "src"
    shutil.copytree(source_cache["cache"], cache)
    save_npz_checked(
        cache / "audits" / ("a" * 24 + ".npz"),
        {"labels.train": np.zeros(3)},
        {"version": 1, "classes": ["secret"], "feature_keys": {"train": "f" * 24}},
    )
    save_npz_checked(
        cache / "projections" / f"full-pca-{'b' * 24}.npz", {"train": np.zeros((3, 2))}, {"version": 1}
    )  # no feature_keys: older
    write_json_atomic(cache / "benchmarks" / ("c" * 24 + ".json"), {"dataset": "someone-elses", "rows": []})
    out = tmp_path / "demo.tar"
    make_bundle(CacheLayout(cache), out, [source_cache["run"]])
    with tarfile.open(out) as tar:
        names = tar.getnames()
    assert not [n for n in names if "a" * 24 in n or "b" * 24 in n or "c" * 24 in n]
    assert [n for n in names if n.startswith("projections/full-pca-")]  # this dataset's own map is there


def test_a_trickling_download_is_given_up(
    bundle: tuple[Path, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that sends one byte now and then (never enough to finish) is given up on with a clear line."""
    import time

    from lib.bundles import install as bundle_mod

    class Trickle(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            for _ in range(40):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.1)

        def log_message(self, *_a: object) -> None:
            pass

    monkeypatch.setattr(bundle_mod, "DOWNLOAD_STALL_S", 1.0)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        t0 = time.monotonic()
        with pytest.raises(BundleError, match="stalled"):
            install_bundle(f"http://127.0.0.1:{server.server_address[1]}/demo.tar", CacheLayout(tmp_path / "cache"))
        assert time.monotonic() - t0 < 3.5
    finally:
        server.shutdown()
    assert files_of(tmp_path / "cache") == set() and not list((tmp_path / "cache").iterdir())


def test_leftovers_of_a_killed_install_are_cleaned_and_a_full_disk_is_named(
    bundle: tuple[Path, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from lib.bundles import install as bundle_mod

    path, _ = bundle
    cache = tmp_path / "cache"
    for name in (".bundle-staging-999999999-abc", ".bundle-staging-old"):  # a dead process's, and an older version's
        (cache / name / "tree").mkdir(parents=True)
    real_copy = bundle_mod.shutil.copyfileobj

    def full(src: object, dst: object, n: int = 0) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(bundle_mod.shutil, "copyfileobj", full)
    with pytest.raises(BundleError, match="Disk full"):
        install_bundle(str(path), CacheLayout(cache))
    assert not list(cache.iterdir())
    monkeypatch.setattr(bundle_mod.shutil, "copyfileobj", real_copy)
    assert install_bundle(str(path), CacheLayout(cache))["artifacts_added"] > 0


def test_a_damaged_installed_record_is_ignored_not_a_traceback(tmp_path: Path) -> None:
    """A cache whose bundle.json was damaged after installing (aliases a list, a size that is text) is treated as having
    no bundle: the pages fall back to the defaults instead of failing on every load."""
    for damage in (
        {"aliases": ["a"]},
        {"defaults": {"source": "x", "backbone": "y", "image_size": "big", "run": "20260101-000000-mlp-abcdef"}},
    ):
        record = {
            "version": 1,
            "runs": ["20260101-000000-mlp-abcdef"],
            "datasets": [],
            "aliases": {},
            "float16_features": [],
            "defaults": {"source": "x", "backbone": "y", "image_size": 128, "run": "20260101-000000-mlp-abcdef"},
        } | damage
        (tmp_path / "bundle.json").write_text(json.dumps(record))
        assert installed_bundle(CacheLayout(tmp_path)) is None and backbone_aliases(CacheLayout(tmp_path)) == {}


def test_bundle_carries_float_litert_backbones_that_predict_as_tensorflow(
    source_cache: dict[str, str], bundle: tuple[Path, dict], tmp_path: Path
) -> None:
    """The bundle converts each run part to float LiteRT; installed, the run's probabilities through LiteRT and the
    numpy head equal TensorFlow's on the test split (argmax equal, within 1e-4)."""
    from lib.data.sources import load_dataset
    from lib.models.predict import predict_images
    from lib.models.specs import resolve_backbone
    from lib.runs.registry import load_run
    from lib.runtimes.backbones import load_backbone
    from lib.runtimes.lite_parts import lite_backbones
    from lib.store.layout import CacheLayout

    path, _report = bundle
    target = tmp_path / "demo_cache"
    target_layout = CacheLayout(target)
    info = install_bundle(str(path), target_layout)
    assert (
        list(info["converted"].values())
        and all(v.startswith("converted/") for v in info["converted"].values())
        and info["not_converted"] == {}
    )
    run = load_run(target_layout, source_cache["run"])
    ds = load_dataset(info["defaults"]["source"], target_layout)
    images = np.asarray(ds.images("test"))
    lite = predict_images(
        lite_backbones(run.manifest, ds, target_layout),
        run.head,
        images,
        run.manifest.part_keys(),
        run.manifest.tta,
    )
    tf = predict_images(
        [load_backbone(resolve_backbone(source_cache["backbone"]))],
        run.head,
        images,
        run.manifest.part_keys(),
        run.manifest.tta,
    )
    assert np.array_equal(lite.argmax(axis=1), tf.argmax(axis=1)) and float(np.abs(lite - tf).max()) <= 1e-4
    assert np.allclose(tf, run.probs, atol=1e-4)  # and both equal what the run stored


def test_demo_pages_and_an_upload_never_import_tensorflow(
    source_cache: dict[str, str], bundle: tuple[Path, dict], tmp_path: Path
) -> None:
    """A fresh interpreter serves every page of the demo from an installed bundle, classifies an uploaded image and
    searches by it, and TensorFlow is never imported; a run whose bundle has no conversion offers no upload."""
    import subprocess
    import sys

    path, _report = bundle
    target = tmp_path / "demo_cache"
    install_bundle(str(path), CacheLayout(target))
    script = f"""
import io, sys
import numpy as np
from PIL import Image
from streamlit.testing.v1 import AppTest
import os
os.environ.update(TLX_DEMO="1", TLX_CACHE_DIR={str(target)!r})
pages = [p.path for p in __import__("ui.pages", fromlist=["PAGES"]).PAGES]
at = AppTest.from_file("app.py", default_timeout=120)
at.query_params["run"] = {source_cache["run"]!r}
at.run()
for page in pages:
    at.switch_page(page).run()
    assert not at.exception, (page, [e.value for e in at.exception])
buf = io.BytesIO()
Image.fromarray(np.full((40, 40, 3), 200, np.uint8)).save(buf, format="PNG")
at.switch_page("views/evaluate.py").run()
at.file_uploader(key="ev_upload").set_value(("x.png", buf.getvalue(), "image/png")).run()
assert not at.exception and any(m.label == "Prediction" for m in at.metric), [e.value for e in at.exception]
at.switch_page("views/browse.py").run()
at.file_uploader(key="b_search").set_value(("x.png", buf.getvalue(), "image/png")).run()
assert not at.exception and any("Nearest" in c.value for c in at.caption), [e.value for e in at.exception]
print("tensorflow imported:", "tensorflow" in sys.modules)
import pathlib, streamlit as st
for f in pathlib.Path({str(target)!r}, "converted").glob("*.tflite"):
    f.unlink()  # a bundle without the conversion: the page says so and offers no upload
st.cache_resource.clear()
at.switch_page("views/evaluate.py").run()
assert not at.exception and any("Uploads are off" in i.value for i in at.info) and not at.file_uploader, [e.value for e
in at.exception]
print("no conversion: no upload")
"""
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "tensorflow imported: False" in proc.stdout and "no conversion: no upload" in proc.stdout, proc.stdout[
        -2000:
    ]
