"""The run manifest: a typed record of what a run was trained on, how, and what it scored.

Written as ``manifest.json`` in the run's folder and validated whenever it is read, so a damaged
or hand-edited manifest is reported as damaged (:class:`lib.errors.RunError`), never as a
KeyError somewhere in a page.

    manifest = RunManifest.from_dict(json.loads(text))   # RunError if anything is missing or mistyped
    manifest.metrics.test_accuracy, manifest.image_sizes, manifest.head.head
    text = json.dumps(manifest.to_dict())
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from lib.config import FLIP, ORIGINAL, VIEWS
from lib.errors import ConfigError, RunError
from lib.models.heads import HeadConfig
from lib.models.predict import part_key
from lib.runtimes import DEFAULT_RUNTIME

RUN_SCHEMA_VERSION = 2  # 1: untyped dicts (still readable); 2: this dataclass


@dataclass
class RunMetrics:
    """Test-set figures of a run."""

    test_accuracy: float
    top5_accuracy: float | None  # None with five classes or fewer (top-5 is then always 1)
    ece: float
    test_images: int
    val_accuracy: float | None = None


@dataclass
class RunManifest:
    """Everything that defines and describes one run."""

    source: str
    dataset_fingerprint: str
    classes: list[str]
    backbone: str
    backbone_name: str
    backbone_identity: str
    image_sizes: list[int]
    head: HeadConfig
    metrics: RunMetrics
    run_id: str = ""
    label: str = ""
    protocol: str | None = None
    runtime: str = DEFAULT_RUNTIME  # the extraction runtime its features came from
    runtime_choice: dict[str, Any] | None = (
        None  # with --runtime auto: the choice and the figures behind it (lib.runtimes.auto)
    )
    train_views: list[str] = field(default_factory=lambda: [ORIGINAL])
    tta: bool = False
    limit: int | None = None
    train_split: str = "train"
    test_split: str = "test"
    history: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    best_epoch: int = 0
    steps: int = 0
    train_rows: int = 0
    val_rows: int = 0
    finetuned: bool = False
    finetune: dict[str, Any] | None = None
    excluded: dict[str, list[int]] = field(
        default_factory=dict
    )  # split -> image indices the run left out (exclude list)
    # Label fixes it trained with: the list's name, sha256 and labels digest, how many labels each split listed and
    # changed, and test accuracy against the fixed labels (``metrics`` stays against the given ones). None: no fixes.
    relabel: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = (
        None  # temperature scaling: the temperature, what it was fitted on, ECE before and after
    )
    # Further backbones whose features are concatenated after the first one's: each a dict of backbone, backbone_name,
    # backbone_identity and image_sizes (the same meaning as the fields of the first one above).
    extra_backbones: list[dict[str, Any]] = field(default_factory=list)
    schema: int = RUN_SCHEMA_VERSION

    @property
    def image_size(self) -> int:
        """The first (or only) input size."""
        return self.image_sizes[0]

    @property
    def test_views(self) -> tuple[str, ...]:
        """Views averaged at test time."""
        return VIEWS if self.tta else (ORIGINAL,)

    def backbones(self) -> list[tuple[str, str, list[int]]]:
        """Every backbone the run concatenates, first one first: ``(handle, identity, sizes)``."""
        extra = [
            (str(b["backbone"]), str(b["backbone_identity"]), [int(s) for s in b["image_sizes"]])
            for b in self.extra_backbones
        ]
        return [(self.backbone, self.backbone_identity, list(self.image_sizes)), *extra]

    def part_keys(self) -> list[Any]:
        """The keys of the run's feature parts in concatenation order (:func:`lib.models.predict.part_key`)."""

        return [part_key(j, s) for j, (_h, _i, sizes) in enumerate(self.backbones()) for s in sizes]

    def backbone_summary(self) -> str:
        """``name@sizes`` of every backbone, joined with `` + `` (for captions and tables)."""
        names = [self.backbone_name, *(str(b.get("backbone_name") or b["backbone"]) for b in self.extra_backbones)]
        return " + ".join(
            f"{n} @ {','.join(map(str, sizes))}" for n, (_h, _i, sizes) in zip(names, self.backbones(), strict=True)
        )

    def display_name(self) -> str:
        """A short name for menus: the label if set, else the id, with the accuracy."""
        return f"{self.label or self.run_id} ({self.metrics.test_accuracy:.2%})"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = "run") -> RunManifest:
        """Validate and build; :class:`RunError` names what is wrong."""
        try:
            if not isinstance(data, dict):
                raise TypeError(f"the manifest is a {type(data).__name__}, not an object")
            known = {f.name for f in dataclasses.fields(cls)}
            values = {k: v for k, v in data.items() if k in known}
            values["head"] = HeadConfig.from_dict(_require(data, "head", dict))
            metrics = _require(data, "metrics", dict)
            metric_names = {f.name for f in dataclasses.fields(RunMetrics)}
            values["metrics"] = RunMetrics(**{k: v for k, v in metrics.items() if k in metric_names})
            values["schema"] = int(data.get("schema", 1))
            manifest = cls(**values)
            manifest._check()
            return manifest
        except (TypeError, ValueError, KeyError, ConfigError) as err:
            raise RunError(
                f"The manifest of {where} is damaged ({err}); delete the run (Train page, or `python -m lib runs "
                "delete`)."
            ) from err

    def _check(self) -> None:
        _check_type(self.source, str, "source")
        if not isinstance(self.excluded, dict) or not all(
            isinstance(v, list) and all(isinstance(i, int) for i in v) for v in self.excluded.values()
        ):
            raise ValueError("excluded must map a split to a list of image indices")
        _check_type(self.backbone, str, "backbone")
        if not self.classes or not all(isinstance(c, str) for c in self.classes):
            raise ValueError("classes must be a non-empty list of names")
        if not self.image_sizes or not all(isinstance(s, int) and 16 <= s <= 1024 for s in self.image_sizes):
            raise ValueError(f"image_sizes must be sizes in pixels, got {self.image_sizes!r}")
        if not isinstance(self.extra_backbones, list) or not all(_is_part(b) for b in self.extra_backbones):
            raise ValueError(
                "extra_backbones must be a list of {backbone, backbone_name, backbone_identity, image_sizes}"
            )
        if self.finetuned and self.extra_backbones:
            raise ValueError("a fine-tuned run has one backbone")
        if not set(self.train_views) <= {ORIGINAL, FLIP} or not self.train_views:
            raise ValueError(f"train_views must be original and/or flip, got {self.train_views!r}")
        for name in ("test_accuracy", "top5_accuracy", "ece"):
            value = getattr(self.metrics, name)
            if value is None and name == "top5_accuracy":
                continue
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"metrics.{name} must be a number in [0, 1], got {value!r}")
        _check_type(self.timings, dict, "timings")
        _check_type(self.history, list, "history")


def _is_part(b: Any) -> bool:
    return (
        isinstance(b, dict)
        and all(isinstance(b.get(k), str) for k in ("backbone", "backbone_name", "backbone_identity"))
        and isinstance(b.get("image_sizes"), list)
        and bool(b["image_sizes"])
        and all(isinstance(s, int) and 16 <= s <= 1024 for s in b["image_sizes"])
    )


def _require(data: dict[str, Any], key: str, kind: type) -> Any:
    if key not in data:
        raise KeyError(f"no {key!r}")
    _check_type(data[key], kind, key)
    return data[key]


def _check_type(value: Any, kind: type, name: str) -> None:
    if not isinstance(value, kind):
        raise TypeError(f"{name} must be a {kind.__name__}, got {type(value).__name__}")
