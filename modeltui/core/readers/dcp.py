"""Read a ``torch.distributed.checkpoint`` folder without running its pickle.

torch reads ``.metadata`` with a plain ``pickle.load``; we unpickle it with an
allow-list of the metadata classes instead, and read each tensor's chunks from
the ``.distcp`` files with ``torch.load(weights_only=True)``.
``modeltui.core.checkpoints.DCPSource`` gives the values through
:func:`read_tensor`.
"""

from __future__ import annotations

import io
import os
import pickle
from typing import Any

from modeltui.core.errors import CheckpointError, UnsafeCheckpointError
from modeltui.core.readers.base import TensorSource
from modeltui.core.structure import from_state_dict_entries
from modeltui.core.tensors import dtype_name

_ALLOWED_MODULES = (
    "torch.distributed.checkpoint.metadata",
    "torch.distributed.checkpoint.filesystem",
    "torch.distributed.checkpoint._extension",
)
_ALLOWED_EXTRA = {
    ("torch", "Size"),
    ("torch.serialization", "_get_layout"),
    ("collections", "OrderedDict"),
    ("pathlib", "PosixPath"),
    ("pathlib", "WindowsPath"),
    ("pathlib", "PurePosixPath"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
}


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        import torch

        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if (module, name) in _ALLOWED_EXTRA or (module in _ALLOWED_MODULES and not name.startswith("__")):
            obj = getattr(__import__(module, fromlist=[name]), name)
            if module in _ALLOWED_MODULES and not isinstance(obj, type):
                raise UnsafeCheckpointError(f".metadata asks for {module}.{name}, which is not a metadata class", [f"{module}.{name}"])
            return obj
        raise UnsafeCheckpointError(
            f".metadata asks for {module}.{name}, which a distributed checkpoint's metadata never needs; refused",
            [f"{module}.{name}"],
        )


def read_metadata(folder: str):
    """Unpickle ``folder/.metadata`` with only the DCP metadata classes."""
    path = os.path.join(folder, ".metadata")
    try:
        with open(path, "rb") as f:
            data = f.read()
        return _MetadataUnpickler(io.BytesIO(data)).load()
    except UnsafeCheckpointError:
        raise
    except Exception as e:
        raise CheckpointError(f"{os.path.basename(folder)}/.metadata: cannot read distributed checkpoint metadata ({type(e).__name__}: {e})") from None


def open_dcp(folder: str, label: str):
    """List a DCP folder's tensors from its metadata: returns ``(info, metadata object)``."""
    from torch.distributed.checkpoint.metadata import BytesStorageMetadata, TensorStorageMetadata

    md = read_metadata(folder)
    sdm = getattr(md, "state_dict_metadata", None)
    if not isinstance(sdm, dict):
        raise CheckpointError(f"{os.path.basename(folder)}/.metadata: no state_dict_metadata")
    entries = []
    other: dict[str, Any] = {}
    for fqn, item in sdm.items():
        if isinstance(item, TensorStorageMetadata):
            dtype = dtype_name(item.properties.dtype)
            entries.append((fqn, tuple(int(d) for d in item.size), dtype, "cpu"))
        elif isinstance(item, BytesStorageMetadata):
            other[fqn] = "bytes (pickled object, not loaded)"
    meta = {"format": "torch.distributed.checkpoint", "version": getattr(md, "version", None)}
    if other:
        meta["objects"] = other
    info = from_state_dict_entries(label, entries, metadata=meta)
    return info, md


def chunk_index(md: Any) -> dict[str, list[tuple[Any, Any]]]:
    """Tensor name -> its chunks ``(MetadataIndex, storage info)`` from the metadata."""
    index: dict[str, list[tuple[Any, Any]]] = {}
    for key, sinfo in (md.storage_data or {}).items():
        index.setdefault(key.fqn, []).append((key, sinfo))
    return index


def read_tensor(folder: str, md: Any, index: dict[str, list[tuple[Any, Any]]], name: str):
    """Assemble tensor ``name`` from its chunks in the ``.distcp`` files."""
    import torch

    item = md.state_dict_metadata[name]
    out = torch.empty(tuple(item.size), dtype=item.properties.dtype)
    for key, sinfo in index.get(name, []):
        if getattr(sinfo, "transform_descriptors", None):
            raise CheckpointError(f"'{name}' is stored with transforms {sinfo.transform_descriptors}, which modeltui does not read yet")
        path = os.path.normpath(os.path.join(folder, sinfo.relative_path))
        if not os.path.abspath(path).startswith(os.path.abspath(folder) + os.sep):
            raise CheckpointError(f"'{name}': data file '{sinfo.relative_path}' lies outside the checkpoint folder")
        try:
            with open(path, "rb") as f:
                f.seek(sinfo.offset)
                blob = f.read(sinfo.length)
            chunk = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
        except Exception as e:
            raise CheckpointError(f"'{name}': cannot read its data from {sinfo.relative_path} ({type(e).__name__}: {e})") from None
        offsets = tuple(int(o) for o in key.offset) if key.offset is not None else (0,) * out.dim()
        view = out
        for dim, (o, s) in enumerate(zip(offsets, chunk.shape)):
            view = view.narrow(dim, o, s)
        view.copy_(chunk)
    return out


class DCPSource(TensorSource):
    """Tensors of a ``torch.distributed.checkpoint`` folder, assembled from their chunks."""

    def __init__(self, folder: str, md: Any):
        self.folder = folder
        self.md = md
        self.index = chunk_index(md)

    def get(self, name: str):
        return read_tensor(self.folder, self.md, self.index, name)
