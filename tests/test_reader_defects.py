"""Checkpoint reading: training containers, lists, --trust imports (issue 10).

Deep nesting, fp8 and compressed zips (issue 11) are in tests/security/test_odd_files.py.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from modeltui.core import CheckpointError, open_target


# ------------------------------------------------------------ issue 10.2: the container


def test_lightning_checkpoint_keeps_its_container(ckpts, tmp_path):
    o = open_target(ckpts["lightning.ckpt"])
    c = o.container
    assert c is not None and c.path == os.path.abspath(ckpts["lightning.ckpt"]) == o.path
    assert c.weights_key == ("state_dict",)
    assert c.obj["epoch"] == 3 and c.obj["global_step"] == 1200
    assert c.obj["hyper_parameters"] == {"lr": 1e-3, "layers": 2}
    assert sorted(c.other_entries()) == ["epoch", "global_step", "hyper_parameters", "lr_schedulers", "optimizer_states"]
    assert set(c.names) == set(o.info.tensors)
    assert c.names["model.tok.weight"] == ("model.tok.weight",)

    new = {n: torch.full_like(o.tensor(n), 7) for n in o.info.tensors}
    torch.save(c.with_weights(new), tmp_path / "back.ckpt")
    back = torch.load(tmp_path / "back.ckpt", weights_only=True)
    assert back["epoch"] == 3 and back["global_step"] == 1200 and back["hyper_parameters"] == {"lr": 1e-3, "layers": 2}
    assert torch.equal(back["optimizer_states"][0]["state"][0]["exp_avg"], torch.zeros(3))
    assert set(back["state_dict"]) == set(new)
    assert all(bool((v == 7).all()) for v in back["state_dict"].values())


def test_container_names_map_flat_names_to_key_chains(tmp_path):
    enc, dec = torch.randn(3, 2), torch.randn(2)
    path = tmp_path / "nested.pt"
    torch.save({"model": {"enc": {"w": enc}, "dec": {"b": dec}}, "optimizer": {"state": {}}, "step": 5}, path)
    o = open_target(str(path))
    c = o.container
    assert c.weights_key == ("model",)
    assert c.names == {"enc.w": ("enc", "w"), "dec.b": ("dec", "b")}
    assert o.info.metadata["weights_key"] == "model"
    torch.save(c.with_weights({"enc.w": enc * 0, "dec.b": dec + 1}), tmp_path / "out.pt")
    back = torch.load(tmp_path / "out.pt", weights_only=True)
    assert back["step"] == 5 and back["optimizer"] == {"state": {}}
    assert torch.equal(back["model"]["enc"]["w"], enc * 0) and torch.equal(back["model"]["dec"]["b"], dec + 1)


def test_direct_tensors_beside_other_entries_get_a_container(tmp_path):
    path = tmp_path / "direct.pt"
    torch.save({"w": torch.ones(2), "b": torch.zeros(1), "epoch": 4}, path)
    c = open_target(str(path)).container
    assert c.weights_key == () and c.names == {"w": ("w",), "b": ("b",)}
    assert c.other_entries() == ["epoch"]


@pytest.mark.parametrize("name", ["state_dict.pt", "legacy.pt", "model.safetensors", "sharded_safetensors", "sharded_bin", "dcp"])
def test_no_container_for_plain_state_dicts(ckpts, name):
    assert open_target(ckpts[name]).container is None


def test_pickled_module_keeps_its_path(ckpts):
    o = open_target(ckpts["full_module.pt"], trust=True)
    assert o.path == os.path.abspath(ckpts["full_module.pt"])


# ------------------------------------------------------------ issue 10.9: lists and tuples


def test_the_books_list_and_dict_files_open(tmp_path):
    from safetensors.torch import load_file

    from modeltui.core.saving import save_opened

    x, y = torch.arange(4.0), torch.zeros(4)
    torch.save([x, y], tmp_path / "x-files.pt")
    o = open_target(str(tmp_path / "x-files.pt"))
    assert list(o.info.tensors) == ["0", "1"]
    assert torch.equal(o.tensor("0"), x) and torch.equal(o.tensor("1"), y)
    save_opened(o, str(tmp_path / "x.safetensors"))
    back = load_file(tmp_path / "x.safetensors")
    assert torch.equal(back["0"], x) and torch.equal(back["1"], y)

    torch.save({"x": x, "y": y}, tmp_path / "mydict")
    o = open_target(str(tmp_path / "mydict"))
    assert list(o.info.tensors) == ["x", "y"] and o.container is None


def test_the_books_single_tensor_file_is_saved_back_as_a_tensor(tmp_path):
    """6.6's ``torch.save(x, 'x-file')``: saved back to a torch file it is still a tensor, not ``{"tensor": x}``."""
    from modeltui.core.editable import make_editable
    from modeltui.core.editing import edit_values
    from modeltui.core.session import Session
    from modeltui.core.saving import save_opened

    torch.save(torch.arange(4.0), tmp_path / "x-file")
    o = open_target(str(tmp_path / "x-file"))
    assert list(o.info.tensors) == ["tensor"]
    make_editable(o)
    edit_values(Session(o), "tensor", "[0] = 42")
    for name in ("x-file.pt", "x.ckpt"):
        report = save_opened(o, str(tmp_path / name))
        back = torch.load(tmp_path / name, weights_only=True)
        assert isinstance(back, torch.Tensor), type(back)
        assert back.tolist() == [42.0, 1.0, 2.0, 3.0] and report.kept_entries == []
    save_opened(o, str(tmp_path / "x.safetensors"))  # a safetensors file holds named tensors: the name is "tensor"
    from safetensors.torch import load_file

    assert load_file(tmp_path / "x.safetensors")["tensor"].tolist() == [42.0, 1.0, 2.0, 3.0]


def test_nested_lists_and_tuples_open_as_paths(tmp_path):
    a, b = torch.ones(2), torch.zeros(3)
    torch.save((a, [b, {"z": torch.full((1,), 5.0)}]), tmp_path / "t.pt")
    o = open_target(str(tmp_path / "t.pt"))
    assert list(o.info.tensors) == ["0", "1.0", "1.1.z"]
    assert o.container.names["1.1.z"] == (1, 1, "z")
    assert o.info.modules["1.1"].tensors == ["1.1.z"]


# ------------------------------------------------------------ issue 10.25: no torch for safetensors


@pytest.mark.parametrize("which", ["folder", "index"])
def test_json_of_sharded_safetensors_does_not_import_torch(ckpts, which):
    target = ckpts["sharded_safetensors"]
    if which == "index":
        target = os.path.join(target, "model.safetensors.index.json")
    code = (
        "import sys; from modeltui.cli import main; "
        f"code = main([{target!r}, '--json']); "
        "sys.stderr.write(f'RESULT {code} {\"torch\" in sys.modules}\\n')"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "RESULT 0 False" in r.stderr, r.stderr
    assert json.loads(r.stdout)["metadata"]["shards"] == 2


# ------------------------------------------------------------ issue 10.20 / 10.21: --trust and the current folder

NET_SRC = """
import torch

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(2, 3)
"""


@pytest.fixture
def pickled_net(tmp_path, monkeypatch):
    """``m.pt`` pickling ``{name}.Net`` whose source is in tmp_path; cwd is tmp_path and not on sys.path."""
    import importlib.util

    def make(name: str):
        (tmp_path / f"{name}.py").write_text(NET_SRC)
        spec = importlib.util.spec_from_file_location(name, tmp_path / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
        torch.save(mod.Net(), tmp_path / "m.pt")
        del sys.modules[name]
        monkeypatch.chdir(tmp_path)
        monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
        monkeypatch.delitem(sys.modules, name, raising=False)
        return tmp_path / "m.pt"

    return make


def test_pickled_module_whose_class_is_in_the_current_folder(pickled_net):
    path = pickled_net("mynet_in_cwd")
    o = open_target("m.pt", trust=True)
    assert type(o.model).__name__ == "Net" and o.info.tensors["fc.weight"].shape == (3, 2)
    assert o.path == str(path)
    sys.modules.pop("mynet_in_cwd", None)


def test_import_failure_of_the_pickled_class_module_is_named(pickled_net, tmp_path):
    pickled_net("mynet_broken")
    (tmp_path / "mynet_broken.py").write_text("raise RuntimeError('needs a GPU driver')\n# changed\n")
    shutil.rmtree(tmp_path / "__pycache__", ignore_errors=True)
    with pytest.raises(CheckpointError) as e:
        open_target("m.pt", trust=True)
    msg = str(e.value)
    assert "importing module 'mynet_broken'" in msg and "RuntimeError: needs a GPU driver" in msg
    assert "corrupt" not in msg


def test_a_safetensors_file_is_mapped_once_when_threads_read_it_at_once(tmp_path):
    """Workers reading at once (statistics while a checkpoint is made editable, compare threads) share one
    mapping: a second one would leave its region registered after it is gone, and a later mapping at that
    address would be read from the wrong file."""
    import threading

    import torch
    from safetensors.torch import save_file

    from modeltui.core.readers.safetensors import SafetensorsSource

    path = str(tmp_path / "m.safetensors")
    save_file({"a": torch.arange(1000.0), "b": torch.ones(10)}, path)
    for _ in range(30):
        source = SafetensorsSource({"a": path, "b": path})
        barrier = threading.Barrier(4)
        got = []

        def read():
            barrier.wait()
            got.append(source.get("a"))

        threads = [threading.Thread(target=read) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(source._regions) == 1 and len({t.data_ptr() for t in got}) == 1
        source.close()
