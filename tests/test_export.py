"""The session exported as a script: run it (torch and safetensors only) and compare with modeltui's own save."""

import os
import re
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open

from modeltui.core import keys
from modeltui.core.editable import make_editable
from modeltui.core.editing import edit_values, initialise, initialise_custom
from modeltui.core.export import ExportError, export_script, script_for
from modeltui.core.request import OpenRequest
from modeltui.core.saving import save_opened
from modeltui.core.session import Session
from modeltui.core.surgery import cast, tie, untie
from modeltui.core.targets import open_request
from modeltui.core.tensors import same_bits
from modeltui.core.weights import load_weights_into
from sample_models import zoo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# modeltui made unimportable: the script must stand on torch and safetensors (and the user's own code)
RUN = "import sys; sys.modules['modeltui'] = None; sys.argv = sys.argv[1:]; exec(compile(open(sys.argv[0]).read(), sys.argv[0], 'exec'))"


def run_script(script, *args, cwd):
    r = subprocess.run([sys.executable, "-I", "-c", RUN, script, *args], capture_output=True, text=True, cwd=cwd, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def same_files(a, b):
    with safe_open(a, "pt") as x, safe_open(b, "pt") as y:
        assert sorted(x.keys()) == sorted(y.keys())
        assert x.metadata() == y.metadata()
        for k in x.keys():
            assert same_bits(x.get_tensor(k), y.get_tensor(k)), k


def test_an_exported_bare_session_reproduces_modeltuis_save_bit_for_bit(ckpts, tmp_path):
    req = OpenRequest.make(ckpts["model.safetensors"])
    o = open_request(req)
    make_editable(o)
    s = Session(o)
    initialise(s, "xavier_uniform_", {}, module="blocks.0", which="weights", seed=123)
    initialise(s, "normal_", {"mean": "0.5", "std": "2"}, tensor="pos.weight", seed=7)
    edit_values(s, "ln_f.weight", "[0:3] += 2.5")
    edit_values(s, "pos.weight", "[1, 2] = inf")
    untie(s, "lm_head.weight")
    tie(s, "blocks.0.ln1.weight", "blocks.1.ln1.weight")
    cast(s, "bfloat16", keep=["*ln*"])
    keys.rename(s, r"^blocks\.(\d+)\.", r"layers.\1.")
    keys.drop(s, "layers.1.mlp")
    initialise(s, "zeros_", {}, module="", seed=1)  # undone: not in the script
    s.undo()
    ours = str(tmp_path / "ours.safetensors")
    save_opened(o, ours)
    script = str(tmp_path / "session.py")
    report = export_script(s, req, script, str(tmp_path / "theirs.safetensors"))
    assert report.startswith(f"wrote {script}: 9 edit(s)")
    text = open(script).read()
    assert not re.search(r"^\s*(import|from)\s+modeltui", text, re.M)  # and running it with modeltui unimportable proves it
    assert "seeded(123," in text and "seeded(1," not in text
    out = run_script(script, cwd=str(tmp_path))
    assert "saved" in out
    same_files(ours, str(tmp_path / "theirs.safetensors"))
    # the target and the output can be given on the command line
    run_script(script, ckpts["model.safetensors"], str(tmp_path / "again.safetensors"), cwd=str(tmp_path))
    same_files(ours, str(tmp_path / "again.safetensors"))


def test_an_exported_architecture_session_with_weights(tmp_path):
    torch.manual_seed(5)
    weights = str(tmp_path / "ddp.pt")
    torch.save({"module." + k: v for k, v in zoo.TinyGPT().state_dict().items()}, weights)
    req = OpenRequest.make("sample_models.zoo:TinyGPT")
    o = open_request(req)
    s = Session(o)
    load_weights_into(s, weights, strip="module.")
    initialise_custom(s, "sample_models.book:my_init", module="blocks.0", seed=11)
    initialise(s, "kaiming_uniform_", {"nonlinearity": "relu"}, module="blocks.1", which="weights", seed=12)
    edit_values(s, "tok.weight", "*= 0.5")
    untie(s, "lm_head.weight")
    keys.freeze(s, "blocks.0")
    cast(s, "float16", keep=["*ln*", "*.bias"])
    keys.rename(s, "^", "model.")
    keys.drop(s, "blocks.1.mlp")
    ours = str(tmp_path / "ours.safetensors")
    save_opened(o, ours)
    script = str(tmp_path / "arch.py")
    export_script(s, req, script, str(tmp_path / "theirs.safetensors"))
    run_script(script, cwd=ROOT)  # the architecture is the user's code: importable from the project
    same_files(ours, str(tmp_path / "theirs.safetensors"))


def test_what_a_script_cannot_repeat_is_refused(ckpts, tmp_path):
    req = OpenRequest.make(ckpts["model.safetensors"])
    o = open_request(req)
    make_editable(o)
    s = Session(o)
    (tmp_path / "myinit.py").write_text("def bump(m):\n    for p in m._parameters.values():\n        p.data.add_(1)\n")
    initialise_custom(s, f"{tmp_path}/myinit.py:bump", module="blocks", style="module", seed=3)
    with pytest.raises(ExportError, match="module function run on a checkpoint without an architecture"):
        script_for(s, req, "out.safetensors")
    assert not os.path.exists(tmp_path / "x.py")
    dcp = OpenRequest.make(ckpts["dcp"])
    od = open_request(dcp)
    make_editable(od)
    sd = Session(od)
    edit_values(sd, next(iter(od.info.tensors)), "*= 2")
    with pytest.raises(ExportError, match="torch.distributed.checkpoint"):
        script_for(sd, dcp, "out.safetensors")
