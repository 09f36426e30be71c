"""AppTest of the curation loop: fix labels where images are shown, train with the fixes, see both accuracies, compare
two runs, export the curated dataset, and search by image."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest

from lib.data.sources import load_dataset
from lib.runs.registry import list_runs
from lib.store.layout import CacheLayout
from tests import fixtures
from tests.app.helpers import ROOT, finish_jobs, no_errors, plain, start


def _copy(prepared: dict[str, str], tmp_path: Path) -> dict[str, str]:
    cache = tmp_path / "cache"
    shutil.copytree(prepared["cache"], cache)
    return {**prepared, "cache": str(cache)}


def _png(cls: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(fixtures.class_images(cls, 1, size=48)[0]).save(buf, format="PNG")
    return buf.getvalue()


def test_fix_on_browse_train_with_fixes_evaluate_and_compare(
    monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str], tmp_path: Path
) -> None:
    """A user fixes three test labels on Browse, trains with the fix list from the Train page, sees the manifest's list
    and both accuracies on Evaluate, then compares the new run with the first one."""
    env = _copy(prepared, tmp_path)
    ds = load_dataset(env["source"], CacheLayout(env["cache"]))
    at = start(monkeypatch, env, page="browse.py")
    pick = at.multiselect(key="b_fix_pick")
    chosen = [o for o in pick.options if not o.endswith("· ship")][:3]
    pick.set_value(chosen)
    at.selectbox(key="b_fix_class").set_value("ship").run()
    at.button(key="b_fix_save").click().run()
    no_errors(at)
    saved = json.loads((Path(env["cache"]) / "labels" / "label-fixes.json").read_text())
    assert saved["dataset"] == ds.fingerprint and [r["label"] for r in saved["labels"]] == ["ship"] * 3
    assert {f"{r['split']}/{r['index']}" for r in saved["labels"]} == {o.split(" ·")[0] for o in chosen}
    assert any("now holds 3" in plain(s.value) for s in at.success)

    at.switch_page(str(ROOT / "views" / "train.py")).run()
    assert "label-fixes" in at.selectbox(key="t_relabel").options
    at.selectbox(key="t_relabel").set_value("label-fixes")
    at.multiselect(key="t_sizes").set_value([32])
    at.selectbox(key="t_backbone").set_value("(custom handle or path)")
    at.text_input(key="t_custom").set_value(env["backbone"])
    at.number_input(key="t_epochs").set_value(3)
    at.button(key="FormSubmitter:train_form-Train").click().run()
    no_errors(at)
    finish_jobs(at, env["cache"])
    no_errors(at)
    newest = list_runs(CacheLayout(env["cache"]))[0]
    assert (
        newest.relabel is not None
        and newest.relabel["name"] == "label-fixes.json"
        and newest.relabel["changed"]["test"] == 3
    )

    at = start(monkeypatch, env, page="evaluate.py", run=newest.run_id)
    labels = [m.label for m in at.metric]
    assert "Accuracy (given labels)" in labels and "Accuracy (fixed labels)" in labels
    assert any("label-fixes.json" in plain(c.value) for c in at.caption)

    at = start(monkeypatch, env, page="compare.py", cmp_a=prepared["run"], cmp_b=newest.run_id)
    assert [m.label for m in at.metric][:4] == ["Accuracy A", "Accuracy B", "ECE A → B", "McNemar p"]
    assert any("McNemar p" in t.value for t in at.text)
    assert at.selectbox(key="cmp_a").value == prepared["run"] and at.selectbox(key="cmp_b").value == newest.run_id


def test_compare_page_takes_untrusted_links_calmly(monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str]) -> None:
    """A link naming runs that do not exist, or one run, falls back to a choice the page can draw."""
    at = start(monkeypatch, prepared, page="compare.py", cmp_a="../../etc/passwd", cmp_b="[x](javascript:alert(1))")
    no_errors(at)
    assert any("needs two runs" in i.value for i in at.info)  # the prepared cache holds one run


def test_fixes_tab_import_refusals_and_export(
    monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str], tmp_path: Path
) -> None:
    """On Data quality (no audit needed) a user imports fixes, sees a list for another dataset refused in one line, and
    exports the curated dataset as a zip that loads back with the fixed labels."""
    env = _copy(prepared, tmp_path)
    at = start(monkeypatch, env, page="quality.py")
    assert any("No fixes in this list yet" in i.value for i in at.info)
    at.file_uploader(key="fix_up").set_value(
        (
            "other.json",
            json.dumps({"format": "transfer-explorer-labels", "dataset": "elsewhere", "labels": []}).encode(),
            "application/json",
        )
    ).run()
    next(b for b in at.button if b.label == "Import").click().run()
    no_errors(at)
    assert any("another dataset" in plain(e.value) for e in at.error)
    at.file_uploader(key="fix_up").set_value(
        ("fixes.csv", b"split,index,label\ntrain,0,ship\ntest,2,=cmd|calc\n", "text/csv")
    ).run()
    next(b for b in at.button if b.label == "Import").click().run()
    assert any("unknown class" in plain(e.value) for e in at.error)  # a formula is not a class; nothing imported
    assert not (Path(env["cache"]) / "labels" / "label-fixes.json").exists()
    at.file_uploader(key="fix_up").set_value(
        ("fixes.csv", b"split,index,label\ntrain,0,ship\ntest,2,ship\n", "text/csv")
    ).run()
    next(b for b in at.button if b.label == "Import").click().run()
    no_errors(at)
    # every row changes a label and the CSV carries no fingerprint: another dataset's? It needs a confirmation
    assert any("Was it made for another dataset?" in plain(e.value) for e in at.error)
    assert not (Path(env["cache"]) / "labels" / "label-fixes.json").exists()
    at.checkbox(key="fix_up_force").check().run()
    next(b for b in at.button if b.label == "Import").click().run()
    no_errors(at)
    assert any("2 fixed labels" in m.value for m in at.markdown)
    at.text_input(key="xd_name").set_value("mine").run()
    next(b for b in at.button if b.label == "Export the dataset").click().run()
    no_errors(at)
    finish_jobs(at, env["cache"])
    no_errors(at)
    out = Path(env["cache"]) / "exports" / "datasets" / "mine.zip"
    assert any(b.label.startswith("Download mine.zip") for b in at.get("download_button"))
    back = load_dataset(str(out), CacheLayout(tmp_path / "other_cache"))
    ds = load_dataset(env["source"], CacheLayout(env["cache"]))
    assert back.size("train") == ds.size("train") and back.size("test") == ds.size("test")
    assert (back.labels("train") == back.classes.index("ship")).sum() == (
        ds.labels("train") == ds.classes.index("ship")
    ).sum() + (ds.labels("train")[0] != ds.classes.index("ship"))


@pytest.mark.parametrize("page, key", [("browse.py", "b_search"), ("feature_space.py", "fs_search")])
def test_search_by_image(monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str], page: str, key: str) -> None:
    """A user uploads an image and gets its nearest images in every split with similarities; a text file is refused."""
    at = start(monkeypatch, prepared, page=page, run=prepared["run"])
    at.file_uploader(key=key).set_value(("plane.png", _png(0), "image/png")).run()
    no_errors(at)
    import re

    hits = [
        c for img in at.image for c in img.captions if re.fullmatch(r"(train|test) #\d+ \S+ \(-?[0-9.]+\)", plain(c))
    ]
    assert len(hits) == 12 and {h.split()[0] for h in hits} <= {"train", "test"}
    sims = [float(h.rsplit("(", 1)[1].rstrip(")")) for h in hits]
    assert sims == sorted(sims, reverse=True) and -1 <= min(sims) <= max(sims) <= 1
    at.file_uploader(key=key).set_value(("notes.txt", b"not an image", "text/plain")).run()
    no_errors(at)
    assert any("not an image" in plain(e.value) for e in at.error)
