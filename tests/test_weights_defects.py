"""Loading weights (-w and w): tied names, dtype casts, lazy models, strict opens."""

import json

import pytest
import torch

from modeltui.cli import main
from modeltui.core import TargetError, open_module, open_target
from modeltui.core.session import Session
from modeltui.core.weights import cast_is_exact, load_weights, load_weights_into

TIED = "sample_models.checkpoints:model_for_checkpoints"  # TinyGPT: lm_head.weight is tok.weight


@pytest.fixture
def tied_files(tmp_path):
    """A tied model saved three ways: save_model, and Hugging Face style keeping either name only."""
    from safetensors.torch import save_file, save_model

    from sample_models.checkpoints import model_for_checkpoints

    model = model_for_checkpoints(seed=7)
    sd = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
    save_model(model, str(tmp_path / "save_model.safetensors"))
    save_file({k: v for k, v in sd.items() if k != "lm_head.weight"}, tmp_path / "hf.safetensors", metadata={"format": "pt"})
    save_file({k: v for k, v in sd.items() if k != "tok.weight"}, tmp_path / "hf_head.safetensors", metadata={"format": "pt"})
    return tmp_path, sd


@pytest.mark.parametrize("name, absent, via", [
    ("hf.safetensors", "lm_head.weight", "tok.weight"),
    ("hf_head.safetensors", "tok.weight", "lm_head.weight"),
])
def test_a_tied_name_the_file_lacks_is_not_missing(tied_files, name, absent, via):
    folder, sd = tied_files
    o = open_target(TIED, weights=str(folder / name), strict=True)
    r = o.weights
    assert r.missing == [] and r.fits
    assert (absent, via) in r.tied
    assert not any("missing" in line for line in r.lines())
    assert o.model.lm_head.weight is o.model.tok.weight
    assert torch.equal(o.model.tok.weight, sd["tok.weight"])


def test_tied_weights_from_save_model_load_headless(tied_files, capsys):
    folder, _ = tied_files
    assert main([TIED, "-w", str(folder / "save_model.safetensors"), "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["kind"] == "module" and "missing" not in err


def test_a_tied_name_is_missing_when_nothing_of_its_tie_loads(tmp_path):
    from safetensors.torch import save_file

    from sample_models.checkpoints import model_for_checkpoints

    sd = model_for_checkpoints().state_dict()
    save_file({k: v.contiguous() for k, v in sd.items() if k not in ("tok.weight", "lm_head.weight")}, tmp_path / "x.safetensors")
    r = open_target(TIED, weights=str(tmp_path / "x.safetensors")).weights
    assert sorted(r.missing) == ["lm_head.weight", "tok.weight"] and not r.tied
    with pytest.raises(TargetError, match="does not fit the model: 2 key"):
        open_target(TIED, weights=str(tmp_path / "x.safetensors"), strict=True)


def test_tied_names_with_different_values_in_the_file_are_reported(tmp_path, capsys):
    """A file whose two names of one tied tensor differ (an untied fine-tune): one set of values is dropped, so say so."""
    from sample_models.checkpoints import model_for_checkpoints

    sd = {k: v.clone() for k, v in model_for_checkpoints(seed=3).state_dict().items()}
    sd["lm_head.weight"] = torch.full_like(sd["lm_head.weight"], 7.0)
    torch.save(sd, tmp_path / "untied.pt")
    o = open_target(TIED, weights=str(tmp_path / "untied.pt"))
    r = o.weights
    assert r.conflicts == [("lm_head.weight", "tok.weight")] and not r.fits
    assert torch.equal(o.model.tok.weight, sd["tok.weight"])  # the first name's values, as from_pretrained ties them
    assert any("differ" in line and "lm_head.weight" in line for line in r.lines())
    out = tmp_path / "out.safetensors"
    assert main([TIED, "-w", str(tmp_path / "untied.pt"), "--save", str(out)]) == 2 and not out.exists()
    assert "lm_head.weight" in capsys.readouterr().err
    same = dict(sd, **{"lm_head.weight": sd["tok.weight"].clone()})  # equal values: nothing to report
    torch.save(same, tmp_path / "same.pt")
    assert open_target(TIED, weights=str(tmp_path / "same.pt"), strict=True).weights.conflicts == []


# ------------------------------------------------------------ issue 10.24: dtype casts


def test_fp32_weights_onto_a_bf16_model_report_the_lossy_cast(tmp_path):
    from sample_models.book import make_my_linear_net

    torch.save(make_my_linear_net().state_dict(), tmp_path / "fp32.pt")
    model = make_my_linear_net().to(torch.bfloat16)
    r = load_weights(model, str(tmp_path / "fp32.pt"))
    assert sorted(r.cast) == sorted((k, "float32", "bfloat16") for k in ("0.weight", "0.bias", "1.weight", "1.bias"))
    line = next(line for line in r.lines() if "cast" in line)
    assert "4 tensor(s) cast from float32 (file) to bfloat16 (model)" in line and "loses precision" in line


def test_a_widening_cast_is_reported_as_exact(tmp_path):
    from sample_models.book import make_my_linear_net

    torch.save(make_my_linear_net().half().state_dict(), tmp_path / "fp16.pt")
    r = load_weights(make_my_linear_net(), str(tmp_path / "fp16.pt"))
    assert len(r.cast) == 4 and "float16 (file) to float32 (model) on load, exact" in " ".join(r.lines())


def test_cast_exactness():
    assert cast_is_exact("float16", "float32") and cast_is_exact("int16", "float32") and cast_is_exact("bool", "float16")
    assert not cast_is_exact("float32", "bfloat16") and not cast_is_exact("float16", "bfloat16")
    assert not cast_is_exact("int64", "float64") and not cast_is_exact("float32", "int64")


BF16_NET = """
import torch
from sample_models.book import make_my_linear_net

def make():
    return make_my_linear_net().to(torch.bfloat16)
"""


def test_headless_reports_the_cast_on_stderr(tmp_path, monkeypatch, capsys):
    from sample_models.book import make_my_linear_net

    monkeypatch.chdir(tmp_path)
    (tmp_path / "bf.py").write_text(BF16_NET)
    torch.save(make_my_linear_net().state_dict(), tmp_path / "fp32.pt")
    assert main(["bf.py:make", "-w", "fp32.pt", "--json"]) == 0
    out, err = capsys.readouterr()
    assert "cast from float32 (file) to bfloat16 (model)" in err
    assert any("cast from float32" in w for w in json.loads(out)["warnings"])


# ------------------------------------------------------------ issue 10.8: w on a lazy model


def test_w_on_a_lazy_model_materialises_from_the_file_and_undo_restores_the_defaults(tmp_path):
    from modeltui.core.forward import run_forward
    from modeltui.core.inputs import parse_input_spec
    from sample_models.book import make_param_net

    src = make_param_net()
    src(torch.rand(2, 4))
    torch.save(src.state_dict(), tmp_path / "p.pt")
    o = open_module(make_param_net(), "lazy")
    assert o.info.tensors["0.weight"].shape is None
    session = Session(o)
    report = load_weights_into(session, str(tmp_path / "p.pt"))
    assert sorted(report.materialised) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    assert o.info.tensors["0.weight"].shape == (8, 4) and not o.info.root.lazy
    assert torch.equal(o.model[0].weight, src[0].weight) and torch.equal(o.model[2].bias, src[2].bias)
    assert o.model[0].in_features == 4 and "in_features=4" in o.info.modules["0"].extra_repr

    session.undo()  # the values before the load: the layers' default initialisation
    assert o.info.tensors["0.weight"].shape == (8, 4)
    assert not torch.equal(o.model[0].weight, src[0].weight)
    bound = 1 / 4 ** 0.5  # nn.Linear's default init draws within +-1/sqrt(in_features)
    assert float(o.model[0].weight.detach().abs().max()) <= bound
    session.redo()
    assert torch.equal(o.model[0].weight, src[0].weight)
    assert run_forward(o.model, [parse_input_spec("2,4")]).ok


def test_headless_w_on_a_lazy_model_sets_the_layer_sizes(tmp_path):
    from sample_models.book import make_param_net

    src = make_param_net()
    src(torch.rand(2, 4))
    torch.save(src.state_dict(), tmp_path / "p.pt")
    o = open_target("sample_models.book:make_param_net", weights=str(tmp_path / "p.pt"), strict=True)
    assert o.model[0].in_features == 4 and torch.equal(o.model[0].weight, src[0].weight)
