"""Extraction runtimes as plug-ins: one :class:`Runtime` per way of running a backbone, in one registry.

A runtime says how it is named, what it adds to a feature cache key, how it loads (converting first if it must) and
what artifact it converts to. Nothing outside this package compares a runtime's name: code asks the registry.

    rt = get_runtime("litert")              # ConfigError listing the choices for an unknown name
    rt.load(spec, 128, dataset, layout)     # a loaded backbone: embed(uint8 images, size, flip)
    runtime_identity(spec, "litert", ds)    # what a feature manifest records
    selectable()                            # the names a user can pick (CLI --runtime, the Train page)
    register(MyRuntime())                   # a new runtime: a new module and this one call

Adding a runtime touches its own module and the line that registers it (:mod:`lib.runtimes.builtin`). Modules of
this package import from here; everything else imports :mod:`lib.runtimes`, which registers the built-in ones.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lib.errors import ConfigError
from lib.store.layout import CacheLayout

if TYPE_CHECKING:
    from lib.data.sources import Dataset
    from lib.models.specs import BackboneSpec
    from lib.store.layout import CacheLayout

TFBackboneFn = Callable[[], Any]  # returns the TF-loaded backbone a conversion starts from (loaded once by the caller)


class Runtime:
    """One way of running a backbone. Subclasses set the attributes and override :meth:`load`."""

    name: str = ""
    description: str = ""  # one line for menus and --help
    selectable: bool = True  # a user can ask for it (a .tflite file's own runtime is implied, never chosen)
    exact: bool = True  # features equal TensorFlow's within 1e-4: runs of it share heads with tf in the benchmark
    quantized: bool = False  # integer arithmetic: compared against its float twin
    any_size: bool = False  # one loaded model serves every input size (TensorFlow); else one model per size
    bench_order: int = 9  # within a (backbone, size), lower is measured first
    artifact_suffix: str | None = (
        None  # what a conversion writes under the cache's converted/ folder; None: no conversion
    )

    def identity(self, spec: BackboneSpec, dataset: Dataset | None) -> str:
        """What a feature manifest records as its runtime (the name, the converter version, any calibration)."""
        return self.name

    def key_part(self, spec: BackboneSpec, dataset: Dataset | None) -> str | None:
        """What this runtime adds to a feature cache key (None: nothing, the keys TensorFlow always had)."""
        return self.identity(spec, dataset)

    def load(
        self,
        spec: BackboneSpec,
        size: int,
        dataset: Dataset | None,
        layout: CacheLayout,
        tf_backbone: TFBackboneFn | None = None,
    ) -> Any:
        """A loaded backbone running ``spec`` at ``size`` (converted and cached first if this runtime converts)."""
        raise NotImplementedError

    def converted(self, spec: BackboneSpec, size: int, dataset: Dataset, layout: CacheLayout) -> Path | None:
        """Where this runtime's converted model of ``spec`` at ``size`` is, or would be; None if it does not convert."""
        return None

    def convert(
        self,
        spec: BackboneSpec,
        size: int,
        dataset: Dataset,
        layout: CacheLayout,
        tf_backbone: TFBackboneFn | None = None,
    ) -> Path | None:
        """Convert (once; then the cached file) and return the artifact; None if this runtime does not convert."""
        return None


_REGISTRY: dict[str, Runtime] = {}


def register(runtime: Runtime) -> Runtime:
    """Add ``runtime`` to the registry (replacing one of the same name) and return it. The project's own register
    first (``lib.runtimes`` imports :mod:`lib.runtimes.builtin`), so they come first in menus."""
    if not runtime.name:
        raise ValueError("a runtime needs a name")
    _REGISTRY[runtime.name] = runtime
    return runtime


def unregister(name: str) -> None:
    """Remove a runtime (tests that register a fake one clean up with this)."""
    _REGISTRY.pop(name, None)


def registry() -> dict[str, Runtime]:
    """Every registered runtime by name."""
    return dict(_REGISTRY)


def selectable() -> tuple[str, ...]:
    """The names a user can choose, in registration order."""
    return tuple(name for name, rt in registry().items() if rt.selectable)


def get_runtime(name: str) -> Runtime:
    """The runtime called ``name``, or :class:`ConfigError` naming the choices."""
    found = registry().get(str(name))
    if found is None or not found.selectable:
        raise ConfigError(f"Unknown runtime {str(name)[:40]!r}; choose one of {', '.join(selectable())}.")
    return found


def check_runtime(name: str) -> str:
    """``name`` if it is a runtime a user can choose (or ``auto``: resolved per backbone and size, see
    :mod:`lib.runtimes.auto`), else :class:`ConfigError`."""
    return AUTO if name == AUTO else get_runtime(name).name


def choices() -> tuple[str, ...]:
    """What ``--runtime`` and the Train page offer: ``auto``, then every runtime a user can choose."""
    return (AUTO, *selectable())


def effective(spec: BackboneSpec, name: str) -> Runtime:
    """What actually runs ``spec`` when ``name`` is asked for: a ``.tflite`` backbone is LiteRT already and runs as it
    is, whatever was asked."""
    asked = get_runtime(name)
    return registry()[spec.fixed_runtime] if spec.fixed_runtime else asked


def runtime_identity(spec: BackboneSpec, name: str, dataset: Dataset | None = None) -> str:
    """The runtime part a feature manifest records for ``spec`` run with ``name``."""
    return effective(spec, name).identity(spec, dataset)


def name_of_identity(identity: str) -> str:
    """The user-facing runtime name of a recorded identity (a ``.tflite`` file's own counts as the default)."""
    name = str(identity).split(":")[0]
    found = registry().get(name)
    if found is not None and not found.selectable:
        return DEFAULT_RUNTIME
    return name


def as_selectable(name: str) -> str:
    """A runtime a user can choose for a recorded name (a benchmark row of a .tflite file says ``tflite``)."""
    found = registry().get(str(name))
    return name if found is not None and found.selectable else DEFAULT_RUNTIME


def load_for_runtime(
    spec: BackboneSpec,
    name: str,
    size: int,
    dataset: Dataset | None,
    layout: CacheLayout,
    tf_backbone: TFBackboneFn | None = None,
) -> Any:
    """A loaded backbone running ``spec`` at ``size`` with runtime ``name`` (converted and cached first if needed)."""

    return effective(spec, name).load(spec, size, dataset, layout, tf_backbone)


DEFAULT_RUNTIME = (
    "tf"  # what keys features asked for without a runtime (a page reading, a test); users get entry_default()
)
TFLITE_FILE = "tflite"  # the implied runtime of a .tflite backbone
AUTO = "auto"  # not a runtime: the faster exact one for a backbone, size and machine (lib.runtimes.auto resolves it)
ENV_RUNTIME = "TLX_RUNTIME"


def entry_default() -> str:
    """The runtime a user gets without choosing one (``extract``/``train`` ``--runtime``, the Train page): ``auto``, the
    faster exact runtime on this machine; ``$TLX_RUNTIME`` pins another (a value that is not a runtime is ignored)."""
    value = os.environ.get(ENV_RUNTIME, "").strip()
    if value and value not in choices():
        _warn_once(f"${ENV_RUNTIME}={value[:40]!r} is not a runtime ({', '.join(choices())}); using {AUTO}.")
    return value if value in choices() else AUTO


@functools.lru_cache(maxsize=8)
def _warn_once(text: str) -> None:
    import sys

    print(f"warning: {text.encode('ascii', 'replace').decode()}", file=sys.stderr, flush=True)
