"""Memory planning: bytes as stored and cast, per subtree, and accelerate's device map for given devices."""

import pytest
import torch

from modeltui.cli import main
from modeltui.core import open_target
from modeltui.core.errors import ModelTuiError
from modeltui.core.memory_plan import footprint, parse_max_memory, plan_devices
from modeltui.core.readers import open_checkpoint
from sample_models.frontier import write_shard

accelerate = pytest.importorskip("accelerate")


def test_footprint_of_a_listing_counts_floats_apart_from_integers(tmp_path):
    path = str(tmp_path / "m.safetensors")
    write_shard(path, [("a.w", "F8_E4M3", (128, 64)), ("a.w_scale_inv", "F32", (1, 1)), ("a.idx", "I64", (10,)),
                       ("b.w", "BF16", (32, 32)), ("b.mask", "BOOL", (7,))])
    info, _, source = open_checkpoint(path)
    source.close()
    f = footprint(info)
    assert f.stored == info.total_bytes == 128 * 64 + 4 + 80 + 2 * 1024 + 7
    assert f.float_elements == 128 * 64 + 1 + 1024 and f.fixed == 87
    assert f.as_dtype("float32") == 4 * (128 * 64 + 1 + 1024) + 87
    assert f.as_dtype("int4") == (128 * 64 + 1 + 1024) // 2 + 87
    a = footprint(info, "a")
    assert (a.stored, a.float_elements, a.fixed) == (128 * 64 + 4 + 80, 128 * 64 + 1, 80)


def test_footprint_of_a_model_counts_a_tied_weight_once():
    opened = open_target("sample_models.zoo:TinyGPT")
    info = opened.info
    assert info.tensors["lm_head.weight"].tied_count
    f = footprint(info)
    params = sum(p.numel() * p.element_size() for p in opened.model.parameters())  # parameters() yields tied ones once
    buffers = sum(b.numel() * b.element_size() for b in opened.model.buffers())
    assert f.stored == params + buffers
    assert f.as_dtype("bfloat16") == sum(p.numel() for p in opened.model.parameters()) * 2 + buffers


@pytest.mark.parametrize("spec, expected", [
    ("cuda:0=80GiB,cuda:1=80GiB,cpu=512GiB", {0: 80 << 30, 1: 80 << 30, "cpu": 512 << 30}),
    ("0=1.5GB, disk=1TB", {0: 1_500_000_000, "disk": 10**12}),
])
def test_max_memory_parses_as_accelerate_takes_it(spec, expected):
    assert parse_max_memory(spec) == expected


@pytest.mark.parametrize("spec, message", [
    ("cuda:0", "is not DEVICE=SIZE"), ("cuda:0=lots", "is not a size"), ("tpu:0=1GiB", "unknown device 'tpu:0'"),
    ("cpu=1GiB,cpu=2GiB", "cpu is given twice"), (",", "no device given"),
])
def test_bad_max_memory_says_what_is_wrong(spec, message):
    with pytest.raises(ModelTuiError, match=message):
        parse_max_memory(spec)


def test_the_device_map_is_accelerates_own_for_the_same_inputs():
    from accelerate import infer_auto_device_map

    opened = open_target("sample_models.zoo:llama_7b", device="meta")
    plan = plan_devices(opened, "cuda:0=6GiB,cuda:1=6GiB,cpu=40GiB")
    theirs = infer_auto_device_map(opened.model, max_memory={0: 6 << 30, 1: 6 << 30, "cpu": 40 << 30})
    assert plan.device_map == dict(theirs)
    assert set(plan.device_map.values()) == {0, 1, "cpu"}  # 25 GiB of float32 over two 6 GiB cards and the CPU
    assert sum(plan.per_device.values()) == footprint(opened.info).stored
    assert plan.per_device["cuda:0"] <= 6 << 30


def test_a_checkpoint_without_an_architecture_is_planned_on_meta_tensors(tmp_path):
    path = str(tmp_path / "m.safetensors")
    write_shard(path, [(f"layers.{i}.w", "BF16", (1024, 1024)) for i in range(8)])
    opened = open_target(path)
    plan = plan_devices(opened, "cuda:0=5MiB,cpu=1GiB")
    from accelerate import infer_auto_device_map

    from modeltui.core.memory_plan import meta_module

    model = meta_module(opened.info)
    assert all(p.device.type == "meta" for p in model.parameters())
    assert plan.device_map == dict(infer_auto_device_map(model, max_memory={0: 5 << 20, "cpu": 1 << 30}))
    assert sum(plan.per_device.values()) == 8 * (2 << 20)
    assert 0 < plan.per_device["cuda:0"] <= 5 << 20 and plan.device_map["layers.7"] == "cpu"


def test_summary_prints_memory_and_the_device_map(capsys):
    assert main(["sample_models.zoo:llama_7b", "-d", "meta", "--summary", "--max-memory", "cuda:0=10GiB,cpu=40GiB"]) == 0
    out = capsys.readouterr().out
    assert "memory  25.1 GiB as stored · as float32 25.1 GiB · bfloat16 12.6 GiB" in out
    assert "device map (accelerate infer_auto_device_map within cuda:0 10.0 GiB, cpu 40.0 GiB)" in out
    assert "cuda:0   embed_tokens" in out and "cpu " in out and "lm_head" in out


def test_max_memory_without_summary_or_without_accelerate_is_one_clear_line(capsys, monkeypatch):
    assert main(["sample_models.zoo:TinyGPT", "--json", "--max-memory", "cpu=1GiB"]) == 2
    assert "--max-memory goes with --summary" in capsys.readouterr().err
    monkeypatch.setitem(__import__("sys").modules, "accelerate", None)
    assert main(["sample_models.zoo:TinyGPT", "--summary", "--max-memory", "cpu=1GiB"]) == 2
    assert "--max-memory needs accelerate: pip install 'modeltui[plan]'" in capsys.readouterr().err
