"""The editing session: the book's scenarios, undo/redo bit for bit, refusals."""


import pytest
import torch

from modeltui.core import open_target, parse_input_spec
from modeltui.core.editing import edit_values, initialise, initialise_custom, parse_assignment
from modeltui.core.forward import run_forward
from modeltui.core.initializers import REGISTRY, InitError
from modeltui.core.session import EditError, Session



def session(target="sample_models.book:make_param_net", shape="2,4"):
    return Session(open_target(target, input_specs=[parse_input_spec(shape)] if shape else []))


def test_init_normal_book_scenario():
    s = session()
    initialise_custom(s, "sample_models.book:init_normal")
    w, b = s.model[0].weight, s.model[0].bias
    assert abs(float(w.detach().std()) - 0.01) < 0.006
    assert torch.all(b == 0)
    assert s.dirty


def test_init_constant_book_scenario():
    s = session()
    initialise_custom(s, "sample_models.book:init_constant")
    assert torch.all(s.model[0].weight == 1) and torch.all(s.model[0].bias == 0)
    assert torch.all(s.model[2].weight == 1)


def test_xavier_on_first_and_42_on_last():
    s = session()
    initialise_custom(s, "sample_models.book:init_xavier", module="0")
    initialise_custom(s, "sample_models.book:init_42", module="2")
    w0 = s.model[0].weight
    bound = (6 / (4 + 8)) ** 0.5
    assert w0.abs().max() <= bound and not torch.all(w0 == 42)
    assert torch.all(s.model[2].weight == 42)


def test_my_init_book_scenario():
    s = session()
    initialise_custom(s, "sample_models.book:my_init")
    w = s.model[0].weight.abs()
    assert torch.all((w == 0) | ((w >= 5) & (w <= 10)))


def test_edits_book_scenario_and_undo_bit_for_bit(model_hash):
    s = session()
    original = model_hash(s.model)
    before = s.model[0].weight.detach().clone()
    edit_values(s, "0.weight", "[:] += 1")
    edit_values(s, "0.weight", "[0, 0] = 42")
    w = s.model[0].weight
    assert w[0, 0] == 42
    assert torch.equal(w[0, 1:], before[0, 1:] + 1)
    assert torch.equal(w[1:], before[1:] + 1)
    assert s.undo() == "0.weight[0, 0] = 42"
    assert s.undo() == "0.weight[:] += 1"
    assert model_hash(s.model) == original
    assert not s.dirty
    s.redo()
    s.redo()
    assert w[0, 0] == 42
    with pytest.raises(EditError, match="nothing to redo"):
        s.redo()


def test_builtin_initialisers_with_seed_are_reproducible_and_undoable(model_hash):
    s = session()
    original = model_hash(s.model)
    r = initialise(s, "xavier_uniform_", {"gain": "relu"}, which="weights", seed=7)
    assert r.names == ["0.weight", "2.weight"]
    assert "seed 7" in r.description and "xavier_uniform_" in r.description
    first = s.model[0].weight.detach().clone()
    s.undo()
    assert model_hash(s.model) == original
    initialise(s, "xavier_uniform_", {"gain": "relu"}, which="weights", seed=7)
    assert torch.equal(s.model[0].weight, first)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_registered_initialiser_runs_on_fitting_tensors(name):
    s = session("sample_models.zoo:SmallCNN", None)
    init = REGISTRY[name]
    target = "features.0.weight" if init.ranks[1] >= 4 and init.ranks[0] > 2 else ("head.weight" if init.ranks[0] >= 2 else "head.bias")
    if name == "dirac_":
        target = "features.0.weight"
    initialise(s, name, {}, tensor=target, seed=0)
    assert s.undo_stack and s.log[-1].startswith(name)


def test_unfit_initialisers_refuse_and_change_nothing(model_hash):
    s = session()
    h = model_hash(s.model)
    with pytest.raises(InitError, match="eye_ needs a 2-d tensor, not 1-d"):
        initialise(s, "eye_", tensor="0.bias")
    s2 = session("sample_models.zoo:SmallCNN", None)
    h2 = model_hash(s2.model)
    with pytest.raises(InitError, match="dirac_ needs a 3-d to 5-d tensor"):
        initialise(s2, "dirac_", tensor="head.weight")
    with pytest.raises(InitError, match="try the 'weights' filter"):
        initialise(s, "xavier_uniform_", module="0")
    with pytest.raises(InitError, match="std must not be negative"):
        initialise(s, "normal_", {"std": "-1"})
    with pytest.raises(InitError, match="must be a number"):
        initialise(s, "uniform_", {"a": "abc"})
    with pytest.raises(InitError, match="gain must be a number or one of"):
        initialise(s, "xavier_normal_", {"gain": "swish"}, which="weights")
    with pytest.raises(InitError, match="unknown initialiser"):
        initialise(s, "glorot_", {})
    with pytest.raises(InitError, match="has no attribute 'nope'"):
        initialise_custom(s, "sample_models.book:nope")
    assert model_hash(s.model) == h and model_hash(s2.model) == h2
    assert not s.undo_stack


def test_filters_by_class_and_constants_left_alone():
    s = session("sample_models.book:make_chimera", "2,20")
    const = s.model[2].rand_weight.clone()
    r = initialise(s, "zeros_", {}, module_class="Linear", which="biases")
    assert all(n.endswith("bias") for n in r.names) and len(r.names) == 5
    initialise(s, "ones_", {})
    assert torch.equal(s.model[2].rand_weight, const)
    initialise(s, "ones_", {}, module="2", include_constants=True)
    assert torch.all(s.model[2].rand_weight == 1)


def test_tied_parameters_initialised_once_and_restored():
    s = session("sample_models.book:make_shared_net", "2,4")
    r = initialise(s, "constant_", {"val": "3"}, module="2")
    assert torch.all(s.model[4].weight == 3)
    assert len(s.undo_stack[-1].saved) == 2  # one weight and one bias, not four
    s.undo()
    assert not torch.all(s.model[4].weight == 3)
    assert r.names == ["2.weight", "2.bias"]


def test_undo_memory_is_only_what_was_touched():
    s = session("sample_models.zoo:SmallCNN", None)
    initialise(s, "zeros_", {}, tensor="head.bias")
    assert s.undo_bytes == s.model.head.bias.numel() * 4
    initialise_custom(s, "sample_models.book:init_42")  # touches only Linear weights
    assert s.undo_stack[-1].nbytes == s.model.head.weight.numel() * 4


@pytest.mark.parametrize(
    "expr, message",
    [
        ("[0, 0] == 4", "not a number"),
        ("[0, 9] = 1", "out of range"),
        ("[0, 0] = __import__('os')", "not a number"),
        ("x = 1", "is not an edit"),
        ("/= 0", "division by zero"),
        ("[a] = 1", "is not an index"),
    ],
)
def test_bad_value_edits_refuse_and_change_nothing(expr, message, model_hash):
    s = session()
    h = model_hash(s.model)
    with pytest.raises(EditError, match=message):
        edit_values(s, "0.weight", expr)
    assert model_hash(s.model) == h and not s.undo_stack


def test_value_edit_dtype_rules():
    o = open_target("sample_models.zoo:SmallCNN")
    s = Session(o)
    with pytest.raises(EditError, match="not a whole number"):
        edit_values(s, "features.1.num_batches_tracked", "= 0.5")
    edit_values(s, "features.1.num_batches_tracked", "= 7")
    assert int(s.model.features[1].num_batches_tracked) == 7
    s.model.half()
    o.refresh()
    with pytest.raises(EditError, match="overflows float16"):
        edit_values(s, "head.weight", "*= 1e10")
    assert parse_assignment("*= 0.5") == ("", "*=", 0.5)


def test_forward_records_shapes_and_handles_control_flow():
    o = open_target("sample_models.book:make_chimera")
    r = run_forward(o.model, [parse_input_spec("2,20")])
    assert r.ok, r.error
    assert r.records["0.net.0"].shapes == [(2, 64)]
    assert r.records["1"].shapes == [(2, 20)]
    assert r.records["2"].shapes == [()]  # FixedHiddenMLP returns X.sum()
    assert r.outputs[0].shape == ()
    o.refresh()
    assert o.info.tensors["0.net.0.weight"].shape == (64, 20)  # lazy materialised


@pytest.mark.parametrize(
    "target, shapes, out",
    [
        ("sample_models.zoo:TinyGPT", ["2,16"], (2, 16, 512)),
        ("sample_models.zoo:make_transformer", ["2,10,32", "2,7,32"], (2, 7, 32)),
        ("sample_models.zoo:SmallCNN", ["2,3,32,32"], (2, 10)),
        ("sample_models.zoo:LSTMTagger", ["4,10,16"], (4, 10, 5)),
        ("sample_models.zoo:make_moe_small", ["2,8,16"], (2, 8, 16)),
        ("sample_models.zoo:tiny_decoder", ["2,8"], (2, 8, 100)),
        ("modeltui.demo:DemoNet", ["2,12"], (2, 12, 100)),
    ],
)
def test_forward_on_zoo(target, shapes, out):
    o = open_target(target)
    r = run_forward(o.model, [parse_input_spec(x) for x in shapes])
    assert r.ok, r.error
    assert tuple(r.outputs[0].shape) == out


def test_forward_error_names_failing_module_and_keeps_records():
    o = open_target("sample_models.book:make_my_linear_net")
    r = run_forward(o.model, [parse_input_spec("2,5")])
    assert not r.ok
    assert r.failed_module == "0"
    assert "in module '0' (MyLinear)" in r.error
    o2 = open_target("sample_models.zoo:SmallCNN")
    r2 = run_forward(o2.model, [parse_input_spec("2,3,32,32")])
    r3 = run_forward(o2.model, [parse_input_spec("2,4,32,32")])
    assert r2.ok and not r3.ok and r3.failed_module == "features.0"


def test_forward_hooks_do_not_change_results():
    o = open_target("sample_models.zoo:TinyGPT")
    a = run_forward(o.model, [parse_input_spec("2,16")], seed=3)
    b = run_forward(o.model, [parse_input_spec("2,16")], seed=3, record=False)
    assert torch.equal(a.outputs[0], b.outputs[0])
    assert not b.records


def test_session_refuses_checkpoint_without_architecture(ckpts):
    with pytest.raises(EditError, match="no architecture"):
        Session(open_target(ckpts["model.safetensors"]))


def test_weights_filter_skips_what_a_matrix_initialiser_cannot_take():
    """Issue 10 item 17: xavier on a block with the weights filter applies to its matrices and says what it skipped."""
    from modeltui.core.editing import initialise

    s = Session(open_target("sample_models.zoo:TinyGPT"))
    before = s.opened.tensor("blocks.0.ln1.weight").clone()
    report = initialise(s, "xavier_uniform_", module="blocks.0", which="weights", seed=1)
    assert "blocks.0.ln1.weight" in report.skipped and "blocks.0.ln1.weight" not in report.names
    assert any(n.endswith("weight") and s.opened.tensor(n).dim() == 2 for n in report.names)
    assert torch.equal(s.opened.tensor("blocks.0.ln1.weight"), before)
    with pytest.raises(InitError, match="at least 2"):
        initialise(s, "xavier_uniform_", module="blocks.0", which="all", seed=1)
