"""Benchmark: ``--diff`` and ``--scan`` against the plain scripts people write, in the same run.

    python bench/compare.py [--gib 2] [--repeat 3] [--dir DIR] [--skip-strategies]

Writes two checkpoints of ``--gib`` GiB each (float32, shaped like a
transformer: embeddings, attention and MLP matrices, norms), as
``.safetensors`` and as ``.pt``; B is A fine-tuned (every matrix moved by a
little noise, the norms kept). Each measured run is a fresh process; the
files are read once first so every run reads from the page cache. Prints,
per format, the time and peak RSS of

- ``modeltui A --diff B --json`` against a plain script: ``load_file`` /
  ``torch.load`` of both files, then per tensor ``(a-b).abs().max()``, the
  norms and the cosine (targets: time ratio <= 1.0, peak RSS ratio <= 0.25);
- ``modeltui A --scan --json`` against a loop of ``isnan`` / ``isinf`` /
  ``aminmax`` / ``std`` over ``load_file`` (target: time ratio <= 1.0);

and, unless ``--skip-strategies``, the diff's engine on one thread with
torch's intra-op threads (pieces of 256K and of 4M elements), on a thread
per core (one intra-op thread each, the default), and on a process per core
(each opening both files, one intra-op thread each as under torchrun), to
choose the default. ``--only-strategies`` measures only those.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

BASE_DIFF = r"""
import sys, torch
a_path, b_path = sys.argv[1], sys.argv[2]
if a_path.endswith(".safetensors"):
    from safetensors.torch import load_file
    a, b = load_file(a_path), load_file(b_path)
else:
    a, b = torch.load(a_path, weights_only=True), torch.load(b_path, weights_only=True)
out = []
for k in a:
    x, y = a[k], b[k]
    d = x - y
    na, nb = x.norm(), y.norm()
    cos = torch.dot(x.reshape(-1), y.reshape(-1)) / (na * nb)
    out.append((k, float(d.abs().max()), float(d.norm() / na), float(cos)))
print(len(out))
"""

BASE_SCAN = r"""
import sys, torch
from safetensors.torch import load_file
sd = load_file(sys.argv[1])
out = []
for k, t in sd.items():
    lo, hi = torch.aminmax(t)
    out.append((k, bool(torch.isnan(t).any()), bool(torch.isinf(t).any()), float(lo), float(hi), float(t.std())))
print(len(out))
"""

def _diff_part(job):
    """One process's share of the pairs (the unit of work, as ranks will run it: one intra-op thread, as torchrun sets)."""
    import torch

    from modeltui.core import open_target
    from modeltui.core.compare import diff_names

    torch.set_num_threads(1)
    a_path, b_path, pairs = job
    return diff_names(open_target(a_path), open_target(b_path), pairs)


def strategy(a_path: str, b_path: str, how: str) -> None:
    """The diff engine on one thread with intra-op threads, on threads, or on processes (run in a child)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from modeltui.core import open_target
    from modeltui.core.compare import compare_opened, merge_diff, plan_diff
    from modeltui.core.workpool import default_workers

    import functools

    import modeltui.core.compare as compare

    n = default_workers()
    a, b = open_target(a_path), open_target(b_path)
    if how == "intra-op":
        report = compare_opened(a, b, workers=1)
    elif how == "intra-op-4M":  # pieces of 4M elements: more work per kernel for torch's own threads
        compare.diff_tensors = functools.partial(compare.diff_tensors, piece=1 << 22)
        report = compare_opened(a, b, workers=1)
    elif how == "threads":
        report = compare_opened(a, b, workers=n)
    else:
        plan = plan_diff(a.info, b.info)
        with ProcessPoolExecutor(n, mp_context=mp.get_context("spawn")) as pool:
            parts = list(pool.map(_diff_part, [(a_path, b_path, plan.pairs[k::n]) for k in range(n)]))
        report = merge_diff(plan, parts)
    assert len(report.diffs) == len(plan_diff(a.info, b.info).pairs)


def make_checkpoints(folder: str, gib: float) -> None:
    """A and B as .safetensors and .pt in ``folder``."""
    import torch
    from safetensors.torch import save_file

    d, ff = 1024, 4096
    layer_bytes = 4 * (4 * d * d + 2 * d * ff + 2 * d)
    embed = 8192 * d
    layers = max(1, int((gib * 2**30 - 4 * embed) // layer_bytes))
    g = torch.Generator().manual_seed(0)
    a: dict[str, torch.Tensor] = {"embed.weight": torch.randn(8192, d, generator=g)}
    for i in range(layers):
        p = f"layers.{i}."
        for n in ("q", "k", "v", "o"):
            a[p + f"attn.{n}.weight"] = torch.randn(d, d, generator=g) * 0.02
        a[p + "mlp.up.weight"] = torch.randn(ff, d, generator=g) * 0.02
        a[p + "mlp.down.weight"] = torch.randn(d, ff, generator=g) * 0.02
        a[p + "norm1.weight"] = torch.ones(d)
        a[p + "norm2.weight"] = torch.ones(d)
    paths = {k: os.path.join(folder, k) for k in ("a.safetensors", "b.safetensors", "a.pt", "b.pt")}
    save_file(a, paths["a.safetensors"])
    torch.save(a, paths["a.pt"])
    for k, v in a.items():
        if v.dim() == 2:
            v.add_(torch.randn(v.shape, generator=g) * 1e-3)  # fine-tuned: every matrix moved
    save_file(a, paths["b.safetensors"])
    torch.save(a, paths["b.pt"])
    total = sum(v.numel() * v.element_size() for v in a.values())
    print(f"checkpoints: {len(a)} tensors, {total / 2**30:.2f} GiB each, in {folder}", flush=True)


def timed(argv: list[str], ok=(0, 1)) -> tuple[float, int]:
    """Wall time and peak RSS (bytes) of one fresh process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode()
    proc.stderr.close()
    if proc.returncode not in ok:
        raise SystemExit(f"{argv[:4]} failed ({proc.returncode}): {err}")
    return wall, usage.ru_maxrss * 1024


def compare(label: str, ours: list[str], base: list[str], repeat: int) -> tuple[float, float]:
    ro, rb = [], []
    for _ in range(repeat):
        rb.append(timed(base))
        ro.append(timed(ours))
    to, tb = statistics.median(r[0] for r in ro), statistics.median(r[0] for r in rb)
    mo, mb = statistics.median(r[1] for r in ro), statistics.median(r[1] for r in rb)
    print(f"{label:28} plain {tb:6.2f} s {mb / 2**20:7.0f} MiB   modeltui {to:6.2f} s {mo / 2**20:7.0f} MiB"
          f"   time ratio {to / tb:.2f}   peak RSS ratio {mo / mb:.2f}")
    return to / tb, mo / mb


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=2.0, help="size of each checkpoint")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default=None, help="folder for the checkpoints (default: a temp folder)")
    ap.add_argument("--skip-strategies", action="store_true")
    ap.add_argument("--only-strategies", action="store_true", help="measure only the parallel strategies")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:  # the parts that run in fresh processes
        if args.child[0] == "make":
            make_checkpoints(args.child[1], float(args.child[2]))
        else:
            strategy(*args.child[1:])
        return
    folder = tempfile.mkdtemp(dir=args.dir, prefix="modeltui-bench-compare-")
    py = sys.executable
    try:
        # made in a child: a child's peak RSS starts from its parent's, so this process stays small
        subprocess.run([py, __file__, "--child", "make", folder, str(args.gib)], check=True)
        paths = {k: os.path.join(folder, k) for k in ("a.safetensors", "b.safetensors", "a.pt", "b.pt")}
        for p in paths.values():  # into the page cache: every run reads from memory
            with open(p, "rb") as f:
                while f.read(1 << 24):
                    pass
        cli = [py, "-m", "modeltui"]
        for fmt in (() if args.only_strategies else ("safetensors", "pt")):
            a, b = paths[f"a.{fmt}"], paths[f"b.{fmt}"]
            compare(f"--diff (.{fmt})", cli + [a, "--diff", b, "--json"], [py, "-c", BASE_DIFF, a, b], args.repeat)
        a = paths["a.safetensors"]
        if not args.only_strategies:
            compare("--scan (.safetensors)", cli + [a, "--scan", "--json"], [py, "-c", BASE_SCAN, a], args.repeat)
        if not args.skip_strategies:
            for how in ("intra-op", "intra-op-4M", "threads", "processes"):
                runs = [timed([py, __file__, "--child", "strategy", paths["a.safetensors"], paths["b.safetensors"], how], ok=(0,))
                        for _ in range(args.repeat)]
                print(f"diff engine, {how:10} {statistics.median(r[0] for r in runs):6.2f} s (whole process)"
                      f"  {statistics.median(r[1] for r in runs) / 2**20:7.0f} MiB")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
