"""A demo bundle: everything a hosted demo reads, packed from one cache into one archive and unpacked into another.

    report = make_bundle("cache", "demo.tar", run_ids=None)       # every run, and what they need
    info = install_bundle("demo.tar" or "https://…/demo.tar", "/data/cache", progress=print)

What goes in (``bundle/`` layout mirrors the cache):
- the chosen runs (``runs/<id>/``; default: every complete run);
- the converted dataset arrays of their datasets (``datasets/…``);
- every cached feature file of those datasets and the runs' backbones, stored as float16 (half the bytes; on
  unpacking they become float32 again, with a new checksum; ``make_bundle`` reports each run's test accuracy
  from float16-rounded features next to its stored accuracy, so a change would show);
- the full-dataset maps, audits and speed/accuracy results of those datasets (``projections/full-*``,
  ``audits/``, ``benchmarks/``);
- local SavedModel backbones of the runs (``backbones/<name>/``, so uploads can be classified offline);
- ``bundle.json`` first: version, defaults for the demo (source, backbone, size), backbone aliases, and the
  SHA-256 and size of every other member.

Unpacking never trusts the archive: members must be plain files or folders under the known top-level folders
(no absolute paths, ``..``, links or devices), every file must match its SHA-256, and nothing is missing or
extra. It extracts into a staging folder inside the cache and only then moves each artifact into place (an
artifact already present under the same key is kept: same key, same content). Whatever fails, the staging
folder and any partial download are removed, so a corrupt or truncated bundle leaves nothing behind.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import time
import urllib.request
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lib.errors import UserFacingError
from lib.store.atomic import atomic_path, check_free_space, check_writable, npz_meta, read_json
from lib.store.fingerprints import hash_file
from lib.store.layout import CacheLayout, CacheLike, check_name

BUNDLE_VERSION = 1
MANIFEST = "bundle.json"
INSTALLED = "bundle.json"  # in the cache root: what was installed, its defaults and aliases
TOP = ("runs", "datasets", "features", "projections", "audits", "benchmarks", "backbones")
DOWNLOAD_TIMEOUT_S = 60
MAX_MANIFEST_BYTES = 64 * 1024 * 1024  # a bundle.json lists files; one this large is not one
ProgressFn = Callable[[str, float], None]


class BundleError(UserFacingError):
    """A bundle could not be made, downloaded, verified or installed."""


# ----------------------------------------------------------------------------------------------- making


def _collect(cache_dir: Path, run_ids: list[str] | None) -> tuple[dict[str, Path], dict[str, Any], list[str]]:
    """Files to pack (archive name -> path), the bundle's metadata, and the float16 feature names."""
    from lib.pipeline.features import list_cached_features
    from lib.store.runs import list_runs

    layout = CacheLayout.at(cache_dir)
    manifests = list_runs(cache_dir)
    chosen = [m for m in manifests if run_ids is None or m.run_id in run_ids]
    if run_ids is not None:
        missing = sorted(set(run_ids) - {m.run_id for m in chosen})
        if missing:
            raise BundleError(f"No complete run {', '.join(missing)} in {cache_dir} (see `python -m lib runs list`).")
    if not chosen:
        raise BundleError(f"No runs in {cache_dir} to bundle: train one first (`python -m lib train ...`).")
    files: dict[str, Path] = {}

    def add(path: Path, name: str | None = None) -> None:  # archive names mirror the cache layout
        files[name or path.relative_to(layout.root).as_posix()] = path

    for m in chosen:
        for p in sorted(layout.run_dir(m.run_id).rglob("*")):
            if p.is_file():
                add(p)
    fingerprints = sorted({m.dataset_fingerprint for m in chosen})
    for fp in fingerprints:
        folder = layout.dataset_dir(fp)
        if not (folder / "meta.json").exists():
            raise BundleError(f"The dataset of these runs ({fp}) is not in {cache_dir}; prepare it first.")
        for p in sorted(folder.iterdir()):
            if p.is_file():
                add(p)
    # The features the runs were trained on (their backbone, runtime and sizes; every view), whole splits or the runs' subsets.
    wanted = set()
    for m in chosen:
        wanted |= {(m.dataset_fingerprint, m.backbone_identity, m.runtime, size, limit) for size in m.image_sizes for limit in {None, m.limit}}
    f16 = []
    for fm in list_cached_features(cache_dir):
        if (fm.dataset, fm.backbone_identity, fm.runtime_name, fm.image_size, fm.limit) in wanted:
            npy, js = layout.feature_files(fm.key)
            add(js)
            add(npy, npy.with_suffix(".f16.npy").relative_to(layout.root).as_posix())  # converted to float16 while packing
            f16.append(fm.key)
    # Maps, audits and speed results only of these datasets and features: a bundle never carries another dataset's
    # class names, labels or probabilities. A map or an audit names the features it came from (older ones do not, and
    # are left out: compute them again to bundle them).
    bundled_keys = set(f16)
    for p in sorted(layout.projections.glob("full-*.npz")) + sorted(layout.audits.glob("*.npz")):
        keys = (npz_meta(p) or {}).get("feature_keys")
        if isinstance(keys, dict) and keys and set(keys.values()) <= bundled_keys:
            add(p)
    for p in sorted(layout.benchmarks.glob("*.json")):
        result = read_json(p)
        if isinstance(result, dict) and result.get("dataset") in fingerprints:
            add(p)
    aliases: dict[str, str] = {}
    for m in chosen:
        src = Path(m.backbone).expanduser()
        if src.is_dir() and (src / "saved_model.pb").exists():
            name = check_name(src.resolve().name, "backbone folder name")
            for p in sorted(src.rglob("*")):
                if p.is_file():
                    add(p, (layout.bundled_backbone(name) / p.relative_to(src)).relative_to(layout.root).as_posix())
            for alias in {m.backbone, str(src.resolve())}:
                aliases[alias] = layout.bundled_backbone(name).relative_to(layout.root).as_posix()
    first = chosen[0]
    meta = {"version": BUNDLE_VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "runs": [m.run_id for m in chosen],
            "datasets": fingerprints, "defaults": {"source": f"cache:{first.dataset_fingerprint}", "backbone": first.backbone,
            "image_size": int(first.image_size), "run": first.run_id}, "aliases": aliases, "float16_features": f16}  # fmt: skip
    return files, meta, f16


def _float16_accuracy(cache_dir: Path, run_ids: list[str]) -> list[dict[str, Any]]:
    """Each frozen run's test accuracy recomputed from float16-rounded cached features, next to its stored one."""
    from lib.analysis.map_view import head_probabilities
    from lib.data.sources import load_dataset
    from lib.models.specs import resolve_backbone
    from lib.store.runs import load_run

    out = []
    for rid in run_ids:
        run = load_run(cache_dir, rid)
        m = run.manifest
        if m.finetuned or m.excluded:
            continue  # no separate head; or a run that scores a subset of the cached rows
        try:
            ds = load_dataset(f"cache:{m.dataset_fingerprint}", cache_dir)
            probs = head_probabilities(run, ds, resolve_backbone(m.backbone), cache_dir, m.test_split, m.limit, np.float16)
        except UserFacingError:
            probs = None
        if probs is None or len(probs) != len(run.y_true):
            continue
        pred16 = probs.argmax(1)
        out.append({"run": rid, "accuracy": float((run.y_pred == run.y_true).mean()), "accuracy_float16_features": float((pred16 == run.y_true).mean()),
                    "changed_predictions": int((pred16 != run.y_pred).sum()), "test_images": len(pred16)})  # fmt: skip
    return out


def check_bundle_target(out: Path) -> None:
    """Refuse an ``out`` that exists and is not provably an earlier bundle of this project (a tar that starts with a
    ``bundle.json`` listing its files): a user's file named there is never replaced. An earlier bundle is replaced,
    atomically, as re-running ``bundle`` with the same ``--out`` is meant to."""
    if not out.exists() and not out.is_symlink():
        return
    if out.is_symlink() or not out.is_file():
        raise BundleError(f"{out} exists and is not a regular file; nothing was changed. Give a new file name for the bundle.")
    if not _is_bundle_file(out):
        raise BundleError(f"{out} exists and is not a bundle made by this project; nothing was changed. Give a new file name for the bundle.")


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


def make_bundle(cache_dir: CacheLike, out: Path | str, run_ids: list[str] | None = None, progress: ProgressFn | None = None) -> dict[str, Any]:
    """Write the bundle of ``run_ids`` (default: every run) to ``out`` (a .tar), atomically. Returns a report."""
    cache_dir, out = Path(cache_dir), Path(out).expanduser()
    report = progress or (lambda _s, _f: None)
    check_bundle_target(out)
    files, meta, f16 = _collect(cache_dir, run_ids)
    sums: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=".bundle-", dir=out.parent if out.parent.exists() else None) as scratch:
        with atomic_path(out, suffix=".tar") as tmp, tarfile.open(tmp, "w") as tar:
            payload: list[tuple[str, Path]] = []
            for n, (name, path) in enumerate(sorted(files.items())):
                if name.endswith(".f16.npy"):
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
    return {"out": str(out), "bytes": out.stat().st_size, "files": len(sums), "runs": meta["runs"], "datasets": meta["datasets"],
            "float16_features": len(f16), "float16_check": _float16_accuracy(cache_dir, meta["runs"]), "seconds": round(time.perf_counter() - t0, 2),
            "defaults": meta["defaults"]}  # fmt: skip


# ------------------------------------------------------------------------------------------- installing

DOWNLOAD_STALL_S = 30.0  # a download that brings less than DOWNLOAD_STALL_BYTES in this long is given up
DOWNLOAD_STALL_BYTES = 64 * 1024
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _bad_meta(source: str, what: str) -> BundleError:
    return BundleError(f"{source!r} has a damaged {MANIFEST} ({what}); nothing was installed.")


def check_bundle_meta(meta: Any, source: str) -> dict[str, Any]:
    """``meta`` if it is a whole, well-typed ``bundle.json`` of this version, else :class:`BundleError` naming the first
    problem. Every field a page or the installer reads is checked here, so a damaged file is refused before anything
    is installed, never a traceback on every page after."""
    from lib.bounds import BOUNDS
    from lib.store.layout import RUN_ID

    if not isinstance(meta, dict):
        raise _bad_meta(source, "not a JSON object")
    if meta.get("version") != BUNDLE_VERSION:
        raise BundleError(f"{source!r} is a bundle of another version ({str(meta.get('version'))[:20]}); this app reads version {BUNDLE_VERSION}. "
                          "Nothing was installed.")  # fmt: skip

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise _bad_meta(source, what)

    files: Any = meta.get("files")
    need(isinstance(files, dict) and bool(files), "'files' must map each member to its sha256 and bytes")
    for name, entry in files.items():
        need(isinstance(entry, dict) and isinstance(entry.get("sha256"), str) and bool(_SHA256.match(entry["sha256"]))
             and type(entry.get("bytes")) is int and entry["bytes"] >= 0, f"the entry of {str(name)[:80]!r} in 'files'")  # fmt: skip
    runs: Any = meta.get("runs")
    need(isinstance(runs, list) and bool(runs) and all(isinstance(r, str) and RUN_ID.match(r) for r in runs), "'runs' must be a list of run ids")
    need(isinstance(meta.get("datasets"), list) and all(isinstance(d, str) for d in meta["datasets"]), "'datasets' must be a list of names")
    defaults: Any = meta.get("defaults")
    need(isinstance(defaults, dict), "'defaults' must be an object")
    need(all(isinstance(defaults.get(k), str) and defaults[k] for k in ("source", "backbone")), "'defaults' needs a source and a backbone")
    need(type(defaults.get("image_size")) is int and BOUNDS["image_size"].accepts(defaults["image_size"]), "'defaults.image_size' must be a size in pixels")
    need(defaults.get("run") in runs, "'defaults.run' must be one of the bundle's runs")
    aliases = meta.get("aliases", {})
    need(isinstance(aliases, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in aliases.items()), "'aliases' must map text to text")
    f16 = meta.get("float16_features", [])
    need(isinstance(f16, list) and all(isinstance(k, str) for k in f16), "'float16_features' must be a list of feature keys")
    return meta


def _check_staging_leftovers(cache_dir: Path) -> None:
    """Remove the staging folders of installs that died (killed, or the machine went down): their process is gone."""
    for folder in cache_dir.glob(".bundle-staging-*"):
        pid = folder.name.split("-")[2] if folder.name.count("-") >= 3 else ""
        alive = False
        if pid.isdigit():
            try:
                os.kill(int(pid), 0)
                alive = True
            except ProcessLookupError:
                alive = False
            except PermissionError:
                alive = True  # another user's live process
        if not alive and folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)


def _download(url: str, target: Path, progress: ProgressFn) -> None:
    """Fetch ``url`` into ``target``; a server that stops sending (or trickles) is given up on, never waited for forever."""
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(target, "wb") as fh:
            total = int(response.headers.get("Content-Length") or 0)
            done, window_start, window_bytes = 0, time.monotonic(), 0
            while chunk := response.read1(1 << 20):
                fh.write(chunk)
                done += len(chunk)
                window_bytes += len(chunk)
                now = time.monotonic()
                if now - window_start >= DOWNLOAD_STALL_S:
                    if window_bytes < DOWNLOAD_STALL_BYTES:
                        raise BundleError(f"The bundle download from {url} stalled ({window_bytes:,} bytes in {now - window_start:.0f} s, after "
                                          f"{done:,} bytes); nothing was installed. Try again, or download it and give the file.")  # fmt: skip
                    window_start, window_bytes = now, 0
                progress(f"downloading the bundle: {done / 2**20:,.0f} MB" + (f" of {total / 2**20:,.0f} MB" if total else ""),
                         0.5 * done / total if total else 0.0)  # fmt: skip
            if total and done != total:
                raise BundleError(f"The bundle download stopped after {done:,} of {total:,} bytes; nothing was installed.")
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise BundleError(f"Disk full while downloading the bundle into {target.parent}; nothing was installed. Free some space.") from err
        raise BundleError(f"Could not download the bundle from {url}: {err}. Nothing was installed.") from err


def _read_meta(tar: tarfile.TarFile, source: str) -> dict[str, Any]:
    head = tar.next()
    if head is None or head.name != MANIFEST or not head.isfile():
        raise BundleError(f"{source!r} is not a bundle (it does not start with {MANIFEST}); nothing was installed.")
    if head.size > MAX_MANIFEST_BYTES:
        raise _bad_meta(source, f"{head.size:,} bytes")
    try:
        meta = json.loads(tar.extractfile(head).read())  # type: ignore[union-attr]
    except (ValueError, UnicodeDecodeError) as err:
        raise _bad_meta(source, f"not JSON: {str(err)[:80]}") from err
    return check_bundle_meta(meta, source)


def peek_meta(source: str) -> dict[str, Any] | None:
    """The checked ``bundle.json`` of a bundle file or URL, reading only its first member (a few KB, even over http);
    None if it cannot be read (the install then reports why)."""
    try:
        if source.startswith(("http://", "https://")):
            with urllib.request.urlopen(source, timeout=DOWNLOAD_TIMEOUT_S) as response, tarfile.open(fileobj=response, mode="r|*") as tar:
                return _read_meta(tar, source)
        with tarfile.open(Path(source).expanduser(), "r:*") as tar:
            return _read_meta(tar, source)
    except (BundleError, tarfile.TarError, EOFError, ValueError, OSError):
        return None


def content_digest(meta: dict[str, Any]) -> str:
    """What a bundle holds, as one hash: of every member's name, size and SHA-256 (the manifest's checksums). Two files
    with the same digest install the same artifacts, whatever their path or URL."""
    text = json.dumps({name: [e["sha256"], e["bytes"]] for name, e in sorted(meta["files"].items())}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _safe_members(tar: tarfile.TarFile, files: dict[str, Any]) -> list[tarfile.TarInfo]:
    members = []
    for member in tar.getmembers():
        name = member.name
        parts = Path(name).parts
        if member.isdir():
            continue
        if not member.isfile() or name.startswith("/") or ".." in parts or not parts or (name != MANIFEST and parts[0] not in TOP):
            raise BundleError(f"The bundle holds {name!r}, which is not a plain file of a bundle: refused, nothing was installed.")
        if name == MANIFEST:
            continue
        if name in files and member.size != files[name]["bytes"]:
            # Checked before a byte is written: a member that says it is 100 bytes in the manifest and unpacks to
            # gigabytes (a gzip bomb) is refused here, not after it filled the disk.
            raise BundleError(f"{name} in the bundle is {member.size:,} bytes, but its manifest says {files[name]['bytes']:,}: the bundle is corrupt "
                              "or altered; nothing was installed.")  # fmt: skip
        members.append(member)
    found = {m.name for m in members}
    names = set(files)
    if len(found) != len(members) or found != names:
        extra, missing = sorted(found - names), sorted(names - found)
        raise BundleError("The bundle does not match its own list of files (" + (f"missing {missing[:3]}" if missing else f"unlisted {extra[:3]}")
                          + "): it is incomplete or altered; nothing was installed.")  # fmt: skip
    return members


def _same_file(a: Path, b: Path) -> bool:
    return a.stat().st_size == b.stat().st_size and hash_file(a) == hash_file(b)


def _install_tree(staging: Path, cache_dir: Path) -> int:
    """Move each artifact from staging into the cache. A run, dataset or backbone folder already there is kept (same
    name, same content); a keyed file (map, audit, benchmark results) whose content differs is replaced atomically,
    since a newer bundle may carry more of it (benchmark rows). Returns how many were added or replaced."""
    added = 0
    for top in TOP:
        base = staging / top
        if not base.is_dir():
            continue
        units = sorted(base.iterdir()) if top in ("runs", "datasets", "backbones") else sorted(p for p in base.iterdir() if p.is_file())
        (cache_dir / top).mkdir(parents=True, exist_ok=True)
        # Feature manifests go last, so a feature file is in place before the manifest that makes it valid.
        units.sort(key=lambda p: p.suffix == ".json" and top == "features")
        for unit in units:
            target = cache_dir / top / unit.name
            if target.exists() and (unit.is_dir() or top == "features" or _same_file(unit, target)):
                continue
            os.replace(unit, target)
            added += 1
    return added


def install_bundle(source: str, cache_dir: CacheLike, progress: ProgressFn | None = None, sha256: str | None = None) -> dict[str, Any]:
    """Unpack a bundle (local path or http(s) URL) into ``cache_dir``; see the module docs. Returns what it installed.

    Whether it is already installed is decided by content (:func:`content_digest` of its manifest), not by its path or
    URL: a bundle updated in place installs, the same one again is a no-op."""
    cache_dir = Path(cache_dir)
    report = progress or (lambda _s, _f: None)
    check_writable(cache_dir)
    prior = installed_bundle(cache_dir)
    if prior and not sha256 and all((CacheLayout.at(cache_dir).runs / r).is_dir() for r in prior.get("runs", [])):
        peeked = peek_meta(source)
        if peeked is not None and content_digest(peeked) == prior.get("content_sha256"):
            return prior | {"artifacts_added": 0, "already_installed": True}  # a restart: same bundle, nothing to do
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        _check_staging_leftovers(cache_dir)
        staging = Path(tempfile.mkdtemp(prefix=f".bundle-staging-{os.getpid()}-", dir=cache_dir))
    except OSError as err:
        raise BundleError(f"Cannot write into {cache_dir}: {err.strerror or err}. Nothing was installed.") from err
    try:
        return _install(source, cache_dir, staging, report, sha256)
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise BundleError(f"Disk full while installing the bundle into {cache_dir}; nothing was installed. Free some space.") from err
        raise BundleError(f"Could not install the bundle into {cache_dir}: {err.strerror or err}. Nothing was installed.") from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _install(source: str, cache_dir: Path, staging: Path, report: ProgressFn, sha256: str | None) -> dict[str, Any]:
    from lib.pipeline.feature_store import FeatureManifest, file_crc32

    if source.startswith(("http://", "https://")):
        archive = staging / "download.tar"
        _download(source, archive, report)
    else:
        archive = Path(source).expanduser()
        if not archive.is_file():
            raise BundleError(f"No bundle at {source!r} (give a file made by `python -m lib bundle`, or an http(s) URL).")
    if sha256:
        report("checking the bundle's SHA-256", 0.5)
        if hash_file(archive) != sha256.lower():
            raise BundleError("The bundle's SHA-256 is not the one given: it is corrupt or another file; nothing was installed.")
    try:
        with tarfile.open(archive, "r:*") as tar:
            meta = _read_meta(tar, source)
            members = _safe_members(tar, meta["files"])
            f16_bytes = sum(meta["files"][n]["bytes"] for n in meta["files"] if n.endswith(".f16.npy"))
            check_free_space(cache_dir, sum(e["bytes"] for e in meta["files"].values()) + f16_bytes, "installing this bundle")
            unpacked = staging / "tree"
            for n, member in enumerate(members):
                target = unpacked / member.name
                target.parent.mkdir(parents=True, exist_ok=True)
                expected = meta["files"][member.name]
                with tar.extractfile(member) as src, open(target, "wb") as dst:  # type: ignore[union-attr]
                    shutil.copyfileobj(src, dst, 1 << 20)
                if target.stat().st_size != expected["bytes"] or hash_file(target) != expected["sha256"]:
                    raise BundleError(f"{member.name} in the bundle does not match its checksum: the bundle is corrupt; nothing was installed.")
                report(f"unpacking {member.name}", 0.5 + 0.4 * (n + 1) / len(members))
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise
        raise BundleError(f"{source!r} cannot be read as a bundle ({err}): it is truncated or corrupt; nothing was installed.") from err
    except (tarfile.TarError, EOFError, ValueError, zlib.error) as err:
        raise BundleError(f"{source!r} cannot be read as a bundle ({err}): it is truncated or corrupt; nothing was installed.") from err
    staged = CacheLayout.at(unpacked)
    for key in meta["float16_features"]:
        full, manifest_path = staged.feature_files(check_name(key, "feature key"))
        half = full.with_suffix(".f16.npy")
        if not half.is_file() or FeatureManifest.from_dict(read_json(manifest_path)) is None:
            raise BundleError(f"The bundle's features {key} are missing or damaged; nothing was installed.")
        np.save(full, np.asarray(np.load(half), np.float32))
        half.unlink()
        data = json.loads(manifest_path.read_text())
        data["crc32"] = file_crc32(full)  # the float32 file written here (values rounded through float16)
        manifest_path.write_text(json.dumps(data, indent=2))
    report("installing", 0.95)
    added = _install_tree(unpacked, cache_dir)
    installed = {k: v for k, v in meta.items() if k != "files"} | {"installed": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "from": source,
                                                                   "content_sha256": content_digest(meta), "artifacts_added": added}  # fmt: skip
    with atomic_path(cache_dir / INSTALLED) as tmp:
        tmp.write_text(json.dumps(installed, indent=2))
    report("installed", 1.0)
    return installed


def installed_bundle(cache_dir: CacheLike) -> dict[str, Any] | None:
    """What :func:`install_bundle` recorded in this cache (checked as a whole), or None if nothing or a damaged record."""
    data = read_json(Path(cache_dir) / INSTALLED)
    if not isinstance(data, dict):
        return None
    try:
        check_bundle_meta({**data, "files": {"-": {"sha256": "0" * 64, "bytes": 0}}}, str(INSTALLED))
    except BundleError:
        return None
    return data


def backbone_aliases(cache_dir: CacheLike) -> dict[str, str]:
    """Backbone strings of the bundled runs -> the local copies unpacked into this cache."""
    info = installed_bundle(cache_dir) or {}
    out = {}
    for alias, rel in (info.get("aliases") or {}).items():
        path = Path(cache_dir) / rel
        if isinstance(alias, str) and isinstance(rel, str) and rel.startswith("backbones/") and ".." not in Path(rel).parts and path.is_dir():
            out[alias] = str(path.resolve())
    return out
