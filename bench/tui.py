"""Benchmark the TUI: time to first paint, peak RSS, keypress-to-paint.

    python bench/tui.py [--dir DIR] [--skip-paint] [--skip-keys]

1. Time to first paint (tree visible) of ``modeltui big.safetensors`` (2.1 GB,
   4,200 tensors) in a pseudo-terminal, relative to ``python -c "import torch"``
   measured in this same script. Target: ratio below 1.0. Also peak RSS of both.
2. Keypress-to-paint in a ~50,000-module mixture-of-experts model with a node
   of 1,024 children expanded, relative to the same keypresses on the small
   book chimera, both headless in this process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pty
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))


def run_in_pty(argv: list[str], env: dict) -> tuple[float, int]:
    """Start argv on a pty; return (seconds until it exits, ru_maxrss bytes).

    ru_maxrss of a forked child starts from the parent's RSS, so the peaks
    reported come from the children's own /proc/self/status (VmHWM) instead.
    """
    master, slave = pty.openpty()
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=ROOT, close_fds=True)
    os.close(slave)
    # drain the terminal output so the child never blocks on a full pty
    while True:
        try:
            if not os.read(master, 65536):
                break
        except OSError:
            break
    _, status, usage = os.wait4(p.pid, 0)
    elapsed = time.perf_counter() - t0
    os.close(master)
    return elapsed, usage.ru_maxrss * 1024


def first_paint(path: str, repeat: int) -> None:
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="120", LINES="36")
    base_t, base_rss = [], []
    hwm = tempfile.mktemp()
    code = ("import torch\n"
            "for line in open('/proc/self/status'):\n"
            "    if line.startswith('VmHWM:'): open(%r, 'w').write(str(int(line.split()[1]) * 1024))\n" % hwm)
    for _ in range(repeat):
        t, _ = run_in_pty([sys.executable, "-c", code], env)
        base_t.append(t)
        base_rss.append(int(open(hwm).read()))
    os.remove(hwm)
    ours_t, ours_rss = [], []
    torch_note = ""
    for _ in range(repeat):
        log = tempfile.mktemp()
        e = dict(env, MODELTUI_PAINT_LOG=log, MODELTUI_EXIT_AFTER_PAINT="1")
        start = time.time()
        run_in_pty([sys.executable, "-m", "modeltui", path], e)
        with open(log) as f:
            painted = float(f.readline().strip())
            torch_note = f.readline().strip()
            rss = int(f.readline().strip())
        os.remove(log)
        ours_t.append(painted - start)
        ours_rss.append(rss)
    b, o = statistics.median(base_t), statistics.median(ours_t)
    print(f"first paint of modeltui {os.path.basename(path)}: {o:.2f} s vs python -c 'import torch' {b:.2f} s "
          f"-> ratio {o / b:.2f} (target < 1.0)")
    print(f"at first paint: {torch_note}")
    print(f"peak RSS: modeltui {max(ours_rss) / 2**20:.0f} MiB vs import torch {max(base_rss) / 2**20:.0f} MiB "
          f"-> ratio {max(ours_rss) / max(base_rss):.2f}; file {os.path.getsize(path) / 2**30:.2f} GiB")


async def key_latency(target: str, expand: str | None, presses: int) -> float:
    from modeltui.core import open_target, parse_input_spec
    from modeltui.ui.app import ModelTuiApp
    from modeltui.ui.widgets import ModuleTree, NodeRef

    opened = open_target(target) if not target.endswith("chimera") else open_target(target, input_specs=[parse_input_spec("2,20")])
    app = ModelTuiApp(target, opened=opened)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        await app.workers.wait_for_complete()
        tree = app.query_one(ModuleTree)
        if expand:
            node = tree.reveal(NodeRef("module", expand))
            tree.fill(node)
            node.expand()
            await pilot.pause()
            tree.reveal(NodeRef("module", expand))
            await pilot.pause()
        times = []
        for i in range(presses):
            key = "down" if (i // 10) % 2 == 0 else "up"
            t = time.perf_counter()
            await pilot.press(key)
            await pilot.pause()
            times.append(time.perf_counter() - t)
        return statistics.median(times)


def keys(presses: int) -> None:
    from sample_models.zoo import MoE

    n = sum(1 for _ in MoE(layers=12, experts=1024).modules())
    small = asyncio.run(key_latency("sample_models.book:make_chimera", None, presses))
    big = asyncio.run(key_latency("sample_models.zoo:MoE", "layers.0.experts", presses))
    print(f"keypress-to-paint: {big * 1e3:.1f} ms in MoE ({n:,} modules, 1,024 children expanded) vs "
          f"{small * 1e3:.1f} ms in the book chimera -> ratio {big / small:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=None)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--presses", type=int, default=40)
    ap.add_argument("--skip-paint", action="store_true")
    ap.add_argument("--skip-keys", action="store_true")
    args = ap.parse_args()
    if not args.skip_paint:
        from open_checkpoint import write_files

        tmp = None
        folder = args.dir
        if folder is None:
            tmp = tempfile.TemporaryDirectory(dir=ROOT)
            folder = tmp.name
        os.makedirs(folder, exist_ok=True)
        st, _ = write_files(folder, 2.1, 4200)
        first_paint(st, args.repeat)
        if tmp is not None:
            tmp.cleanup()
    if not args.skip_keys:
        keys(args.presses)


if __name__ == "__main__":
    main()
