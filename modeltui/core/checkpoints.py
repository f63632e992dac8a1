"""Open checkpoints of every supported format without reading tensor data.

- ``.safetensors``: the header only (``json`` + ``struct``), no torch needed.
- ``.pt .pth .bin .ckpt``: see :mod:`modeltui.core.ptfiles` (memory-mapped,
  ``weights_only=True`` unless ``--trust``).
- folders: ``*.index.json`` with shards, several ``*.safetensors``, or a
  ``torch.distributed.checkpoint`` folder (``.metadata``).

:func:`read_checkpoint` returns everything (with the training-checkpoint
container); :func:`open_checkpoint` the ``(info, module, source)`` triple.
"""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modeltui.core.errors import CheckpointError, ModelTuiError, TargetError
from modeltui.core.ptfiles import PtFile, find_state_dict, locate_weights, read_pt, short_reason, state_dict_info, summarize
from modeltui.core.safetensors_header import read_header
from modeltui.core.sources import DictSource, SafetensorsSource, TensorSource  # the sources live there; imported from here too
from modeltui.core.structure import ModelInfo, from_state_dict_entries

__all__ = [
    "CHECKPOINT_EXTS", "Checkpoint", "DCPSource", "DictSource", "SafetensorsSource", "TensorSource",
    "find_state_dict", "locate_weights", "open_checkpoint", "read_checkpoint", "state_dict_info", "summarize",
]

PT_EXTS = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".tar")
SAFETENSORS_EXTS = (".safetensors",)
CHECKPOINT_EXTS = PT_EXTS + SAFETENSORS_EXTS


# TensorSource, DictSource and SafetensorsSource live in modeltui.core.sources (imported above).




class DCPSource(TensorSource):
    """Tensors of a ``torch.distributed.checkpoint`` folder, assembled from their chunks."""

    def __init__(self, folder: str, md: Any):
        from modeltui.core.dcp import chunk_index

        self.folder = folder
        self.md = md
        self.index = chunk_index(md)

    def get(self, name: str):
        from modeltui.core.dcp import read_tensor

        return read_tensor(self.folder, self.md, self.index, name)


# ---------------------------------------------------------------- dispatch


@dataclass
class Checkpoint:
    """An opened checkpoint: its description and what gives its values."""

    info: ModelInfo
    module: Any = None  # a pickled nn.Module (only with --trust)
    source: TensorSource | None = None
    container: Any = None  # modeltui.core.container.Container for a training checkpoint


def open_checkpoint(path: str, *, trust: bool = False, target: str | None = None) -> tuple[ModelInfo, Any, TensorSource | None]:
    """Open ``path``: returns ``(info, module_or_None, tensor_source)``.

    A pickled full module (only with ``trust``) comes back as a module.
    """
    ck = read_checkpoint(path, trust=trust, target=target)
    return ck.info, ck.module, ck.source


def read_checkpoint(path: str, *, trust: bool = False, target: str | None = None) -> Checkpoint:
    """Open ``path`` as a :class:`Checkpoint`; every failure is a :class:`TargetError`."""
    # Listing allocates one small object per tensor and module; the cyclic
    # GC would rescan them many times over for nothing (2x on big headers).
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _open_checkpoint(path, trust=trust, target=target or path)
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
    finally:
        if was_enabled:
            gc.enable()


def _open_checkpoint(path: str, *, trust: bool, target: str) -> Checkpoint:
    if os.path.isdir(path):
        return _open_folder(path, trust=trust, target=target)
    if not os.path.isfile(path):
        raise TargetError(f"{path}: not a file or folder")
    with open(path, "rb") as f:
        magic = f.read(8)
    if path.endswith(".index.json"):
        return _open_index(path, trust=trust, target=target)
    if path.endswith(SAFETENSORS_EXTS) or (not magic.startswith(b"PK") and _looks_like_safetensors(magic)):
        return _open_safetensors_files(target, [path])
    return _open_pt(path, trust=trust, target=target)


def _open_pt(path: str, *, trust: bool, target: str) -> Checkpoint:
    pt: PtFile = read_pt(path, trust=trust, target=target)
    if pt.module is not None:
        return Checkpoint(pt.info, pt.module)
    return Checkpoint(pt.info, None, DictSource(pt.tensors, path), pt.container)


def _looks_like_safetensors(magic: bytes) -> bool:
    if len(magic) < 8:
        return False
    n = int.from_bytes(magic, "little")
    return 2 <= n < 100_000_000


# ---------------------------------------------------------------- safetensors


def _open_safetensors_files(target: str, paths: list[str], expected: dict[str, str] | None = None) -> Checkpoint:
    entries = []
    files: dict[str, str] = {}
    aliases: dict[str, str] = {}
    metadata: dict[str, Any] = {}
    for p in paths:
        es, meta = read_header(p)
        names = set()
        for e in es:
            if e.name in files:
                raise CheckpointError(f"{os.path.basename(p)}: tensor '{e.name}' also appears in {os.path.basename(files[e.name])}")
            files[e.name] = p
            names.add(e.name)
            entries.append((e.name, e.shape, e.dtype, "cpu"))
        for k, v in meta.items():
            # safetensors' save_model records a deduplicated name -> kept name
            if v in names and k not in names and k not in ("format",):
                aliases[k] = v
            else:
                metadata[k] = v
    warnings: list[str] = []
    if expected is not None:
        missing = [k for k, f in expected.items() if k not in files and k not in aliases]
        if missing:
            warnings.append(f"index names {len(missing)} tensor(s) missing from their shards, e.g. '{missing[0]}'")
    info = from_state_dict_entries(target, entries, aliases=aliases, metadata=metadata, warnings=warnings, sort=True)
    return Checkpoint(info, None, SafetensorsSource(files, aliases))


# ---------------------------------------------------------------- folders


def _open_folder(path: str, *, trust: bool, target: str) -> Checkpoint:
    names = sorted(os.listdir(path))
    if ".metadata" in names:
        from modeltui.core.dcp import open_dcp

        info, md = open_dcp(path, target)
        return Checkpoint(info, None, DCPSource(path, md))
    index = [n for n in names if n.endswith(".index.json")]
    if index:
        pick = next((n for n in index if "safetensors" in n), index[0])
        return _open_index(os.path.join(path, pick), trust=trust, target=target)
    st = [os.path.join(path, n) for n in names if n.endswith(".safetensors")]
    if st:
        return _open_safetensors_files(target, st)
    pts = [os.path.join(path, n) for n in names if n.endswith(PT_EXTS)]
    if len(pts) == 1:
        return _open_pt(pts[0], trust=trust, target=target)
    raise TargetError(
        f"{path}: folder holds no checkpoint (expected *.index.json with shards, *.safetensors, one .pt/.bin file, or a torch.distributed.checkpoint .metadata)"
    )


def _open_index(index_path: str, *, trust: bool, target: str) -> Checkpoint:
    folder = os.path.dirname(index_path)
    name = os.path.basename(index_path)
    try:
        with open(index_path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"{name}: not a valid index ({e})") from None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise CheckpointError(f"{name}: no 'weight_map' of tensor name -> shard file")
    shards: list[str] = []
    for shard in weight_map.values():
        if shard not in shards:
            shards.append(shard)
    for shard in shards:
        p = os.path.normpath(os.path.join(folder, shard))
        if os.path.dirname(os.path.abspath(p)) != os.path.abspath(folder) and not os.path.abspath(p).startswith(os.path.abspath(folder) + os.sep):
            raise CheckpointError(f"{name}: shard '{shard}' lies outside the checkpoint folder")
        if not os.path.isfile(p):
            raise CheckpointError(f"{name}: shard '{shard}' named by the index is missing")
    paths = [os.path.join(folder, s) for s in shards]
    meta = data.get("metadata") if isinstance(data.get("metadata"), Mapping) else {}
    if all(p.endswith(".safetensors") for p in paths):
        ck = _open_safetensors_files(target, paths, expected=weight_map)
        ck.info.metadata.update({"index": name, "shards": len(paths), **{str(k): summarize(v) for k, v in meta.items()}})
        return ck
    flat: dict[str, Any] = {}
    warnings: list[str] = []
    for p in paths:
        pt = read_pt(p, trust=trust, target=p)
        if pt.module is not None:
            raise CheckpointError(f"{os.path.basename(p)}: a shard holds a whole module, not tensors")
        flat.update(pt.tensors)
        warnings.extend(pt.info.warnings)
    missing = [k for k in weight_map if k not in flat]
    if missing:
        warnings.append(f"index names {len(missing)} tensor(s) missing from their shards, e.g. '{missing[0]}'")
    info = state_dict_info(target, flat, metadata={"index": name, "shards": len(paths)}, warnings=warnings)
    return Checkpoint(info, None, DictSource(flat, paths))
