"""Checkpoint readers, one module per format, behind one :class:`TensorSource` protocol.

- ``.safetensors``: :mod:`.safetensors`, the header only (``json`` + ``struct``), no torch needed;
- ``.pt .pth .bin .ckpt``: :mod:`.torchfile` (memory-mapped, ``weights_only=True`` unless ``--trust``),
  with training-checkpoint containers found by :mod:`.containers`;
- folders: :mod:`.sharded` (``*.index.json`` with shards, several ``*.safetensors``) and :mod:`.dcp`
  (``torch.distributed.checkpoint``).

The format is sniffed once (:func:`sniff`, by magic bytes and names);
:func:`read_checkpoint` returns a :class:`Listing`; :func:`open_checkpoint` the
``(info, module, source)`` triple.
"""

from __future__ import annotations

import contextlib
import gc
import os
from typing import Any

from modeltui.core.errors import CheckpointError, ModelTuiError, TargetError
from modeltui.core.readers.base import Listing, TensorSource
from modeltui.core.readers.containers import find_state_dict, locate_weights, summarize
from modeltui.core.readers.safetensors import SafetensorsSource, read_safetensors
from modeltui.core.readers.sharded import read_folder, read_index
from modeltui.core.readers.torchfile import PT_EXTS, DictSource, read_torch, short_reason, state_dict_info
from modeltui.core.structure import ModelInfo

__all__ = [
    "CHECKPOINT_EXTS", "DictSource", "Listing", "PT_EXTS", "SAFETENSORS_EXTS", "SafetensorsSource", "TensorSource",
    "find_state_dict", "locate_weights", "open_checkpoint", "read_checkpoint", "sniff", "state_dict_info", "summarize",
]

SAFETENSORS_EXTS = (".safetensors",)
CHECKPOINT_EXTS = PT_EXTS + SAFETENSORS_EXTS

FOLDER, INDEX, SAFETENSORS, TORCH = "folder", "index", "safetensors", "torch"


def sniff(path: str) -> str:
    """The format of ``path``, decided once: ``folder``, ``index``, ``safetensors`` or ``torch``.

    A safetensors file is recognised by its name or by its first 8 bytes (a
    little-endian header length that a zip's ``PK`` or a pickle's ``\\x80``
    cannot be); everything else goes to the torch reader, which tells a zip
    archive from a legacy pickle (and refuses anything else).
    """
    if os.path.isdir(path):
        return FOLDER
    if not os.path.isfile(path):
        raise TargetError(f"{path}: not a file or folder")
    if path.endswith(".index.json"):
        return INDEX
    with open(path, "rb") as f:
        magic = f.read(8)
    if path.endswith(SAFETENSORS_EXTS) or (not magic.startswith(b"PK") and _looks_like_safetensors(magic)):
        return SAFETENSORS
    return TORCH


def open_checkpoint(path: str, *, trust: bool = False, label: str | None = None) -> tuple[ModelInfo, Any, TensorSource | None]:
    """Open ``path``: returns ``(info, module_or_None, tensor_source)``.

    A pickled full module (only with ``trust``) comes back as a module.
    """
    ck = read_checkpoint(path, trust=trust, label=label)
    return ck.info, ck.module, ck.source


@contextlib.contextmanager
def paused_gc():
    """No cyclic GC inside: code that allocates many small objects and frees none (a listing, its JSON)
    would have the collector rescan them many times over for nothing (2x on big headers)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def read_checkpoint(path: str, *, trust: bool = False, label: str | None = None) -> Listing:
    """Open ``path`` as a :class:`Listing`; every failure is a :class:`TargetError`."""
    with paused_gc():
        return _read_checkpoint(path, trust=trust, label=label)


def _read_checkpoint(path: str, *, trust: bool, label: str | None) -> Listing:
    try:
        return _open_checkpoint(path, trust=trust, label=label or path)
    except ModelTuiError:
        raise
    except MemoryError:
        raise CheckpointError(f"{os.path.basename(path)}: ran out of memory reading it (corrupt sizes?)") from None
    except Exception as e:
        # untrusted bytes reach zipfile, json, torch's readers: whatever they
        # raise on a corruption nobody foresaw becomes the same clean error
        raise CheckpointError(
            f"{os.path.basename(os.path.normpath(path))}: corrupt or unreadable checkpoint ({type(e).__name__}: {short_reason(e)})"
        ) from None


def _open_checkpoint(path: str, *, trust: bool, label: str) -> Listing:
    kind = sniff(path)
    if kind == FOLDER:
        return read_folder(path, trust=trust, label=label)
    if kind == INDEX:
        return read_index(path, trust=trust, label=label)
    if kind == SAFETENSORS:
        return read_safetensors(label, [path])
    return read_torch(path, trust=trust, label=label)


def _looks_like_safetensors(magic: bytes) -> bool:
    if len(magic) < 8:
        return False
    n = int.from_bytes(magic, "little")
    return 2 <= n < 100_000_000
