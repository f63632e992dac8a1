"""Writing a safetensors file, and reading a written file back to check it.

modeltui writes safetensors itself: ``safetensors.torch.save_file`` makes a
temp file of its own (``.tmpXXXXXX``) beside the destination and renames it
over the path it is given, so a save killed inside the library's write would
leave a full-size file modeltui cannot recognise. The layout is the
format's: 8 bytes of header length, a JSON header padded with spaces to a
multiple of 8, then the data, larger elements first so every tensor is
aligned to its element size. The library must still accept every file: the
check opens it with ``safe_open``.

The check compares everything written with what was meant: keys, shapes,
dtypes, layouts and every value bit for bit (sparse indices and values,
quantized integers, scales and zero points), and for a training checkpoint
every other entry (epoch, optimizer state, hyper-parameters) too.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from modeltui.core.errors import first_line
from modeltui.core.save_checks import SaveError, safetensors_code
from modeltui.core.tensors import same_bits
from modeltui.format import visible


def write_safetensors(f, kept: Mapping[str, Any], metadata: dict[str, str]) -> None:
    """Write ``kept`` (name -> tensor) with ``metadata`` to the open binary file ``f``."""
    items = [(name, t.dtype, tuple(t.shape)) for name, t in kept.items()]
    write_safetensors_streamed(f, items, metadata, kept.__getitem__)


def write_safetensors_streamed(f, items: list[tuple[str, Any, tuple]], metadata: dict[str, str],
                               fetch: Callable[[str], Any], check: Callable[[str, Any, int], None] | None = None,
                               ) -> list[tuple[str, Any]]:
    """Write tensors described by ``items`` (name, torch dtype, shape), fetching each only when its bytes go out.

    The header needs shapes and dtypes alone, so a caller can read (and
    cast) one tensor at a time. With ``check``, each tensor's bytes are
    handed to ``check(name, bytes, file offset)`` right after they are
    written and nothing is kept; otherwise returns ``(name, tensor written)``
    in file order, for the read-back check.
    """
    if sys.byteorder != "little":  # the format is little-endian; this writes native bytes
        raise SaveError("writing .safetensors needs a little-endian machine here: save as .pt")
    items = sorted(items, key=lambda it: (-it[1].itemsize, it[0]))
    header: dict[str, Any] = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for name, dtype, shape in items:
        numel = 1
        for d in shape:
            numel *= d
        n = numel * dtype.itemsize
        shape = list(shape)
        if str(dtype) == "torch.float4_e2m1fn_x2" and shape:
            shape[-1] *= 2  # safetensors counts 4-bit values, torch counts bytes holding two
        header[name] = {"dtype": safetensors_code(dtype), "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    f.write(struct.pack("<Q", len(raw)))
    f.write(raw)
    written = []
    offset = 8 + len(raw)
    with ThreadPoolExecutor(1) as ahead:  # the next tensor is read (and cast) while this one is written and checked
        coming = ahead.submit(fetch, items[0][0]) if items else None
        for i, (name, dtype, shape) in enumerate(items):
            t = coming.result()
            coming = ahead.submit(fetch, items[i + 1][0]) if i + 1 < len(items) else None
            try:
                offset = _write_one(f, name, dtype, shape, t, offset, check, written)
            except BaseException:
                if coming is not None:
                    coming.cancel()
                raise
            del t
    return written


def _write_one(f, name: str, dtype, shape, t, offset: int, check, written: list) -> int:
    """Write one tensor's bytes at ``offset`` (then ``check`` them); returns the offset after it."""
    import torch

    if t.dtype != dtype or tuple(t.shape) != tuple(shape):
        raise SaveError(f"'{visible(name, limit=200)}' changed while it was being saved")
    if check is None:
        written.append((name, t))
    if t.numel() == 0:
        return offset
    # one tensor at a time on the CPU: a GPU model is never copied whole
    t = t.detach().to("cpu").resolve_conj().resolve_neg().contiguous()
    data = t.reshape(-1).view(torch.uint8)
    f.write(data.numpy().data)
    if check is not None:
        check(name, data, offset)
    return offset + data.numel()


def read_back_check(f, fd: int) -> Callable[[str, Any, int], None]:
    """A ``check`` for :func:`write_safetensors_streamed`: read each tensor's bytes back from the file, compare bit for bit."""
    import torch

    from modeltui.core.tensors import _wide_bits

    def check(name: str, data, offset: int) -> None:
        f.flush()
        back = torch.empty(data.numel(), dtype=torch.uint8)
        view, done = memoryview(back.numpy()), 0
        while done < len(view):
            got = os.preadv(fd, [view[done:]], offset + done)
            if got <= 0:
                raise SaveError(f"verification failed: '{visible(name, limit=200)}' could not be read back")
            done += got
        if not torch.equal(*_wide_bits(back, data)):  # as 64-bit words: several times faster than bytes
            raise SaveError(f"verification failed: the values of '{visible(name, limit=200)}' differ after writing")

    return check


# ---------------------------------------------------------------- checking


def _where(chain: tuple) -> str:
    out = ""
    for k in chain:
        out += f"[{k}]" if isinstance(k, int) else (f".{k}" if out else str(k))
    return visible(out, limit=200)


def tensor_parts(t) -> tuple[tuple, list]:
    """A tensor as (what describes it, plain dense tensors holding its bits), for any layout."""
    import torch

    layout = t.layout
    if layout == torch.sparse_coo:
        return ("sparse_coo", t.is_coalesced()), [t._indices(), t._values()]
    if layout in (torch.sparse_csr, torch.sparse_bsr):
        return (str(layout),), [t.crow_indices(), t.col_indices(), t.values()]
    if layout in (torch.sparse_csc, torch.sparse_bsc):
        return (str(layout),), [t.ccol_indices(), t.row_indices(), t.values()]
    if t.is_quantized:
        q = t.qscheme()
        if q in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            return (str(q), t.q_scale(), t.q_zero_point()), [t.int_repr()]
        return (str(q), t.q_per_channel_axis()), [t.int_repr(), t.q_per_channel_scales(), t.q_per_channel_zero_points()]
    return (), [t.resolve_conj().resolve_neg()]


def compare_tensor(name: str, got, want) -> None:
    """Raise :class:`SaveError` unless ``got`` holds exactly what ``want`` holds."""
    from modeltui.core.tensors import dtype_name

    want = want.detach().to("cpu")
    if tuple(got.shape) != tuple(want.shape) or got.dtype != want.dtype or got.layout != want.layout:
        raise SaveError(f"verification failed: '{name}' came back as {list(got.shape)} {dtype_name(got.dtype)}")
    (gd, gp), (wd, wp) = tensor_parts(got), tensor_parts(want)
    if gd != wd or not all(same_bits(a.contiguous(), b.contiguous()) for a, b in zip(gp, wp)):
        raise SaveError(f"verification failed: the values of '{name}' differ after writing")


def _same_leaf(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    try:
        if a == b:
            return True
        if a != a and b != b:  # NaN
            return True
    except Exception:
        pass
    import pickle

    try:
        return pickle.dumps(a) == pickle.dumps(b)
    except Exception:
        return False


def compare_object(got: Any, want: Any) -> None:
    """Compare a loaded object with the one written: same structure, tensors bit for bit, other values equal.

    Iterative, so a deeply nested optimizer state cannot exhaust the stack.
    """
    import torch

    stack: list[tuple[Any, Any, tuple]] = [(got, want, ())]
    while stack:
        g, w, chain = stack.pop()
        if isinstance(w, torch.Tensor):
            if not isinstance(g, torch.Tensor) or type(g) is not type(w):
                raise SaveError(f"verification failed: '{_where(chain)}' came back as a {type(g).__name__}")
            compare_tensor(_where(chain), g, w)
        elif isinstance(w, Mapping):
            if type(g) is not type(w) or set(g) != set(w):
                diff = sorted(map(str, set(w) ^ set(g if isinstance(g, Mapping) else ()))) or ["?"]
                raise SaveError(f"verification failed: the keys differ after writing, e.g. '{_where(chain + (diff[0],))}'")
            stack.extend((g[k], w[k], chain + (k,)) for k in w)
        elif isinstance(w, (list, tuple)):
            if type(g) is not type(w) or len(g) != len(w):
                raise SaveError(f"verification failed: '{_where(chain)}' came back changed")
            stack.extend((g[i], w[i], chain + (i,)) for i in range(len(w)))
        elif not _same_leaf(g, w):
            raise SaveError(f"verification failed: the entry '{_where(chain)}' differs after writing")


def _at(obj: Any, chain: tuple) -> Any:
    for k in chain:
        obj = obj[k]
    return obj


def verify_torch(tmp: str, want: Any, ties: list[tuple[tuple, tuple]], *, trusted: bool = False) -> None:
    """Load ``tmp`` with torch (weights only unless the source needed ``--trust``; mmapped) and compare it with ``want``.

    ``ties`` pairs key chains that must come back sharing memory.
    """
    import torch

    from modeltui.core.tensors import tensor_identity

    try:
        got = torch.load(tmp, map_location="cpu", mmap=True, weights_only=not trusted)
    except Exception as e:
        raise SaveError(f"verification failed: torch cannot load the written file: {visible(first_line(e))}") from None
    if isinstance(want, Mapping) and not isinstance(got, Mapping):
        raise SaveError("verification failed: the written file does not hold a dict of tensors")
    compare_object(got, want)
    for alias, real in ties:
        if tensor_identity(_at(got, alias)) != tensor_identity(_at(got, real)):
            raise SaveError(f"verification failed: '{_where(alias)}' did not come back tied to '{_where(real)}'")


def verify_safetensors(tmp: str, sd: Mapping[str, Any], aliases: dict[str, str]) -> None:
    """Header through both our validator and safetensors' own; values through a mapped view."""
    from safetensors import safe_open

    from modeltui.core.readers import SafetensorsSource
    from modeltui.core.readers.safetensors import read_header

    entries, metadata = read_header(tmp)
    with safe_open(tmp, framework="pt") as f:  # the library itself must accept the file
        lib_keys = set(f.keys())
    _same_keys(list(lib_keys) + list(aliases), sd)
    _same_keys([e.name for e in entries] + list(aliases), sd)
    for alias, real in aliases.items():
        if metadata.get(alias) != real:
            raise SaveError(f"verification failed: the alias '{visible(alias)}' -> '{visible(real)}' is not in the file's metadata")
    source = SafetensorsSource({e.name: tmp for e in entries})
    try:
        for e in entries:
            compare_tensor(visible(e.name, limit=200), source.get(e.name), sd[e.name])
    finally:
        source.close()


def verify_safetensors_header(tmp: str, expected: Mapping[str, tuple[str, tuple]], aliases: dict[str, str]) -> None:
    """The header of a file whose values were checked as they were written: keys, dtypes, shapes, aliases.

    Through both our validator and safetensors' own (the library must accept the file).
    """
    from safetensors import safe_open

    from modeltui.core.readers.safetensors import read_header

    entries, metadata = read_header(tmp)
    with safe_open(tmp, framework="pt") as f:
        lib_keys = set(f.keys())
    _same_keys(list(lib_keys) + list(aliases), {**expected, **aliases})
    for e in entries:
        dtype, shape = expected[e.name]
        if e.dtype != dtype or tuple(e.shape) != tuple(shape):
            raise SaveError(f"verification failed: '{visible(e.name, limit=200)}' came back as {list(e.shape)} {e.dtype}")
    for alias, real in aliases.items():
        if metadata.get(alias) != real:
            raise SaveError(f"verification failed: the alias '{visible(alias)}' -> '{visible(real)}' is not in the file's metadata")


def _same_keys(found, sd) -> None:
    if set(found) != set(sd):
        missing = sorted(set(sd) - set(found)) or sorted(set(found) - set(sd))
        raise SaveError(f"verification failed: the keys differ after writing, e.g. '{visible(missing[0], limit=200)}'")
