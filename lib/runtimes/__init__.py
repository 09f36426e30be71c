"""Extraction runtimes as plug-ins: one :class:`Runtime` per way of running a backbone, in one registry
(:mod:`lib.runtimes.registry`); importing this package registers the built-in ones (:mod:`lib.runtimes.builtin`).

    rt = get_runtime("litert")              # ConfigError listing the choices for an unknown name
    rt.load(spec, 128, dataset, layout)     # a loaded backbone: embed(uint8 images, size, flip)
    selectable()                            # the names a user can pick (CLI --runtime, the Train page)
"""

from lib.runtimes import builtin
from lib.runtimes.registry import (
    AUTO,
    DEFAULT_RUNTIME,
    ENV_RUNTIME,
    TFLITE_FILE,
    Runtime,
    TFBackboneFn,
    as_selectable,
    check_runtime,
    choices,
    effective,
    entry_default,
    get_runtime,
    load_for_runtime,
    name_of_identity,
    register,
    registry,
    runtime_identity,
    selectable,
    unregister,
)

__all__ = [
    "AUTO",
    "DEFAULT_RUNTIME",
    "ENV_RUNTIME",
    "TFLITE_FILE",
    "Runtime",
    "TFBackboneFn",
    "as_selectable",
    "builtin",
    "check_runtime",
    "choices",
    "effective",
    "entry_default",
    "get_runtime",
    "load_for_runtime",
    "name_of_identity",
    "register",
    "registry",
    "runtime_identity",
    "selectable",
    "unregister",
]
