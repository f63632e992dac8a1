"""Headless key surgery: --rename, --strip-prefix, --drop, --extract, --cast / --keep-dtype, --dry-run, --save DIR/."""

import json
import os
import subprocess
import sys

import pytest
import torch

from modeltui.cli import main
from modeltui.core import open_target
from sample_models import zoo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tinygpt(seed=0):
    torch.manual_seed(seed)
    return zoo.TinyGPT(vocab=64, d=16, layers=2, heads=2, ctx=16)


@pytest.fixture(scope="module")
def ddp(tmp_path_factory):
    """A DistributedDataParallel-style checkpoint: every key starts with module., the embedding tied to the head."""
    folder = tmp_path_factory.mktemp("ddp")
    model = tinygpt()
    path = str(folder / "ddp.pt")
    torch.save({"module." + k: v for k, v in model.state_dict().items()}, path)
    return path, model


def run(args, capsys):
    try:
        code = main(args)
    except SystemExit as e:  # argparse's own refusals
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_strip_cast_keep_and_sharded_save(ddp, tmp_path, capsys):
    path, model = ddp
    out = tmp_path / "out"
    code, stdout, err = run([path, "--strip-prefix", "module.", "--cast", "bfloat16", "--keep-dtype", "*ln*",
                             "--save", f"{out}/", "--max-shard-size", "10KB"], capsys)
    assert code == 0, err
    assert stdout.startswith(f"saved {out}/ (") and "verified" in stdout and "29 renamed" in stdout
    assert "every key starts with" not in err  # the strip was asked for
    index = json.load(open(out / "model.safetensors.index.json"))
    assert all(not k.startswith("module.") for k in index["weight_map"])
    o = open_target(str(out))
    sd = model.state_dict()
    for name, x in o.info.tensors.items():
        want = sd[name]
        expect = want.dtype if "ln" in name or not want.is_floating_point() else torch.bfloat16
        assert x.dtype == str(expect).removeprefix("torch."), name
        assert torch.equal(o.tensor(name), want.to(expect)), name
    assert o.info.tied_groups == [["lm_head.weight", "tok.weight"]]


def test_dry_run_prints_the_plan_and_writes_nothing(ddp, tmp_path, capsys):
    path, _ = ddp
    out = tmp_path / "out"
    code, stdout, _ = run([path, "--strip-prefix", "module.", "--drop", "blocks.1.*", "--cast", "float16",
                           "--save", f"{out}/", "--max-shard-size", "8KB", "--dry-run"], capsys)
    assert code == 0 and not out.exists()
    lines = stdout.splitlines()
    assert lines[0].split() == ["key", "new", "key", "dtype", "bytes"]
    row = next(line for line in lines if line.startswith("module.tok.weight "))
    assert "→ tok.weight" in row and "float32→float16" in row and "4.0 KiB → 2.0 KiB" in row
    assert any(line.startswith("module.blocks.1.ln1.weight") and "✗ dropped by --drop 'blocks.1.*'" in line for line in lines)
    assert "29 tensors: 17 renamed, 12 dropped, " in stdout and "would write" in stdout and "model-00001-of-" in stdout
    assert lines[-1] == "nothing was written (--dry-run)"
    code, stdout, _ = run([path, "--strip-prefix", "module.", "--drop", "blocks.1.*", "--save", f"{out}/",
                           "--max-shard-size", "8KB", "--dry-run", "--json"], capsys)
    data = json.loads(stdout)
    assert code == 0 and not out.exists()
    assert data["kept"] == 17 and data["dropped"] == 12 and data["renamed"] == 17
    key = next(k for k in data["keys"] if k["key"] == "module.tok.weight")
    assert key["new_key"] == "tok.weight" and key["tied_with"] == ["module.lm_head.weight"]
    assert data["shards"]["index"] == "model.safetensors.index.json" and data["shards"]["aliases"] == {"tok.weight": "lm_head.weight"}
    assert sum(f["tensors"] for f in data["shards"]["files"]) == 16  # the tied pair stored once


@pytest.mark.parametrize("extra, why", [
    (["--strip-prefix", "model."], "--strip-prefix 'model.': no key starts with it (keys look like 'module.tok.weight')"),
    (["--rename", "(", "x"], "bad pattern '('"),
    (["--rename", "^module\\.tok", "module.pos"], "clash: 'module.tok.weight' would be renamed 'module.pos.weight'"),
    (["--rename", "nothing", "x"], "--rename 'nothing' 'x' matches no key"),
    (["--drop", "*"], "nothing left to save after --drop '*': every key was dropped"),
    (["--extract", "encoder"], "--extract 'encoder': no key lies under it"),
    (["--cast", "int8"], "--cast int8: choose one of float32, bfloat16, float16, float64"),
    (["--keep-dtype", "*norm*"], "--keep-dtype goes with --cast DTYPE"),
    (["--max-shard-size", "5XB"], "'5XB' is not a size"),
])
def test_refusals_are_one_line_exit_2_and_write_nothing(ddp, tmp_path, capsys, extra, why):
    path, _ = ddp
    out = tmp_path / "out"
    code, stdout, err = run([path, *extra, "--save", f"{out}/"], capsys)
    assert code == 2 and stdout == "" and err.count("\n") == 1 and why in err, err
    assert not out.exists()


def test_surgery_without_save_or_dry_run_is_refused(ddp, capsys):
    code, _, err = run([ddp[0], "--strip-prefix", "module."], capsys)
    assert code == 2 and "needs --save OUT" in err


def test_operations_apply_in_the_order_given(ddp, tmp_path, capsys):
    path, _ = ddp
    # rename first (while the keys still have module.), then strip
    code, stdout, _ = run([path, "--rename", r"^module\.blocks\.", "module.layers.", "--strip-prefix", "module.",
                           "--dry-run", "--json"], capsys)
    assert code == 0
    m = {k["key"]: k["new_key"] for k in json.loads(stdout)["keys"]}
    assert m["module.blocks.0.ln1.weight"] == "layers.0.ln1.weight"
    # the other order: the rename no longer matches anything
    code, _, err = run([path, "--strip-prefix", "module.", "--rename", r"^module\.blocks\.", "module.layers.", "--dry-run"], capsys)
    assert code == 2 and "matches no key" in err


def test_extract_a_subtree_keeps_its_ties(tmp_path, capsys):
    model = tinygpt()
    model.blocks[1].mlp[0].weight = model.blocks[0].mlp[0].weight  # a tie inside the extracted subtree
    path = str(tmp_path / "m.pt")
    torch.save(model.state_dict(), path)
    out = tmp_path / "blocks.safetensors"
    code, stdout, err = run([path, "--extract", "blocks", "--save", str(out)], capsys)
    assert code == 0, err
    o = open_target(str(out))
    assert set(o.info.tensors) == {k[len("blocks."):] for k in model.state_dict() if k.startswith("blocks.")}
    assert o.info.tied_groups == [["0.mlp.0.weight", "1.mlp.0.weight"]]
    assert torch.equal(o.tensor("1.attn.in_proj_weight"), model.blocks[1].attn.in_proj_weight)


def test_a_training_checkpoint_renamed_to_ckpt_keeps_its_other_entries(ckpts, tmp_path, capsys):
    out = tmp_path / "renamed.ckpt"
    code, stdout, err = run([ckpts["lightning.ckpt"], "--strip-prefix", "model.", "--save", str(out)], capsys)
    assert code == 0, err
    obj = torch.load(str(out), weights_only=True)
    assert obj["epoch"] == 3 and obj["global_step"] == 1200 and obj["hyper_parameters"]["layers"] == 2
    assert "tok.weight" in obj["state_dict"] and not any(k.startswith("model.") for k in obj["state_dict"])
    assert obj["state_dict"]["tok.weight"].data_ptr() == obj["state_dict"]["lm_head.weight"].data_ptr()


def test_an_architecture_gets_its_keys_renamed_and_weights_stripped_to_fit(ddp, tmp_path, capsys):
    path, model = ddp
    target = tmp_path / "arch.py"
    target.write_text("from sample_models import zoo\ndef net():\n    return zoo.TinyGPT(vocab=64, d=16, layers=2, heads=2, ctx=16)\n")
    out = tmp_path / "hf"
    code, stdout, err = run([f"{target}:net", "-w", path, "--rename", "^", "model.", "--save", f"{out}/"], capsys)
    assert code == 0, err
    assert "stripped the prefix 'module.' (added by DistributedDataParallel / DataParallel) from the keys of ddp.pt" in err
    o = open_target(str(out))
    assert set(o.info.tensors) == {"model." + k for k in model.state_dict()}
    assert torch.equal(o.tensor("model.tok.weight"), model.tok.weight)


def test_a_bare_checkpoint_with_a_wrapper_prefix_says_so(ddp, tmp_path, capsys):
    code, _, err = run([ddp[0], "--save", str(tmp_path / "same.safetensors")], capsys)
    assert code == 0 and "every key starts with 'module.' (added by DistributedDataParallel / DataParallel)" in err
    assert "--strip-prefix module. removes it" in err
    assert next(iter(open_target(str(tmp_path / "same.safetensors")).info.tensors)).startswith("module.")


def test_the_installed_command_converts_to_a_folder(ddp, tmp_path):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "modeltui", ddp[0], "--strip-prefix", "module.", "--save", str(out) + "/"],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert os.listdir(out) == ["model.safetensors"]


def test_the_sources_metadata_and_format_pt_are_in_every_shard(ckpts, tmp_path, capsys):
    from safetensors import safe_open

    out = tmp_path / "out"
    code, _, err = run([ckpts["plain.safetensors"], "--cast", "float16", "--save", f"{out}/", "--max-shard-size", "6KB"], capsys)
    assert code == 0, err
    shards = sorted(f for f in os.listdir(out) if f.endswith(".safetensors"))
    assert len(shards) > 2
    for f in shards:
        with safe_open(str(out / f), "pt") as h:
            assert h.metadata() == {"format": "pt", "note": "untied copy"}
    assert json.load(open(out / "model.safetensors.index.json"))["metadata"]["note"] == "untied copy"
