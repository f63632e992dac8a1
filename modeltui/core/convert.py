"""Headless key surgery and conversion: plan the keys, then stream the tensors into the output.

``modeltui ckpt.pt --strip-prefix module. --cast bfloat16 --keep-dtype '*norm*' --save out/``:
:func:`plan_for` turns the operations into a :class:`~modeltui.core.keyplan.KeyPlan`
(refusals come here, before anything is read); :func:`save_plan` writes it.
A checkpoint's tensors are read one at a time with ``pread`` (never through
the mapping, so the pages read do not stay in the process), cast, written
and checked; memory holds one shard at most, whatever the model's size.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

from modeltui.core.keyplan import KeyOp, KeyPlan, plan_keys
from modeltui.core.save_checks import (
    SAFETENSORS, SaveError, check_tensors, conflict_reason, is_folder_destination, not_saved_names, resolve_destination,
)
from modeltui.core.saved_state import _container_for, source_metadata, state_for_saving
from modeltui.core.saving import SaveReport, save_state_dict
from modeltui.core.tensors import dtype_name, tensor_identity

NO_LIMIT = 1 << 62  # one file, whatever its size


def _identity_groups(sd: dict[str, Any]) -> list[list[str]]:
    by: dict[Any, list[str]] = {}
    for k, v in sd.items():
        key = tensor_identity(v)
        if key[0] == "mem":
            by.setdefault(key, []).append(k)
    return [g for g in by.values() if len(g) > 1]


def plan_for(opened, ops: Sequence[KeyOp]) -> KeyPlan:
    """The plan of ``ops`` over what ``opened`` would save (a model's state_dict, or a checkpoint's tensors)."""
    if opened.model is not None:
        sd = state_for_saving(opened)
        tensors = [(k, tuple(v.shape), dtype_name(v.dtype)) for k, v in sd.items()]
        return plan_keys(tensors, ops, _identity_groups(sd))
    info = opened.info
    return plan_keys([(n, x.shape, x.dtype) for n, x in info.tensors.items()], ops, info.tied_groups)


def _reader(opened) -> Callable[[str], Any]:
    """``name -> tensor``: a model's own tensors, or a checkpoint's read with pread into fresh memory."""
    if opened.model is not None:
        sd = state_for_saving(opened)
        return sd.__getitem__
    from modeltui.core.readers.filewatch import locate, read_window

    source = opened.source

    def get(name: str):
        t = source.get(name)
        loc = locate(t)
        if loc is not None and loc.clean:
            loc.file.check()
            return read_window(loc, t)
        return t

    return get


def save_plan(opened, plan: KeyPlan, path: str, *, max_shard_size: int | None = None) -> SaveReport:
    """Write what ``plan`` keeps to ``path``: a folder (Hugging Face's layout), a .safetensors or a torch file."""
    import torch

    from modeltui.core.folder_commit import save_folder
    from modeltui.core.shards import DEFAULT_MAX_SHARD, INDEX, OutTensor, plan_shards, write_shard

    folder = is_folder_destination(path)
    dest = os.path.realpath(os.path.abspath(path)) if folder else resolve_destination(path)
    if opened.source is not None:
        opened.source.check()
    conflict = conflict_reason(opened, dest, folder=folder)
    if conflict:
        raise SaveError(f"refused: {conflict[0]}; nothing was written ({conflict[1]})")
    kept = plan.kept()
    by_name = {e.name: e for e in kept}
    by_source = {e.source: e for e in plan.entries}
    groups = [[by_source[n].name for n in g if n in by_source and by_source[n].name is not None] for g in plan.groups]
    groups = [g for g in groups if len(g) > 1]
    get = _reader(opened)

    def fetch(name: str):
        e = by_name[name]
        t = get(e.source)
        if dtype_name(t.dtype) != e.to_dtype:
            t = t.to(getattr(torch, e.to_dtype))
        return t

    meta = source_metadata(opened)
    out = [OutTensor(e.name, e.to_dtype, tuple(e.shape or ())) for e in kept]
    if any(e.shape is None for e in kept):
        raise SaveError(f"'{next(e.name for e in kept if e.shape is None)}' is a lazy parameter with no shape yet; nothing was written")
    removed: list[str] = []
    if folder:
        shards = plan_shards(out, groups, metadata=meta, max_shard_size=max_shard_size or DEFAULT_MAX_SHARD)
        save_folder(dest, shards, fetch)
        files = [f for f, _ in shards.files] + ([INDEX] if shards.sharded else [])
        report = SaveReport(dest, len(kept), len(shards.tensors), shards.total_size, dict(shards.aliases), files=files)
    elif dest.endswith(SAFETENSORS):
        shards = plan_shards(out, groups, metadata=meta, max_shard_size=NO_LIMIT, single=os.path.basename(dest))
        removed = write_shard(os.path.dirname(dest), shards, 0, fetch)
        report = SaveReport(os.path.abspath(path), len(kept), len(shards.tensors), shards.total_size, dict(shards.aliases),
                            removed_temps=removed)
    else:
        sd: dict[str, Any] = {}
        first_of = {n: g[0] for g in groups for n in g}
        for e in kept:
            lead = first_of.get(e.name, e.name)
            sd[e.name] = sd[lead] if lead in sd else fetch(e.name)
        check_tensors(sd, False)
        container = _container_for(opened, dest)
        report = save_state_dict(sd, path, container=container)
        if container is not None:
            report.kept_entries = container.other_entries()
    if folder or dest.endswith(SAFETENSORS):
        container = getattr(opened, "container", None)
        if container is not None:
            report.dropped_entries = container.other_entries()
    report.not_saved = not_saved_names(opened)
    return report
