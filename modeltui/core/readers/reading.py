"""Read a tensor's values in bounded memory, from memory or (when unedited) from its file.

Statistics and the values pane never copy a whole tensor:

- dimensions of stride 0 (``torch.zeros(1).expand(10**9)``) are narrowed to
  one element and counted ``repeat`` times (:func:`narrow_repeats`);
- :func:`chunks` yields the elements as 1-D chunks of at most ``chunk``
  elements (order unspecified), copying only non-contiguous blocks;
- a tensor whose bytes come from a mapped checkpoint file that nobody edited
  is read with ``pread`` (:mod:`modeltui.core.readers.filewatch`), after checking that
  the file has not changed; one that was edited is read from memory after
  the same check.
"""

from __future__ import annotations

from typing import Callable, Iterator

from modeltui.core.readers import filewatch

WINDOW_BLOCK = 1 << 18  # elements per block when a file-backed tensor has gaps (index arrays cost 24 B/element)


def narrow_repeats(t):
    """``(t narrowed to one element along every stride-0 dimension, how many times each element repeats)``."""
    repeat = 1
    for d, (size, stride) in enumerate(zip(t.shape, t.stride())):
        if stride == 0 and size > 1:
            t = t.narrow(d, 0, 1)
            repeat *= size
    return t, repeat


def is_dense(t) -> bool:
    """True when ``t``'s elements fill ``numel`` consecutive storage slots exactly (any order)."""
    dims = sorted((stride, size) for size, stride in zip(t.shape, t.stride()) if size != 1)
    expected = 1
    for stride, size in dims:
        if stride != expected:
            return False
        expected *= size
    return True


def _blocks(shape: tuple[int, ...], limit: int) -> Iterator[tuple]:
    """Index tuples cutting a tensor of ``shape`` into blocks of at most ``limit`` elements."""
    if not shape:
        yield ()
        return
    inner = 1
    for s in shape[1:]:
        inner *= s
    if inner <= limit:
        rows = max(1, limit // max(inner, 1))
        for i in range(0, shape[0], rows):
            yield (slice(i, min(i + rows, shape[0])),)
        return
    for i in range(shape[0]):
        for rest in _blocks(shape[1:], limit):
            yield (i,) + rest


def source_location(t):
    """:func:`filewatch.check_tensor` for a plain strided CPU tensor (checks its file), else None."""
    import torch

    if t.layout != torch.strided or t.is_quantized:
        return None
    return filewatch.check_tensor(t)


def chunks(t, chunk: int, *, reuse: bool = False) -> Callable[[], Iterator]:
    """A function returning a fresh iterator over ``t``'s elements in 1-D chunks (call it once per pass).

    ``t`` must be strided and free of stride-0 dimensions (see
    :func:`narrow_repeats`); a quantized tensor comes out dequantized. Its file, if it has one, is checked on every
    call; unedited file-backed tensors are read with ``pread`` (with ``reuse``, into one buffer: a chunk is then
    valid only until the next one is asked for).
    """
    n = t.numel()

    def located():
        loc = source_location(t)
        return loc if loc is not None and loc.clean else None

    if is_dense(t) and not t.is_quantized:
        def dense():
            loc = located()
            flat = t.as_strided((n,), (1,)) if n else t.reshape(-1)
            buf = None
            if reuse and loc is not None and n:
                import torch

                buf = torch.empty(min(chunk, n) * t.element_size(), dtype=torch.uint8)
            for start in range(0, n, chunk):
                count = min(chunk, n - start)
                yield filewatch.read_span(loc, t, start, count, buf) if loc is not None else flat[start:start + count]
        return dense

    def blocked():
        loc = located()
        limit = min(chunk, WINDOW_BLOCK) if loc is not None else chunk
        for idx in _blocks(tuple(t.shape), limit):
            block = t[idx]
            if block.is_quantized:
                yield block.dequantize().reshape(-1)
            elif loc is not None:
                yield filewatch.read_window(filewatch.locate(block), block).reshape(-1)
            else:
                yield block.reshape(-1)
    return blocked


def window(t):
    """A small tensor's values as a fresh copy, read safely: ``pread`` when it is an unedited file view."""
    loc = source_location(t)
    if loc is not None and loc.clean:
        return filewatch.read_window(loc, t)
    return t


def ordered_chunks(t, chunk: int, *, reuse: bool = False) -> Iterator:
    """``t``'s elements as 1-D chunks of at most ``chunk`` elements, in row-major (logical) order.

    Unlike :func:`chunks` (storage order, faster for statistics) the order is
    the same for any layout, so two tensors of one shape can be read side by
    side (:func:`paired`). Stride-0 dimensions are expanded block by block
    (bounded). A quantized tensor comes out dequantized. Unedited
    file-backed tensors are read with ``pread`` after checking their file.
    """
    n = t.numel()
    if n == 0:
        return
    loc = source_location(t)
    loc = loc if loc is not None and loc.clean else None
    if t.is_contiguous() and not t.is_quantized:
        flat = t.reshape(-1)
        buf = None
        if reuse and loc is not None:
            import torch

            buf = torch.empty(min(chunk, n) * t.element_size(), dtype=torch.uint8)
        for start in range(0, n, chunk):
            count = min(chunk, n - start)
            yield filewatch.read_span(loc, t, start, count, buf) if loc is not None else flat[start:start + count]
        return
    limit = min(chunk, WINDOW_BLOCK) if loc is not None else chunk
    for idx in _blocks(tuple(t.shape), limit):
        block = t[idx]
        if block.is_quantized:
            yield block.dequantize().reshape(-1)
        elif loc is not None:
            yield filewatch.read_window(filewatch.locate(block), block).reshape(-1)
        else:
            yield block.reshape(-1)


def paired(a, b, chunk: int, *, reuse: bool = False) -> Iterator[tuple]:
    """Aligned 1-D pieces ``(pa, pb)`` of two tensors of one shape, in row-major order.

    The two sides may be laid out differently (their chunks are cut at
    different places): pieces are re-cut so that ``pa[i]`` and ``pb[i]`` are
    the same element. At most about two chunks per side are in memory;
    with ``reuse`` a piece is valid only until the next is asked for.
    """
    ia, ib = ordered_chunks(a, chunk, reuse=reuse), ordered_chunks(b, chunk, reuse=reuse)
    ca = cb = None
    while True:
        if ca is None or ca.numel() == 0:
            ca = next(ia, None)
        if cb is None or cb.numel() == 0:
            cb = next(ib, None)
        if ca is None or cb is None:
            return
        k = min(ca.numel(), cb.numel())
        yield ca[:k], cb[:k]
        ca, cb = ca[k:], cb[k:]
