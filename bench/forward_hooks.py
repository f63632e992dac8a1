"""Benchmark: the forward hooks and the backward pass must not slow the model down.

    python bench/forward_hooks.py [--repeat 30]

On the ~33M-parameter bench decoder, the same input each time, the runs
interleaved, and ratios of the medians:
- a forward pass with the shape-recording hooks against a bare one (target <= 1.05);
- a forward pass with the activation-statistics hooks (mean, std, min, max,
  zeros, NaN/Inf of every module's output) against a bare one (target <= 1.3);
- ``run_backward`` (grads cleared, loss, backward, and every parameter's grad
  norm) against a bare ``zero_grad(); model(x).sum().backward()`` (target <= 1.1);
- for information, a full run (statistics, backward, grad norms, module grad
  norms) against the bare forward and backward.
Also prints undo memory for an initialiser over a whole model against the
bytes of the tensors it touched (target <= 1.0).
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
    from modeltui.core.backward import run_backward
    from modeltui.core.forward import run_forward
    from modeltui.core.inputs import InputSpec
    from modeltui.core.session import Session
    from sample_models.zoo import medium_decoder

    torch.manual_seed(0)
    model = medium_decoder()
    spec = [InputSpec((4, 128), "int64", 8000)]
    n_modules = sum(1 for _ in model.modules())
    size = f"a {n_modules}-module decoder ({sum(p.numel() for p in model.parameters()) / 1e6:.0f}M params)"

    def bare_backward():
        model.zero_grad(set_to_none=True)
        x = torch.randint(0, 8000, (4, 128))
        model.eval()
        model(x).sum().backward()

    runs = {
        "bare": lambda: run_forward(model, spec, record=False),
        "shapes": lambda: run_forward(model, spec, record=True, stats=False),
        "stats": lambda: run_forward(model, spec, record=True, stats=True),
        "bare backward": bare_backward,
        "backward+norms": lambda: run_backward(model, spec, "sum", record=False),
        "full": lambda: run_backward(model, spec, "sum", record=True),
    }
    for _ in range(2):  # warm up
        for f in runs.values():
            f()
    wall: dict[str, list[float]] = {k: [] for k in runs}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.repeat):
        for k, f in runs.items():
            t, c = time.perf_counter(), time.process_time()
            f()
            wall[k].append(time.perf_counter() - t)
            cpu[k].append(time.process_time() - c)
    r = run_backward(model, spec, "sum")
    assert r.ok and r.records and r.grad_norms and all(rec.summary for rec in r.records.values() if rec.shapes)
    med = {k: statistics.median(v) for k, v in wall.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}

    def line(what, a, b, target):
        # CPU time too: these machines are shared, and other processes stretch the wall clock
        print(f"{what}: {med[a] * 1e3:.1f} ms vs {med[b] * 1e3:.1f} ms on {size} -> ratio {med[a] / med[b]:.3f}{target}; "
              f"CPU time ratio {med_cpu[a] / med_cpu[b]:.3f}")

    line("forward with shape hooks vs bare forward", "shapes", "bare", " (target <= 1.05)")
    line("forward with statistics hooks vs bare forward", "stats", "bare", " (target <= 1.3)")
    line("backward with grad norms vs bare backward", "backward+norms", "bare backward", " (target <= 1.1)")
    line("full run (statistics, backward, grad norms) vs bare forward+backward", "full", "bare backward", "")

    o = open_target("sample_models.zoo:medium_decoder")
    s = Session(o)
    r = initialise(s, "normal_", {"std": "0.02"}, which="weights", seed=0)
    touched = sum(t.numel() * t.element_size() for _, t in s.tensors(r.names))
    print(f"undo memory for normal_ on {len(r.names)} weight tensors: {s.undo_bytes / 2**20:.1f} MiB vs "
          f"{touched / 2**20:.1f} MiB touched -> ratio {s.undo_bytes / touched:.2f} (target <= 1.0)")


if __name__ == "__main__":
    main()
