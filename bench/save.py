"""Benchmark: modeltui's safe save against the plain library calls.

    python bench/save.py [--mib 512] [--tensors 300] [--repeat 3]

Saves the same state_dict (float32 tensors, plus one tied pair) with
``save_state_dict`` (temp file, fsync, read-back verification of every value,
os.replace, folder fsync) and with ``safetensors.torch.save_file`` /
``torch.save`` (no fsync, no check), interleaved, in the same folder, and
prints the ratio of the medians per format (target <= 1.3). Each run starts
after ``os.sync()`` so writeback left by one run does not slow the next.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=512)
    ap.add_argument("--tensors", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dir", default=None, help="folder to write in (default: a temp folder)")
    args = ap.parse_args()

    import torch
    from safetensors.torch import save_file

    from modeltui.core.saving import _dedupe, save_state_dict

    torch.manual_seed(0)
    per = args.mib * 2**20 // 4 // args.tensors
    sd = {f"layers.{i}.weight": torch.randn(per) for i in range(args.tensors)}
    sd["head.weight"] = sd["layers.0.weight"]  # a tied pair, stored once by both
    kept, _ = _dedupe(sd)
    folder = tempfile.mkdtemp(dir=args.dir)
    print(f"state_dict: {len(sd)} tensors, {args.mib} MiB, folder {folder}")

    def timed(fn) -> float:
        os.sync()  # start each run with no dirty pages left by the previous one
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    results = {}
    for fmt in (".safetensors", ".pt"):
        ours, base = [], []
        path_ours = os.path.join(folder, "ours" + fmt)
        path_base = os.path.join(folder, "base" + fmt)
        if fmt == ".safetensors":
            baseline = lambda: save_file(kept, path_base, metadata={"format": "pt"})  # noqa: E731
        else:
            baseline = lambda: torch.save(sd, path_base)  # noqa: E731
        def baseline_fsync():
            baseline()
            fd = os.open(path_base, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)

        timed(baseline)  # warm up (allocator, page cache)
        timed(lambda: save_state_dict(sd, path_ours))
        synced = []
        for _ in range(args.repeat):
            base.append(timed(baseline))
            ours.append(timed(lambda: save_state_dict(sd, path_ours)))
            synced.append(timed(baseline_fsync))
        mb, mo, ms = statistics.median(base), statistics.median(ours), statistics.median(synced)
        results[fmt] = mo / mb
        name = "save_file" if fmt == ".safetensors" else "torch.save"
        print(f"{fmt:13} {name} {mb * 1000:6.0f} ms (+fsync {ms * 1000:6.0f} ms)   modeltui {mo * 1000:6.0f} ms"
              f"   ratio {mo / mb:.2f} (target <= 1.3); vs {name}+fsync {mo / ms:.2f}")
    for f in os.listdir(folder):
        os.remove(os.path.join(folder, f))
    os.rmdir(folder)


if __name__ == "__main__":
    main()
