"""Benchmark: the shape-recording hooks must not slow a forward pass.

    python bench/forward_hooks.py [--repeat 30]

Runs the same model on the same input with modeltui's recording hooks and
without them, interleaved, and prints the ratio of the medians (target <=
1.05). Also prints undo memory for an initialiser over a whole model against
the bytes of the tensors it touched (target <= 1.0).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args()

    import torch

    from modeltui.core import open_target
    from modeltui.core.editing import initialise
    from modeltui.core.forward import run_forward
    from modeltui.core.inputs import InputSpec
    from modeltui.core.session import Session
    from sample_models.zoo import medium_decoder

    torch.manual_seed(0)
    model = medium_decoder()
    spec = [InputSpec((4, 128), "int64", 8000)]
    n_modules = sum(1 for _ in model.modules())
    for _ in range(3):  # warm up
        run_forward(model, spec, record=True)
        run_forward(model, spec, record=False)
    with_hooks, without = [], []
    for _ in range(args.repeat):
        t = time.perf_counter()
        run_forward(model, spec, record=False)
        without.append(time.perf_counter() - t)
        t = time.perf_counter()
        r = run_forward(model, spec, record=True)
        with_hooks.append(time.perf_counter() - t)
    assert r.ok and r.records  # containers never called (ModuleList) have no record
    a, b = statistics.median(with_hooks), statistics.median(without)
    print(f"forward with hooks {a * 1e3:.1f} ms vs without {b * 1e3:.1f} ms on a {n_modules}-module decoder "
          f"({sum(p.numel() for p in model.parameters()) / 1e6:.0f}M params) -> ratio {a / b:.3f} (target <= 1.05)")

    o = open_target("sample_models.zoo:medium_decoder")
    s = Session(o)
    r = initialise(s, "normal_", {"std": "0.02"}, which="weights", seed=0)
    touched = sum(t.numel() * t.element_size() for _, t in s.tensors(r.names))
    print(f"undo memory for normal_ on {len(r.names)} weight tensors: {s.undo_bytes / 2**20:.1f} MiB vs "
          f"{touched / 2**20:.1f} MiB touched -> ratio {s.undo_bytes / touched:.2f} (target <= 1.0)")


if __name__ == "__main__":
    main()
