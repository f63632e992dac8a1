"""Benchmark: a frontier-size checkpoint (~95k tensors, 160 shards) opens in about the time of parsing its headers.

    python bench/frontier.py [--dir DIR] [--repeat 3] [--layers 64] [--experts 256]

Writes the synthetic DeepSeek-V3-shaped checkpoint of ``sample_models/frontier.py``
(sparse files: real headers, holes for data), then prints, each against a
baseline measured in this same run:

- first paint of ``modeltui DIR`` (in a pseudo-terminal) / a plain Python
  process that imports textual and ``json``-parses every shard's header -- target <= 1.5
- ``modeltui DIR --json`` / the same parse plus a ``json.dumps`` of the listing -- target <= 2
- peak RSS of ``modeltui DIR`` at first paint / the plain parse's -- target <= 2
- listing the 4,200-tensor file of ``bench/open_checkpoint.py`` (written sparse
  here, same header) / reading its header alone -- target <= 1.5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from open_checkpoint import header_only, timeit  # noqa: E402
from tui import run_in_pty  # noqa: E402

#: the plain process: import textual, parse every header with json (and, with DUMP, json.dumps a listing)
BASELINE = r"""
import json, os, struct, sys, time
import textual.app
folder, dump, log = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
headers = []
for n in sorted(os.listdir(folder)):
    if n.endswith(".safetensors"):
        with open(os.path.join(folder, n), "rb") as f:
            (k,) = struct.unpack("<Q", f.read(8))
            headers.append(json.loads(f.read(k)))
if dump:
    out = [{"name": k, "shape": v["shape"], "dtype": v["dtype"]} for h in headers for k, v in h.items() if k != "__metadata__"]
    sys.stdout.write(json.dumps({"tensors": out}))
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        open(log, "w").write(f"{time.time()}\n{int(line.split()[1]) * 1024}\n")
"""


def _env() -> dict:
    return dict(os.environ, TERM="xterm-256color", COLUMNS="120", LINES="36", PYTHONPATH=ROOT)


def baseline(folder: str, dump: bool) -> tuple[float, int]:
    """(seconds from start to the end of the parse, peak RSS) of the plain process."""
    log = tempfile.mktemp()
    start = time.time()
    subprocess.run([sys.executable, "-c", BASELINE, folder, "1" if dump else "0", log], check=True,
                   stdout=subprocess.DEVNULL, env=_env())
    with open(log) as f:
        done, rss = float(f.readline()), int(f.readline())
    os.remove(log)
    return done - start, rss


def first_paint(folder: str) -> tuple[float, int]:
    """(seconds to the first paint of ``modeltui folder``, peak RSS at that paint)."""
    log = tempfile.mktemp()
    env = dict(_env(), MODELTUI_PAINT_LOG=log, MODELTUI_EXIT_AFTER_PAINT="1")
    start = time.time()
    run_in_pty([sys.executable, "-m", "modeltui", folder], env)
    with open(log) as f:
        painted = float(f.readline())
        f.readline()
        rss = int(f.readline())
    os.remove(log)
    return painted - start, rss


def json_time(folder: str) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "modeltui", folder, "--json"], check=True, stdout=subprocess.DEVNULL, env=_env())
    return time.perf_counter() - t


def write_4200(folder: str, n: int = 4200, size_gb: float = 2.1) -> str:
    """bench/open_checkpoint.py's safetensors file, as a sparse file with the same header."""
    from sample_models.frontier import write_shard

    per = int(size_gb * (1 << 30) / n / 4)
    names = ["q", "k", "v", "o", "up", "down", "gate", "norm"]
    entries = sorted((f"layers.{i // 8}.block.{names[i % 8]}.weight", "F32", (per,)) for i in range(n))
    path = os.path.join(folder, "big.safetensors")
    write_shard(path, entries)
    return path


def med(fn, repeat: int) -> tuple[float, int]:
    runs = [fn() for _ in range(repeat)]
    return statistics.median(r[0] for r in runs), max(r[1] for r in runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=None, help="folder for the checkpoint (kept); default a temp folder")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--layers", type=int, default=64)
    ap.add_argument("--experts", type=int, default=256)
    args = ap.parse_args()
    from sample_models.frontier import write_frontier

    tmp = None
    folder = args.dir
    if folder is None:
        tmp = tempfile.TemporaryDirectory()
        folder = tmp.name
    ck = os.path.join(folder, "frontier")
    t0 = time.perf_counter()
    fr = write_frontier(ck, layers=args.layers, experts=args.experts)
    print(f"checkpoint: {fr.tensors:,} tensors, {fr.params / 1e9:.0f}B parameters, {fr.nbytes / 2**30:.0f} GiB "
          f"in {len(fr.shards)} sparse shards (written in {time.perf_counter() - t0:.1f} s)")

    baseline(ck, False)  # warm the page cache and the imports
    first_paint(ck)
    base_t, base_rss = med(lambda: baseline(ck, False), args.repeat)
    ours_t, ours_rss = med(lambda: first_paint(ck), args.repeat)
    print(f"first paint of modeltui DIR: {ours_t:.2f} s vs import textual + parse every header {base_t:.2f} s "
          f"-> ratio {ours_t / base_t:.2f} (target <= 1.5)")
    print(f"peak RSS at first paint: {ours_rss / 2**20:.0f} MiB vs the plain parse {base_rss / 2**20:.0f} MiB "
          f"-> ratio {ours_rss / base_rss:.2f} (target <= 2)")
    dump_t, _ = med(lambda: baseline(ck, True), args.repeat)
    js = statistics.median(json_time(ck) for _ in range(args.repeat))
    print(f"modeltui DIR --json: {js:.2f} s vs parse + json.dumps of the listing {dump_t:.2f} s "
          f"-> ratio {js / dump_t:.2f} (target <= 2)")

    from modeltui.core.readers import open_checkpoint
    from modeltui.ui.widgets.search import find

    info, _, source = open_checkpoint(ck)
    names = list(info.tensors.keys())
    queries = ["experts.255.down", "q_b_proj.weight_scale", "layers.63.mlp.gate", "nothing-matches", "norm"]
    find(info, queries[0])  # the first search walks the tree once
    ours = statistics.median(timeit(lambda q=q: find(info, q), 3) for q in queries)
    base = statistics.median(timeit(lambda q=q: [n for n in names if q in n.lower()], 3) for q in queries)
    print(f"search over {len(names):,} names: {ours * 1e3:.0f} ms per query vs a list comprehension over the names "
          f"{base * 1e3:.0f} ms -> ratio {ours / base:.2f} (target < 100 ms)")
    source.close()

    st = write_4200(folder)
    header_only(st)
    open_checkpoint(st)
    base = timeit(lambda: header_only(st), 7)
    ours = timeit(lambda: open_checkpoint(st), 7)
    print(f"listing the 4,200-tensor file: {ours * 1e3:.1f} ms vs header alone {base * 1e3:.1f} ms "
          f"-> ratio {ours / base:.2f} (target <= 1.5)")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
