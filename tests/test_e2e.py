"""End to end: the installed ``modeltui`` command in a real terminal (tmux)."""

import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")


def modeltui_command() -> str:
    exe = os.path.join(os.path.dirname(sys.executable), "modeltui")
    return exe if os.path.exists(exe) else f"{sys.executable} -m modeltui"


class Terminal:
    def __init__(self, command: str, width=100, height=30):
        self.name = f"mt-{uuid.uuid4().hex[:8]}"
        self.done = os.path.join("/tmp", self.name + ".rc")
        subprocess.run(
            ["tmux", "new-session", "-d", "-s", self.name, "-x", str(width), "-y", str(height),
             f"cd {ROOT} && {command}; echo $? > {self.done}; sleep 60"],
            check=True,
        )

    def screen(self) -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", self.name], capture_output=True, text=True).stdout

    def wait_for(self, text: str, timeout=60.0) -> str:
        end = time.time() + timeout
        while time.time() < end:
            s = self.screen()
            if text in s:
                return s
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared; screen:\n{self.screen()}")

    def wait_gone(self, text: str, timeout=60.0) -> str:
        end = time.time() + timeout
        while time.time() < end:
            s = self.screen()
            if text not in s:
                return s
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never went away; screen:\n{self.screen()}")

    def keys(self, *keys: str) -> None:
        for k in keys:
            subprocess.run(["tmux", "send-keys", "-t", self.name, k], check=True)
            time.sleep(0.25)

    def exit_code(self, timeout=30.0):
        end = time.time() + timeout
        while time.time() < end:
            if os.path.exists(self.done):
                return int(open(self.done).read().strip())
            time.sleep(0.2)
        return None

    def close(self):
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)
        if os.path.exists(self.done):
            os.remove(self.done)


def test_browse_demo_in_a_real_terminal():
    term = Terminal(modeltui_command())
    try:
        term.wait_for("DemoNet")
        term.wait_for("encoder")
        term.keys("/")
        term.keys(*"head.weight")
        term.keys("Enter")
        term.wait_for("tied with embed.weight")
        screen = term.wait_for("   zeros ")  # the statistics arrived from their worker (a row label no tree shows)
        assert "computing" not in screen and "     std " in screen and "    mean " in screen
        term.keys("?")
        term.wait_for("modeltui keys")
        term.keys("Escape")
        # an escape and a key read together are one alt+key: wait for the help to close first
        term.wait_gone("modeltui keys")
        term.keys("q")
        assert term.exit_code() == 0
    finally:
        term.close()


def test_bad_target_in_terminal_exits_2_with_one_line(tmp_path):
    r = subprocess.run([*modeltui_command().split(), "no/such/file.pt"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["modeltui: error: no/such/file.pt: no such file or folder"]


def test_quit_does_not_wait_for_a_long_load(tmp_path):
    (tmp_path / "slow_model.py").write_text("import time, torch\n\ndef make():\n    time.sleep(120)\n    return torch.nn.Linear(2, 2)\n")
    t = Terminal(f"cd {tmp_path} && {modeltui_command()} slow_model.py:make")
    try:
        t.wait_for("opening")
        time.sleep(1)
        start = time.time()
        t.keys("q")
        code = t.exit_code(timeout=20)
        assert code == 0, t.screen()
        assert time.time() - start < 15
    finally:
        t.close()


def test_compare_in_a_real_terminal(tmp_path):
    """c, a path, enter: the tree marks the changed module; the tensor's figures are on the screen."""
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    sd = {"enc.weight": torch.randn(4, 4, generator=g), "dec.weight": torch.randn(4, 4, generator=g)}
    save_file(sd, str(tmp_path / "a.safetensors"))
    sd["dec.weight"][1, 2] += 3.0
    save_file(sd, str(tmp_path / "b.safetensors"))
    term = Terminal(f"{modeltui_command()} {tmp_path / 'a.safetensors'}", width=160, height=40)
    try:
        term.wait_for("enc")
        term.keys("c")
        term.wait_for("Compare with another checkpoint")
        term.keys("C-u")
        subprocess.run(["tmux", "send-keys", "-t", term.name, "-l", str(tmp_path / "b.safetensors")], check=True)
        time.sleep(0.3)
        term.keys("Enter")
        screen = term.wait_for("~ dec")
        assert "= enc" in screen and "~ (root)" in screen
        term.keys("Down", "Right", "Down")
        screen = term.wait_for("1 of 16 differ")
        assert "at [1, 2]" in " ".join(line.strip(" │") for line in screen.splitlines()), screen
        term.keys("q")
        assert term.exit_code() == 0
    finally:
        term.close()
