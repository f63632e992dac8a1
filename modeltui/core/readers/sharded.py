"""Folders: ``*.index.json`` with shards (safetensors or ``.bin``), several ``.safetensors``, one ``.pt``, or DCP."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from modeltui.core.errors import CheckpointError, TargetError
from modeltui.core.readers.base import Listing
from modeltui.core.readers.containers import summarize
from modeltui.core.readers.safetensors import read_safetensors
from modeltui.core.readers.torchfile import PT_EXTS, DictSource, read_pt, read_torch, state_dict_info


def read_folder(path: str, *, trust: bool, label: str) -> Listing:
    names = sorted(os.listdir(path))
    if ".metadata" in names:
        from modeltui.core.readers.dcp import DCPSource, open_dcp

        info, md = open_dcp(path, label)
        return Listing(info, None, DCPSource(path, md))
    index = [n for n in names if n.endswith(".index.json")]
    if index:
        pick = next((n for n in index if "safetensors" in n), index[0])
        return read_index(os.path.join(path, pick), trust=trust, label=label)
    st = [os.path.join(path, n) for n in names if n.endswith(".safetensors")]
    if st:
        return read_safetensors(label, st)
    pts = [os.path.join(path, n) for n in names if n.endswith(PT_EXTS)]
    if len(pts) == 1:
        return read_torch(pts[0], trust=trust, label=label)
    raise TargetError(
        f"{path}: folder holds no checkpoint (expected *.index.json with shards, *.safetensors, one .pt/.bin file, or a torch.distributed.checkpoint .metadata)"
    )


def read_index(index_path: str, *, trust: bool, label: str) -> Listing:
    folder = os.path.dirname(index_path)
    name = os.path.basename(index_path)
    try:
        with open(index_path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"{name}: not a valid index ({e})") from None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    try:
        shards = list(dict.fromkeys(weight_map.values())) if isinstance(weight_map, dict) else []  # in order, once each
    except TypeError:  # an unhashable value: not a file name
        weight_map = None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in shards):
        raise CheckpointError(f"{name}: no 'weight_map' of tensor name -> shard file")
    for shard in shards:
        p = os.path.normpath(os.path.join(folder, shard))
        if os.path.dirname(os.path.abspath(p)) != os.path.abspath(folder) and not os.path.abspath(p).startswith(os.path.abspath(folder) + os.sep):
            raise CheckpointError(f"{name}: shard '{shard}' lies outside the checkpoint folder")
        if not os.path.isfile(p):
            raise CheckpointError(f"{name}: shard '{shard}' named by the index is missing")
    paths = [os.path.join(folder, s) for s in shards]
    meta = data.get("metadata") if isinstance(data.get("metadata"), Mapping) else {}
    if all(p.endswith(".safetensors") for p in paths):
        ck = read_safetensors(label, paths, expected=weight_map)
        ck.info.metadata.update({"index": name, "shards": len(paths), **{str(k): summarize(v) for k, v in meta.items()}})
        return ck
    flat: dict[str, Any] = {}
    warnings: list[str] = []
    zips: list[str] = []  # the shards whose tensors may be mapped: watched for changes
    for p in paths:
        pt = read_pt(p, trust=trust, label=p)
        if pt.module is not None:
            raise CheckpointError(f"{os.path.basename(p)}: a shard holds a whole module, not tensors")
        flat.update(pt.tensors)
        if pt.zip:
            zips.append(p)
        warnings.extend(pt.info.warnings)
    missing = [k for k in weight_map if k not in flat]
    if missing:
        warnings.append(f"index names {len(missing)} tensor(s) missing from their shards, e.g. '{missing[0]}'")
    info = state_dict_info(label, flat, metadata={"index": name, "shards": len(paths)}, warnings=warnings)
    return Listing(info, None, DictSource(flat, zips))
