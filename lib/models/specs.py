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
from collections.abc import Callable
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
    def source(self) -> BackboneSource:
        """Where it comes from (:data:`SOURCES`): what it runs as, whether it trains, how it is identified."""
        return source_of(self.kind)

    @property
    def fixed_runtime(self) -> str | None:
        """The runtime it always runs as, whatever was asked (a ``.tflite`` file is LiteRT already), or None."""
        return self.source.runtime

    @property
    def trainable(self) -> bool:
        """Whether it has variables to fine-tune and to embed in an exported SavedModel."""
        return self.source.trainable

    def default_size(self) -> int:
        """The input size used when none is given: the module's native one, else 224."""
        return self.native_size or 224

    def identity(self) -> str:
        """A string that changes whenever the module's weights could: used in cache keys."""
        return self.fixed_identity or self.source.identity(self)


@dataclass(frozen=True)
class BackboneSource:
    """One kind of backbone string: how it is recognised (in :data:`SOURCES` order), how a spec of it is identified in
    cache keys, the runtime it always runs as (None: any) and whether it can be trained. Loading it with TensorFlow is
    :data:`lib.runtimes.backbones.LOADERS`. Adding a source is a row here and a loader there."""

    kind: str  # BackboneSpec.kind: part of the identity, so of every feature key of such a backbone
    recognise: Callable[[str], BackboneSpec | None]  # the spec of a backbone string, None if it is not of this kind
    identity: Callable[[BackboneSpec], str]
    runtime: str | None = None
    trainable: bool = True


def _by_content(spec: BackboneSpec) -> str:
    return f"{spec.kind}:{_content_hash(Path(spec.handle))}"


def _native_size(text: str) -> int | None:
    found = _SIZE_IN_NAME.search(Path(text).expanduser().name)
    return int(found.group(1)) if found else None


def _registry_name(text: str) -> BackboneSpec | None:
    return REGISTRY.get(text)


def _stand_in(text: str) -> BackboneSpec | None:
    return _STAND_INS[text] if text in _STAND_INS and existing_path(text) is None else None


def _local_file(suffix: str, kind: str, family: str) -> Callable[[str], BackboneSpec | None]:
    def recognise(text: str) -> BackboneSpec | None:
        path = Path(text).expanduser()
        if existing_path(text) is None or not path.is_file() or path.suffix != suffix:
            return None
        return BackboneSpec(path.name, str(path.resolve()), kind, family, _native_size(text))

    return recognise


def _savedmodel_folder(text: str) -> BackboneSpec | None:
    path = Path(text).expanduser()
    if existing_path(text) is None or not (path.is_dir() and (path / "saved_model.pb").exists()):
        return None
    return BackboneSpec(path.name, str(path.resolve()), "savedmodel", "SavedModel", _native_size(text))


def _hub_handle(text: str) -> BackboneSpec | None:
    url = text.startswith(("http://", "https://", "gs://"))
    short = (
        not url and re.fullmatch(r"[\w.-]+/[\w./-]+", text) and not text.startswith((".", "/")) and text.count("/") >= 2
    )
    if existing_path(text) is not None or not (url or short):
        return None
    name = text.rstrip("/").split("/")[-2] if text.count("/") > 1 else text
    return BackboneSpec(name, text, "hub", "TF Hub", _native_size(text))


SOURCES: tuple[BackboneSource, ...] = (
    BackboneSource("registry", _registry_name, lambda s: f"hub:{s.handle.rstrip('/')}"),
    BackboneSource("stand-in", _stand_in, lambda s: s.fixed_identity, trainable=False),
    BackboneSource("savedmodel", _savedmodel_folder, _by_content),
    BackboneSource(KIND_TFLITE, _local_file(".tflite", KIND_TFLITE, "TFLite"), _by_content, "tflite", trainable=False),
    BackboneSource("hub", _hub_handle, lambda s: f"hub:{s.handle.rstrip('/')}"),
)


def source_of(kind: str) -> BackboneSource:
    """The source of a spec's kind (:class:`BackboneError` for a kind no source declares)."""
    found = next((src for src in SOURCES if src.kind == kind), None)
    if found is None:
        raise BackboneError(f"No backbone source of kind {kind!r}.")
    return found


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
            "stand-in",
            "SavedModel (not in this bundle)",
            info.get("native_size"),
            info.get("feature_dim"),
            str(info["identity"]),
        )


def resolve_backbone(backbone: str) -> BackboneSpec:
    """Turn a registry name, handle or local path into a :class:`BackboneSpec`."""
    text = str(backbone).strip()
    text = _ALIASES.get(text, text)
    if not text:
        raise BackboneError(
            "No backbone given. Use a registry name (python -m lib backbones), a TF Hub handle or a local path."
        )
    if len(text) > MAX_BACKBONE_CHARS or "\x00" in text:
        raise BackboneError(
            f"The backbone is {len(text):,} characters long; give a registry name, a TF Hub handle or a local path."
        )
    for src in SOURCES:
        found = src.recognise(text)
        if found is not None:
            return found
    if existing_path(text) is not None:
        raise BackboneError(
            f"Backbone path {text!r} is neither a SavedModel folder (with saved_model.pb) nor a .tflite file."
        )
    if re.fullmatch(r"[\w.-]+/[\w./-]+", text):
        raise BackboneError(f"Backbone {text!r} is not a registry name, and no such local path exists.")
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
