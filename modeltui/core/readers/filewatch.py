"""Files that may change underneath an open checkpoint, and reads that survive it.

A checkpoint's tensors are views of the mapped file (``.safetensors`` mapped
copy-on-write by :class:`~modeltui.core.sources.SafetensorsSource`, zip
``.pt`` mapped by ``torch.load(mmap=True)``). When another process truncates
that file (``torch.save`` to the same path truncates first), touching a
mapped page past the new end kills the process with SIGBUS. So:

- every file behind a source is a :class:`WatchedFile`: an open descriptor
  plus its size and mtime when opened; :meth:`WatchedFile.check` raises
  :class:`FileChangedError` when either moved;
- the address ranges of the mappings are registered here (:func:`register`),
  so :func:`locate` can tell, for any tensor, whether its bytes come from a
  mapped file and where in that file they lie;
- values and statistics of a tensor that was never written (:func:`mark_written`)
  are read with ``os.pread`` from the descriptor (:func:`read_window`,
  :func:`read_span`): a file that shrank gives a short read and a clear
  error, never a signal.

Nothing here imports torch at module level.
"""

from __future__ import annotations

import bisect
import ctypes
import os
import threading
import weakref
from dataclasses import dataclass, field

from modeltui.core.errors import CheckpointError
from modeltui.format import visible


class FileChangedError(CheckpointError):
    """A file behind the open checkpoint changed on disk since it was opened."""


def changed_message(path: str) -> str:
    """The one line shown when ``path`` changed under the open checkpoint."""
    return (f"{visible(os.path.basename(path))}: the file changed on disk since it was opened (rewritten or truncated "
            "by another program); reopen it to see its new contents")


@dataclass(frozen=True, slots=True)
class Stamp:
    """What identifies a file's contents cheaply: size, modification time, inode."""

    size: int
    mtime_ns: int
    ino: int
    dev: int

    @classmethod
    def of(cls, st: os.stat_result) -> "Stamp":
        return cls(st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)


def stamp(path: str) -> Stamp:
    """The :class:`Stamp` of ``path`` now."""
    return Stamp.of(os.stat(path))


class WatchedFile:
    """An open, read-only file whose size and mtime are checked before every use.

    The descriptor pins the inode that was opened: a file replaced by a rename
    (an atomic save, modeltui's own included) keeps the old contents readable
    and is not a change; a file truncated or rewritten in place is.
    """

    def __init__(self, path: str, expect: Stamp | None = None):
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            self.stamp = Stamp.of(os.fstat(self.fd))
        except OSError:
            os.close(self.fd)
            raise
        if expect is not None and expect != self.stamp:
            os.close(self.fd)
            self.fd = -1
            raise FileChangedError(changed_message(path))

    def check(self) -> None:
        """Raise :class:`FileChangedError` if the file was truncated or rewritten since it was opened."""
        if self.fd < 0:
            return
        st = os.fstat(self.fd)
        if st.st_size != self.stamp.size or st.st_mtime_ns != self.stamp.mtime_ns:
            raise FileChangedError(changed_message(self.path))

    def pread_into(self, address: int, nbytes: int, offset: int) -> None:
        """Read ``nbytes`` at file ``offset`` into memory at ``address`` (memory we own).

        A short read means the file shrank: :class:`FileChangedError`.
        """
        done = 0
        while done < nbytes:
            n = min(nbytes - done, 1 << 30)
            buf = (ctypes.c_char * n).from_address(address + done)
            try:
                got = os.preadv(self.fd, [buf], offset + done)
            except OSError as e:
                raise CheckpointError(f"{visible(os.path.basename(self.path))}: cannot read tensor data ({e.strerror or e})") from None
            if got <= 0:
                self.check()
                raise FileChangedError(changed_message(self.path))
            done += got

    def close(self) -> None:
        if self.fd >= 0:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = -1

    def __del__(self) -> None:
        self.close()


# ---------------------------------------------------------------- mapped regions


@dataclass(eq=False)
class Region:
    """Addresses ``[start, start + length)`` hold bytes ``[offset, offset + length)`` of ``file``."""

    start: int
    length: int
    offset: int
    file: WatchedFile
    # file byte ranges written through this mapping (edits live in private copy-on-write pages)
    written: list[tuple[int, int]] = field(default_factory=list)

    def is_written(self, lo: int, hi: int) -> bool:
        return any(a < hi and lo < b for a, b in self.written)


_lock = threading.Lock()
_starts: list[int] = []
_regions: list[Region] = []


def register(owner: object, regions: list[Region]) -> None:
    """Register mapped ``regions``; they are dropped by :func:`unregister` or when ``owner`` dies."""
    if not regions:
        return
    with _lock:
        for r in regions:
            i = bisect.bisect_left(_starts, r.start)
            _starts.insert(i, r.start)
            _regions.insert(i, r)
    weakref.finalize(owner, unregister, list(regions))


def unregister(regions: list[Region]) -> None:
    """Forget ``regions`` (their mapping is about to go away)."""
    with _lock:
        for r in regions:
            for i, other in enumerate(_regions):
                if other is r:
                    del _regions[i]
                    del _starts[i]
                    break


def _region_at(address: int) -> Region | None:
    i = bisect.bisect_right(_starts, address) - 1
    if i < 0:
        return None
    r = _regions[i]
    return r if address < r.start + r.length else None


@dataclass(frozen=True, slots=True)
class Location:
    """Where a tensor's bytes lie in a file: ``offset`` is the file offset of its element 0."""

    region: Region
    offset: int
    clean: bool  # never written through the mapping: the file holds its values

    @property
    def file(self) -> WatchedFile:
        return self.region.file


def _span(t) -> tuple[int, int]:
    """Byte offsets (from element 0) of the first and one past the last byte ``t`` touches."""
    lo = hi = 0
    for size, stride in zip(t.shape, t.stride()):
        if size == 0:
            return 0, 0
        step = (size - 1) * stride
        if step < 0:
            lo += step
        else:
            hi += step
    item = t.element_size()
    return lo * item, (hi + 1) * item


def locate(t) -> Location | None:
    """Where the bytes of CPU tensor ``t`` lie in a mapped checkpoint file, or None."""
    if not _regions:
        return None
    try:
        if t.device.type != "cpu" or t.is_sparse or t.is_quantized or t.numel() == 0:
            return None
        address = t.data_ptr()
    except (RuntimeError, NotImplementedError, AttributeError):
        return None
    with _lock:
        r = _region_at(address)
        if r is None:
            return None
        offset = r.offset + (address - r.start)
        lo, hi = _span(t)
        if address + hi > r.start + r.length:
            return None
        return Location(r, offset, not r.is_written(offset + lo, offset + hi))


def mark_written(t) -> None:
    """Record that ``t``'s bytes are about to be written through the mapping (an edit)."""
    loc = locate(t)
    if loc is None:
        return
    lo, hi = _span(t)
    with _lock:
        loc.region.written.append((loc.offset + lo, loc.offset + hi))


def check_tensor(t) -> Location | None:
    """:func:`locate` ``t`` and, when it comes from a mapped file, check that file first."""
    loc = locate(t)
    if loc is not None:
        loc.file.check()
    return loc


# ---------------------------------------------------------------- reading with pread

_GAP = 1 << 16  # bytes of unwanted data worth reading to save a system call


def read_span(loc: Location, t, start: int, count: int, out=None):
    """Elements ``[start, start + count)`` of contiguous ``t`` (a fresh 1-D tensor), read with pread.

    ``out``: a uint8 buffer of at least that many bytes to read into instead (reused by streaming passes).
    """
    import torch

    item = t.element_size()
    out = torch.empty(count * item, dtype=torch.uint8) if out is None else out[:count * item]
    if count:
        loc.file.pread_into(out.data_ptr(), count * item, loc.offset + start * item)
    return out.view(t.dtype)


def read_window(loc: Location, t):
    """A fresh contiguous tensor equal to ``t`` (a strided view of a mapped file), read with pread.

    A window whose bytes lie close together is read in one call; otherwise
    row by row (or, for rows with gaps, element by element), so the pages
    between the rows of a wide tensor are never read.
    """
    import torch

    item = t.element_size()
    out = torch.empty(tuple(t.shape), dtype=t.dtype)
    n = t.numel()
    if n == 0:
        return out
    _, hi = _span(t)
    if t.is_contiguous():  # one read, straight into the result
        loc.file.pread_into(out.data_ptr(), hi, loc.offset)
        return out
    if hi <= 4 * n * item + _GAP:
        buf = torch.empty(hi, dtype=torch.uint8)
        loc.file.pread_into(buf.data_ptr(), hi, loc.offset)
        return buf.view(t.dtype).as_strided(tuple(t.shape), tuple(t.stride()), 0).clone()
    shape, stride = tuple(t.shape), tuple(t.stride())
    if stride[-1] == 1 or shape[-1] == 1:
        # rows are contiguous in the file: each goes straight into its place in ``out``
        row = shape[-1] * item
        lead = shape[:-1]
        index = [0] * len(lead)
        for k in range(n // shape[-1]):
            offset = sum(i * st for i, st in zip(index, stride)) * item
            loc.file.pread_into(out.data_ptr() + k * row, row, loc.offset + offset)
            for d in range(len(lead) - 1, -1, -1):
                index[d] += 1
                if index[d] < lead[d]:
                    break
                index[d] = 0
        return out
    for i in range(shape[0]):
        sub = t[i]
        out[i] = read_window(Location(loc.region, loc.offset + i * stride[0] * item, loc.clean), sub)
    return out


# ---------------------------------------------------------------- finding torch's mappings


def mapped_regions(path: str, file: WatchedFile, addresses: list[int]) -> list[Region]:
    """The mappings of ``path`` (as ``/proc/self/maps`` lists them) that hold any of ``addresses``.

    Used for zip ``.pt`` files, which ``torch.load(mmap=True)`` maps itself.
    Returns [] where ``/proc/self/maps`` does not exist (not Linux): such
    tensors are then guarded by :meth:`WatchedFile.check` alone.
    """
    if not addresses:
        return []
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    real = os.path.realpath(path)
    st = file.stamp
    found: list[Region] = []
    wanted = sorted(set(addresses))
    for line in lines:
        parts = line.split(None, 5)
        if len(parts) < 6:
            continue
        name = parts[5].removesuffix(" (deleted)")
        try:
            ino = int(parts[4])
            major, minor = (int(x, 16) for x in parts[3].split(":"))
        except ValueError:
            continue
        same_inode = ino == st.ino and (major, minor) == (os.major(st.dev), os.minor(st.dev))
        if not same_inode and name != real:
            continue
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        i = bisect.bisect_left(wanted, lo)
        if i < len(wanted) and wanted[i] < hi:
            found.append(Region(lo, hi - lo, int(parts[2], 16), file))
    return found
