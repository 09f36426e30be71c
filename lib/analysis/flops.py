"""How much arithmetic a backbone does, and how much this machine can do: multiply-adds per image counted from a
converted LiteRT graph (convolutions, depthwise convolutions, fully connected layers, batched matrix products), and
the machine's float32 peak measured by a short matrix-multiply probe (numpy's BLAS, every core).

    macs = multiply_adds("cache/converted/<key>.tflite")     # 186 M for MobileNet v1 1.0 at 128 px
    peak = matmul_gflops()                                   # GFLOP/s of this machine, float32
    gflops = 2 * macs * images_per_second / 1e9; gflops / peak  -> the share of the machine's peak a runtime reaches
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def multiply_adds(path: Path | str) -> int:
    """Multiply-adds of one image through the LiteRT model at ``path`` (batch 1; ops other than the ones named in the
    module doc, such as the resize, additions and pooling, are not counted: they are a few percent at most)."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), experimental_preserve_all_tensors=False)
    detail = interp.get_input_details()[0]
    interp.resize_tensor_input(detail["index"], [1, *list(detail["shape"][1:])])
    interp.allocate_tensors()
    shape = {t["index"]: [int(v) for v in t["shape"]] for t in interp.get_tensor_details()}
    total = 0
    for op in interp._get_ops_details():
        ins = [shape.get(i, []) for i in op["inputs"] if i >= 0]
        outs = [shape.get(i, []) for i in op["outputs"] if i >= 0]
        if not outs or len(ins) < 2:
            continue
        out, weights = outs[0], ins[1]
        name = op["op_name"]
        if name in ("CONV_2D", "TRANSPOSE_CONV") and len(weights) == 4 and len(out) == 4:
            total += int(np.prod(out[1:])) * weights[1] * weights[2] * weights[3]
        elif name == "DEPTHWISE_CONV_2D" and len(weights) == 4 and len(out) == 4:
            total += int(np.prod(out[1:])) * weights[1] * weights[2]
        elif name == "FULLY_CONNECTED" and len(weights) == 2:
            total += int(np.prod(out[:-1])) * weights[0] * weights[1]
        elif name == "BATCH_MATMUL" and len(ins[0]) >= 2:
            total += int(np.prod(out)) * ins[0][-1]
    return total


def matmul_gflops(n: int = 1024, seconds: float = 1.0) -> float:
    """This machine's float32 matrix-multiply rate in GFLOP/s: the best of repeated ``n x n`` products for about
    ``seconds`` (numpy's BLAS on every core), the practical peak a runtime's convolutions can be compared with."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), np.float32), rng.standard_normal((n, n), np.float32)
    a @ b  # warm-up: threads started, pages touched
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        a @ b
        best = max(best, 2.0 * n**3 / (time.perf_counter() - t0) / 1e9)
    return best
