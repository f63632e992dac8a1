"""Benchmark: showing a slice of a big safetensors tensor.

    python bench/values.py [--mib 1024]

Writes one ``--mib`` float32 tensor to a safetensors file, then in fresh
processes times opening it and showing ``[0, :10]`` (what the values pane
does on select) two ways: modeltui's source (a copy-on-write view of the
mapped file) and ``safetensors.safe_open(...).get_tensor`` (a copy of the
whole tensor, what modeltui used before). Prints time and peak-RSS growth
and their ratios (ours / safe_open).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import json, sys, time
def hwm():
    for l in open('/proc/self/status'):
        if l.startswith('VmHWM'): return int(l.split()[1]) * 1024
import torch
from safetensors import safe_open
from modeltui.core import open_target
from modeltui.core.preview import value_grid
path, how = sys.argv[1], sys.argv[2]
value_grid(torch.zeros(2, 2), "[0, :1]")  # warm the code paths
if how == "ours":
    o = open_target(path)
base = hwm()
t0 = time.perf_counter()
if how == "ours":
    t = o.tensor("emb.weight")
else:
    t = safe_open(path, framework="pt").get_tensor("emb.weight")
g = value_grid(t, "[0, :10]")
from modeltui.core.stats import tensor_stats
st = tensor_stats(t) if len(sys.argv) > 3 else None
print(json.dumps({"s": time.perf_counter() - t0, "rss": hwm() - base}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--stats", action="store_true", help="also compute the statistics pane (reads every value)")
    args = ap.parse_args()
    import torch
    from safetensors.torch import save_file

    folder = tempfile.mkdtemp()
    path = os.path.join(folder, "big.safetensors")
    cols = 4096
    rows = args.mib * 2**20 // 4 // cols
    save_file({"emb.weight": torch.randn(rows, cols)}, path)
    print(f"one float32 tensor [{rows}, {cols}] ({args.mib} MiB)")
    res = {"ours": [], "safe_open": []}
    for _ in range(args.repeat):
        for how in res:
            r = subprocess.run([sys.executable, "-c", CHILD, path, how] + (["stats"] if args.stats else []),
                               capture_output=True, text=True, cwd=ROOT, check=True)
            res[how].append(json.loads(r.stdout.strip().splitlines()[-1]))
    med = {h: (sorted(x["s"] for x in v)[len(v) // 2], sorted(x["rss"] for x in v)[len(v) // 2]) for h, v in res.items()}
    (to, ro), (tb, rb) = med["ours"], med["safe_open"]
    print(f"safe_open get_tensor: {tb * 1000:7.1f} ms  +{rb / 2**20:7.1f} MiB RSS")
    print(f"modeltui source:      {to * 1000:7.1f} ms  +{ro / 2**20:7.1f} MiB RSS")
    print(f"ratio time {to / tb:.3f}   ratio RSS {ro / max(rb, 1):.3f}")
    os.remove(path)
    os.rmdir(folder)


if __name__ == "__main__":
    main()
