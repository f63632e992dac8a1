"""Where a checkpoint's tensor values come from: the :class:`TensorSource` family.

Every source can :meth:`~TensorSource.check` that the files behind it have
not changed since they were opened (values, statistics, editing and saving
call it first), and registers the address ranges it maps with
:mod:`modeltui.core.filewatch`, so the values and statistics of a tensor
nobody edited are read with ``pread`` instead of touching mapped pages.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from modeltui.core.errors import CheckpointError
from modeltui.core.filewatch import (
    FileChangedError, Region, WatchedFile, changed_message, mapped_regions, register, stamp, unregister,
)


class TensorSource:
    """Gives the values of a checkpoint's tensors on demand."""

    def get(self, name: str):  # -> torch.Tensor
        raise NotImplementedError

    def check(self) -> None:
        """Raise :class:`FileChangedError` if a file behind this source changed since it was opened.

        Cheap (one ``fstat`` per file): call it before reading values,
        statistics, making tensors editable or saving.
        """

    def close(self) -> None:
        pass


def _paths(path: str | list[str] | tuple[str, ...] | None) -> list[str]:
    if path is None:
        return []
    return [path] if isinstance(path, (str, os.PathLike)) else [os.fspath(p) for p in path]


class DictSource(TensorSource):
    """Tensors already loaded (memory-mapped by ``torch.load(mmap=True)`` for zip ``.pt`` files).

    ``path`` names the file (or the shard files) they came from. Each is kept
    open, so :meth:`check` sees a truncation or a rewrite in place, and the
    mappings torch made are registered so unedited values are read with
    ``pread``. A legacy (non-zip) file was read whole: nothing to watch.
    """

    def __init__(self, tensors: Mapping[str, Any], path: str | list[str] | tuple[str, ...] | None = None):
        self.tensors = tensors
        self.files: list[WatchedFile] = []
        self._regions: list[Region] = []
        for p in _paths(path):
            if not _is_zip(p):
                continue
            try:
                self.files.append(WatchedFile(p))
            except OSError:
                continue
        if self.files:
            addresses = _storage_addresses(tensors.values())
            for f in self.files:
                self._regions.extend(mapped_regions(f.path, f, addresses))
            register(self, self._regions)

    def get(self, name: str):
        return self.tensors[name]

    def check(self) -> None:
        for f in self.files:
            f.check()

    def close(self) -> None:
        unregister(self._regions)
        self._regions = []
        for f in self.files:
            f.close()


def _is_zip(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def _storage_addresses(tensors) -> list[int]:
    import torch

    out = set()
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.device.type == "cpu" and not t.is_sparse and not t.is_quantized:
            try:
                ptr = t.untyped_storage().data_ptr()
            except (RuntimeError, NotImplementedError):
                continue
            if ptr:
                out.add(ptr)
    return list(out)


class SafetensorsSource(TensorSource):
    """Tensors of safetensors files as copy-on-write views of the mapped files.

    Nothing is copied: reading the values of a 2 GB embedding touches only the
    pages it reads, and the pages stay reclaimable page cache. Writing to a
    view (editing) copies that page privately; the file never changes. A
    tensor that cannot be viewed (an unaligned offset, an exotic dtype) is read
    with ``pread`` (or safetensors itself for a dtype torch cannot view).

    The files' size and mtime are taken when the source is made (right after
    the headers were read); a file found different when it is first mapped,
    or at any :meth:`check`, raises :class:`FileChangedError`.
    """

    def __init__(self, files: dict[str, str], aliases: dict[str, str] | None = None):
        self.files = files  # tensor name -> path
        self.aliases = aliases or {}
        self._stamps = {}
        for p in set(files.values()):
            try:
                self._stamps[p] = stamp(p)
            except OSError:
                pass
        self._watched: dict[str, WatchedFile] = {}
        self._handles: dict[str, Any] = {}
        self._maps: dict[str, tuple[Any, dict[str, Any]]] = {}  # path -> (data bytes, entries by name)
        self._regions: list[Region] = []

    def _file(self, path: str) -> WatchedFile:
        f = self._watched.get(path)
        if f is None:
            try:
                f = WatchedFile(path, self._stamps.get(path))
            except FileNotFoundError:
                raise FileChangedError(changed_message(path)) from None
            self._watched[path] = f
        return f

    def _mapped(self, path: str):
        m = self._maps.get(path)
        if m is None:
            import mmap
            import struct

            import torch

            from modeltui.core.safetensors_header import read_header

            f = self._file(path)
            # the header of the very file the descriptor holds (a rename since cannot mix two files)
            by_fd = f"/proc/self/fd/{f.fd}"
            try:
                entries, _ = read_header(by_fd if os.path.exists(by_fd) else path)
            except CheckpointError:
                raise FileChangedError(changed_message(path)) from None  # it was valid when opened
            f.check()
            (n,) = struct.unpack("<Q", os.pread(f.fd, 8, 0))
            size = f.stamp.size
            data = None
            if size > 8 + n:
                mm = mmap.mmap(f.fd, 0, access=mmap.ACCESS_COPY)
                whole = torch.frombuffer(mm, dtype=torch.uint8)
                data = whole[8 + n:]
                region = Region(whole.data_ptr(), size, 0, f)
                self._regions.append(region)
                register(self, [region])
            m = (data, {e.name: e for e in entries})
            self._maps[path] = m
        return m

    def get(self, name: str):
        name = self.aliases.get(name, name)
        path = self.files[name]
        try:
            import torch

            data, entries = self._mapped(path)
            e = entries[name]
            dtype = getattr(torch, e.dtype)
            if e.end == e.begin:
                return torch.empty(e.shape, dtype=dtype)
            return data[e.begin:e.end].view(dtype).reshape(e.shape)
        except CheckpointError:
            raise
        except (RuntimeError, AttributeError, TypeError, KeyError, ValueError, OSError):
            return self._read(path, name)  # unaligned offset, exotic dtype, unmappable file

    def _read(self, path: str, name: str):
        """A copy of tensor ``name`` read with ``pread`` (safetensors itself for dtypes torch cannot view)."""
        import struct

        import torch

        f = self._file(path)
        f.check()
        try:
            from modeltui.core.safetensors_header import read_header

            entries = self._maps[path][1] if path in self._maps else {e.name: e for e in read_header(path)[0]}
            e = entries[name]
            dtype = getattr(torch, e.dtype)
            (n,) = struct.unpack("<Q", os.pread(f.fd, 8, 0))
            out = torch.empty(e.end - e.begin, dtype=torch.uint8)
            f.pread_into(out.data_ptr(), e.end - e.begin, 8 + n + e.begin)
            return out.view(dtype).reshape(e.shape)
        except CheckpointError:
            raise
        except (RuntimeError, AttributeError, TypeError, KeyError, ValueError, OSError, struct.error):
            pass
        h = self._handles.get(path)
        if h is None:
            from safetensors import safe_open

            try:
                h = safe_open(path, framework="pt", device="cpu")
            except Exception as e:
                raise CheckpointError(f"{os.path.basename(path)}: cannot read tensor data: {e}") from None
            self._handles[path] = h
        try:
            return h.get_tensor(name)
        except Exception as e:
            raise CheckpointError(f"{os.path.basename(path)}: cannot read '{name}': {e}") from None

    def check(self) -> None:
        for path, st in self._stamps.items():
            f = self._watched.get(path)
            if f is not None:
                f.check()
                continue
            try:
                now = stamp(path)
            except OSError:
                raise FileChangedError(changed_message(path)) from None
            if now != st:
                raise FileChangedError(changed_message(path))

    def close(self) -> None:
        unregister(self._regions)
        self._regions = []
        self._handles.clear()
        self._maps.clear()
        for f in self._watched.values():
            f.close()
        self._watched.clear()


__all__ = ["TensorSource", "DictSource", "SafetensorsSource", "FileChangedError"]
