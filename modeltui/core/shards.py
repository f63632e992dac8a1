"""Hugging Face's layout: ``model.safetensors``, or ``model-0000i-of-0000N.safetensors`` and an index.

The steps are kept apart, because a distributed run gives each rank its own
shards and leaves the index to one rank after a barrier:

- :func:`plan_shards`: which tensor goes in which file, decided from names,
  dtypes and shapes alone (Hugging Face's rule: in key order, a new file when
  the next tensor would pass the limit, a tensor bigger than the limit alone);
- :func:`write_shard`: one file, tensor by tensor (each read, and cast, only
  when its bytes go out), to a temp file, fsynced, read back and compared bit
  for bit, then renamed into place (:mod:`modeltui.core.saving`'s machinery);
- :func:`write_index`: ``model.safetensors.index.json``, last.

Tied tensors are stored once, under the alphabetically first of their names
(as ``safetensors.torch.save_model`` chooses); the other names are recorded
in that shard's ``__metadata__`` as ``{name: kept}``, so our reader and
``load_model`` tie them again. Every shard's ``__metadata__`` holds
``{"format": "pt"}`` and the source's own entries.

Replacing a checkpoint already in the folder is done in an order that
leaves, at every moment, an index whose shards exist and hold what it says
(:mod:`modeltui.core.folder_commit`).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from modeltui.core.save_checks import SaveError
from modeltui.core.structure import ITEMSIZE
from modeltui.format import fmt_bytes, visible

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
DEFAULT_MAX_SHARD = 5 * 10**9  # "5GB", as transformers' save_pretrained

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(text: str) -> int:
    """``"5GB"`` -> 5,000,000,000 (``GiB`` for powers of two, a bare number is bytes); raises ``ValueError``."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*", text or "")
    unit = m.group(2).upper() if m else ""
    if not m or unit not in _UNITS:
        raise ValueError(f"'{visible(text)}' is not a size (write e.g. 5GB, 500MB or 2GiB)")
    n = int(float(m.group(1)) * _UNITS[unit])
    if n <= 0:
        raise ValueError(f"'{visible(text)}' is not a size above zero")
    return n


@dataclass(frozen=True)
class OutTensor:
    """A tensor as the output holds it: its key, dtype (torch name) and shape."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return int(n * ITEMSIZE.get(self.dtype, 4))


@dataclass
class ShardPlan:
    """Which stored tensor goes in which file; what every file's metadata holds."""

    files: list[tuple[str, list[str]]]  # file name, stored keys in key order
    tensors: dict[str, OutTensor]  # stored keys
    aliases: dict[str, str] = field(default_factory=dict)  # tied name -> the key stored
    metadata: dict[str, str] = field(default_factory=dict)  # every file's __metadata__ (aliases added per file)
    order: list[str] = field(default_factory=list)  # every key, aliases included, in key order

    @property
    def sharded(self) -> bool:
        return len(self.files) > 1

    @property
    def total_size(self) -> int:
        return sum(t.nbytes for t in self.tensors.values())

    def file_of(self) -> dict[str, str]:
        """``key -> file`` of every stored key (the index's weight map), in key order."""
        where = {n: f for f, names in self.files for n in names}
        return {n: where[n] for n in self.order if n in where}

    def file_metadata(self, i: int) -> dict[str, str]:
        names = set(self.files[i][1])
        return {**self.metadata, **{a: k for a, k in self.aliases.items() if k in names}, "format": "pt"}

    def index(self) -> dict[str, Any]:
        extra = {k: v for k, v in self.metadata.items() if k != "format"}
        return {"metadata": {"total_size": self.total_size, **extra}, "weight_map": self.file_of()}

    def to_json(self) -> dict[str, Any]:
        """The plan as ``--dry-run --json`` shows it."""
        return {"files": [{"file": f, "tensors": len(names), "bytes": sum(self.tensors[n].nbytes for n in names)}
                          for f, names in self.files],
                "index": INDEX if self.sharded else None, "aliases": dict(self.aliases), "total_size": self.total_size}


def plan_shards(tensors: Sequence[OutTensor], groups: Sequence[Sequence[str]] = (), *, max_shard_size: int = DEFAULT_MAX_SHARD,
                metadata: dict[str, str] | None = None, single: str = SINGLE) -> ShardPlan:
    """Assign ``tensors`` (in key order) to files; ``groups`` are tied keys (one tensor each), stored once.

    Deterministic: the same keys, dtypes, shapes and limit give the same
    files on every run and every rank. ``single`` names the file when
    everything fits in one.
    """
    from modeltui.core.save_checks import safetensors_code

    names = [t.name for t in tensors]
    if len(set(names)) != len(names):
        raise SaveError("two tensors have the same key; nothing was written")
    for t in tensors:
        if safetensors_code(t.dtype) is None:
            raise SaveError(f"safetensors cannot store {visible(t.dtype)} ('{visible(t.name, limit=200)}'): "
                            "save as .pt; nothing was written")
    present = set(names)
    aliases: dict[str, str] = {}
    for g in groups:
        g = sorted(n for n in g if n in present)
        for alias in g[1:]:
            aliases[alias] = g[0]
    stored = [t for t in tensors if t.name not in aliases]
    chunks: list[list[OutTensor]] = []
    current: list[OutTensor] = []
    size = 0
    for t in stored:
        if t.nbytes > max_shard_size:
            chunks.append([t])
            continue
        if current and size + t.nbytes > max_shard_size:
            chunks.append(current)
            current, size = [], 0
        current.append(t)
        size += t.nbytes
    if current or not chunks:
        chunks.append(current)
    if len(chunks) == 1:
        files = [(single, [t.name for t in chunks[0]])]
    else:
        n = len(chunks)
        files = [(f"model-{i + 1:05d}-of-{n:05d}.safetensors", [t.name for t in c]) for i, c in enumerate(chunks)]
    meta = {k: v for k, v in (metadata or {}).items() if k != "format" and k not in present}
    return ShardPlan(files, {t.name: t for t in stored}, aliases, meta, names)


def write_shard(folder: str, plan: ShardPlan, i: int, fetch: Callable[[str], Any]) -> list[str]:
    """Write file ``i`` of ``plan`` into ``folder``: atomic, verified; returns stale temps removed.

    ``fetch(key)`` gives the tensor of a stored key, in its output dtype,
    when it is written (the read-back check compares with what it gave).
    """
    import torch

    from modeltui.core.save_atomic import _write_atomically
    from modeltui.core.save_io import read_back_check, verify_safetensors_header, write_safetensors_streamed

    name, keys = plan.files[i]
    dest = os.path.join(os.path.realpath(folder), name)
    items = [(k, getattr(torch, plan.tensors[k].dtype), plan.tensors[k].shape) for k in keys]
    meta = plan.file_metadata(i)

    def write(tmp: str, fd: int) -> None:
        # each tensor is read back from the file and compared right after it is written: the shard's
        # values are never all held at once
        with os.fdopen(os.dup(fd), "wb") as f:
            write_safetensors_streamed(f, items, meta, fetch, check=read_back_check(f, fd))

    def verify(tmp: str) -> None:
        expected = {k: (plan.tensors[k].dtype, plan.tensors[k].shape) for k in keys}
        verify_safetensors_header(tmp, expected, {a: k for a, k in plan.aliases.items() if k in expected})

    return _write_atomically(dest, visible(name), write, verify, sum(plan.tensors[k].nbytes for k in keys))


def write_index(folder: str, plan: ShardPlan) -> None:
    """Write ``model.safetensors.index.json`` (atomic, read back); a plan of one file writes none."""
    from modeltui.core.save_atomic import _write_atomically

    if not plan.sharded:
        return
    data = json.dumps(plan.index(), indent=2).encode("utf-8") + b"\n"
    write_json(os.path.join(os.path.realpath(folder), INDEX), data, _write_atomically)


def write_json(dest: str, data: bytes, write_atomically) -> None:
    """Write ``data`` to ``dest`` atomically and check it reads back as the same JSON."""

    def write(tmp: str, fd: int) -> None:
        with os.fdopen(os.dup(fd), "wb") as f:
            f.write(data)

    def verify(tmp: str) -> None:
        with open(tmp, "rb") as f:
            if json.loads(f.read()) != json.loads(data):
                raise SaveError(f"verification failed: {visible(os.path.basename(dest))} reads back changed")

    write_atomically(dest, visible(os.path.basename(dest)), write, verify, len(data))


def describe_plan(plan: ShardPlan) -> str:
    """``"3 files of at most 500.0 MB"`` style line for reports."""
    if not plan.sharded:
        return plan.files[0][0]
    biggest = max(sum(plan.tensors[n].nbytes for n in names) for _, names in plan.files)
    return f"{len(plan.files)} shards (largest {fmt_bytes(biggest)}) and {INDEX}"
