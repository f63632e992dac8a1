"""A save never loses data (issue 10): training state, lazy models, constants, layouts;
issue 11 (folders, dtypes, bad destinations) is in tests/security/test_save_refusals.py."""

import errno
import io
import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from modeltui.core import open_module, open_target
from modeltui.core.readers import DictSource, find_state_dict
from modeltui.core.readers.containers import Container
from modeltui.core.editable import make_editable
from modeltui.core.save_checks import save_conflict
from modeltui.core.saving import SaveError, save_opened, save_state_dict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bits(t):
    return t.detach().contiguous().reshape(-1).view(torch.uint8)


def same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(bits(a), bits(b))


def pickled(obj) -> bytes:
    """The bytes torch.save writes for ``obj`` (tensors by value): equal bytes, equal objects."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def lightning_object(seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(4, 3, generator=g)
    return {
        "epoch": 7,
        "global_step": 1234,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": {"model.l.weight": w, "model.l.bias": torch.zeros(4), "model.head.weight": w},
        "optimizer_states": [{"state": {0: {"step": torch.tensor(5.0), "exp_avg": torch.randn(4, 3, generator=g)}},
                              "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "params": [0, 1]}]}],
        "lr_schedulers": [],
        "hyper_parameters": {"lr": 1e-3, "layers": 2, "name": "run-1"},
        "loops": None,
    }


OTHER = ["epoch", "global_step", "pytorch-lightning_version", "optimizer_states", "lr_schedulers", "hyper_parameters", "loops"]


def open_container(path):
    """Open a training checkpoint with its Container, as the reader does (until it sets it itself)."""
    o = open_target(path)
    if o.container is None:
        obj = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        flat, where, _ = find_state_dict(obj)
        o.source = DictSource(flat)  # the container's own (mapped) tensors
        o.container = Container.from_object(path, obj, (where,) if where else (), flat)
    return o


@pytest.fixture
def last_ckpt(tmp_path):
    p = tmp_path / "last.ckpt"
    torch.save(lightning_object(), p)
    return str(p)


# ---------------------------------------------------------------- issue 10, item 2


def test_overwriting_a_training_checkpoint_keeps_its_training_state(last_ckpt):
    before = torch.load(last_ckpt, weights_only=True)
    o = open_container(last_ckpt)
    make_editable(o)
    with torch.no_grad():
        o.model.model.l.bias[1] = 42.0
    report = save_opened(o, last_ckpt)
    assert report.kept_entries == OTHER and report.dropped_entries == []
    after = torch.load(last_ckpt, weights_only=True)  # still loadable with weights_only=True
    assert list(after) == list(before)
    for k in OTHER:
        assert pickled(after[k]) == pickled(before[k]), k
    sd = after["state_dict"]
    assert sd["model.l.bias"][1] == 42.0
    assert same_bits(sd["model.l.weight"], before["state_dict"]["model.l.weight"])
    assert sd["model.head.weight"].untyped_storage().data_ptr() == sd["model.l.weight"].untyped_storage().data_ptr()
    assert "kept epoch, global_step" in report.summary()


def test_saving_over_the_mapped_checkpoint_while_it_is_open(last_ckpt):
    o = open_container(last_ckpt)
    held = open(last_ckpt, "rb")  # the file open in this process too
    try:
        old_exp_avg = o.container.obj["optimizer_states"][0]["state"][0]["exp_avg"].clone()
        make_editable(o)
        for step in (1.0, 2.0):  # twice: the second save maps nothing of the first's
            with torch.no_grad():
                o.model.model.l.bias.fill_(step)
            save_opened(o, last_ckpt)
            again = torch.load(last_ckpt, weights_only=True)
            assert torch.all(again["state_dict"]["model.l.bias"] == step)
            assert torch.equal(again["optimizer_states"][0]["state"][0]["exp_avg"], old_exp_avg)
        # the mapping of the replaced file stays valid
        assert torch.equal(o.container.obj["optimizer_states"][0]["state"][0]["exp_avg"], old_exp_avg)
        assert len(held.read(4)) == 4
    finally:
        held.close()
    assert [f for f in os.listdir(os.path.dirname(last_ckpt)) if f.endswith(".tmp")] == []


def test_training_checkpoint_to_safetensors_says_what_is_not_included(last_ckpt, tmp_path):
    o = open_container(last_ckpt)
    out = str(tmp_path / "last.safetensors")
    assert save_conflict(o, out) is None
    report = save_opened(o, out)
    assert report.dropped_entries == OTHER and report.kept_entries == []
    assert any("training state (epoch, global_step" in n and "not included" in n for n in report.notes())
    assert sorted(open_target(out).info.tensors) == sorted(["model.l.weight", "model.l.bias", "model.head.weight"])
    assert "not included" in save_conflict(o, out)  # the overwrite question says it too


@pytest.mark.parametrize("name", ["copy.ckpt", "copy.pt", "copy.bin"])
def test_training_checkpoint_to_another_torch_file_keeps_the_container(last_ckpt, tmp_path, name):
    o = open_container(last_ckpt)
    out = str(tmp_path / name)
    report = save_opened(o, out)
    assert report.kept_entries == OTHER
    got = torch.load(out, weights_only=True)
    assert pickled(got) == pickled(torch.load(last_ckpt, weights_only=True))


NET = """
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.l = nn.Linear(3, 4)
"""


def test_headless_save_back_over_the_weights_file_keeps_its_training_state(tmp_path):
    (tmp_path / "net.py").write_text(NET)
    obj = lightning_object()
    obj["state_dict"] = {"l.weight": torch.full((4, 3), 0.5), "l.bias": torch.ones(4)}
    ckpt = tmp_path / "last.ckpt"
    torch.save(obj, ckpt)
    r = subprocess.run([sys.executable, "-m", "modeltui", f"{tmp_path}/net.py:Net", "-w", str(ckpt), "--save", str(ckpt)],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "kept epoch, global_step" in r.stdout
    after = torch.load(ckpt, weights_only=True)
    for k in OTHER:
        assert pickled(after[k]) == pickled(obj[k]), k
    assert torch.equal(after["state_dict"]["l.weight"], obj["state_dict"]["l.weight"])


def test_verification_compares_the_other_entries_too(last_ckpt, monkeypatch):
    before = open(last_ckpt, "rb").read()
    o = open_container(last_ckpt)
    real_save = torch.save

    def bad_save(obj, f, *a, **k):  # a writer that gets one entry wrong
        real_save({**obj, "global_step": 0}, f, *a, **k)

    monkeypatch.setattr(torch, "save", bad_save)
    with pytest.raises(SaveError, match="'global_step' differs after writing.*last.ckpt is unchanged"):
        save_opened(o, last_ckpt)
    assert open(last_ckpt, "rb").read() == before


# ---------------------------------------------------------------- issue 10, item 8 (save part)


def test_saving_a_lazy_model_says_to_run_a_forward_pass(tmp_path):
    o = open_module(nn.Sequential(nn.LazyLinear(3)))
    out = tmp_path / "lazy.safetensors"
    with pytest.raises(SaveError) as e:
        save_opened(o, str(out))
    msg = str(e.value)
    assert "forward pass" in msg and "-i" in msg and "nothing was written" in msg
    assert "unchanged" not in msg and "uninitialized" not in msg
    assert os.listdir(tmp_path) == []


def test_unchanged_is_said_only_of_a_file_that_exists(tmp_path, monkeypatch):
    import modeltui.core.save_io as save_io

    def boom(*a, **k):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(save_io, "write_safetensors", boom)
    new = tmp_path / "new.safetensors"
    with pytest.raises(SaveError, match="nothing was written") as e:
        save_state_dict({"w": torch.ones(2)}, str(new))
    assert "unchanged" not in str(e.value) and not new.exists()
    old = tmp_path / "old.safetensors"
    old.write_bytes(b"old")
    with pytest.raises(SaveError, match="old.safetensors is unchanged"):
        save_state_dict({"w": torch.ones(2)}, str(old))


# ---------------------------------------------------------------- issue 10, item 3 (save part)


class WithConstants(nn.Module):
    def __init__(self):
        super().__init__()
        self.l = nn.Linear(2, 2)
        self.register_buffer("cache", torch.ones(2), persistent=False)
        self.scale = torch.tensor(3.0)  # a plain tensor attribute: no state_dict holds it


def test_the_report_names_tensors_a_save_cannot_carry(tmp_path):
    o = open_module(WithConstants())
    report = save_opened(o, str(tmp_path / "m.safetensors"))
    assert sorted(report.not_saved) == ["cache", "scale"]
    assert any("2 tensor(s) are not part of the state_dict" in n and "cache" in n for n in report.notes())
    assert save_opened(o, str(tmp_path / "n.pt"), not_saved=["scale"]).not_saved == ["scale"]
    assert save_opened(open_module(nn.Linear(2, 2)), str(tmp_path / "l.pt")).notes() == []


def test_cli_prints_what_was_not_saved(tmp_path):
    (tmp_path / "wc.py").write_text("import torch\nfrom torch import nn\n\nclass Net(nn.Module):\n"
                                    "    def __init__(self):\n        super().__init__()\n        self.l = nn.Linear(2, 2)\n"
                                    "        self.scale = torch.tensor(3.0)\n")
    r = subprocess.run([sys.executable, "-m", "modeltui", f"{tmp_path}/wc.py:Net", "--save", str(tmp_path / "o.safetensors")],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("saved ") and r.stdout.rstrip().endswith("verified")
    assert r.stderr == "modeltui: warning: 1 tensor(s) are not part of the state_dict and were not saved " \
                       "(constants, non-persistent buffers): scale\n"


def test_index_json_of_the_destination_folder_is_read_safely(tmp_path):
    (tmp_path / "broken.index.json").write_text("{not json")
    (tmp_path / "odd.index.json").write_text(json.dumps({"weight_map": ["x"]}))
    save_state_dict({"w": torch.ones(1)}, str(tmp_path / "m.safetensors"))
    o = open_target(str(tmp_path / "m.safetensors"))
    assert save_conflict(o, str(tmp_path / "other.safetensors")) is None


@pytest.mark.parametrize("layout", ["flat", "model_key", "nested"])
def test_other_training_checkpoint_layouts_keep_their_entries(tmp_path, layout):
    w, b = torch.randn(3, 2), torch.randn(3)
    obj = {
        "flat": {"w": w, "b": b, "epoch": 3, "note": "flat"},
        "model_key": {"model": {"w": w, "b": b}, "optimizer": {"state": {0: {"m": torch.ones(3)}}}, "step": 10},
        "nested": {"state_dict": {"enc": {"w": w}, "dec": {"b": b}}, "epoch": 1, "extra": [1, 2.5, "x"]},
    }[layout]
    path = str(tmp_path / "c.pt")
    torch.save(obj, path)
    o = open_container(path)
    make_editable(o)
    names = sorted(o.info.tensors)
    with torch.no_grad():
        for p in o.model.parameters():
            p.add_(1)
    report = save_opened(o, path)
    assert report.kept_entries
    after = torch.load(path, weights_only=True)
    assert list(after) == list(obj)
    flat, _, _ = find_state_dict(after)
    assert sorted(flat) == names
    want = dict(zip(sorted(find_state_dict(obj)[0]), [t + 1 for _, t in sorted(find_state_dict(obj)[0].items())]))
    assert all(torch.equal(flat[k], want[k]) for k in names)
    for k in report.kept_entries:
        assert pickled(after[k]) == pickled(obj[k]), k


@pytest.mark.gpu
@pytest.mark.parametrize("ext", [".safetensors", ".pt"])
def test_a_cuda_model_with_tied_weights_round_trips(tmp_path, ext):
    m = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10, bias=False)).cuda()
    m[1].weight = m[0].weight
    out = str(tmp_path / f"m{ext}")
    report = save_opened(open_module(m), out)
    assert report.aliases == {"1.weight": "0.weight"}
    o = open_target(out)
    assert ["0.weight", "1.weight"] in [sorted(g) for g in o.info.tied_groups]
    assert same_bits(o.tensor("1.weight"), m[0].weight.cpu())
