"""Write sample checkpoints of every format modeltui opens.

    python -m sample_models.checkpoints OUTDIR

Tests call :func:`write_all` on a temp folder; nothing binary lives in git.
"""

from __future__ import annotations

import json
import os
import sys
import warnings

import torch
from torch import nn

from sample_models import zoo


def model_for_checkpoints(seed: int = 0) -> nn.Module:
    """The tied language model all sample checkpoints are saved from."""
    torch.manual_seed(seed)
    return zoo.TinyGPT(vocab=64, d=16, layers=2, heads=2, ctx=16)


def _shard(sd: dict, n: int) -> list[dict]:
    keys = list(sd)
    size = (len(keys) + n - 1) // n
    return [{k: sd[k] for k in keys[i:i + size]} for i in range(0, len(keys), size)]


def write_all(outdir: str) -> dict[str, str]:
    """Write every format into ``outdir``; return ``{kind: path}``."""
    from safetensors.torch import save_file, save_model

    os.makedirs(outdir, exist_ok=True)
    model = model_for_checkpoints()
    sd = model.state_dict()
    plain = {k: v.clone().contiguous() for k, v in sd.items() if k != "lm_head.weight"}
    paths: dict[str, str] = {}

    def p(name: str) -> str:
        path = os.path.join(outdir, name)
        paths[name] = path
        return path

    torch.save(sd, p("state_dict.pt"))  # zip; tied tensors share storage
    torch.save(sd, p("legacy.pt"), _use_new_zipfile_serialization=False)
    save_model(model, p("model.safetensors"))  # dedupes the tied pair, records the alias
    save_file(plain, p("plain.safetensors"), metadata={"format": "pt", "note": "untied copy"})
    torch.save(
        {
            "epoch": 3,
            "global_step": 1200,
            "state_dict": {f"model.{k}": v for k, v in sd.items()},
            "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 1e-3}]}],
            "lr_schedulers": [],
            "hyper_parameters": {"lr": 1e-3, "layers": 2},
        },
        p("lightning.ckpt"),
    )
    torch.save(model, p("full_module.pt"))  # pickled module: needs --trust

    folder = p("sharded_safetensors")
    os.makedirs(folder, exist_ok=True)
    weight_map = {}
    shards = _shard(plain, 2)
    for i, part in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(part, os.path.join(folder, name), metadata={"format": "pt"})
        weight_map.update({k: name for k in part})
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": sum(v.nbytes for v in plain.values())}, "weight_map": weight_map}, f)

    folder = p("sharded_bin")
    os.makedirs(folder, exist_ok=True)
    weight_map = {}
    for i, part in enumerate(shards):
        name = f"pytorch_model-{i + 1:05d}-of-{len(shards):05d}.bin"
        torch.save(part, os.path.join(folder, name))
        weight_map.update({k: name for k in part})
    with open(os.path.join(folder, "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f)

    import torch.distributed.checkpoint as dcp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save({k: v.clone() for k, v in plain.items()}, checkpoint_id=p("dcp"))
    return paths


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m sample_models.checkpoints OUTDIR")
    for kind, path in write_all(sys.argv[1]).items():
        print(f"{kind:24s} {path}")
