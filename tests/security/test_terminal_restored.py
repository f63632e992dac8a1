"""A signal ends the app through its own exit, so the terminal is restored (issue 11 item 3).

SIGTERM (``kill``, ``timeout``) and SIGHUP used to kill the TUI where it
stood, leaving the terminal in the alternate screen with mouse tracking on;
SIGINT ended it with exit code 0. The app runs here in a pseudo-terminal;
after the signal its output must switch the alternate screen and the mouse
off again, and the exit code is 128 + the signal's number, with one line.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _read_all(fd: int, until, timeout: float) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not until(out):
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
    return out


@pytest.mark.parametrize("signum,code,line", [(signal.SIGTERM, 143, b"modeltui: terminated"),
                                               (signal.SIGHUP, 129, b"modeltui: terminated"),
                                               (signal.SIGINT, 130, b"modeltui: interrupted")])
def test_a_signal_restores_the_terminal_and_says_so(tmp_path, signum, code, line):
    painted = tmp_path / "painted"
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    env = {**os.environ, "MODELTUI_PAINT_LOG": str(painted), "TERM": "xterm-256color"}
    p = subprocess.Popen([sys.executable, "-m", "modeltui", "sample_models.book:make_param_net"], cwd=ROOT, env=env,
                         stdin=slave, stdout=slave, stderr=slave, close_fds=True, start_new_session=True)
    os.close(slave)
    try:
        out = _read_all(master, lambda _: painted.exists(), 120)
        assert painted.exists(), out[-2000:]
        assert b"\x1b[?1049h" in out and b"\x1b[?1000h" in out  # the app took the terminal
        p.send_signal(signum)
        out += _read_all(master, lambda _: p.poll() is not None, 60)
        p.wait(30)
        out += _read_all(master, lambda _: False, 1)
    finally:
        if p.poll() is None:
            p.kill()
        os.close(master)
    assert p.returncode == code, out[-2000:]
    tail = out[out.rindex(b"\x1b[?1049h"):]
    assert b"\x1b[?1049l" in tail and b"\x1b[?1000l" in tail, tail[-500:]  # alternate screen and mouse off again
    assert line in tail
