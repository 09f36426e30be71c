"""Defaults for what a user did not say, chosen the same way by the CLI and the app: an explicit value (a flag), then
the environment (``TLX_SOURCE``, ``TLX_BACKBONE``, ``TLX_IMAGE_SIZE``), then what a demo bundle installed in this
cache, then the project's own (official CIFAR-10, ``mobilenet_v1_100_128`` at its native size).

    d = choose_defaults(layout, source=args.source, backbone=args.backbone, image_size=args.image_size)
    d.source, d.backbone, d.image_size, d.run_id
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from lib import config
from lib.bounds import BOUNDS
from lib.models.specs import default_image_size
from lib.store.installed import installed_bundle
from lib.store.layout import RUN_ID, CacheLayout


@dataclass(frozen=True)
class Defaults:
    """The data source, backbone, input size and run to start from."""

    source: str
    backbone: str
    image_size: int
    run_id: str  # the bundle's run in a demo, else ""


def _env_size() -> int:
    text = os.environ.get(config.ENV_IMAGE_SIZE, "").strip()
    return int(text) if text.isdigit() and BOUNDS["image_size"].accepts(int(text)) else 0


def choose_defaults(
    layout: CacheLayout, source: str | None = None, backbone: str | None = None, image_size: int | None = None
) -> Defaults:
    """Fill in what was not given (see the module docs)."""

    bundled = (installed_bundle(layout) or {}).get("defaults") or {}
    chosen_backbone = (
        backbone or os.environ.get(config.ENV_BACKBONE) or bundled.get("backbone") or config.DEFAULT_BACKBONE
    )
    size = image_size or _env_size() or bundled.get("image_size") or default_image_size(chosen_backbone)
    run = bundled.get("run", "")
    return Defaults(
        source=source or os.environ.get(config.ENV_SOURCE) or bundled.get("source") or config.DEFAULT_SOURCE,
        backbone=chosen_backbone,
        image_size=int(size),
        run_id=run if isinstance(run, str) and RUN_ID.match(run) else "",
    )
