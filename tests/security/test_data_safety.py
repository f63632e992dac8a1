"""Saving never loses data: kill -9 at random moments, full disks, failing writes.

After every interruption the destination is the complete old file or the
complete new one, and leftover temp files never stand in for a checkpoint.
"""

import errno
import hashlib
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from modeltui.core import open_target
from modeltui.core.saving import SaveError, save_state_dict

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The child imports everything first, says READY, then saves A and B over the
# destination in turn until it is killed: the kill lands inside a save.
CHILD = """
import sys, torch
from modeltui.core.saving import save_state_dict
dest, n = sys.argv[1], int(sys.argv[2])
states = [{"w": torch.full((n,), 1.0), "b": torch.arange(7), "t": None}, {"w": torch.full((n,), 2.0), "b": torch.arange(7) * 2, "t": None}]
for s in states:
    s["t"] = s["w"]  # a tied pair: stored once, comes back tied
print("READY", flush=True)
i = 0
while True:
    save_state_dict(states[i % 2], dest)
    i += 1
"""


def sha(p):
    return hashlib.sha256(open(p, "rb").read()).hexdigest()


@pytest.mark.parametrize("ext", [".safetensors", ".pt"])
def test_repeated_kill_9_leaves_old_or_new(tmp_path, ext, request):
    rounds = request.config.getoption("--kills") or 6
    dest = str(tmp_path / f"model{ext}")
    n = 3_000_000  # 12 MB per tensor: a save takes long enough to be hit in the middle
    rng = random.Random(1234)
    seen = {}
    for _ in range(rounds):
        p = subprocess.Popen([sys.executable, "-c", CHILD, dest, str(n)], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
        assert p.stdout.readline().strip() == "READY"
        time.sleep(rng.uniform(0.05, 1.5))
        p.send_signal(signal.SIGKILL)
        p.wait()
        if not os.path.exists(dest):
            seen["none yet"] = seen.get("none yet", 0) + 1
            continue
        o = open_target(dest)  # complete and valid, or this raises
        w, b = o.tensor("w"), o.tensor("b")
        val = float(w[0])
        assert val in (1.0, 2.0)
        assert bool(torch.all(w == val)) and torch.equal(b, torch.arange(7) * int(val))
        assert o.info.tensors["t"].tied_with == ["w"]
        o.close()
        seen[val] = seen.get(val, 0) + 1
        # temp files (ours: .NAME.*.tmp; safetensors' own: .tmpXXXX) are hidden, never named like a checkpoint
        for f in os.listdir(tmp_path):
            assert f == os.path.basename(dest) or (f.startswith(".") and not f.endswith((".safetensors", ".pt"))), f
        folder = open_target(str(tmp_path))
        assert set(folder.info.tensors) == {"w", "b", "t"}
        folder.close()
    mid = len([f for f in os.listdir(tmp_path) if f.startswith(".")])
    print(f"\nkill -9 {ext}: {rounds} kills, outcomes {seen}, {mid} landed mid-save (temp file left)")
    assert sum(v for k, v in seen.items() if k != "none yet") >= rounds // 2


def test_full_disk_in_a_child_process_keeps_the_old_file(tmp_path):
    """A real failing write: the file size limit (ulimit -f) stops the write half way."""
    resource = pytest.importorskip("resource")
    dest = tmp_path / "model.safetensors"
    save_state_dict({"w": torch.zeros(10)}, str(dest))
    before = sha(dest)
    src = tmp_path / "src.pt"
    torch.save({"w": torch.ones(2_000_000)}, src)

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    r = subprocess.run([sys.executable, "-m", "modeltui", str(src), "--save", str(dest)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120, preexec_fn=limit)
    assert r.returncode == 2
    assert r.stderr.startswith("modeltui: error: saving model.safetensors failed") and "unchanged" in r.stderr
    assert r.stderr.count("\n") == 1
    assert sha(dest) == before
    assert sorted(os.listdir(tmp_path)) == ["model.safetensors", "src.pt"]


@pytest.mark.parametrize("where", ["write", "fsync", "verify", "replace"])
@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EDQUOT, errno.EIO])
def test_failures_at_every_step_keep_the_old_file(tmp_path, monkeypatch, where, err):
    import modeltui.core.save_atomic as saving  # the atomic write machinery (temp, fsync, replace)
    import modeltui.core.save_io as save_io

    dest = str(tmp_path / "m.pt")
    save_state_dict({"w": torch.zeros(5)}, dest)
    before = sha(dest)

    def boom(*a, **k):
        raise OSError(err, os.strerror(err))

    target = {"write": (torch, "save"), "fsync": (saving, "_fsync_file"), "verify": (save_io, "verify_torch"),
              "replace": (saving.os, "replace")}[where]
    monkeypatch.setattr(*target, boom)
    with pytest.raises(SaveError) as e:
        save_state_dict({"w": torch.ones(5)}, dest)
    monkeypatch.undo()
    msg = str(e.value)
    assert "m.pt is unchanged" in msg
    if err in (errno.ENOSPC, errno.EDQUOT):
        assert "is full" in msg
    assert sha(dest) == before
    assert os.listdir(tmp_path) == ["m.pt"]


def test_verification_catches_a_file_that_changed_under_us(tmp_path, monkeypatch):
    """If the bytes on disk are not what was meant (a bad disk, a racing writer), nothing is replaced."""
    import modeltui.core.save_atomic as saving

    dest = str(tmp_path / "m.safetensors")
    save_state_dict({"w": torch.zeros(5)}, dest)
    before = sha(dest)
    real = saving._fsync_file

    def corrupt_then_sync(path):
        with open(path, "r+b") as f:
            f.seek(-4, os.SEEK_END)
            f.write(b"\x00\x00\x80\x7f")  # the last float becomes inf
        real(path)

    monkeypatch.setattr(saving, "_fsync_file", corrupt_then_sync)
    monkeypatch.setattr(saving, "ThreadPoolExecutor", _InlinePool)
    with pytest.raises(SaveError, match="values of 'w' differ"):
        save_state_dict({"w": torch.ones(5)}, dest)
    assert sha(dest) == before


class _InlinePool:
    """Runs the fsync before the check (the test needs that order)."""

    def __init__(self, n):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False

    def submit(self, fn, *a):
        from concurrent.futures import Future

        f = Future()
        fn(*a)
        f.set_result(None)
        return f
