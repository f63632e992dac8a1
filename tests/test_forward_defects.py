"""Forward passes: keyword inputs, the pass at start kept on Opened (issue 10).

Runs that own their hooks (issue 11 item 14) are in tests/security/test_forward_runs.py.
"""

import pytest
import torch
from torch import nn

from modeltui.cli import main
from modeltui.core import TargetError, open_target, parse_input_spec
from modeltui.core.forward import run_forward
from modeltui.core.inputs import InputSpec, build_inputs, forward_parameters

# ------------------------------------------------------------ issue 10.23: keyword inputs


def test_named_input_specs_parse():
    s = parse_input_spec("decoder_input_ids=2,8:int64")
    assert s == InputSpec((2, 8), "int64", name="decoder_input_ids")
    assert str(s) == "decoder_input_ids=2,8:int64"
    m = parse_input_spec("attention_mask = 2x16")
    assert m.name == "attention_mask" and m.dist == "ones" and m.shape == (2, 16)
    assert parse_input_spec("2,20").name is None
    with pytest.raises(TargetError, match="Python identifier"):
        parse_input_spec("2-x=3")


def test_forward_parameters_list_the_signature():
    from sample_models.zoo import TinySeq2Seq

    assert forward_parameters(TinySeq2Seq()) == [
        ("input_ids", False), ("decoder_input_ids", False), ("attention_mask", True), ("decoder_attention_mask", True)]
    assert forward_parameters(nn.Linear(2, 2)) == [("input", False)]


def test_build_inputs_makes_args_and_kwargs_with_mask_ones():
    from sample_models.zoo import TinySeq2Seq

    model = TinySeq2Seq()
    specs = [parse_input_spec(s) for s in ("2,16", "attention_mask=2,16", "decoder_input_ids=2,8")]
    args, kwargs = build_inputs(specs, torch.device("cpu"), model)
    assert len(args) == 1 and args[0].dtype == torch.int64 and int(args[0].max()) < 128
    assert set(kwargs) == {"attention_mask", "decoder_input_ids"}
    assert kwargs["attention_mask"].dtype == torch.int64 and bool((kwargs["attention_mask"] == 1).all())
    with pytest.raises(TargetError, match="has no parameter 'nope'"):
        build_inputs([parse_input_spec("nope=2")], torch.device("cpu"), model)
    with pytest.raises(TargetError, match="given twice"):
        build_inputs([parse_input_spec("x=2"), parse_input_spec("x=3")], torch.device("cpu"), model)


def test_a_positional_input_that_fills_a_mask_parameter_is_ones():
    """The issue's own scenario: repeated -i fill forward's parameters in order, attention_mask third."""
    from sample_models.zoo import TinySeq2Seq

    model = TinySeq2Seq()
    specs = [parse_input_spec(s) for s in ("2,16", "2,8", "2,16")]
    args, kwargs = build_inputs(specs, torch.device("cpu"), model)
    assert not kwargs and args[2].dtype == torch.int64 and bool((args[2] == 1).all())
    assert int(args[1].max()) > 1  # decoder_input_ids are drawn, not ones
    chosen = InputSpec((2, 16), dist="randint")  # a distribution asked for is kept
    assert int(build_inputs(specs[:2] + [chosen], torch.device("cpu"), model)[0][2].max()) > 1
    assert run_forward(model, specs).ok


def test_a_model_with_keyword_inputs_runs_headless(capsys):
    args = ["sample_models.zoo:TinySeq2Seq", "-i", "2,16", "-i", "decoder_input_ids=2,8", "-i", "attention_mask=2,16", "--json"]
    assert main(args) == 0
    assert '"TinySeq2Seq"' in capsys.readouterr().out


def test_run_forward_accepts_keyword_specs():
    from sample_models.zoo import TinySeq2Seq

    r = run_forward(TinySeq2Seq(), [parse_input_spec("2,16"), parse_input_spec("decoder_input_ids=2,8"),
                                     parse_input_spec("attention_mask=2,16")])
    assert r.ok, r.error
    assert r.records["decoder"].shapes == [(2, 8, 32)]
    assert r.outputs[0].shape == (2, 8, 128)


# ------------------------------------------------------------ issue 10.12: the pass at start is kept


def test_open_with_inputs_keeps_the_forward_result():
    o = open_target("sample_models.book:make_chimera", input_specs=[parse_input_spec("2,20")])
    assert o.forward is not None and o.forward.ok
    assert o.forward.records["0"].shapes == [(2, 16)]
    assert o.forward.records["1"].shapes == [(2, 20)]
    assert open_target("sample_models.book:make_param_net").forward is None


def test_a_failing_forward_at_start_stays_an_error():
    with pytest.raises(TargetError, match=r"forward pass with input \[2,5\] failed: RuntimeError in module '0' \(MyLinear\)"):
        open_target("sample_models.book:make_my_linear_net", input_specs=[parse_input_spec("2,5")])


# ------------------------------------------------------------ empty classes


def test_a_class_that_needs_arguments_warns_instead_of_opening_silently_empty():
    o = open_target("sample_models.book:MySequential")
    assert any("MySequential was built with no arguments and is empty" in w and "*args" in w for w in o.info.warnings)
    assert not any("built with no arguments" in w for w in open_target("sample_models.book:my_sequential").info.warnings)
    assert not any("built with no arguments" in w for w in open_target("sample_models.book:CenteredLayer").info.warnings)


def test_the_forward_grid_counts_hidden_rows_and_columns_of_the_whole_output():
    """A [2, 16, 5000] output said '34 more columns' (counted against the 40 columns read, not the 5,000)."""
    import torch

    from modeltui.core.preview import value_grid
    from modeltui.ui.dialogs.results import grid_lines

    text = grid_lines(value_grid(torch.zeros(2, 16, 5000), ""), width=80).plain
    assert "8 more rows and 4,993 more columns" in text  # 7 columns fit 80 and "leading 2-D block of [2, 16, 5000]" in text
    text = grid_lines(value_grid(torch.zeros(1000), ""), width=100).plain
    assert "117 more rows" in text and "more columns" not in text  # 125 rows of 8, 8 shown
    assert "more" not in grid_lines(value_grid(torch.zeros(0), ""), width=84).plain
    assert "more" not in grid_lines(value_grid(torch.tensor(3.0), ""), width=84).plain
