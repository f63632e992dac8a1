"""Benchmark: headless key surgery into Hugging Face's sharded layout against the plain script people write.

    python bench/convert.py [--gib 2] [--repeat 2] [--dir DIR]

Writes a DistributedDataParallel-style ``.pt`` of about ``--gib`` GiB (float32,
every key under ``module.``, LayerNorm weights among big matrices), then runs,
alternately and each in a fresh process:

- modeltui: ``modeltui big.pt --strip-prefix module. --cast bfloat16
  --keep-dtype '*norm*' --save out/ --max-shard-size 500MB`` (streamed,
  every shard fsynced, read back and compared bit for bit, index last);
- the baseline: ``torch.load(mmap=True)``, a dict comprehension with
  ``.to(torch.bfloat16)``, ``huggingface_hub.save_torch_state_dict(...,
  max_shard_size="500MB")`` (no fsync, no check);

and prints the ratio of their median wall times (target <= 1.0) and of their
peak RSS (target <= 0.5), with both outputs compared tensor by tensor. The
file is read once before, so both start from the page cache; ``os.sync()``
runs before each run so writeback left by one does not slow the next.
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

BASELINE = r"""
import sys, torch
from huggingface_hub import save_torch_state_dict
src, out = sys.argv[1], sys.argv[2]
sd = torch.load(src, mmap=True, weights_only=True, map_location="cpu")
sd = {k.removeprefix("module."): (v if "norm" in k else v.to(torch.bfloat16)) for k, v in sd.items()}
import os
os.makedirs(out, exist_ok=True)
save_torch_state_dict(sd, out, max_shard_size="500MB")
"""


def make_checkpoint(path: str, gib: float) -> None:
    import torch

    torch.manual_seed(0)
    d = 2048
    per_layer = 4 * d * d * 4  # four d x d float32 matrices
    layers = max(1, int(gib * 2**30 // per_layer))
    sd = {}
    for i in range(layers):
        p = f"module.layers.{i}."
        for name in ("attn.q", "attn.k", "attn.v", "mlp.up"):
            sd[p + name + ".weight"] = torch.randn(d, d)
        sd[p + "norm.weight"] = torch.ones(d)
        sd[p + "norm.bias"] = torch.zeros(d)
    sd["module.final_norm.weight"] = torch.ones(d)
    torch.save(sd, path)


def run(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of a child process."""
    os.sync()
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    err = p.stderr.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd[:3])}… failed: {err.strip()}")
    return wall, usage.ru_maxrss * 1024


def same_outputs(a: str, b: str) -> int:
    """Compare two sharded folders tensor by tensor; returns the number of tensors."""
    import torch

    from modeltui.core import open_target

    oa, ob = open_target(a), open_target(b)
    assert set(oa.info.tensors) == set(ob.info.tensors), "the two outputs hold different keys"
    for n in oa.info.tensors:
        ta, tb = oa.tensor(n), ob.tensor(n)
        assert ta.dtype == tb.dtype and torch.equal(ta, tb), f"'{n}' differs between the outputs"
    return len(oa.info.tensors)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=2.0)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--dir", default=None, help="folder to work in (default: a temp folder)")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench-convert-", dir=args.dir)
    try:
        src = os.path.join(work, "big.pt")
        t0 = time.perf_counter()
        # in a child: a process's peak RSS passes on to the children it starts (Linux keeps it across exec),
        # so this one must stay small until the runs are done
        subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); "
                        f"import convert; convert.make_checkpoint({src!r}, {args.gib})"], check=True, cwd=ROOT)
        print(f"checkpoint: {os.path.getsize(src) / 2**30:.2f} GiB in {time.perf_counter() - t0:.0f} s ({src})")
        with open(src, "rb") as f:  # into the page cache, for both
            while f.read(1 << 24):
                pass
        ours_out, base_out = os.path.join(work, "ours") + "/", os.path.join(work, "base") + "/"
        ours_cmd = [sys.executable, "-m", "modeltui", src, "--strip-prefix", "module.", "--cast", "bfloat16",
                    "--keep-dtype", "*norm*", "--save", ours_out, "--max-shard-size", "500MB"]
        base_cmd = [sys.executable, "-c", BASELINE, src, base_out]
        ours, base = [], []
        for i in range(args.repeat):
            for name, cmd, out, acc in (("modeltui", ours_cmd, ours_out, ours), ("baseline", base_cmd, base_out, base))[::1 if i % 2 == 0 else -1]:
                shutil.rmtree(out, ignore_errors=True)
                wall, rss = run(cmd)
                acc.append((wall, rss))
                print(f"  {name:9s} run {i + 1}: {wall:6.2f} s, peak RSS {rss / 2**20:7.0f} MiB")
        n = same_outputs(ours_out, base_out)
        t_ours, t_base = statistics.median(w for w, _ in ours), statistics.median(w for w, _ in base)
        r_ours, r_base = max(r for _, r in ours), max(r for _, r in base)
        print(f"outputs identical: {n} tensors, {sorted(os.listdir(ours_out))}")
        print(f"time: modeltui {t_ours:.2f} s vs baseline {t_base:.2f} s -> ratio {t_ours / t_base:.2f} (target <= 1.0)")
        print(f"peak RSS: modeltui {r_ours / 2**20:.0f} MiB vs baseline {r_base / 2**20:.0f} MiB -> ratio {r_ours / r_base:.2f} (target <= 0.5)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    main()
