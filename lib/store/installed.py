"""The record of the bundle installed in a cache (``bundle.json``'s format and its check), read by every layer that
needs to know what a bundle brought: the defaults it sets, the backbones it stands in for, its LiteRT conversions.

    installed_bundle(layout)       # what was installed here (checked), or None
    backbone_aliases(layout)       # the runs' backbone strings -> the copies the bundle brought
    backbone_stand_ins(layout)     # a hosting bundle's backbones, whose files did not travel
    check_bundle_meta(meta, source)  # a bundle.json before anything is installed (BundleError naming the problem)

Making and installing bundles is :mod:`lib.bundles`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from lib.bounds import BOUNDS
from lib.errors import BundleError, UserFacingError
from lib.store.atomic import read_json
from lib.store.layout import BUNDLE_MANIFEST, RUN_ID, CacheLayout

BUNDLE_VERSION = 1
HOSTING_VERSION = 2  # a hosting bundle: an app that reads only version 1 refuses it (it would miss the image arrays)
READABLE_VERSIONS = (BUNDLE_VERSION, HOSTING_VERSION)
MANIFEST = BUNDLE_MANIFEST
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def bad_meta(source: str, what: str) -> BundleError:
    return BundleError(f"{source!r} has a damaged {MANIFEST} ({what}); nothing was installed.")


def check_bundle_meta(meta: Any, source: str) -> dict[str, Any]:
    """``meta`` if it is a whole, well-typed ``bundle.json`` of this version, else :class:`BundleError` naming the first
    problem. Every field a page or the installer reads is checked here, so a damaged file is refused before anything
    is installed, never a traceback on every page after."""
    if not isinstance(meta, dict):
        raise bad_meta(source, "not a JSON object")
    if meta.get("version") not in READABLE_VERSIONS:
        raise BundleError(
            f"{source!r} is a bundle of another version ({str(meta.get('version'))[:20]}); this app reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}. "
            "Nothing was installed."
        )

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise bad_meta(source, what)

    files: Any = meta.get("files")
    need(isinstance(files, dict) and bool(files), "'files' must map each member to its sha256 and bytes")
    for name, entry in files.items():
        need(
            isinstance(entry, dict)
            and isinstance(entry.get("sha256"), str)
            and bool(_SHA256.match(entry["sha256"]))
            and type(entry.get("bytes")) is int
            and entry["bytes"] >= 0,
            f"the entry of {str(name)[:80]!r} in 'files'",
        )
    runs: Any = meta.get("runs")
    need(
        isinstance(runs, list) and bool(runs) and all(isinstance(r, str) and RUN_ID.match(r) for r in runs),
        "'runs' must be a list of run ids",
    )
    need(
        isinstance(meta.get("datasets"), list) and all(isinstance(d, str) for d in meta["datasets"]),
        "'datasets' must be a list of names",
    )
    defaults: Any = meta.get("defaults")
    need(isinstance(defaults, dict), "'defaults' must be an object")
    need(
        all(isinstance(defaults.get(k), str) and defaults[k] for k in ("source", "backbone")),
        "'defaults' needs a source and a backbone",
    )
    need(
        type(defaults.get("image_size")) is int and BOUNDS["image_size"].accepts(defaults["image_size"]),
        "'defaults.image_size' must be a size in pixels",
    )
    need(defaults.get("run") in runs, "'defaults.run' must be one of the bundle's runs")
    aliases = meta.get("aliases", {})
    need(
        isinstance(aliases, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in aliases.items()),
        "'aliases' must map text to text",
    )
    for name in ("converted", "not_converted"):
        value = meta.get(name, {})
        need(
            isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()),
            f"'{name}' must map text to text",
        )
    f16 = meta.get("float16_features", [])
    need(
        isinstance(f16, list) and all(isinstance(k, str) for k in f16),
        "'float16_features' must be a list of feature keys",
    )
    hosting = meta.get("hosting", {})
    need(
        isinstance(hosting, dict) and (meta["version"] == HOSTING_VERSION) == bool(hosting),
        "'hosting' must be an object, in a hosting bundle only",
    )
    reduced = hosting.get("reduced_features", [])
    need(
        isinstance(reduced, list) and all(isinstance(k, str) for k in reduced),
        "'hosting.reduced_features' must be a list of feature keys",
    )
    stand_ins = hosting.get("stand_ins", {})
    need(
        isinstance(stand_ins, dict) and all(_stand_in_ok(k, v) for k, v in stand_ins.items()),
        "'hosting.stand_ins' maps backbones to names, identities",
    )
    return meta


def _stand_in_ok(text: Any, info: Any) -> bool:
    return (
        isinstance(text, str)
        and isinstance(info, dict)
        and isinstance(info.get("name"), str)
        and isinstance(info.get("identity"), str)
        and all(info.get(f) is None or type(info.get(f)) is int for f in ("native_size", "feature_dim"))
    )


def installed_bundle(layout: CacheLayout) -> dict[str, Any] | None:
    """What :func:`install_bundle` recorded in this cache (checked as a whole), or None if nothing or a damaged
    record."""
    data = read_json(layout.installed_bundle())
    if not isinstance(data, dict):
        return None
    try:
        check_bundle_meta({**data, "files": {"-": {"sha256": "0" * 64, "bytes": 0}}}, MANIFEST)
    except BundleError:
        return None
    return data


def backbone_stand_ins(layout: CacheLayout) -> dict[str, dict[str, Any]]:
    """A hosting bundle's backbones, whose files did not travel: backbone string -> name, identity and sizes."""
    return dict(((installed_bundle(layout) or {}).get("hosting") or {}).get("stand_ins") or {})


def backbone_aliases(layout: CacheLayout) -> dict[str, str]:
    """Backbone strings of the bundled runs -> the local copies unpacked into this cache."""
    info = installed_bundle(layout) or {}
    out = {}
    for alias, rel in (info.get("aliases") or {}).items():
        try:
            path = layout.bundled_backbone(Path(str(rel)).name)
        except UserFacingError:
            continue
        if (
            isinstance(alias, str)
            and isinstance(rel, str)
            and path.relative_to(layout.root).as_posix() == rel
            and path.is_dir()
        ):
            out[alias] = str(path.resolve())
    return out
