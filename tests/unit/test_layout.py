"""lib/store/layout.py: every name under the cache, checked so no input names a path outside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from lib.errors import RunError, UserFacingError
from lib.store.layout import ARTIFACTS, DATASET_FILES, RUN_FILES, CacheLayout


def test_untrusted_names_never_leave_the_cache(tmp_path: Path) -> None:
    layout = CacheLayout(tmp_path)
    for bad in ("../etc", "a/b", "..", "", "x" * 200):
        with pytest.raises((RunError, UserFacingError)):
            layout.run_dir(bad)
        with pytest.raises(UserFacingError):
            layout.exclude_file(bad)
    with pytest.raises(UserFacingError):
        layout.feature_files("not-hex")
    with pytest.raises(UserFacingError):
        DATASET_FILES.images("../train")
    assert layout.run_file("20260101-000000-mlp-abcdef", RUN_FILES.manifest).parent.parent == layout.runs


def test_a_layout_is_its_folder_when_printed_compared_hashed_and_pickled(tmp_path: Path) -> None:
    import pickle

    layout = CacheLayout(tmp_path)
    assert str(layout) == str(tmp_path) and Path(layout) == tmp_path and layout.root == tmp_path
    assert layout == CacheLayout(str(tmp_path)) and hash(layout) == hash(CacheLayout(tmp_path))
    assert layout != CacheLayout(tmp_path / "other") and layout != tmp_path  # a folder is not a layout
    again = pickle.loads(pickle.dumps(layout))  # what a worker process receives
    assert again == layout and again.runs == layout.runs


def test_listings_see_only_their_own_artifacts(tmp_path: Path) -> None:
    layout = CacheLayout(tmp_path)
    assert layout.run_folders() == [] and layout.feature_keys() == [] and layout.audit_files() == []
    (layout.runs / "20260101-000000-mlp-abcdef").mkdir(parents=True)
    (layout.runs / "my-notes").mkdir()
    (layout.runs / ".20260101-000000-mlp-abcdef.deleted-1").mkdir()
    assert [p.name for p in layout.run_folders()] == ["20260101-000000-mlp-abcdef"]
    layout.features.mkdir()
    (layout.features / "abcdef12.json").write_text("{}")
    (layout.features / "notes.json").write_text("{}")
    assert layout.feature_keys() == ["abcdef12"]
    kinds = {k.folder: k for k in ARTIFACTS}
    (layout.projections).mkdir()
    (layout.projections / "full-pca-abc.npz").write_bytes(b"")
    (layout.projections / "pca-abc.npy").write_bytes(b"")  # a sample projection: not bundled
    assert [p.name for p in layout.artifact_units(kinds["projections"])] == ["full-pca-abc.npz"]
    assert [k.install_order for k in ARTIFACTS] == sorted(k.install_order for k in ARTIFACTS)


def test_discarded_names_are_hidden_siblings(tmp_path: Path) -> None:
    layout = CacheLayout(tmp_path)
    trash = layout.discarded(layout.run_dir("20260101-000000-mlp-abcdef"), "deleted")
    assert trash.parent == layout.runs and trash.name.startswith(".20260101-000000-mlp-abcdef.deleted-")
