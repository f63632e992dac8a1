"""Where thread workers run: daemon threads that quitting never waits for."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

WORKER_THREAD = "modeltui-worker"


class DaemonThreadExecutor(ThreadPoolExecutor):
    """Runs each job on its own daemon thread and never waits for them on shutdown.

    Textual's thread workers go through the event loop's default executor,
    whose shutdown (and Python's exit) joins every thread: ``q`` during a
    40-second load would hang for 40 seconds. Torch calls cannot be
    interrupted, so quitting abandons them instead; a save cut short this way
    leaves the old file whole, like any other interrupted save.
    """

    def __init__(self) -> None:
        super().__init__(max_workers=1)

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as e:  # handed to the awaiting worker
                future.set_exception(e)

        threading.Thread(target=run, name=WORKER_THREAD, daemon=True).start()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        pass


def abandoned_work() -> bool:
    """True when worker threads are still running (their results are no longer wanted)."""
    return any(t.name == WORKER_THREAD and t.is_alive() for t in threading.enumerate())


def peak_rss() -> int:
    """Peak resident memory of this process in bytes (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
