"""Benchmark: listing a big checkpoint costs about what reading its header costs.

    python bench/open_checkpoint.py [--size-gb 2.1] [--tensors 4200] [--dir DIR]

Writes a checkpoint of at least 2 GB with thousands of tensors as
``.safetensors`` and ``.pt`` (zip), then prints, each as a ratio against a
baseline run in this same script:

- safetensors: time of modeltui's listing / time of reading the header alone
  (open, 8-byte length, JSON parse) -- target <= 1.5
- .pt: time of modeltui's listing / ``torch.load(mmap=True, weights_only=True)``
  -- target <= 1.5
- peak RSS growth of a child process that lists the file, relative to the
  file size (child minus an identical child that only imports) -- target <= 5%
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def write_files(folder: str, size_gb: float, n: int) -> tuple[str, str]:
    import torch
    from safetensors.torch import save_file

    per = int(size_gb * (1 << 30) / n / 4)
    st = os.path.join(folder, "big.safetensors")
    pt = os.path.join(folder, "big.pt")
    if os.path.exists(st) and os.path.exists(pt):
        return st, pt
    tensors = {}
    for i in range(n):
        tensors[f"layers.{i // 8}.block.{['q', 'k', 'v', 'o', 'up', 'down', 'gate', 'norm'][i % 8]}.weight"] = torch.full((per,), float(i))
    save_file(tensors, st)
    torch.save(tensors, pt)
    return st, pt


def header_only(path: str) -> int:
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return len(json.loads(f.read(n)))


def timeit(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


CHILD = r"""
import sys, gc
sys.path.insert(0, {root!r})
import torch
from modeltui.core.readers import open_checkpoint
gc.collect()
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
before = status("VmRSS:")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to the current RSS
if {do_open}:
    info, m, src = open_checkpoint({path!r})
    assert len(info.tensors) > 1000
print(status("VmHWM:") - before)
"""


def peak_rss(path: str, do_open: bool) -> int:
    code = CHILD.format(root=ROOT, path=path, do_open=do_open)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-gb", type=float, default=2.1)
    ap.add_argument("--tensors", type=int, default=4200)
    ap.add_argument("--dir", default=None, help="folder for the files (kept); default a temp folder (removed)")
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()

    import torch

    from modeltui.core.readers import open_checkpoint

    tmp = None
    folder = args.dir
    if folder is None:
        tmp = tempfile.TemporaryDirectory(dir=ROOT)
        folder = tmp.name
    os.makedirs(folder, exist_ok=True)
    t0 = time.perf_counter()
    st, pt = write_files(folder, args.size_gb, args.tensors)
    print(f"files: {os.path.getsize(st) / 2**30:.2f} GiB safetensors, {os.path.getsize(pt) / 2**30:.2f} GiB .pt, "
          f"{args.tensors} tensors (written in {time.perf_counter() - t0:.1f} s)")

    # warm the page cache for the headers and the code paths
    header_only(st)
    open_checkpoint(st)
    torch.load(pt, mmap=True, weights_only=True)
    open_checkpoint(pt)

    base_st = timeit(lambda: header_only(st), args.repeat)
    ours_st = timeit(lambda: open_checkpoint(st), args.repeat)
    base_pt = timeit(lambda: torch.load(pt, mmap=True, weights_only=True, map_location="cpu"), args.repeat)
    ours_pt = timeit(lambda: open_checkpoint(pt), args.repeat)
    print(f"safetensors listing: {ours_st * 1e3:.1f} ms vs header alone {base_st * 1e3:.1f} ms -> ratio {ours_st / base_st:.2f} (target <= 1.5)")
    print(f".pt listing:         {ours_pt * 1e3:.1f} ms vs torch.load(mmap) {base_pt * 1e3:.1f} ms -> ratio {ours_pt / base_pt:.2f} (target <= 1.5)")

    for path in (st, pt):
        base = peak_rss(path, False)  # growth of a child that opens nothing
        ours = peak_rss(path, True)
        size = os.path.getsize(path)
        print(f"peak RSS growth listing {os.path.basename(path)}: {(ours - base) / 2**20:.1f} MiB = {100 * (ours - base) / size:.2f}% of the file (target <= 5%)")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
