"""Benchmark: the statistics pane against plain torch calls on the same tensor.

    python bench/stats.py [--mib 256]

Baseline: what a script would do for the same numbers — upcast the whole
tensor to float64 once, then mean, std, norm, aminmax, histc, isnan/isinf
counts and quantiles of a sample. modeltui's ``tensor_stats`` works in chunks
(bounded extra memory, cancellable). Prints time and extra peak memory of
both, in fresh processes, and the ratios (ours / baseline).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import json, sys, time, torch
def hwm():
    for l in open('/proc/self/status'):
        if l.startswith('VmHWM'): return int(l.split()[1]) * 1024
n, how = int(sys.argv[1]), sys.argv[2]
t = torch.randn(n, generator=torch.Generator().manual_seed(0))
from modeltui.core.stats import tensor_stats
tensor_stats(torch.randn(1000))  # warm up
base = hwm()
t0 = time.perf_counter()
if how == "ours":
    tensor_stats(t)
else:
    bad = int(torch.isnan(t).sum()) + int(torch.isinf(t).sum())
    zeros = int((t == 0).sum())
    lo, hi = torch.aminmax(t)
    x = t.double()
    m, s, nrm = float(x.mean()), float(x.std(unbiased=False)), float(x.norm())
    h = torch.histc(x, bins=32, min=float(lo), max=float(hi))
    idx = torch.randint(0, n, (1 << 20,), generator=torch.Generator().manual_seed(0))
    q = torch.quantile(x[idx], torch.tensor([0.01, 0.25, 0.5, 0.75, 0.99], dtype=torch.float64))
print(json.dumps({"s": time.perf_counter() - t0, "mem": hwm() - base}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=256, help="size of the float32 tensor")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    n = args.mib * 2**20 // 4
    res = {"ours": [], "baseline": []}
    for _ in range(args.repeat):
        for how in res:
            r = subprocess.run([sys.executable, "-c", CHILD, str(n), how], capture_output=True, text=True, cwd=ROOT, check=True)
            res[how].append(json.loads(r.stdout.strip().splitlines()[-1]))
    med = {h: (sorted(x["s"] for x in v)[len(v) // 2], sorted(x["mem"] for x in v)[len(v) // 2]) for h, v in res.items()}
    (to, mo), (tb, mb) = med["ours"], med["baseline"]
    print(f"float32 tensor of {n:,} elements ({args.mib} MiB)")
    print(f"baseline (whole-tensor float64): {tb * 1000:8.0f} ms  +{mb / 2**20:7.1f} MiB peak")
    print(f"modeltui tensor_stats (chunked): {to * 1000:8.0f} ms  +{mo / 2**20:7.1f} MiB peak")
    print(f"ratio time {to / tb:.2f}   ratio extra memory {mo / max(mb, 1):.2f}")


if __name__ == "__main__":
    main()
