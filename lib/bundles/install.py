"""Installing a demo bundle: download (bounded in time), verify (the whole ``bundle.json`` typed, every member's size
and
SHA-256, paths inside the bundle's folders), unpack into a staging folder, move each artifact into place.

    info = install_bundle("demo.tar" or "https://…/demo.tar", layout, progress=print)
    installed_bundle(layout)       # what was installed here (checked), or None
    backbone_aliases(layout)       # the runs' backbone strings -> the copies the bundle brought

Whether a bundle is already installed is decided by its content (:func:`content_digest` of its manifest), not its path
or URL. Whatever fails, the staging folder and any partial download are removed: a corrupt or truncated bundle leaves
nothing behind.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tarfile
import time
import urllib.request
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from lib.bundles.hosting import unpack_images
from lib.bundles.make import DOWNLOAD_TIMEOUT_S, MAX_MANIFEST_BYTES, ProgressFn
from lib.errors import BundleError
from lib.pipeline.feature_store import FeatureManifest, file_crc32
from lib.store.atomic import atomic_path, check_free_space, check_writable, read_json
from lib.store.fingerprints import hash_file
from lib.store.installed import bad_meta, check_bundle_meta, installed_bundle
from lib.store.layout import (
    ARTIFACTS,
    BUNDLE_MANIFEST,
    FLOAT16_SUFFIX,
    STAGING_DOWNLOAD,
    STAGING_TREE,
    CacheLayout,
    check_name,
)

MANIFEST = BUNDLE_MANIFEST

DOWNLOAD_STALL_S = 30.0  # a download that brings less than DOWNLOAD_STALL_BYTES in this long is given up
DOWNLOAD_STALL_BYTES = 64 * 1024
_TOP = {kind.folder for kind in ARTIFACTS}


def _check_staging_leftovers(layout: CacheLayout) -> None:
    """Remove the staging folders of installs that died (killed, or the machine went down): their process is gone."""
    for folder in layout.bundle_staging_folders():
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
    """Fetch ``url`` into ``target``; a server that stops sending (or trickles) is given up on, never waited for
    forever."""
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
                        raise BundleError(
                            f"The bundle download from {url} stalled ({window_bytes:,} bytes in "
                            f"{now - window_start:.0f} s, after {done:,} bytes); nothing was installed. Try again, "
                            "or download it and give the file."
                        )
                    window_start, window_bytes = now, 0
                progress(
                    f"downloading the bundle: {done / 2**20:,.0f} MB"
                    + (f" of {total / 2**20:,.0f} MB" if total else ""),
                    0.5 * done / total if total else 0.0,
                )
            if total and done != total:
                raise BundleError(
                    f"The bundle download stopped after {done:,} of {total:,} bytes; nothing was installed."
                )
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise BundleError(
                f"Disk full while downloading the bundle into {target.parent}; nothing was installed. Free some space."
            ) from err
        raise BundleError(f"Could not download the bundle from {url}: {err}. Nothing was installed.") from err


def _read_meta(tar: tarfile.TarFile, source: str) -> dict[str, Any]:
    head = tar.next()
    if head is None or head.name != MANIFEST or not head.isfile():
        raise BundleError(f"{source!r} is not a bundle (it does not start with {MANIFEST}); nothing was installed.")
    if head.size > MAX_MANIFEST_BYTES:
        raise bad_meta(source, f"{head.size:,} bytes")
    try:
        meta = json.loads(tar.extractfile(head).read())  # type: ignore[union-attr]
    except (ValueError, UnicodeDecodeError) as err:
        raise bad_meta(source, f"not JSON: {str(err)[:80]}") from err
    return check_bundle_meta(meta, source)


def peek_meta(source: str) -> dict[str, Any] | None:
    """The checked ``bundle.json`` of a bundle file or URL, reading only its first member (a few KB, even over http);
    None if it cannot be read (the install then reports why)."""
    try:
        if source.startswith(("http://", "https://")):
            with (
                urllib.request.urlopen(source, timeout=DOWNLOAD_TIMEOUT_S) as response,
                tarfile.open(fileobj=response, mode="r|*") as tar,
            ):
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
        if (
            not member.isfile()
            or name.startswith("/")
            or ".." in parts
            or not parts
            or (name != MANIFEST and parts[0] not in _TOP)
        ):
            raise BundleError(
                f"The bundle holds {name!r}, which is not a plain file of a bundle: refused, nothing was installed."
            )
        if name == MANIFEST:
            continue
        if name in files and member.size != files[name]["bytes"]:
            # Checked before a byte is written: a member that says it is 100 bytes in the manifest and unpacks to
            # gigabytes (a gzip bomb) is refused here, not after it filled the disk.
            raise BundleError(
                f"{name} in the bundle is {member.size:,} bytes, but its manifest says {files[name]['bytes']:,}: the "
                "bundle is corrupt or altered; nothing was installed."
            )
        members.append(member)
    found = {m.name for m in members}
    names = set(files)
    if len(found) != len(members) or found != names:
        extra, missing = sorted(found - names), sorted(names - found)
        raise BundleError(
            "The bundle does not match its own list of files ("
            + (f"missing {missing[:3]}" if missing else f"unlisted {extra[:3]}")
            + "): it is incomplete or altered; nothing was installed."
        )
    return members


def _same_file(a: Path, b: Path) -> bool:
    return a.stat().st_size == b.stat().st_size and hash_file(a) == hash_file(b)


def _install_tree(staging: CacheLayout, layout: CacheLayout) -> int:
    """Move each artifact from staging into the cache, kind by kind in the layout's install order. A run, dataset or
    backbone folder already there is kept (same name, same content); a keyed file (map, audit, benchmark results) whose
    content differs is replaced atomically, since a newer bundle may carry more of it (benchmark rows). Feature
    manifests go last, so a feature file is in place before the manifest that makes it valid. Returns how many were
    added or replaced."""
    added = 0
    for kind in sorted(ARTIFACTS, key=lambda k: k.install_order):
        units = staging.artifact_units(kind)
        if not units:
            continue
        layout.artifact_folder(kind).mkdir(parents=True, exist_ok=True)
        units.sort(key=lambda p: kind.belongs == "features" and p.suffix == ".json")
        for unit in units:
            target = layout.artifact_folder(kind) / unit.name
            if target.exists() and (unit.is_dir() or kind.belongs == "features" or _same_file(unit, target)):
                continue
            os.replace(unit, target)
            added += 1
    return added


def install_bundle(
    source: str,
    layout: CacheLayout,
    progress: ProgressFn | None = None,
    sha256: str | None = None,
    sprites_root: Path | None = None,
) -> dict[str, Any]:
    """Unpack a bundle (local path or http(s) URL) into the cache of ``layout``; see the module docs. Returns what it
    installed.

    Whether it is already installed is decided by content (:func:`content_digest` of its manifest), not by its path or
    URL: a bundle updated in place installs, the same one again is a no-op."""
    report = progress or (lambda _s, _f: None)
    check_writable(layout.root)
    prior = installed_bundle(layout)
    if prior and all(layout.run_dir(r).is_dir() for r in prior.get("runs", [])):
        peeked = peek_meta(source)
        if peeked is not None and content_digest(peeked) == prior.get("content_sha256"):
            local = not source.startswith(("http://", "https://"))
            if sha256 and local and hash_file(Path(source).expanduser()) != sha256.lower():
                raise BundleError(
                    "The bundle's SHA-256 is not the one given: it is corrupt or another file; nothing was installed."
                )
            return prior | {"artifacts_added": 0, "already_installed": True}  # a restart: same bundle, nothing to do
    try:
        _check_staging_leftovers(layout)
        staging = layout.new_bundle_staging()
    except OSError as err:
        raise BundleError(f"Cannot write into {layout}: {err.strerror or err}. Nothing was installed.") from err
    try:
        return _install(source, layout, staging, report, sha256, sprites_root)
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise BundleError(
                f"Disk full while installing the bundle into {layout}; nothing was installed. Free some space."
            ) from err
        raise BundleError(
            f"Could not install the bundle into {layout}: {err.strerror or err}. Nothing was installed."
        ) from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _install(
    source: str, layout: CacheLayout, staging: Path, report: ProgressFn, sha256: str | None, sprites_root: Path | None
) -> dict[str, Any]:

    if source.startswith(("http://", "https://")):
        archive = staging / STAGING_DOWNLOAD
        _download(source, archive, report)
    else:
        archive = Path(source).expanduser()
        if not archive.is_file():
            raise BundleError(
                f"No bundle at {source!r} (give a file made by `python -m lib bundle`, or an http(s) URL)."
            )
    if sha256:
        report("checking the bundle's SHA-256", 0.5)
        if hash_file(archive) != sha256.lower():
            raise BundleError(
                "The bundle's SHA-256 is not the one given: it is corrupt or another file; nothing was installed."
            )
    try:
        with tarfile.open(archive, "r:*") as tar:
            meta = _read_meta(tar, source)
            members = _safe_members(tar, meta["files"])
            f16_bytes = sum(meta["files"][n]["bytes"] for n in meta["files"] if n.endswith(FLOAT16_SUFFIX))
            check_free_space(
                layout.root, sum(e["bytes"] for e in meta["files"].values()) + f16_bytes, "installing this bundle"
            )
            unpacked = staging / STAGING_TREE
            for n, member in enumerate(members):
                target = unpacked / member.name
                target.parent.mkdir(parents=True, exist_ok=True)
                expected = meta["files"][member.name]
                with tar.extractfile(member) as src, open(target, "wb") as dst:  # type: ignore[union-attr]
                    shutil.copyfileobj(src, dst, 1 << 20)
                if target.stat().st_size != expected["bytes"] or hash_file(target) != expected["sha256"]:
                    raise BundleError(
                        f"{member.name} in the bundle does not match its checksum: the bundle is corrupt; nothing "
                        "was installed."
                    )
                report(f"unpacking {member.name}", 0.5 + 0.4 * (n + 1) / len(members))
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise
        raise BundleError(
            f"{source!r} cannot be read as a bundle ({err}): it is truncated or corrupt; nothing was installed."
        ) from err
    except (tarfile.TarError, EOFError, ValueError, zlib.error) as err:
        raise BundleError(
            f"{source!r} cannot be read as a bundle ({err}): it is truncated or corrupt; nothing was installed."
        ) from err
    staged = CacheLayout(unpacked)
    notices: list[str] = []
    if meta.get("hosting"):
        report("decoding the images", 0.92)
        notices = unpack_images(staged, sprites_root)
    for key in meta["float16_features"]:
        full, manifest_path = staged.feature_files(check_name(key, "feature key"))
        half = full.with_suffix(FLOAT16_SUFFIX)
        if not half.is_file() or FeatureManifest.from_dict(read_json(manifest_path)) is None:
            raise BundleError(f"The bundle's features {key} are missing or damaged; nothing was installed.")
        _widen(half, full)
        half.unlink()
        data = json.loads(manifest_path.read_text())
        data["crc32"] = file_crc32(full)  # the float32 file written here (values rounded through float16)
        manifest_path.write_text(json.dumps(data, indent=2))
    report("installing", 0.95)
    added = _install_tree(staged, layout)
    installed = {k: v for k, v in meta.items() if k != "files"} | {
        "installed": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "from": source,
        "content_sha256": content_digest(meta),
        "artifacts_added": added,
        "notices": notices,
    }
    with atomic_path(layout.installed_bundle()) as tmp:
        tmp.write_text(json.dumps(installed, indent=2))
    report("installed", 1.0)
    return installed


def _widen(half: Path, full: Path, rows: int = 8192) -> None:
    """Write ``half`` (float16 ``.npy``) as float32 at ``full``, a block of rows at a time: installing a demo's features
    never holds a whole split in memory (a free host's memory is the demo's budget, and the install runs in the
    server)."""
    src = np.load(half, mmap_mode="r")
    header = {
        "descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
        "fortran_order": False,
        "shape": tuple(src.shape),
    }
    with open(
        full, "wb"
    ) as fh:  # plain writes, never a writable memory map (a full disk would be SIGBUS, not an error)
        np.lib.format.write_array_header_1_0(fh, header)
        for start in range(0, len(src), rows):
            fh.write(np.ascontiguousarray(src[start : start + rows], np.float32).tobytes())
