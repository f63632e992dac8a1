"""Headless runs (--summary, --json, --save): strict weights, exit codes, bounded output (issue 10).

User code, signals and 200,000 tensors (issue 11) are in tests/security/test_headless_user_code.py.
"""

import json
import os
import subprocess
import sys

import pytest
import torch

from modeltui.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args, cwd=ROOT, timeout=60, **kw):
    return subprocess.run([sys.executable, "-m", "modeltui", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, **kw)


@pytest.fixture
def net_pt(tmp_path):
    """The book's ``net`` state_dict: none of its keys matches the book's ``MLP``."""
    from sample_models.book import make_net

    net = make_net()
    net(torch.rand(2, 20))
    path = tmp_path / "net.pt"
    torch.save(net.state_dict(), path)
    return str(path)


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    return tmp_path


# ------------------------------------------------------------ issue 10.1: strict weights


def test_weights_that_do_not_fit_fail_save_and_write_nothing(net_pt, tmp_path, capsys):
    out = tmp_path / "mlp.safetensors"
    code = main(["sample_models.book:MLP", "-i", "2,20", "-w", net_pt, "--save", str(out)])
    stdout, stderr = capsys.readouterr()
    assert code == 2
    assert not out.exists() and stdout == ""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("modeltui: error: --weights net.pt does not fit the model")
    assert "hidden.weight" in lines[0] and "0.weight" in lines[0] and "--no-strict" in lines[0]


@pytest.mark.parametrize("flag", ["--summary", "--json"])
def test_weights_that_do_not_fit_fail_summary_and_json(net_pt, capsys, flag):
    assert main(["sample_models.book:MLP", "-i", "2,20", "-w", net_pt, flag]) == 2
    stdout, stderr = capsys.readouterr()
    assert stdout == "" and stderr.count("\n") == 1 and "does not fit" in stderr


def test_no_strict_loads_what_fits_and_warns_on_stderr(net_pt, tmp_path, capsys):
    out = tmp_path / "mlp.safetensors"
    assert main(["sample_models.book:MLP", "-i", "2,20", "-w", net_pt, "--save", str(out), "--no-strict"]) == 0
    stdout, stderr = capsys.readouterr()
    assert out.exists() and stdout.startswith("saved ")
    assert "4 key(s) of the model are missing from net.pt" in stderr
    assert "4 unexpected key(s)" in stderr


def test_fitting_weights_pass_strict(net_pt, capsys):
    assert main(["sample_models.book:make_net", "-w", net_pt, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total_params"] == 20 * 256 + 256 + 256 * 10 + 10


def test_no_strict_is_documented_in_help():
    r = run_cli("--help")
    assert "--no-strict" in r.stdout and "NAME=SHAPE" in r.stdout


# ------------------------------------------------------------ issue 10.22: no terminal


def test_tui_without_a_terminal_says_so_and_exits_2(tmp_path):
    r = run_cli("sample_models.book:make_param_net", stdin=subprocess.DEVNULL, timeout=60)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a terminal" in lines[0] and "--summary" in lines[0] and "--json" in lines[0]


# ------------------------------------------------------------ --summary: constants, ties, big and deep models


def test_summary_shows_constants_apart(capsys):
    assert main(["sample_models.book:FixedHiddenMLP", "-i", "2,20", "--summary"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if ".rand_weight" in line)
    assert "constant (not in state_dict)" in row
    assert " 400 " not in row and " - " in row
    head = out.splitlines()[1]
    assert "params 420 " in head and "constants 1 (400 elements, not in params)" in head


MANY_TIES = """
import torch
from torch import nn

class Many(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(4, 4, bias=False) for _ in range(7))
        for layer in self.layers[1:]:
            layer.weight = self.layers[0].weight
"""


def test_summary_lists_a_few_tied_names_and_counts_the_others(user_dir, capsys):
    (user_dir / "ties.py").write_text(MANY_TIES)
    assert main(["ties.py:Many", "--summary"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "tied:" in line)
    assert "and 3 others" in row and row.count("layers.") == 3


WIDE = """
from torch import nn

def wide():
    return nn.Sequential(nn.ModuleList(nn.Linear(1, 1) for _ in range(150)))
"""


def test_summary_caps_submodules_and_counts_exactly_what_is_hidden(user_dir, capsys):
    (user_dir / "wide.py").write_text(WIDE)
    assert main(["wide.py:wide", "--summary"]) == 0  # 150 alike: one group row and the first of them
    out = capsys.readouterr().out
    assert sum(1 for line in out.splitlines() if "  Linear  " in line) == 1 and "×150 blocks" in out and "not shown" not in out
    assert main(["wide.py:wide", "--summary", "--no-groups"]) == 0
    out = capsys.readouterr().out
    assert "… 50 more submodules" in out
    assert sum(1 for line in out.splitlines() if "  Linear  " in line) == 100
    assert "50 module(s) and 100 tensor(s) not shown (at most 40 tensors and 100 submodules per module)" in out


DEEP = """
from torch import nn

def make(n=1000):
    m = nn.Linear(2, 2)
    for _ in range(n):
        m = nn.Sequential(m)
    return m

def too_deep():
    return make(3000)
"""


def test_a_model_nested_1000_deep_prints_summary_and_json(user_dir, capsys):
    (user_dir / "deep.py").write_text(DEEP)
    assert main(["deep.py:make", "-i", "2,2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["modules"]) == 1001
    assert main(["deep.py:make", "-i", "2,2", "--summary"]) == 0
    out, err = capsys.readouterr()
    assert "[1000] 0" in out and "Linear" in out and err == ""


def test_a_model_nested_too_deep_says_so_in_one_line(user_dir, capsys):
    (user_dir / "deep.py").write_text(DEEP)
    assert main(["deep.py:too_deep", "-i", "2,2", "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert "nests too deeply" in err and "Traceback" not in err and len(err) < 500
