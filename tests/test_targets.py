"""Import paths, --weights, --device meta, and the JSON contract."""

import json
import os
import subprocess
import sys

import pytest
import torch

from modeltui.core import open_target, parse_input_spec
from modeltui.core.targets import import_object

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MODEL_FILE = """
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

def make():
    return Net()

instance = Net()

class zoo:
    small = Net()
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    pkg = tmp_path / "proj"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "models.py").write_text(MODEL_FILE)
    (tmp_path / "loose.py").write_text(MODEL_FILE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    return tmp_path


@pytest.mark.parametrize("target", ["proj.models:Net", "proj.models:make", "proj.models:instance", "proj.models:zoo.small", "loose.py:Net", "./loose.py:zoo.small"])
def test_import_path_forms(project, target):
    o = open_target(target)
    assert o.info.kind == "module"
    assert o.info.tensors["fc.weight"].shape == (2, 3)
    assert o.info.label == target


def test_file_path_target_from_elsewhere(project, tmp_path):
    obj = import_object(str(project / "loose.py") + ":instance")
    assert isinstance(obj, torch.nn.Module)


def test_meta_device_builds_a_7b_model_without_memory():
    o = open_target("sample_models.zoo:llama_7b", device="meta")
    assert o.info.total_params > 6_500_000_000
    assert o.info.devices() == ["meta"]
    assert all(p.is_meta for p in o.model.parameters())
    assert o.info.tensors["lm_head.weight"].shape == (32000, 4096)


def test_meta_device_moves_an_existing_instance():
    o = open_target("sample_models.book:my_linear_net", device="meta")
    assert o.info.devices() == ["meta"]


def test_weights_report_missing_unexpected_mismatched(tmp_path):
    from sample_models.book import make_my_linear_net

    src = make_my_linear_net()
    sd = dict(src.state_dict())
    del sd["1.bias"]
    sd["extra.weight"] = torch.zeros(2)
    sd["1.weight"] = torch.zeros(3, 3)
    torch.save(sd, tmp_path / "w.pt")
    o = open_target("sample_models.book:make_my_linear_net", weights=str(tmp_path / "w.pt"))
    r = o.weights
    assert r.missing == ["1.bias"]
    assert r.unexpected == ["extra.weight"]
    assert r.mismatched == [("1.weight", (8, 1), (3, 3))]
    assert sorted(r.loaded) == ["0.bias", "0.weight"]
    assert torch.equal(o.model[0].weight, src[0].weight)
    text = " ".join(o.info.warnings)
    assert "missing" in text and "unexpected" in text and "'1.weight' not loaded" in text


def test_weights_from_safetensors_keep_ties(ckpts, reference_state_dict):
    o = open_target("sample_models.checkpoints:model_for_checkpoints", weights=ckpts["model.safetensors"])
    assert not o.weights.missing and not o.weights.unexpected and not o.weights.mismatched
    assert o.model.lm_head.weight is o.model.tok.weight
    for k, v in reference_state_dict.items():
        assert torch.equal(o.model.state_dict()[k], v)


def test_weights_materialise_lazy_layers(tmp_path):
    from sample_models.book import make_param_net

    net = make_param_net()
    net(torch.rand(2, 4))
    torch.save(net.state_dict(), tmp_path / "p.pt")
    o = open_target("sample_models.book:make_param_net", weights=str(tmp_path / "p.pt"))
    assert o.info.tensors["0.weight"].shape == (8, 4)
    assert torch.equal(o.model[0].weight, net[0].weight)


def test_two_inputs_for_transformer():
    o = open_target("sample_models.zoo:make_transformer", input_specs=[parse_input_spec("2,10,32"), parse_input_spec("2,7,32")])
    assert o.info.modules[""].type == "Transformer"


def test_integer_input_inferred_for_embedding_models():
    from modeltui.core.inputs import build_inputs

    o = open_target("sample_models.zoo:TinyGPT", input_specs=[parse_input_spec("2,16")])
    assert o.forward is not None and o.forward.ok  # the forward at open ran on integer tokens
    (x,), kwargs = build_inputs(o.forward.inputs, "cpu", o.model)
    vocab = o.model.tok.num_embeddings
    assert x.dtype == torch.int64 and not kwargs and 0 <= int(x.min()) and int(x.max()) < vocab
    assert ["lm_head.weight", "tok.weight"] in [sorted(g) for g in o.info.tied_groups]
    assert o.info.tensors["causal"].kind == "buffer" and not o.info.tensors["causal"].persistent


def test_moe_has_tens_of_thousands_of_modules():
    from sample_models.zoo import MoE

    assert sum(1 for _ in MoE(layers=1, experts=1024).modules()) > 4000
    o = open_target("sample_models.zoo:make_moe_small", input_specs=[parse_input_spec("2,8,16")])
    assert len(o.info.modules) > 50


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "modeltui", *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_json_contract(ckpts):
    r = run_cli("sample_models.book:make_shared_net", "-i", "2,4", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    # with -i, the forward pass run at open is in "forward" (issue 15; tests/test_training_cli.py checks its entries)
    assert set(data) == {"target", "kind", "total_params", "trainable_params", "total_bytes", "modules", "tensors", "metadata",
                         "warnings", "forward"}
    assert [m["path"] for m in data["forward"]["modules"]] == ["0", "1", "2", "3", "4", "5", "6", ""]
    assert data["kind"] == "module" and data["total_params"] == 121
    assert data["modules"][0] == {"path": "", "type": "Sequential", "params": 121, "children": ["0", "1", "2", "3", "4", "5", "6"]}
    t = {x["name"]: x for x in data["tensors"]}
    assert t["2.weight"] == {"name": "2.weight", "kind": "parameter", "shape": [8, 8], "dtype": "float32", "device": "cpu", "requires_grad": True, "tied_with": ["4.weight"], "tied_count": 1}
    r = run_cli(ckpts["lightning.ckpt"], "--json")
    data = json.loads(r.stdout)
    assert data["kind"] == "state_dict" and data["metadata"]["epoch"] == 3


def test_summary_prints_tree_and_facts():
    r = run_cli("sample_models.book:make_chimera", "-i", "2,20", "--summary")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "NestMLP" in out and "FixedHiddenMLP" in out
    assert ".rand_weight" in out and "constant" in out
    assert "[64, 20]" in out


def test_summary_of_demo_without_target():
    r = run_cli("--summary")
    assert r.returncode == 0, r.stderr
    assert "DemoNet" in r.stdout and "tied: head.weight" in r.stdout and "lazy" in r.stdout


def test_version_and_help():
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("modeltui ")
    r = run_cli("--help")
    for example in (":chimera", ".safetensors", "-w ckpt.pt", "-d meta", "file.py:attr"):
        assert example in r.stdout
