"""The runtimes this project ships, registered in the order menus show them.

import lib.runtimes.builtin   # done by lib.runtimes on first use
"""

from __future__ import annotations

from lib.runtimes.litert import LiteRTRuntime
from lib.runtimes.registry import register
from lib.runtimes.tf import TFLiteFileRuntime, TFRuntime

register(TFRuntime())
register(LiteRTRuntime(quantized=False))
register(LiteRTRuntime(quantized=True))
register(LiteRTRuntime(quantized=True, mixed=True))
register(TFLiteFileRuntime())
