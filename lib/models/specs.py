"""Backbone specs: a registry of TF Hub image feature-vector modules, plus any handle or local file.

A backbone string is one of
- a registry name such as ``mobilenet_v1_100_128`` (see :data:`REGISTRY`);
- any TF Hub / Kaggle handle (``https://tfhub.dev/...``, ``https://www.kaggle.com/models/...``);
- a local SavedModel folder with the TF Hub feature-vector interface;
- a ``.tflite`` feature extractor (quantized uint8 input/output are handled).

Resolving a string needs no TensorFlow (loading one does: :mod:`lib.runtimes.backbones`).
The default input size of a backbone is decided here once, for the CLI and the app alike.

    spec = resolve_backbone("../shared/models/mobilenet_v1_100_224_feature_vector")
    spec.default_size()   # 224: the size in the folder's name
    spec.identity()       # content hash of a local model, or the handle: part of cache keys
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from lib.config import DEFAULT_BACKBONE, SHARED_MODELS
from lib.errors import BackboneError
from lib.store.fingerprints import existing_path, file_digest, tree_digest

_HUB = "https://tfhub.dev/google"
KIND_TFLITE = "tflite"  # a BackboneSpec.kind (part of its identity, so of every feature key of such a backbone)
MAX_BACKBONE_CHARS = 1024


@dataclass(frozen=True)
class BackboneSpec:
    """What a backbone string refers to; cheap to build, no TensorFlow needed."""

    name: str
    handle: str
    kind: str  # "hub" | "savedmodel" | "tflite"
    family: str = "custom"
    native_size: int | None = None
    feature_dim: int | None = None
    fixed_identity: str = (
        ""  # a stand-in's (a hosting bundle's backbone, whose files did not travel): its recorded identity
    )

    @property
    def is_tflite_file(self) -> bool:
        """A ``.tflite`` file: LiteRT already, at its own fixed size, with no variables to train or export."""
        return self.kind == KIND_TFLITE

    def default_size(self) -> int:
        """The input size used when none is given: the module's native one, else 224."""
        return self.native_size or 224

    def identity(self) -> str:
        """A string that changes whenever the module's weights could: used in cache keys."""
        if self.fixed_identity:
            return self.fixed_identity
        if self.kind == "hub":
            return f"hub:{self.handle.rstrip('/')}"
        return f"{self.kind}:{_content_hash(Path(self.handle))}"


def _registry() -> dict[str, BackboneSpec]:
    specs: dict[str, BackboneSpec] = {}
    for depth, dim in (("025", 256), ("050", 512), ("075", 768), ("100", 1024)):
        for size in (128, 160, 192, 224):
            name = f"mobilenet_v1_{depth}_{size}"
            specs[name] = BackboneSpec(
                name, f"{_HUB}/imagenet/{name}/feature_vector/5", "hub", "MobileNet v1", size, dim
            )
    for name, size, dim in (
        ("mobilenet_v2_100_224", 224, 1280),
        ("mobilenet_v2_100_128", 128, 1280),
        ("mobilenet_v2_140_224", 224, 1792),
    ):
        specs[name] = BackboneSpec(name, f"{_HUB}/imagenet/{name}/feature_vector/5", "hub", "MobileNet v2", size, dim)
    for name, size, dim in (("efficientnet_b0", 224, 1280), ("efficientnet_b3", 300, 1536)):
        specs[name] = BackboneSpec(
            name, f"{_HUB}/efficientnet/{name[-2:]}/feature-vector/1", "hub", "EfficientNet", size, dim
        )
    specs["efficientnet_v2_s"] = BackboneSpec(
        "efficientnet_v2_s",
        f"{_HUB}/imagenet/efficientnet_v2_imagenet1k_s/feature_vector/2",
        "hub",
        "EfficientNet v2",
        384,
        1280,
    )
    for name in ("resnet_v1_50", "resnet_v2_50", "resnet_v2_101"):
        specs[name] = BackboneSpec(name, f"{_HUB}/imagenet/{name}/feature_vector/5", "hub", "ResNet", 224, 2048)
    for name, size, dim in (("efficientnet_lite0_224", 224, 1280), ("efficientnet_lite2_260", 260, 1280)):
        specs[name] = BackboneSpec(
            name,
            f"https://tfhub.dev/tensorflow/efficientnet/{name.split('_')[1]}/feature-vector/2",
            "hub",
            "EfficientNet-Lite",
            size,
            dim,
        )
    specs["inception_v3"] = BackboneSpec(
        "inception_v3", f"{_HUB}/imagenet/inception_v3/feature_vector/5", "hub", "Inception v3", 299, 2048
    )
    return specs


REGISTRY: dict[str, BackboneSpec] = _registry()

_SIZE_IN_NAME = re.compile(r"(?:^|[_\-.])(96|128|160|192|224|240|260|299|300|331|384)(?:[_\-.]|$)")


_ALIASES: dict[str, str] = {}
_STAND_INS: dict[str, BackboneSpec] = {}


def set_aliases(aliases: dict[str, str], stand_ins: dict[str, dict] | None = None) -> None:
    """Process-wide: backbone strings that name a local copy elsewhere (a demo bundle's backbones, unpacked into its
    cache, stand in for the paths its runs were trained with), and backbone strings whose files did not travel at all
    (a hosting bundle's: ``{"name", "identity", "native_size", "feature_dim"}``; cache keys and captions work, loading
    it with TensorFlow does not). Set once by an entry point, like configure_process."""
    _ALIASES.clear()
    _ALIASES.update(aliases)
    _STAND_INS.clear()
    for text, info in (stand_ins or {}).items():
        _STAND_INS[text] = BackboneSpec(
            str(info["name"]),
            text,
            "savedmodel",
            "SavedModel (not in this bundle)",
            info.get("native_size"),
            info.get("feature_dim"),
            str(info["identity"]),
        )


def resolve_backbone(backbone: str) -> BackboneSpec:
    """Turn a registry name, handle or local path into a :class:`BackboneSpec`."""
    text = str(backbone).strip()
    text = _ALIASES.get(text, text)
    if text in _STAND_INS and existing_path(text) is None:
        return _STAND_INS[text]
    if not text:
        raise BackboneError(
            "No backbone given. Use a registry name (python -m lib backbones), a TF Hub handle or a local path."
        )
    if len(text) > MAX_BACKBONE_CHARS or "\x00" in text:
        raise BackboneError(
            f"The backbone is {len(text):,} characters long; give a registry name, a TF Hub handle or a local path."
        )
    if text in REGISTRY:
        return REGISTRY[text]
    path = Path(text).expanduser()
    size_match = _SIZE_IN_NAME.search(path.name)
    native = int(size_match.group(1)) if size_match else None
    if existing_path(text) is not None:
        if path.is_file() and path.suffix == ".tflite":
            return BackboneSpec(path.name, str(path.resolve()), KIND_TFLITE, "TFLite", native)
        if path.is_dir() and (path / "saved_model.pb").exists():
            return BackboneSpec(path.name, str(path.resolve()), "savedmodel", "SavedModel", native)
        raise BackboneError(
            f"Backbone path {text!r} is neither a SavedModel folder (with saved_model.pb) nor a .tflite file."
        )
    if text.startswith(("http://", "https://", "gs://")) or re.fullmatch(r"[\w.-]+/[\w./-]+", text):
        if not text.startswith(("http://", "https://", "gs://")) and (
            text.startswith((".", "/")) or text.count("/") < 2
        ):
            raise BackboneError(f"Backbone {text!r} is not a registry name, and no such local path exists.")
        return BackboneSpec(
            text.rstrip("/").split("/")[-2] if text.count("/") > 1 else text, text, "hub", "TF Hub", native
        )
    raise BackboneError(
        f"Unknown backbone {text!r}: not a registry name (see `python -m lib backbones`), a TF Hub/Kaggle handle, or "
        "an existing path."
    )


def _content_hash(path: Path) -> str:
    # Memoised by size and mtime: an unchanged model is read once per process, an edited one again.
    return (tree_digest(path) if path.is_dir() else file_digest(path))[:16]


def default_image_size(backbone: str) -> int:
    """The input size used when none is given, for the CLI and the app alike (224 if the string does not resolve)."""
    try:
        return resolve_backbone(backbone).default_size()
    except BackboneError:
        return 224


def preset_backbone(name: str) -> str:
    """A registry name as a preset uses it: the folder ``<name>_feature_vector`` in ``../shared/models`` where there is
    one
    (offline machines), else the name itself (its TF Hub handle)."""

    local = Path(SHARED_MODELS) / f"{name}_feature_vector"
    return str(local) if (local / "saved_model.pb").exists() else name


def local_backbones(folder: Path | None = None) -> list[str]:
    """Every backbone in ``folder`` (default: the ``../shared/models`` beside the project): SavedModel folders
    and ``.tflite`` files, sorted; the registry default when there is none."""

    root = Path(folder) if folder is not None else SHARED_MODELS
    found = (
        sorted(str(p) for p in root.glob("*") if (p / "saved_model.pb").exists() or p.suffix == ".tflite")
        if root.is_dir()
        else []
    )
    return found or [DEFAULT_BACKBONE]
