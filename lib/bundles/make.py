"""A demo bundle: everything a hosted demo reads, packed from one cache into one archive (installing it is
:mod:`lib.bundles.install`).

    report = make_bundle(layout, "demo.tar", run_ids=None)       # every run, and what belongs to them

What goes in (the archive mirrors the cache; the artifact kinds and their rules are the layout's
:data:`lib.store.layout.ARTIFACTS` table):
- ``run``: the chosen runs (``runs/<id>/``; default: every complete run);
- ``dataset``: the converted arrays of their datasets;
- ``features``: every cached feature file of those datasets and the runs' backbones, runtimes and sizes, stored as
  float16 (half the bytes; on unpacking they become float32 again, with a new checksum; ``make_bundle`` reports each
  run's test accuracy from float16-rounded features next to its stored accuracy, so a change would show);
- ``computed-from-features``: the maps of every image and the audits made from exactly those features;
- ``dataset-field``: the speed/accuracy results of those datasets;
- ``backbone``: the runs' local SavedModel backbones (so uploads can be classified offline);
- ``bundle.json`` first: version, defaults for the demo (source, backbone, size), backbone aliases, and the
  SHA-256 and size of every other member.
A bundle never carries another dataset's class names, labels or probabilities.
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lib.bundles.hosting import image_members, reduced_members, split_predictions_member
from lib.config import ORIGINAL
from lib.data.meta import DatasetMeta
from lib.data.sources import CACHE_PREFIX, load_dataset
from lib.errors import BundleError, UserFacingError, first_line
from lib.models.specs import resolve_backbone
from lib.pipeline.feature_store import list_cached_features
from lib.pipeline.predictions import head_probabilities
from lib.runs.registry import list_runs, load_run
from lib.runtimes.litert import LiteRTRuntime
from lib.store.atomic import atomic_path, npz_meta, read_json
from lib.store.fingerprints import hash_file
from lib.store.installed import BUNDLE_VERSION, HOSTING_VERSION
from lib.store.layout import (
    ARTIFACTS,
    BUNDLE_MANIFEST,
    FLOAT16_SUFFIX,
    ArtifactKind,
    CacheLayout,
    check_name,
)

MANIFEST = BUNDLE_MANIFEST
DOWNLOAD_TIMEOUT_S = 60
MAX_MANIFEST_BYTES = 64 * 1024 * 1024  # a bundle.json lists files; one this large is not one
ProgressFn = Callable[[str, float], None]


@dataclass
class _Selection:
    """What belongs to the chosen runs, filled kind by kind in the layout's order (features before what is made of
    them)."""

    layout: CacheLayout
    runs: list[Any]
    fingerprints: list[str]
    feature_keys: list[str] = field(default_factory=list)  # the bundled features (carried as float16)
    aliases: dict[str, str] = field(default_factory=dict)  # a run's backbone string -> its bundled copy
    converted: dict[str, str] = field(
        default_factory=dict
    )  # "<backbone identity>@<size>" -> its float LiteRT model in the bundle
    not_converted: dict[str, str] = field(default_factory=dict)  # the same -> why it could not be converted
    hosting: bool = False  # the hosting form (lib.bundles.hosting): sprite sheets, reduced features, no SavedModel
    scratch: Path | None = None  # where the hosting form's parts are made
    made_from: set[str] = field(
        default_factory=set
    )  # every feature key of the runs (what maps and audits may come from)
    stand_ins: dict[str, dict[str, Any]] = field(
        default_factory=dict
    )  # hosting: a run's backbone string -> what names it


def _runs(sel: _Selection, kind: ArtifactKind) -> Iterator[tuple[Path, str | None]]:

    for m in sel.runs:
        for p in sorted(sel.layout.run_dir(m.run_id).rglob("*")):
            if p.is_file():
                yield p, None
        if (
            sel.hosting
            and sel.scratch is not None
            and (extra := split_predictions_member(sel.layout, m.run_id, sel.scratch)) is not None
        ):
            yield extra


def _datasets(sel: _Selection, kind: ArtifactKind) -> Iterator[tuple[Path, str | None]]:

    for fp in sel.fingerprints:
        folder = sel.layout.dataset_dir(fp)
        if DatasetMeta.read(folder) is None:
            raise BundleError(f"The dataset of these runs ({fp}) is not in {sel.layout}; prepare it first.")
        if sel.hosting and sel.scratch is not None:
            yield from image_members(sel.layout, fp, sel.scratch)
        else:
            yield from ((p, None) for p in sorted(folder.iterdir()) if p.is_file())


def _features(sel: _Selection, kind: ArtifactKind) -> Iterator[tuple[Path, str | None]]:
    """The features the runs were trained on (their backbone, runtime and sizes; every view), whole splits or the runs'
    subsets.
    The hosting form carries only the original view of each run's first backbone at its first size, reduced."""

    wanted = {
        (m.dataset_fingerprint, identity, m.runtime, size, limit)
        for m in sel.runs
        for _handle, identity, sizes in m.backbones()
        for size in sizes
        for limit in {None, m.limit}
    }
    shown = {(m.dataset_fingerprint, m.backbones()[0][1], m.runtime, m.backbones()[0][2][0], m.limit) for m in sel.runs}
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for fm in list_cached_features(sel.layout):
        if fm.reduced is not None:
            continue  # a hosting bundle's stand-in is never packed again
        part = (fm.dataset, fm.backbone_identity, fm.runtime_name, fm.image_size, fm.limit)
        if part in wanted:
            sel.made_from.add(fm.key)
        if sel.hosting:
            if part in shown and fm.view == ORIGINAL:
                groups.setdefault(part, []).append(fm)
        elif part in wanted:
            npy, manifest = sel.layout.feature_files(fm.key)
            sel.feature_keys.append(fm.key)
            yield manifest, None
            yield (
                npy,
                npy.with_suffix(FLOAT16_SUFFIX).relative_to(sel.layout.root).as_posix(),
            )  # converted to float16 while packing
    if groups and sel.scratch is not None:
        for fms in groups.values():
            sel.feature_keys += [fm.key for fm in fms]
            yield from reduced_members(sel.layout, fms, sel.scratch)


def _computed_from_features(sel: _Selection, kind: ArtifactKind) -> Iterator[tuple[Path, str | None]]:
    """A map or an audit names the features it came from; older ones do not, and are left out (compute them again)."""
    for p in sel.layout.artifact_units(kind):
        keys = (npz_meta(p) or {}).get("feature_keys")
        if (
            isinstance(keys, dict)
            and keys
            and set(keys.values()) <= (sel.made_from if sel.hosting else set(sel.feature_keys))
        ):
            if sel.hosting and kind.folder == "audits" and not _given_labels(sel, p):
                continue  # an audit of a saved label list: the list does not travel, so no page could open it
            yield p, None


def _given_labels(sel: _Selection, path: Path) -> bool:
    """Whether an audit was made with its dataset's own labels (its stored labels are theirs, split by split)."""

    try:
        with np.load(path) as z:
            stored = {name.split(".", 1)[1]: z[name] for name in z.files if name.startswith("labels.")}
    except (OSError, ValueError, EOFError):
        return False
    for fp in sel.fingerprints:
        ds = load_dataset(CACHE_PREFIX + fp, sel.layout)
        if stored and all(s in ds.splits and np.array_equal(v, ds.labels(s)) for s, v in stored.items()):
            return True
    return False


def _dataset_field(sel: _Selection, kind: ArtifactKind) -> Iterator[tuple[Path, str | None]]:
    for p in sel.layout.artifact_units(kind):
        result = read_json(p)
        if isinstance(result, dict) and result.get("dataset") in sel.fingerprints:
            yield p, None


def _backbones(sel: _Selection, kind: ArtifactKind) -> Iterator[tuple[Path, str | None]]:
    handles = dict.fromkeys(
        handle for m in sel.runs for handle, _identity, _sizes in m.backbones()
    )  # each once, in order
    if sel.hosting:  # no SavedModel: what names the backbone is enough (the demo runs its LiteRT conversions)
        for handle in handles:
            spec = resolve_backbone(handle)
            sel.stand_ins[handle] = {
                "name": spec.name,
                "identity": spec.identity(),
                "native_size": spec.native_size,
                "feature_dim": spec.feature_dim,
            }
        return
    for handle in handles:
        src = Path(handle).expanduser()
        if src.is_dir() and (src / "saved_model.pb").exists():
            copy = sel.layout.bundled_backbone(check_name(src.resolve().name, "backbone folder name"))
            for p in sorted(src.rglob("*")):
                if p.is_file():
                    yield p, (copy / p.relative_to(src)).relative_to(sel.layout.root).as_posix()
            for alias in {handle, str(src.resolve())}:
                sel.aliases[alias] = copy.relative_to(sel.layout.root).as_posix()


def _converted(sel: _Selection, kind: ArtifactKind) -> Iterator[tuple[Path, str | None]]:
    """Each run part's backbone converted to float LiteRT (converted here if the cache has none), so the demo classifies
    uploads without TensorFlow; a part that cannot be converted is listed in ``not_converted`` and its run offers
    none."""

    runtime = LiteRTRuntime(quantized=False)
    for m in sel.runs:
        if m.finetuned:  # its backbone was trained: a conversion of the original would not be its backbone
            continue
        ds = load_dataset(CACHE_PREFIX + m.dataset_fingerprint, sel.layout)
        for handle, identity, sizes in m.backbones():
            for size in sizes:
                part = f"{identity}@{size}"
                if part in sel.converted or part in sel.not_converted:
                    continue
                try:
                    path = runtime.convert(resolve_backbone(handle), size, ds, sel.layout)
                # any failure (a .tflite backbone, an op LiteRT lacks) leaves that run without uploads
                except Exception as err:  # noqa: BLE001
                    sel.not_converted[part] = first_line(err, 200)
                    continue
                sel.converted[part] = path.relative_to(sel.layout.root).as_posix()
                yield path, None


# The rule behind each ArtifactKind.belongs: which artifacts of that kind go with the chosen runs.
RULES: dict[str, Callable[[_Selection, ArtifactKind], Iterator[tuple[Path, str | None]]]] = {
    "run": _runs,
    "dataset": _datasets,
    "features": _features,
    "computed-from-features": _computed_from_features,
    "dataset-field": _dataset_field,
    "backbone": _backbones,
    "converted-backbone": _converted,
}


def _collect(
    layout: CacheLayout, run_ids: list[str] | None, scratch: Path | None = None
) -> tuple[dict[str, Path], dict[str, Any], list[str]]:
    """Files to pack (archive name -> path), the bundle's metadata, and the float16 feature keys."""

    chosen = [m for m in list_runs(layout) if run_ids is None or m.run_id in run_ids]
    if run_ids is not None:
        missing = sorted(set(run_ids) - {m.run_id for m in chosen})
        if missing:
            raise BundleError(f"No complete run {', '.join(missing)} in {layout} (see `python -m lib runs list`).")
    if not chosen:
        raise BundleError(f"No runs in {layout} to bundle: train one first (`python -m lib train ...`).")
    hosting = scratch is not None
    sel = _Selection(layout, chosen, sorted({m.dataset_fingerprint for m in chosen}), hosting=hosting, scratch=scratch)
    files: dict[str, Path] = {}
    for kind in ARTIFACTS:
        for path, name in RULES[kind.belongs](sel, kind):
            files[name or path.relative_to(layout.root).as_posix()] = path  # archive names mirror the cache layout
    first = chosen[0]
    meta = {
        "version": BUNDLE_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "runs": [m.run_id for m in chosen],
        "datasets": sel.fingerprints,
        "defaults": {
            "source": f"cache:{first.dataset_fingerprint}",
            "backbone": first.backbone,
            "image_size": int(first.image_size),
            "run": first.run_id,
        },
        "aliases": sel.aliases,
        "float16_features": sel.feature_keys,
        "converted": sel.converted,
        "not_converted": sel.not_converted,
    }
    if hosting:
        meta["version"] = HOSTING_VERSION
        meta["hosting"] = {"reduced_features": sel.feature_keys, "stand_ins": sel.stand_ins}
        meta["float16_features"] = []
    return files, meta, sel.feature_keys


def _float16_accuracy(layout: CacheLayout, run_ids: list[str]) -> list[dict[str, Any]]:
    """Each frozen run's test accuracy recomputed from float16-rounded cached features, next to its stored one."""

    out = []
    for rid in run_ids:
        run = load_run(layout, rid)
        m = run.manifest
        if m.finetuned or m.excluded:
            continue  # no separate head; or a run that scores a subset of the cached rows
        try:
            ds = load_dataset(f"cache:{m.dataset_fingerprint}", layout)
            probs = head_probabilities(run, ds, resolve_backbone(m.backbone), layout, m.test_split, m.limit, np.float16)
        except UserFacingError:
            probs = None
        if probs is None or len(probs) != len(run.y_true):
            continue
        pred16 = probs.argmax(1)
        out.append(
            {
                "run": rid,
                "accuracy": float((run.y_pred == run.y_true).mean()),
                "accuracy_float16_features": float((pred16 == run.y_true).mean()),
                "changed_predictions": int((pred16 != run.y_pred).sum()),
                "test_images": len(pred16),
            }
        )
    return out


def check_bundle_target(out: Path) -> None:
    """Refuse an ``out`` that exists and is not provably an earlier bundle of this project (a tar that starts with a
    ``bundle.json`` listing its files): a user's file named there is never replaced. An earlier bundle is replaced,
    atomically, as re-running ``bundle`` with the same ``--out`` is meant to."""
    if not out.exists() and not out.is_symlink():
        return
    if out.is_symlink() or not out.is_file():
        raise BundleError(
            f"{out} exists and is not a regular file; nothing was changed. Give a new file name for the bundle."
        )
    if not _is_bundle_file(out):
        raise BundleError(
            f"{out} exists and is not a bundle made by this project; nothing was changed. Give a new file name for "
            "the bundle."
        )


def _is_bundle_file(path: Path) -> bool:
    try:
        with tarfile.open(path, "r:*") as tar:
            head = tar.next()
            if head is None or head.name != MANIFEST or not head.isfile() or head.size > MAX_MANIFEST_BYTES:
                return False
            meta = json.loads(tar.extractfile(head).read())  # type: ignore[union-attr]
    except (tarfile.TarError, EOFError, ValueError, OSError, UnicodeDecodeError, zlib.error):
        return False
    return isinstance(meta, dict) and isinstance(meta.get("files"), dict) and "version" in meta


def make_bundle(
    layout: CacheLayout,
    out: Path | str,
    run_ids: list[str] | None = None,
    progress: ProgressFn | None = None,
    hosting: bool = False,
) -> dict[str, Any]:
    """Write the bundle of ``run_ids`` (default: every run) to ``out`` (a .tar), atomically. Returns a report.
    ``hosting``: the small form for a free host (:mod:`lib.bundles.hosting`)."""
    out = Path(out).expanduser()
    report = progress or (lambda _s, _f: None)
    check_bundle_target(out)
    sums: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=".bundle-", dir=out.parent if out.parent.exists() else None) as scratch:
        report("collecting" + (" (making sprite sheets, reduced features and predictions)" if hosting else ""), 0.0)
        files, meta, f16 = _collect(layout, run_ids, Path(scratch) / "hosting" if hosting else None)
        with atomic_path(out, suffix=".tar") as tmp, tarfile.open(tmp, "w") as tar:
            payload: list[tuple[str, Path]] = []
            for n, (name, path) in enumerate(sorted(files.items())):
                if name.endswith(FLOAT16_SUFFIX):
                    half = Path(scratch) / f"{n}.npy"
                    np.save(half, np.asarray(np.load(path, mmap_mode="r"), np.float16))
                    path = half
                sums[name] = {"sha256": hash_file(path), "bytes": path.stat().st_size}
                payload.append((name, path))
                report(f"checksums {name}", 0.5 * (n + 1) / len(files))
            meta["files"] = sums
            blob = json.dumps(meta, indent=2, sort_keys=True).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mtime = len(blob), int(time.time())
            tar.addfile(info, io.BytesIO(blob))  # first, so an installer reads it before anything else
            for n, (name, path) in enumerate(payload):
                tar.add(path, arcname=name, recursive=False)
                report(f"packing {name}", 0.5 + 0.5 * (n + 1) / len(payload))
    parts: dict[str, int] = {}
    for name, entry in sums.items():
        part = "sprite sheets" if "/sprites/" in name else name.split("/")[0]
        parts[part] = parts.get(part, 0) + entry["bytes"]
    return {
        "out": str(out),
        "bytes": out.stat().st_size,
        "files": len(sums),
        "runs": meta["runs"],
        "datasets": meta["datasets"],
        "parts_bytes": parts,
        "float16_features": len(f16),
        "float16_check": [] if hosting else _float16_accuracy(layout, meta["runs"]),
        "seconds": round(time.perf_counter() - t0, 2),
        "defaults": meta["defaults"],
    }
