"""Temp files of saves: the ones in progress, and the ones a killed save left.

A save writes ``.NAME.XXXXXXXX.tmp`` beside ``NAME`` and holds an advisory
lock on it while it writes. A process killed mid-save (SIGKILL, a SIGTERM
nobody handled, the app quitting under a save) leaves its temp file, full
size, but not the lock: the next save of ``NAME`` removes such files when
they are older than the process doing the removing.
"""

from __future__ import annotations

import os
import re
import stat
import time

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, stale temp files are left alone
    fcntl = None  # type: ignore[assignment]

#: set to a file path (tests only): the save writes its temp file's path there and waits to be interrupted
PAUSE_ENV = "MODELTUI_TEST_SAVE_PAUSE"

ACTIVE: set[str] = set()  # temp files of saves in progress in this process
_IMPORTED = time.time()


def lock(fd: int) -> None:
    """Mark a temp file as being written (the lock goes with the last descriptor, or the process)."""
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def pause_for_tests(tmp: str) -> None:
    """Tests only (``MODELTUI_TEST_SAVE_PAUSE``): the data is written; say so and wait to be interrupted."""
    marker = os.environ.get(PAUSE_ENV)
    if not marker:
        return
    with open(marker, "w") as f:
        f.write(tmp)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and os.path.exists(tmp):  # gone: discard_unfinished_saves() ran
        time.sleep(0.02)


_TEMP = re.compile(r"\.(?P<base>.+)\.[A-Za-z0-9_]{8}\.tmp\Z", re.S)


def _process_start() -> float:
    """When this process started (wall clock); module import time where /proc cannot say.

    From its start in clock ticks since boot and the uptime (both to 10 ms;
    ``btime`` in /proc/stat is whole seconds, too coarse for this).
    """
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return _IMPORTED


def remove_stale_temps(dest: str) -> list[str]:
    """Remove temp files a killed save of ``dest`` left (``.NAME.XXXXXXXX.tmp`` beside it); return their paths.

    Only files older than this process, owned by this user and not locked
    (a save in progress holds a lock on its temp file until it ends).
    """
    if fcntl is None:
        return []
    folder, base = os.path.split(dest)
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    started = _process_start()
    removed = []
    for n in names:
        m = _TEMP.match(n)
        if not m or m.group("base") != base:
            continue
        p = os.path.join(folder, n)
        if p in ACTIVE:
            continue
        try:
            st = os.lstat(p)
            if not stat.S_ISREG(st.st_mode) or st.st_mtime >= started or st.st_uid != os.getuid():
                continue
            fd = os.open(p, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # another process is writing it
        try:
            os.remove(p)
            removed.append(p)
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def discard_unfinished_saves() -> list[str]:
    """Remove the temp files of saves still running in this process (call before ``os._exit``)."""
    gone = []
    for p in list(ACTIVE):
        try:
            os.remove(p)
            gone.append(p)
        except OSError:
            pass
    return gone
