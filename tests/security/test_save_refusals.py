"""Saves that would break or lose something are refused, or said plainly (issue 11 items 6, 12 and 15).

Saving into a multi-file checkpoint's own folder or over one of its shards
is refused headless and asked in the app; the default path lands beside the
folder. What a format cannot store (safetensors: sparse, quantized,
complex128) is named before anything is written; fp8 round-trips bit for
bit. A full disk, a folder or a trailing ``/`` as destination, a model
nested 1,000 deep and a symlinked destination each get a plain answer.
"""

import os
import shutil
import subprocess
import sys

import pytest
import torch
from torch import nn

from modeltui.core import open_module, open_target
from modeltui.core.save_checks import default_save_path, save_conflict
from modeltui.core.saving import SaveError, save_opened, save_state_dict

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def bits(t):
    return t.detach().contiguous().reshape(-1).view(torch.uint8)


def same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(bits(a), bits(b))


# ---------------------------------------------------------------- issue 11, item 6


def several_safetensors(folder):
    from safetensors.torch import save_file

    os.makedirs(folder)
    save_file({"a": torch.zeros(2)}, os.path.join(folder, "part1.safetensors"))
    save_file({"b": torch.ones(2)}, os.path.join(folder, "part2.safetensors"))
    return folder


@pytest.fixture(params=["sharded_safetensors", "sharded_bin", "dcp", "several"])
def source_folder(request, ckpts, tmp_path):
    folder = str(tmp_path / request.param)
    if request.param == "several":
        return several_safetensors(folder)
    shutil.copytree(ckpts[request.param], folder)
    return folder


def test_saving_into_the_checkpoint_folder_is_refused_headless(source_folder, tmp_path):
    o = open_target(source_folder)
    keys = sorted(o.info.tensors)
    listing = sorted(os.listdir(source_folder))
    inside = os.path.join(source_folder, "model.safetensors")
    with pytest.raises(SaveError, match="inside the checkpoint folder .* nothing was written") as e:
        save_opened(o, inside)
    assert f"{source_folder}.safetensors" in str(e.value)
    assert sorted(os.listdir(source_folder)) == listing
    assert sorted(open_target(source_folder).info.tensors) == keys  # still opens
    assert "Write it anyway?" in save_conflict(o, inside)
    # the suggestion lands beside the folder, never inside
    suggested = default_save_path(o, source_folder, None)
    assert suggested == f"{source_folder}.safetensors"
    assert save_conflict(o, suggested) is None
    save_opened(o, suggested)
    assert sorted(open_target(suggested).info.tensors) == keys


def test_the_app_may_write_into_the_folder_after_asking(tmp_path):
    folder = several_safetensors(str(tmp_path / "ckpt"))
    o = open_target(folder)
    save_opened(o, os.path.join(folder, "merged.safetensors"), overwrite_source=True)
    assert os.path.exists(os.path.join(folder, "merged.safetensors"))


def test_saving_over_a_shard_is_refused(ckpts, tmp_path):
    folder = str(tmp_path / "sharded")
    shutil.copytree(ckpts["sharded_safetensors"], folder)
    shard = os.path.join(folder, sorted(f for f in os.listdir(folder) if f.endswith(".safetensors"))[0])
    before = open(shard, "rb").read()
    o = open_target(folder)  # the open sharded checkpoint
    with pytest.raises(SaveError, match="one of the files of the checkpoint folder"):
        save_opened(o, shard)
    other = open_target(ckpts["state_dict.pt"])  # another model, over a file that folder's index names
    with pytest.raises(SaveError, match="is a shard named by model.safetensors.index.json"):
        save_opened(other, shard)
    assert "shard named by" in save_conflict(other, shard)
    assert open(shard, "rb").read() == before
    alone = open_target(shard)  # a shard opened on its own may be saved back onto itself
    assert save_conflict(alone, shard).endswith("exists. Overwrite it?")
    save_opened(alone, shard)


def test_default_save_path_for_a_sharded_weights_folder(ckpts, tmp_path):
    folder = str(tmp_path / "w")
    shutil.copytree(ckpts["sharded_safetensors"], folder)
    o = open_target("sample_models.checkpoints:model_for_checkpoints")
    assert default_save_path(o, "sample_models.checkpoints:model_for_checkpoints", folder + "/") == folder + ".safetensors"
    assert default_save_path(o, "pkg.mod:net", None) == "net.safetensors"
    f = str(tmp_path / "m.pt")
    torch.save({"a": torch.zeros(1)}, f)
    assert default_save_path(open_target(f), f, None) == str(tmp_path / "m.safetensors")


# ---------------------------------------------------------------- issue 11, item 12 (save part)


def exotic():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, generator=g)
    return {
        "coo": torch.eye(3).to_sparse(),
        "coo_uncoalesced": torch.sparse_coo_tensor(torch.tensor([[0, 0, 1], [1, 1, 2]]), torch.tensor([1.0, 2.0, 3.0]), (2, 3)),
        "csr": x.relu().to_sparse_csr(),
        "q": torch.quantize_per_tensor(x, 0.1, 3, torch.quint8),
        "qc": torch.quantize_per_channel(x, torch.tensor([0.1, 0.2, 0.3]), torch.tensor([1, 2, 3]), 0, torch.qint8),
        "c128": torch.randn(5, dtype=torch.complex128, generator=g),
    }


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_pt_stores_sparse_quantized_and_complex128(tmp_path):
    from modeltui.core.save_io import tensor_parts

    sd = exotic()
    out = str(tmp_path / "x.pt")
    report = save_state_dict(sd, out)
    assert report.tensors == len(sd) and report.nbytes > 0
    got = torch.load(out, weights_only=True)
    for k, v in sd.items():
        (gd, gp), (wd, wp) = tensor_parts(got[k]), tensor_parts(v)
        assert got[k].layout == v.layout and got[k].dtype == v.dtype and gd == wd, k
        assert all(same_bits(a, b) for a, b in zip(gp, wp)), k


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name,words", [("coo", "sparse_coo tensors"), ("csr", "sparse_csr tensors"),
                                        ("q", "quint8"), ("qc", "qint8"), ("c128", "complex128")])
def test_safetensors_says_what_it_cannot_store_before_writing(tmp_path, name, words):
    with pytest.raises(SaveError) as e:
        save_state_dict({"ok": torch.ones(2), name: exotic()[name]}, str(tmp_path / "x.safetensors"))
    assert f"safetensors cannot store {words} ('{name}'): save as .pt; nothing was written" in str(e.value)
    assert os.listdir(tmp_path) == []


FP8 = ["float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu"]


@pytest.mark.parametrize("ext", [".safetensors", ".pt"])
@pytest.mark.parametrize("dtype", FP8)
def test_fp8_round_trips_bit_for_bit(tmp_path, ext, dtype):
    every = torch.arange(256, dtype=torch.uint8).view(getattr(torch, dtype)).reshape(16, 16)  # every bit pattern, NaNs too
    out = str(tmp_path / f"f{ext}")
    save_state_dict({"w": every}, out)
    o = open_target(out)
    assert same_bits(o.tensor("w"), every)
    if ext == ".safetensors":
        from safetensors.torch import load_file

        assert same_bits(load_file(out)["w"], every)  # the library reads it the same


def test_safetensors_written_by_modeltui_is_read_by_the_library(tmp_path):
    from safetensors import safe_open

    g = torch.Generator().manual_seed(1)
    shared = torch.randn(3, 5, generator=g)
    sd = {"f32": shared, "tied": shared, "f16": torch.randn(7, generator=g).half(), "i8": torch.tensor([-1, 2], dtype=torch.int8),
          "bool": torch.tensor([True]), "scalar": torch.tensor(2.5, dtype=torch.float64), "empty": torch.zeros(0, 3),
          "view": torch.arange(20.0)[::3], "row": shared[1], "conj": torch.randn(2, dtype=torch.complex64, generator=g).conj()}
    out = str(tmp_path / "m.safetensors")
    save_state_dict(sd, out, metadata={"note": "hello"})
    with safe_open(out, "pt") as f:
        assert f.metadata() == {"format": "pt", "note": "hello", "tied": "f32"}
        for k in f.keys():
            assert same_bits(f.get_tensor(k), sd[k].resolve_conj()), k
    assert int.from_bytes(open(out, "rb").read(8), "little") % 8 == 0  # data aligned as the library aligns it


# ---------------------------------------------------------------- issue 11, item 15 (save parts)


def test_full_disk_during_a_pt_save_says_so(tmp_path):
    """A real failing write of torch's zip writer: the file size limit (ulimit -f) stops it half way."""
    resource = pytest.importorskip("resource")
    import signal

    src = tmp_path / "src.safetensors"
    save_state_dict({"w": torch.ones(2_000_000)}, str(src))

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    old = tmp_path / "old.pt"
    torch.save({"w": torch.zeros(1)}, old)
    before = old.read_bytes()
    # one interpreter, the CLI's main() twice: a new file, then over an existing one
    child = "import sys\nfrom modeltui.cli import main\nfor d in sys.argv[2:]:\n    print(main([sys.argv[1], '--save', d]))\n"
    r = subprocess.run([sys.executable, "-c", child, str(src), str(tmp_path / "new.pt"), str(old)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120, preexec_fn=limit)
    assert r.stdout.split() == ["2", "2"], r.stderr
    new_line, old_line = r.stderr.splitlines()
    assert new_line.startswith("modeltui: error: saving new.pt failed:")
    assert "size limit for files (ulimit -f)" in new_line and new_line.endswith("nothing was written")
    assert "enforce fail" not in r.stderr and "unchanged" not in new_line
    assert "size limit" in old_line and old_line.endswith("old.pt is unchanged")
    assert old.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["old.pt", "src.safetensors"]


def test_torch_writer_failure_on_a_full_disk_names_the_disk(tmp_path, monkeypatch):
    import modeltui.core.saving as saving

    def full(obj, f, *a, **k):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    class Statvfs:
        f_bavail, f_frsize = 0, 4096

    monkeypatch.setattr(torch, "save", full)
    monkeypatch.setattr(saving.os, "statvfs", lambda p: Statvfs(), raising=False)
    with pytest.raises(SaveError) as e:
        save_state_dict({"w": torch.ones(10)}, str(tmp_path / "m.pt"))
    assert "is full" in str(e.value) and "enforce" not in str(e.value)
    assert os.listdir(tmp_path) == []


def test_save_to_a_folder_or_a_trailing_slash_is_refused(tmp_path):
    sd = {"w": torch.ones(2)}
    (tmp_path / "a dir").mkdir()
    with pytest.raises(SaveError, match="a dir is a folder; saving to a folder is not supported yet") as e:
        save_state_dict(sd, str(tmp_path / "a dir"))
    assert "unknown format" not in str(e.value)
    with pytest.raises(SaveError, match=r"ends with '/', which names a folder.*x.safetensors; nothing was written"):
        save_state_dict(sd, str(tmp_path / "x.safetensors") + "/")
    assert sorted(os.listdir(tmp_path)) == ["a dir"]
    assert os.listdir(tmp_path / "a dir") == []


def test_cli_save_to_a_folder_says_it_is_a_folder(tmp_path, ckpts):
    (tmp_path / "out").mkdir()
    r = subprocess.run([sys.executable, "-m", "modeltui", ckpts["state_dict.pt"], "--save", str(tmp_path / "out")],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "is a folder" in r.stderr and "Traceback" not in r.stderr


def test_a_model_nested_1000_deep_can_be_saved(tmp_path):
    deep = nn.Linear(2, 2)
    for _ in range(1000):
        deep = nn.Sequential(deep)
    with pytest.raises(RecursionError):
        deep.state_dict()
    o = open_module(nn.Linear(1, 1))
    o.model = deep  # opening a model this deep is another module's business
    out = str(tmp_path / "deep.pt")
    report = save_opened(o, out)
    name = "0." * 1000 + "weight"
    got = torch.load(out, weights_only=True)
    assert report.tensors == 2 and list(got) == [name, name[:-6] + "bias"]
    inner = deep
    for _ in range(1000):
        inner = inner[0]
    assert torch.equal(got[name], inner.weight)


def test_module_state_dict_without_recursion_matches_torch():
    from modeltui.core.saving import module_state_dict

    m = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.Sequential(nn.Linear(3, 1)))
    m.register_buffer("scratch", torch.ones(1), persistent=False)
    m[2].register_state_dict_post_hook(lambda mod, sd, prefix, meta: sd.__setitem__(prefix + "extra", torch.zeros(1)))
    import sys as _sys

    want = m.state_dict()
    old = _sys.getrecursionlimit()
    try:
        _sys.setrecursionlimit(60)  # too shallow for torch's recursive state_dict under pytest's stack
        got = module_state_dict(m)
    finally:
        _sys.setrecursionlimit(old)
    assert list(got) == list(want)
    assert all(got[k] is want[k] or torch.equal(got[k], want[k]) for k in want)


def test_a_symlinked_destination_is_written_through(tmp_path):
    target = tmp_path / "real" / "model.safetensors"
    target.parent.mkdir()
    save_state_dict({"w": torch.zeros(3)}, str(target))
    link = tmp_path / "link.safetensors"
    link.symlink_to(target)
    report = save_state_dict({"w": torch.ones(3)}, str(link))
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert torch.equal(open_target(str(target)).tensor("w"), torch.ones(3))
    assert report.path == str(link)
    assert sorted(os.listdir(tmp_path)) == ["link.safetensors", "real"]
    assert os.listdir(target.parent) == ["model.safetensors"]
