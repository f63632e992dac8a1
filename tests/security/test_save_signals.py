"""Interrupted saves leave no temp files: Ctrl-C and SIGTERM clean up, and a
save after a kill removes what the killed one left (issue 11, item 7).

The child saves with ``MODELTUI_TEST_SAVE_PAUSE`` set: once the temp file is
written in full it reports its path and waits, so the signal lands at a
known point instead of after a guessed sleep.
"""

import fcntl
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch

from modeltui.core.save_temps import PAUSE_ENV, discard_unfinished_saves
from modeltui.core.saving import SaveError, save_state_dict

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
N = 2_000_000  # 8 MB: the temp file is big enough to matter, the test stays fast

# what the CLI's SIGTERM handler does: leave through SystemExit so cleanup runs
TERM_CHILD = """
import signal, sys
signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
from modeltui.core import open_target
from modeltui.core.saving import save_opened
save_opened(open_target(sys.argv[1]), sys.argv[2])
"""


@pytest.fixture
def paths(tmp_path):
    src = tmp_path / "src.safetensors"
    save_state_dict({"w": torch.ones(N)}, str(src))
    out = tmp_path / "out"
    out.mkdir()
    return src, out, tmp_path / "paused"


def start_paused(args, marker):
    env = {**os.environ, PAUSE_ENV: str(marker)}
    p = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (marker.exists() and marker.read_text()):
        assert p.poll() is None, p.communicate()
        assert time.monotonic() < deadline, "the save never reached its pause"
        time.sleep(0.02)
    tmp = marker.read_text()
    assert os.path.getsize(tmp) > N * 4  # the whole temp file is on disk
    return p, tmp


@pytest.mark.parametrize("ext", [".safetensors", ".pt"])
def test_ctrl_c_during_a_headless_save_removes_the_temp_file(paths, ext):
    src, out, marker = paths
    dest = out / f"model{ext}"
    save_state_dict({"w": torch.zeros(3)}, str(dest))
    before = dest.read_bytes()
    p, tmp = start_paused([sys.executable, "-m", "modeltui", str(src), "--save", str(dest)], marker)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and err == "modeltui: interrupted\n"
    assert not os.path.exists(tmp)
    assert os.listdir(out) == [dest.name] and dest.read_bytes() == before


def test_sigterm_turned_into_system_exit_removes_the_temp_file(paths):
    src, out, marker = paths
    dest = out / "model.safetensors"
    p, tmp = start_paused([sys.executable, "-c", TERM_CHILD, str(src), str(dest)], marker)
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=60)
    assert p.returncode == 143
    assert os.listdir(out) == []


def test_a_later_save_removes_what_a_killed_save_left(paths):
    src, out, marker = paths
    dest = out / "model.safetensors"
    p, tmp = start_paused([sys.executable, "-m", "modeltui", str(src), "--save", str(dest)], marker)
    p.send_signal(signal.SIGKILL)  # no cleanup can run: the process dies where it stands
    p.communicate(timeout=60)
    assert p.returncode == -signal.SIGKILL and os.path.exists(tmp)
    other = out / ".other.safetensors.abcdefgh.tmp"  # another destination's
    other.write_bytes(b"x")
    busy = out / ".model.safetensors.busy1234.tmp"  # a save still writing (it holds the lock)
    busy.write_bytes(b"x")
    newer = out / ".model.safetensors.newer123.tmp"  # younger than the process that saves next
    newer.write_bytes(b"x")
    os.utime(newer, (time.time() + 3600, time.time() + 3600))
    fd = os.open(busy, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        r = subprocess.run([sys.executable, "-m", "modeltui", str(src), "--save", str(dest)], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    finally:
        os.close(fd)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(out)) == sorted([dest.name, other.name, busy.name, newer.name])


def test_the_app_can_discard_a_save_it_abandons(tmp_path, monkeypatch):
    """Quitting the app under a running save (it leaves with os._exit) removes the temp file first."""
    marker = tmp_path / "paused"
    monkeypatch.setenv(PAUSE_ENV, str(marker))
    dest = tmp_path / "model.pt"
    errors = []

    def save():
        try:
            save_state_dict({"w": torch.ones(10)}, str(dest))
        except SaveError as e:
            errors.append(str(e))

    t = threading.Thread(target=save)
    t.start()
    deadline = time.monotonic() + 30
    while not (marker.exists() and marker.read_text()) and time.monotonic() < deadline:
        time.sleep(0.01)
    tmp = marker.read_text()
    assert discard_unfinished_saves() == [tmp]
    t.join(30)
    assert not t.is_alive() and errors and "nothing was written" in errors[0]
    assert sorted(os.listdir(tmp_path)) == ["paused"]
