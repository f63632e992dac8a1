"""Headless runs and the user's code (issue 11 items 7, 8, 9, 15).

What the model's code prints (at import, while building, in ``forward``, to
fd 1) goes to stderr, never into ``--json``/``--summary``; a non-daemon
thread it starts cannot hold the process; Ctrl-C and SIGTERM end a run with
130 / 143 and one line, even when a finaliser swallowed the interrupt or a
library turned it into another error; a module with 200,000 tensors prints
a bounded, truthful summary.
"""

import json
import os
import signal
import struct
import subprocess
import sys
import time

import pytest

from modeltui.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_cli(*args, cwd=ROOT, timeout=60, **kw):
    return subprocess.run([sys.executable, "-m", "modeltui", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, **kw)


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    return tmp_path


# ------------------------------------------------------------ issue 11.8 / 11.15: user code in headless runs

CHATTY = """
import sys, threading, time
import torch
print("hello from import")

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 2)
    def forward(self, x):
        print("hello from forward")
        sys.stdout.flush()
        import os
        os.write(1, b"raw write to fd 1\\n")
        return self.fc(x)

def make():
    print("hello from build")
    return Net()

def with_thread():
    threading.Thread(target=time.sleep, args=(120,)).start()  # not a daemon
    return Net()
"""


def test_user_prints_go_to_stderr_not_into_json(user_dir):
    (user_dir / "chatty.py").write_text(CHATTY)
    r = run_cli("chatty.py:make", "-i", "2,4", "--json", cwd=user_dir)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["modules"][0]["type"] == "Net"
    for text in ("hello from import", "hello from build", "hello from forward", "raw write to fd 1"):
        assert text in r.stderr


def test_user_prints_do_not_reach_summary_in_process(user_dir, capsys):
    (user_dir / "chatty.py").write_text(CHATTY)
    assert main(["chatty.py:make", "-i", "2,4", "--summary"]) == 0
    out, err = capsys.readouterr()
    assert "hello" not in out and "hello from forward" in err
    assert out.startswith("modeltui chatty.py:make")


def test_non_daemon_thread_of_user_code_does_not_hold_json(user_dir):
    (user_dir / "chatty.py").write_text(CHATTY)
    t0 = time.monotonic()
    r = run_cli("chatty.py:with_thread", "--json", cwd=user_dir, timeout=90)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["kind"] == "module"
    assert time.monotonic() - t0 < 80  # the thread sleeps 120 s


# ------------------------------------------------------------ issue 11.7: signals

SLOW = """
import os, signal, sys, time
import torch

def slow():
    sys.stderr.write("ready\\n"); sys.stderr.flush()
    time.sleep(60)
    return torch.nn.Linear(2, 2)

class Bomb:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.5)  # Ctrl-C lands here, inside a finaliser, where Python swallows it

def swallowed():
    Bomb()
    time.sleep(2)
    print("still running after Ctrl-C", file=sys.stderr)
    return torch.nn.Linear(2, 2)

def converted():
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(2)
    except BaseException:  # as a C extension's import does: the interrupt comes out as another error
        raise ImportError("cannot load module more than once per process") from None
    return torch.nn.Linear(2, 2)
"""


def test_sigterm_ends_a_headless_run_with_one_line_and_143(user_dir):
    (user_dir / "slow.py").write_text(SLOW)
    p = subprocess.Popen([sys.executable, "-m", "modeltui", "slow.py:slow", "--json"], cwd=user_dir,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stderr.readline().strip() == "ready"
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    finally:
        p.kill()
    assert p.returncode == 143
    assert out == "" and err.strip() == "modeltui: terminated"


def test_ctrl_c_swallowed_by_a_finaliser_still_ends_the_run(user_dir):
    (user_dir / "slow.py").write_text(SLOW)
    r = run_cli("slow.py:swallowed", "--json", cwd=user_dir)
    assert r.returncode == 130, r.stderr
    assert r.stdout == ""
    assert r.stderr.strip() == "modeltui: interrupted"


def test_ctrl_c_that_a_library_turned_into_another_error_is_still_an_interrupt(user_dir):
    (user_dir / "slow.py").write_text(SLOW)
    r = run_cli("slow.py:converted", "--json", cwd=user_dir)
    assert r.returncode == 130 and r.stderr.strip() == "modeltui: interrupted"


# ------------------------------------------------------------ issue 11.9: many tensors in one module


def _many_tensors(path, n):
    header = {f"t{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(n)}
    raw = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)


def test_summary_of_200k_tensors_in_one_module_is_bounded_and_truthful(tmp_path, capsys):
    path = tmp_path / "many.safetensors"
    _many_tensors(path, 200_000)
    assert main([str(path), "--summary"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) < 100
    assert sum(1 for line in lines if line.lstrip().startswith(".t")) == 40
    assert "… 199,960 more tensors" in out
    assert "0 module(s) and 199,960 tensor(s) not shown" in out
