"""Read and validate a safetensors header with only ``json`` and ``struct``.

Listing a safetensors file must cost about what reading its header costs, and
must not import torch, so this module stands alone.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass

from modeltui.core.errors import CheckpointError

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


def read_header(path: str | os.PathLike) -> tuple[list[HeaderEntry], dict[str, str]]:
    """Return the tensors and the ``__metadata__`` of a safetensors file.

    Reads only the header; checks every rule of the format so a malformed
    file gets one clear error instead of a crash later.
    """
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
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"{name}: safetensors header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{name}: safetensors header is not a JSON object")
    data_size = size - 8 - n
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise CheckpointError(f"{name}: safetensors __metadata__ must map strings to strings")
    entries: list[HeaderEntry] = []
    append = entries.append
    dtypes = DTYPES
    # A tight loop: this runs once per tensor and listing must cost about
    # what the JSON parse costs. _entry() explains anything that fails here.
    for key, spec in header.items():
        try:
            dtype, itemsize = dtypes[spec["dtype"]]
            shape = spec["shape"]
            b, e = spec["data_offsets"]
            numel = 1
            for d in shape:
                if d.__class__ is not int or d < 0:
                    raise ValueError
                numel *= d
            if b.__class__ is not int or e.__class__ is not int or not 0 <= b <= e <= data_size or e - b != int(numel * itemsize):
                raise ValueError
            append(HeaderEntry(key, dtype, tuple(shape), b, e))
        except Exception:
            append(_entry(name, key, spec, data_size))
    spans = sorted((e.begin, e.end, e.name) for e in entries if e.end > e.begin)
    prev_end, prev_name = 0, ""
    for b, e, n in spans:
        if b < prev_end:
            raise CheckpointError(f"{name}: tensors '{prev_name}' and '{n}' overlap in the data section")
        prev_end, prev_name = e, n
    return entries, dict(metadata)


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
