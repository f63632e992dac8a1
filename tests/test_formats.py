"""Every checkpoint format lists the same structure as the model it came from."""

import os

import pytest
import torch

from modeltui.core import open_target
from modeltui.core.tensors import dtype_name

FORMATS_FULL = ["state_dict.pt", "legacy.pt", "model.safetensors"]
FORMATS_PLAIN = ["plain.safetensors", "sharded_safetensors", "sharded_bin", "dcp"]


def expected(sd, skip=()):
    return {k: (tuple(v.shape), dtype_name(v.dtype)) for k, v in sd.items() if k not in skip}


def listed(info, prefix=""):
    return {n[len(prefix):]: (t.shape, t.dtype) for n, t in info.tensors.items()}


@pytest.mark.parametrize("name", FORMATS_FULL)
def test_full_state_dict_formats_list_the_model(ckpts, reference_state_dict, name):
    o = open_target(ckpts[name])
    assert o.info.kind == "state_dict"
    assert listed(o.info) == expected(reference_state_dict)
    assert all(t.kind == "tensor" for t in o.info.tensors.values())
    # the tied embedding / output pair comes back as one group, counted once
    assert ["lm_head.weight", "tok.weight"] in [sorted(g) for g in o.info.tied_groups]
    unique = sum(v.numel() for k, v in reference_state_dict.items() if k != "lm_head.weight")
    assert o.info.total_params == unique
    for k, v in reference_state_dict.items():
        assert torch.equal(o.tensor(k), v), k


@pytest.mark.parametrize("name", FORMATS_PLAIN)
def test_untied_formats_list_the_model(ckpts, reference_state_dict, name):
    o = open_target(ckpts[name])
    assert listed(o.info) == expected(reference_state_dict, skip=("lm_head.weight",))
    for k, v in reference_state_dict.items():
        if k != "lm_head.weight":
            assert torch.equal(o.tensor(k), v), k


def test_key_tree_of_a_state_dict(ckpts):
    info = open_target(ckpts["state_dict.pt"]).info
    assert info.root.children == ["tok", "pos", "blocks", "ln_f", "lm_head"]
    assert info.modules["blocks"].children == ["blocks.0", "blocks.1"]
    assert "blocks.0.attn.in_proj_weight" in info.modules["blocks.0.attn"].tensors
    assert info.modules["blocks.0"].params == sum(
        t.numel for n, t in info.tensors.items() if n.startswith("blocks.0.")
    )


def test_safetensors_keys_sort_naturally(tmp_path):
    from safetensors.torch import save_file

    save_file({f"layers.{i}.w": torch.zeros(1) for i in range(12)}, tmp_path / "n.safetensors")
    info = open_target(str(tmp_path / "n.safetensors")).info
    assert info.modules["layers"].children == [f"layers.{i}" for i in range(12)]


def test_lightning_checkpoint_finds_weights_and_keeps_metadata(ckpts, reference_state_dict):
    o = open_target(ckpts["lightning.ckpt"])
    assert listed(o.info, "model.") == expected(reference_state_dict)
    md = o.info.metadata
    assert md["epoch"] == 3 and md["global_step"] == 1200
    assert md["weights_key"] == "state_dict"
    assert md["hyper_parameters"] == {"lr": 1e-3, "layers": 2}
    assert "optimizer_states" in md
    assert not any("exp_avg" in n for n in o.info.tensors)


def test_pt_opens_memory_mapped_without_reading_data(tmp_path):
    """Listing a zip .pt reads its pickle, not its tensor bytes: measured in a fresh process (bytes read, RSS)."""
    import subprocess
    import sys

    path = tmp_path / "big.pt"
    torch.save({f"w{i}": torch.full((8, 1 << 20), float(i)) for i in range(8)}, path)  # 256 MiB of data
    code = f"""
import os, resource
from modeltui.core import open_target
import torch  # imported before measuring: its own files are not the checkpoint's
def io():
    return {{k: int(v) for k, v in (l.split(": ") for l in open("/proc/self/io"))}}
def rss():
    return int([l for l in open("/proc/self/status") if l.startswith("VmRSS")][0].split()[1]) * 1024
before, r0 = io(), rss()
o = open_target({str(path)!r})
assert len(o.info.tensors) == 8 and o.info.total_bytes == 256 << 20
after, r1 = io(), rss()
print(after["rchar"] - before["rchar"], r1 - r0)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    read, grown = map(int, out.stdout.split())
    assert read < 8 << 20, f"read {read:,} bytes of a 256 MiB checkpoint to list it"
    assert grown < 48 << 20, f"RSS grew {grown:,} bytes listing a 256 MiB checkpoint"
    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.zeros(4)}, legacy, _use_new_zipfile_serialization=False)
    assert any("legacy" in w for w in open_target(str(legacy)).info.warnings)  # read whole, and it says so


def test_safetensors_listing_does_not_import_torch(ckpts):
    import subprocess
    import sys

    code = (
        "import sys; from modeltui.core.readers import open_checkpoint; "
        f"info, m, s = open_checkpoint({ckpts['model.safetensors']!r}); "
        "assert len(info.tensors) > 10; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_pickled_module_loads_with_trust(ckpts):
    o = open_target(ckpts["full_module.pt"], trust=True)
    assert o.info.kind == "module"
    assert o.model is not None and type(o.model).__name__ == "TinyGPT"
    assert ["lm_head.weight", "tok.weight"] in [sorted(g) for g in o.info.tied_groups]


def test_index_json_path_itself_opens(ckpts):
    path = os.path.join(ckpts["sharded_safetensors"], "model.safetensors.index.json")
    o = open_target(path)
    assert o.info.metadata["shards"] == 2


def test_dtypes_round_trip_in_listing(tmp_path):
    from safetensors.torch import save_file

    tensors = {
        "f16": torch.zeros(2, dtype=torch.float16),
        "bf16": torch.zeros(2, dtype=torch.bfloat16),
        "i64": torch.zeros(2, dtype=torch.int64),
        "b": torch.zeros(2, dtype=torch.bool),
        "u8": torch.zeros(2, dtype=torch.uint8),
        "f8": torch.zeros(2, dtype=torch.float8_e4m3fn),
    }
    save_file(tensors, tmp_path / "d.safetensors")
    torch.save(tensors, tmp_path / "d.pt")
    for f in ("d.safetensors", "d.pt"):
        info = open_target(str(tmp_path / f)).info
        assert {n: t.dtype for n, t in info.tensors.items()} == {k: dtype_name(v.dtype) for k, v in tensors.items()}
