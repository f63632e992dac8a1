"""Benchmark: moving a model to the GPU through modeltui against ``module.to``.

    python bench/device_move.py [--repeat 5]

modeltui moves tensor by tensor (so it can show progress, cancel, and move
back on failure) and keeps every tensor object; ``module.to("cuda")`` is the
baseline. Both are timed cpu -> cuda with a synchronize, on a fresh copy of a
~350M-parameter decoder each time, and the ratio of the medians printed
(expected close to 1). Needs CUDA.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: nothing to measure")
        return
    from modeltui.core import open_module
    from modeltui.core.session import Session
    from modeltui.core.surgery import move
    from sample_models.zoo import Decoder

    torch.manual_seed(0)
    template = Decoder(vocab=32000, d=1024, ffn=2816, layers=24, heads=16)
    n = sum(p.numel() for p in template.parameters())
    print(f"model: {n / 1e6:.0f}M parameters, {n * 4 / 2**30:.2f} GiB float32")
    torch.ones(1, device="cuda")  # CUDA context
    base, ours = [], []
    for _ in range(args.repeat):
        m = copy.deepcopy(template)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        m.to("cuda")
        torch.cuda.synchronize()
        base.append(time.perf_counter() - t0)
        del m
        torch.cuda.empty_cache()
        s = Session(open_module(copy.deepcopy(template)))
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        move(s, "cuda")
        ours.append(time.perf_counter() - t0)
        del s
        torch.cuda.empty_cache()
    mb, mo = statistics.median(base), statistics.median(ours)
    print(f"module.to: {mb * 1000:.0f} ms   modeltui move: {mo * 1000:.0f} ms   ratio {mo / mb:.2f}")


if __name__ == "__main__":
    main()
