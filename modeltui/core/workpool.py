"""Run a unit of work over many tensors on every core, with progress and cancelling.

Compare and scan split a checkpoint into items (tensor names, or pairs of
them); a unit of work turns a list of items into a list of plain per-item
results. :func:`run_items` runs it one item at a time on ``workers``
threads (torch releases the GIL in its kernels, and each thread then uses
one intra-op thread) or, with ``workers=1``, in the calling thread with
torch's own intra-op threads; ``bench/compare.py`` measures both. Results
come back in the order of the items, whatever order they finished in, so
the merge after it is deterministic (and the same when a later version
spreads the items over processes or ranks).
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable, Sequence

from modeltui.core.errors import Cancelled


def default_workers() -> int:
    """Threads for a headless run: one per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def run_items(
    items: Sequence[Any],
    work: Callable[[Any, Callable[[], bool]], Any],
    *,
    weights: Sequence[int] | None = None,
    workers: int = 1,
    should_stop: Callable[[], bool] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Any]:
    """``[work(item, stop) for item in items]``, on ``workers`` threads.

    ``stop()`` (poll it between chunks) turns true when ``should_stop``
    does, when another item failed, or when the caller was interrupted
    (Ctrl-C): the first error is raised and the other threads stop at their
    next chunk, leaving nothing running. ``progress(done, total)`` is called
    after each item with the sum of the ``weights`` (bytes) of the items
    done; it may be called from any of the threads, one call at a time.
    """
    n = len(items)
    sizes = list(weights) if weights is not None else [1] * n
    total = sum(sizes)
    halt = threading.Event()

    def stop() -> bool:
        return halt.is_set() or (should_stop is not None and should_stop())

    lock = threading.Lock()
    done = [0]

    def advance(i: int) -> None:
        with lock:
            done[0] += sizes[i]
            if progress is not None:
                progress(done[0], total)

    if workers <= 1 or n <= 1:
        out = []
        for i, item in enumerate(items):
            if stop():
                raise Cancelled()
            out.append(work(item, stop))
            advance(i)
        return out
    return _threaded(items, work, stop, halt, advance, min(workers, n))


def _threaded(items, work, stop, halt: threading.Event, advance, workers: int) -> list[Any]:
    import torch

    results: list[Any] = [None] * len(items)
    errors: list[BaseException] = []
    cursor = [0]  # the next item to take: threads take them in order
    take = threading.Lock()

    def worker() -> None:
        while not halt.is_set():
            with take:
                if cursor[0] >= len(items):
                    return
                i = cursor[0]
                cursor[0] += 1
            try:
                results[i] = work(items[i], stop)
                advance(i)
            except BaseException as e:  # the first error wins; the others stop at their next chunk
                with take:
                    errors.append(e)
                halt.set()
                return

    old = torch.get_num_threads()
    torch.set_num_threads(1)  # parallel over tensors: one intra-op thread each
    threads = [threading.Thread(target=worker, name=f"modeltui-work-{k}", daemon=True) for k in range(workers)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.1)  # wakes up for Ctrl-C
    except BaseException:
        halt.set()
        for t in threads:
            if t.ident is not None:  # the interrupt may land while the threads are being started
                t.join(5)
        raise
    finally:
        torch.set_num_threads(old)
    if errors:
        first = next((e for e in errors if not isinstance(e, Cancelled)), errors[0])
        raise first
    if stop():
        raise Cancelled()
    return results
