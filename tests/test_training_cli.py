"""Issue 15, headless: -i … --json gains "forward", --backward gains "grad_norm", --summary prints the layers table."""

import json
import sys
import textwrap

import pytest

from modeltui.cli import main

FORWARD_KEYS = {"path", "type", "output_shapes", "mean", "std", "min", "max", "zero_fraction", "nan", "inf", "ms"}


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "models.py").write_text(textwrap.dedent('''
        import torch
        from torch import nn

        def nan_net():
            torch.manual_seed(0)
            net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
            with torch.no_grad():
                net[2].weight[0, 0] = float("nan")
            return net

        def frozen_net():
            torch.manual_seed(0)
            net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
            net[0].requires_grad_(False)
            return net

        def all_frozen():
            return nn.Sequential(nn.Linear(4, 2)).requires_grad_(False)

        def regression():
            return nn.Sequential(nn.Linear(4, 1))
    '''))
    return tmp_path


def run_json(capsys, *args):
    code = main(list(args) + ["--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_json_with_inputs_gains_the_forward_object(capsys):
    d = run_json(capsys, "sample_models.book:make_chimera", "-i", "2,20")
    f = d["forward"]
    assert f["loss"] is None and f["first_nonfinite"] is None and f["backward"] is None
    assert [m["path"] for m in f["modules"]][:4] == ["0.net.0", "0.net.1", "0.net.2", "0.net.3"]
    for m in f["modules"]:
        assert FORWARD_KEYS <= set(m)
        assert isinstance(m["output_shapes"], list) and m["nan"] == 0 and m["inf"] == 0
    relu = next(m for m in f["modules"] if m["path"] == "0.net.1")
    assert relu["type"] == "ReLU" and relu["output_shapes"] == [[2, 64]] and relu["min"] == 0.0
    assert 0 < relu["zero_fraction"] < 1  # dead units of a ReLU
    assert "grad_norm" not in d["tensors"][0]  # only with --backward
    assert "forward" not in run_json(capsys, "sample_models.book:make_chimera")  # no -i, no run


def test_a_nan_weight_is_the_first_non_finite_module_in_the_json(user_dir, capsys):
    f = run_json(capsys, "models:nan_net", "-i", "2,4")["forward"]
    assert f["first_nonfinite"] == "2"
    entry = next(m for m in f["modules"] if m["path"] == "2")
    assert entry["nan"] > 0 and entry["mean"] is None and entry["std"] is None


def test_backward_gains_grad_norms_null_for_frozen(user_dir, capsys):
    import torch

    from models import frozen_net  # the same model the CLI builds (seeded)

    d = run_json(capsys, "models:frozen_net", "-i", "2,4", "--backward", "sum")
    f = d["forward"]
    assert f["backward"] == "sum" and f["accumulated"] is False and isinstance(f["loss"], float)
    norms = {t["name"]: t["grad_norm"] for t in d["tensors"]}
    assert norms["0.weight"] is None and norms["0.bias"] is None  # frozen: no grad
    net = frozen_net()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 4, generator=gen)  # what -i 2,4 draws with seed 0
    net.eval()
    net(x).sum().backward()
    assert norms["2.weight"] == pytest.approx(float(net[2].weight.grad.norm()), rel=1e-5)
    assert f["loss"] == pytest.approx(float(net(x).sum().detach()), rel=1e-5)
    assert next(m for m in f["modules"] if m["path"] == "2")["grad_norm"] == pytest.approx(
        float(torch.cat([net[2].weight.grad.reshape(-1), net[2].bias.grad]).norm()), rel=1e-5)


def test_summary_prints_the_layers_table(capsys):
    assert main(["sample_models.book:make_net", "-i", "2,20", "--backward", "ce", "--summary"]) == 0
    out, err = capsys.readouterr()
    assert "forward pass" in out and "loss (ce)" in out and "grads cleared first" in out
    table = out[out.index("forward pass"):]
    for col in ("module", "output", "mean", "std", "zeros", "NaN/Inf", "grad norm", "ms"):
        assert col in table
    lines = [line.split() for line in table.splitlines()]
    rows = {cells[1]: cells for cells in lines if len(cells) > 3 and cells[0].isdigit()}
    assert set(rows) == {"0", "1", "2", "(root)"} and rows["1"][2] == "ReLU"


@pytest.mark.parametrize("args, message", [
    (["sample_models.book:make_net", "--backward", "sum", "--json"], "--backward needs an input: give -i SHAPE"),
    (["sample_models.book:make_net", "-i", "2,20", "--backward", "sum"], "--backward goes with --json or --summary"),
    (["sample_models.book:make_net", "-i", "2,20", "--backward", "sum", "--save", "x.pt"],
     "--backward goes with --json or --summary"),
    (["models:all_frozen", "-i", "2,4", "--backward", "sum", "--json"], "no parameter requires grad"),
    (["models:regression", "-i", "2,4", "--backward", "ce", "--json"],
     r"backward pass \(ce\) with input \[2,4\] failed: ce needs a classifier-shaped output"),
    (["sample_models.book:make_net", "-i", "2,20", "--backward", "huber", "--json"], "argument --backward: invalid choice"),
])
def test_bad_backward_runs_end_with_one_line_and_exit_2(user_dir, capsys, args, message):
    import re

    try:
        code = main(args)
    except SystemExit as e:  # argparse's refusals
        code = e.code
    assert code == 2
    out, err = capsys.readouterr()
    assert out == "" and not (user_dir / "x.pt").exists()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), err
