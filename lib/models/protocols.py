"""Named training presets: the blog's original experiment and the project's recommendations.

preset = PROTOCOLS["best"]
preset.head, preset.image_sizes, preset.train_views, preset.tta
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from lib.config import ORIGINAL, VIEWS
from lib.models.heads import HeadConfig


@dataclass(frozen=True)
class Protocol:
    """A head configuration plus which features it is trained on."""

    name: str
    description: str
    head: HeadConfig
    image_sizes: tuple[int, ...] | None = None  # None: the backbone's native size
    train_views: tuple[str, ...] = (ORIGINAL,)
    tta: bool = False  # average the predictions of the original and flipped test images
    # The preset's own backbones, (registry name, input size) each, first one first; used unless the user names
    # backbones.
    # Each resolves to the folder of that name in ../shared/models where there is one, else to its TF Hub handle.
    backbones: tuple[tuple[str, int], ...] = ()
    notes: list[str] = field(default_factory=list)


# Tuned on CIFAR-10 (JPEG q75 copy) at 128px: trains in under a minute on 2 cores (see README).
_BEST_HEAD = HeadConfig(
    head="mlp",
    hidden=1024,
    dropout=0.5,
    optimizer="adamw",
    weight_decay=0.05,
    learning_rate=1e-3,
    lr_schedule="cosine",
    batch_size=512,
    epochs=12,
    label_smoothing=0.1,
    val_fraction=0.05,
    patience=None,
)

PROTOCOLS: dict[str, Protocol] = {
    "blog": Protocol(
        "blog",
        "The published experiment: one dense softmax layer, 1,000 steps of batch 100, 128x128 input.",
        HeadConfig(
            head="linear",
            optimizer="adam",
            learning_rate=1e-3,
            batch_size=100,
            steps=1000,
            val_fraction=0.1,
            patience=None,
        ),
        image_sizes=(128,),
    ),
    "best": Protocol(
        "best",
        "Recommended at 128x128: MLP on original + flipped features, flip test-time augmentation.",
        _BEST_HEAD,
        image_sizes=(128,),
        train_views=VIEWS,
        tta=True,
    ),
    "best-multiscale": Protocol(
        "best-multiscale",
        "Best overall: MLP on concatenated 128 and 224 features, original + flipped, flip TTA.",
        _BEST_HEAD,
        image_sizes=(128, 224),
        train_views=VIEWS,
        tta=True,
    ),
    "best-ensemble": Protocol(
        "best-ensemble",
        "Most accurate within an hour of extraction on 2 cores: MobileNet v1 at 128 and 224, EfficientNet-Lite0 and "
        "MobileNet v2 at 224, concatenated; MLP, original + flipped, flip TTA.",
        _BEST_HEAD,
        train_views=VIEWS,
        tta=True,
        backbones=(
            ("mobilenet_v1_100_224", 128),
            ("mobilenet_v1_100_224", 224),
            ("efficientnet_lite0_224", 224),
            ("mobilenet_v2_100_224", 224),
        ),
    ),
}


def with_overrides(config: HeadConfig, **overrides: Any) -> HeadConfig:
    """A copy of ``config`` with the non-None overrides applied."""
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})
