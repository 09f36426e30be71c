"""The range of every number a user can set, in one table that the CLI's flags, the lib's checks and the app's widgets
share.

A value is refused with one line that names the setting and its range; ``nan`` and ``inf`` are refused everywhere
(no comparison holds for them).

    check("learning_rate", 1e-3)                      # the value, or ConfigError
    p.add_argument("--lr", type=flag("learning_rate"))  # argparse: one-line error for "inf", "abc", 0
    st.number_input("Learning rate", **widget("learning_rate"))
    sizes("--image-sizes", "128,224")                 # (128, 224), or ConfigError (empty, duplicate, out of range)
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib.errors import ConfigError


@dataclass(frozen=True)
class Bound:
    """A closed range ``[low, high]`` of an integer or a real setting."""

    what: str
    low: float
    high: float
    integer: bool = True

    def accepts(self, value: float) -> bool:
        """Whether ``value`` is finite, in range, and whole where it must be."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        return self.low <= value <= self.high and (not self.integer or float(value).is_integer())

    def describe(self) -> str:
        """The range in words, for messages."""
        fmt = (lambda v: f"{int(v):,}") if self.integer else (lambda v: f"{v:g}")
        return f"{'a whole number' if self.integer else 'a number'} from {fmt(self.low)} to {fmt(self.high)}"


BOUNDS: dict[str, Bound] = {
    # inputs and extraction
    "image_size": Bound("input size (pixels)", 32, 512),
    "batch_size": Bound("extraction batch size", 1, 4096),
    "limit": Bound("images per class", 1, 10_000_000),
    "backbones": Bound("backbones in one run", 1, 8),
    # the head (lib.models.heads.HeadConfig)
    "hidden": Bound("MLP hidden units", 1, 8192),
    "dropout": Bound("dropout", 0.0, 0.9, integer=False),
    "weight_decay": Bound("weight decay", 0.0, 1.0, integer=False),
    "learning_rate": Bound("learning rate", 1e-7, 1.0, integer=False),
    "train_batch_size": Bound("training batch size", 1, 8192),
    "epochs": Bound("epochs", 1, 1000),
    "steps": Bound("steps", 1, 1_000_000),
    "label_smoothing": Bound("label smoothing", 0.0, 0.5, integer=False),
    "val_fraction": Bound("validation fraction", 0.0, 0.5, integer=False),
    "patience": Bound("early-stopping patience (epochs; 0 turns it off)", 0, 1000),
    "seed": Bound("seed", 0, 2**31 - 1),
    # fine-tuning
    "finetune_epochs": Bound("fine-tuning epochs", 1, 100),
    "budget_minutes": Bound("fine-tuning budget (minutes for the whole job)", 1, 1440),
    "finetune_lr": Bound("fine-tuning learning rate", 1e-7, 0.1, integer=False),
    "finetune_batch_size": Bound("fine-tuning batch size", 1, 1024),
    "finetune_warmup": Bound("fine-tuning warm-up (epochs)", 0.0, 100.0, integer=False),
    # whole-dataset analyses
    "perplexity": Bound("t-SNE perplexity", 5, 100, integer=False),
    "iterations": Bound("t-SNE iterations", 100, 5000),
    "folds": Bound("audit folds", 2, 20),
    "threshold": Bound("near-duplicate similarity threshold (cosine)", 0.5, 1.0, integer=False),
    "top": Bound("rows to print", 1, 10_000_000),
    # the benchmark
    "bench_limit": Bound("images per class for the accuracies", 1, 10_000_000),
    "convert_workers": Bound("conversion processes", 1, 256),
    # the Ray engine
    "workers": Bound("Ray workers", 1, 256),
    "ray_cpus_per_worker": Bound("CPUs per Ray worker", 0.1, 256.0, integer=False),
    "ray_object_store_mb": Bound("Ray object store (MB)", 64, 1_048_576),
    "ray_shard_size": Bound("images per Ray task", 1, 65_536),
}
MAX_ADDRESS_CHARS = 255  # a host name is at most 253 characters; with a port and a scheme this is plenty


def check(name: str, value: Any) -> Any:
    """``value`` if it is within ``BOUNDS[name]``, else :class:`ConfigError` in one line."""
    bound = BOUNDS[name]
    if not bound.accepts(value):
        raise ConfigError(f"The {bound.what} must be {bound.describe()}; got {str(value)[:40]!r}.")
    return value


def _parse(name: str, text: str) -> float | int:
    bound = BOUNDS[name]
    try:
        value: float | int = float(text) if not bound.integer else int(str(text).strip())
    except ValueError:
        value = math.nan
    if not bound.accepts(value):
        raise ConfigError(f"The {bound.what} must be {bound.describe()}; got {str(text).strip()[:40]!r}.")
    return value


def flag(name: str) -> Callable[[str], Any]:
    """An argparse ``type`` for ``BOUNDS[name]``: parses, checks the range, and fails in one line."""

    def parse(text: str) -> Any:
        try:
            return _parse(name, text)
        except ConfigError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    parse.__name__ = name  # argparse names the type in its message
    return parse


def widget(name: str, zero_means_off: bool = False) -> dict[str, Any]:
    """``min_value`` and ``max_value`` of a Streamlit number input or slider for ``BOUNDS[name]`` (from 0 where a
    widget's 0 means "off" or "the default", as "Steps (0 = use epochs)")."""
    bound = BOUNDS[name]
    cast = int if bound.integer else float
    return {"min_value": cast(0 if zero_means_off else bound.low), "max_value": cast(bound.high)}


def sizes(what: str, text: str) -> tuple[int, ...]:
    """A comma-separated list of input sizes, each within ``image_size``, none twice; :class:`ConfigError` otherwise."""
    parts = [p.strip() for p in str(text).split(",")]
    if not any(parts) or not all(parts):
        raise ConfigError(f"{what} must be comma-separated input sizes such as 128,224; got {str(text)[:40]!r}.")
    try:
        out = tuple(int(_parse("image_size", p)) for p in parts)
    except ConfigError as err:
        raise ConfigError(f"{what}: {err}") from None
    if len(set(out)) != len(out):
        twice = next(s for s in out if out.count(s) > 1)
        raise ConfigError(f"{what} names the size {twice} twice; give each size once.")
    return out


def backbone_at_sizes(text: str) -> tuple[str, tuple[int, ...] | None]:
    """``BACKBONE`` or ``BACKBONE@SIZES`` (``SIZES`` comma-separated, e.g.
    ``…/mobilenet_v2_100_224_feature_vector@160,224``)
    as ``(backbone, sizes or None)``; an ``@`` followed by anything but sizes belongs to the backbone itself."""
    text = str(text).strip()
    head, at, tail = text.rpartition("@")
    if (
        at
        and head
        and not all(p.strip().isdigit() for p in tail.split(","))
        and Path(head).expanduser().exists()
        and not Path(text).expanduser().exists()
    ):
        # a local backbone with something after its @: sizes written wrong, not a backbone name
        raise ConfigError(
            f"The sizes of --backbone {head[-60:]!r}: {tail[:20]!r} is not a list of input sizes (e.g. @128 or "
            "@160,224)."
        )
    if not at or not tail or not all(p.strip().isdigit() for p in tail.split(",")):
        return text, None
    if not head:
        raise ConfigError(f"--backbone {text[:40]!r} names sizes but no backbone.")
    return head, sizes(f"The sizes of --backbone {head[:60]!r}", tail)


def names(what: str, text: str, allowed: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """A comma-separated list of names from ``allowed``, none twice; :class:`ConfigError` otherwise."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not parts:
        raise ConfigError(f"{what} names nothing; give one or more of {', '.join(allowed)}.")
    unknown = [p for p in parts if p not in allowed]
    if unknown:
        raise ConfigError(f"{what}: unknown {unknown[0][:40]!r}; choose from {', '.join(allowed)}.")
    if len(set(parts)) != len(parts):
        raise ConfigError(f"{what} names {next(p for p in parts if parts.count(p) > 1)!r} twice.")
    return tuple(parts)


def address(text: str) -> str:
    """A cluster address (``HOST:PORT``, ``auto`` or ``ray://HOST:PORT``): one short line without spaces or control
    characters; :class:`ConfigError` otherwise (the syntax itself is checked where it is used)."""
    value = str(text).strip()
    if not value or len(value) > MAX_ADDRESS_CHARS or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in value):
        shown = value[:40] + ("..." if len(value) > 40 else "")
        raise ConfigError(
            f"A cluster address is HOST:PORT, auto or ray://HOST:PORT, at most {MAX_ADDRESS_CHARS} characters "
            f"without spaces; got {shown!r} ({len(value):,} characters)."
        )
    return value


def address_flag(text: str) -> str:
    """An argparse ``type`` for :func:`address`."""
    try:
        return address(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
