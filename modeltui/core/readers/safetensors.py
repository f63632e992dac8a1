"""Read and validate a safetensors header with only ``json`` and ``struct``.

Listing a safetensors file must cost about what reading its header costs, and
must not import torch, so this module stands alone.
"""

from __future__ import annotations

import json
import os
import struct
import threading
from dataclasses import dataclass
from typing import Any

from modeltui.core.errors import CheckpointError
from modeltui.core.readers.base import Listing, TensorSource
from modeltui.core.readers.filewatch import (
    FileChangedError, Region, WatchedFile, changed_message, register, stamp, unregister,
)
from modeltui.core.lazy_listing import lazy_info
from modeltui.core.structure import from_state_dict_entries

#: safetensors dtype code -> (torch dtype name, bytes per element; 0.5 for 4-bit)
DTYPES: dict[str, tuple[str, float]] = {
    "BOOL": ("bool", 1),
    "U8": ("uint8", 1),
    "I8": ("int8", 1),
    "F8_E5M2": ("float8_e5m2", 1),
    "F8_E4M3": ("float8_e4m3fn", 1),
    "F8_E5M2FNUZ": ("float8_e5m2fnuz", 1),
    "F8_E4M3FNUZ": ("float8_e4m3fnuz", 1),
    "F8_E8M0": ("float8_e8m0fnu", 1),
    "F8_E4M3FNUZ": ("float8_e4m3fnuz", 1),
    "F8_E5M2FNUZ": ("float8_e5m2fnuz", 1),
    "I16": ("int16", 2),
    "U16": ("uint16", 2),
    "F16": ("float16", 2),
    "BF16": ("bfloat16", 2),
    "I32": ("int32", 4),
    "U32": ("uint32", 4),
    "F32": ("float32", 4),
    "C64": ("complex64", 8),
    "I64": ("int64", 8),
    "U64": ("uint64", 8),
    "F64": ("float64", 8),
    "F4": ("float4_e2m1fn_x2", 0.5),
}

MAX_HEADER = 100_000_000  # the format's own limit


@dataclass(slots=True)
class HeaderEntry:
    """One tensor described by a safetensors header."""

    name: str
    dtype: str  # torch name, e.g. "float32"
    shape: tuple[int, ...]
    begin: int  # offsets relative to the start of the data section
    end: int


@dataclass(slots=True)
class RawHeader:
    """A validated safetensors header kept as parsed: no object per tensor (listing 100k tensors stays cheap)."""

    specs: dict[str, dict]  # name -> {"dtype": code, "shape": [...], "data_offsets": [b, e]}, file order
    numel: dict[str, int]
    metadata: dict[str, str]
    nbytes: int  # bytes of all the tensors' data
    codes: set[str]  # the dtype codes present


def read_header(path: str | os.PathLike) -> tuple[list[HeaderEntry], dict[str, str]]:
    """Return the tensors and the ``__metadata__`` of a safetensors file.

    Reads only the header; checks every rule of the format so a malformed
    file gets one clear error instead of a crash later.
    """
    raw = read_raw_header(path)
    return [HeaderEntry(k, DTYPES[v["dtype"]][0], tuple(v["shape"]), *v["data_offsets"]) for k, v in raw.specs.items()], raw.metadata


def read_raw_header(path: str | os.PathLike) -> RawHeader:
    """:func:`read_header` without building an entry per tensor: the parsed JSON, checked."""
    path = os.fspath(path)
    name = os.path.basename(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{name}: not a safetensors file (only {len(head)} bytes long)")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER:
                raise CheckpointError(
                    f"{name}: safetensors header claims {n:,} bytes (the format allows at most {MAX_HEADER:,})"
                )
            if n > size - 8:
                raise CheckpointError(
                    f"{name}: truncated safetensors file: header claims {n:,} bytes but the file has {size - 8:,} after the length"
                )
            raw = f.read(n)
    except OSError as e:
        raise CheckpointError(f"{name}: cannot read: {e.strerror or e}") from None
    return parse_header(raw, size - 8 - n, name)


def parse_header(raw: bytes, data_size: int, name: str) -> RawHeader:
    """Check and keep the JSON header ``raw`` of a file whose data section has ``data_size`` bytes.

    Any reader of the format (a local file, a ranged HTTP read) goes through here,
    so every file gets the same rules and the same messages.
    """
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"{name}: safetensors header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{name}: safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise CheckpointError(f"{name}: safetensors __metadata__ must map strings to strings")
    numels: dict[str, int] = {}
    codes: set[str] = set()
    dtypes = DTYPES
    nbytes = prev_end = 0
    ordered = True
    # A tight loop: this runs once per tensor and listing must cost about
    # what the JSON parse costs. _entry() explains anything that fails here.
    for key, spec in header.items():
        try:
            code = spec["dtype"]
            itemsize = dtypes[code][1]
            b, e = spec["data_offsets"]
            numel = 1
            for d in spec["shape"]:
                if d.__class__ is not int or d < 0:
                    raise ValueError
                numel *= d
            if b.__class__ is not int or e.__class__ is not int or not 0 <= b <= e <= data_size or e - b != int(numel * itemsize):
                raise ValueError
        except Exception:
            ent = _entry(name, key, spec, data_size)  # raises the reason
            code, b, e = spec["dtype"], ent.begin, ent.end
            numel = 1
            for d in ent.shape:
                numel *= d
        numels[key] = numel
        codes.add(code)
        nbytes += e - b
        if b < prev_end and e > b:
            ordered = False
        elif e > b:
            prev_end = e
    if not ordered:  # tensors written out of order: the full overlap check
        spans = sorted((s["data_offsets"][0], s["data_offsets"][1], k) for k, s in header.items())
        prev_end, prev_name = 0, ""
        for b, e, k in spans:
            if e == b:
                continue
            if b < prev_end:
                raise CheckpointError(f"{name}: tensors '{prev_name}' and '{k}' overlap in the data section")
            prev_end, prev_name = e, k
    return RawHeader(header, numels, dict(metadata), nbytes, codes)


def _entry(fname: str, key: str, spec: object, data_size: int) -> HeaderEntry:
    if not isinstance(spec, dict):
        raise CheckpointError(f"{fname}: header entry '{key}' is not an object")
    code = spec.get("dtype")
    if code not in DTYPES:
        raise CheckpointError(f"{fname}: tensor '{key}' has unknown dtype {code!r}")
    shape = spec.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise CheckpointError(f"{fname}: tensor '{key}' has an invalid shape {shape!r}")
    offs = spec.get("data_offsets")
    if (
        not isinstance(offs, list)
        or len(offs) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offs)
        or not 0 <= offs[0] <= offs[1]
    ):
        raise CheckpointError(f"{fname}: tensor '{key}' has invalid data_offsets {offs!r}")
    if offs[1] > data_size:
        raise CheckpointError(
            f"{fname}: tensor '{key}' ends at byte {offs[1]:,} of the data but the file holds only {data_size:,} (truncated?)"
        )
    dtype, itemsize = DTYPES[code]
    numel = 1
    for d in shape:
        numel *= d
    if offs[1] - offs[0] != int(numel * itemsize):
        raise CheckpointError(
            f"{fname}: tensor '{key}' of shape {shape} and dtype {dtype} needs {int(numel * itemsize):,} bytes but its offsets span {offs[1] - offs[0]:,}"
        )
    return HeaderEntry(key, dtype, tuple(shape), offs[0], offs[1])


# ---------------------------------------------------------------- listing and values


def read_safetensors(label: str, paths: list[str], expected: dict[str, str] | None = None) -> Listing:
    """List safetensors files (one model, possibly sharded) from their headers alone; ``expected``: an index's weight map.

    The parsed headers are kept as they are (:mod:`modeltui.core.lazy_listing`): tree nodes and tensor
    records are made when they are looked at. Files with deduplicated (tied) names take the eager path.
    """
    files: dict[str, str] = {}
    specs: dict[str, dict] = {}
    numel: dict[str, int] = {}
    aliases: dict[str, str] = {}
    metadata: dict[str, Any] = {}
    codes: set[str] = set()
    nbytes = 0
    for p in paths:
        raw = read_raw_header(p)
        before = len(specs)
        specs.update(raw.specs)
        if len(specs) != before + len(raw.specs):
            dup = next(k for k in raw.specs if k in files)
            raise CheckpointError(f"{os.path.basename(p)}: tensor '{dup}' also appears in {os.path.basename(files[dup])}")
        files.update(dict.fromkeys(raw.specs, p))
        numel.update(raw.numel)
        codes |= raw.codes
        nbytes += raw.nbytes
        for k, v in raw.metadata.items():
            # safetensors' save_model records a deduplicated name -> kept name
            if v in raw.specs and k not in raw.specs and k not in ("format",):
                aliases[k] = v
            else:
                metadata[k] = v
    warnings: list[str] = []
    if expected is not None and len(expected) != len(files) + len(aliases):
        missing = [k for k in expected if k not in files and k not in aliases]
        if missing:
            warnings.append(f"index names {len(missing)} tensor(s) missing from their shards, e.g. '{missing[0]}'")
    if aliases:
        entries = [(k, tuple(v["shape"]), DTYPES[v["dtype"]][0], "cpu") for k, v in specs.items()]
        info = from_state_dict_entries(label, entries, aliases=aliases, metadata=metadata, warnings=warnings, sort=True)
    else:
        info = lazy_info(label, specs, numel, _dtype_name, codes, nbytes, metadata=metadata, warnings=warnings)
    return Listing(info, None, SafetensorsSource(files, aliases))


def _dtype_name(code: str) -> str:
    return DTYPES[code][0]


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
        # workers call get() at once (statistics while a checkpoint is made editable, compare threads): a file
        # mapped twice would leave the first mapping's region registered after that mapping is gone, and a
        # later mapping at the same address would then be read from the wrong file
        self._lock = threading.RLock()

    def _file(self, path: str) -> WatchedFile:
        f = self._watched.get(path)
        if f is not None:
            return f
        with self._lock:
            return self._open_file(path)

    def _open_file(self, path: str) -> WatchedFile:
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
        if m is not None:
            return m
        with self._lock:
            return self._map(path)

    def _map(self, path: str):
        m = self._maps.get(path)
        if m is None:
            import mmap
            import struct

            import torch

            from modeltui.core.readers.safetensors import read_header

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
            from modeltui.core.readers.safetensors import read_header

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


