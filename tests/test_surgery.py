"""Tie, untie, dtype casts and device moves: through the session, undoable, refusals change nothing."""

import pytest
import torch
from torch import nn

from modeltui.core import open_module, open_target, parse_input_spec
from modeltui.core.saving import save_state_dict, state_for_saving
from modeltui.core.session import EditError, Session
from modeltui.core.surgery import cast, move, tie, untie
from modeltui.core.targets import load_weights


def decoder_session():
    return Session(open_target("sample_models.zoo:tiny_decoder"))


def test_tie_output_layer_to_embedding_and_undo(model_hash):
    s = decoder_session()
    m = s.model
    old_head = m.lm_head.weight
    before = model_hash(m)
    total = s.opened.info.total_params
    desc = tie(s, "embed_tokens", "lm_head")
    assert m.lm_head.weight is m.embed_tokens.weight
    info = s.opened.info
    assert ["embed_tokens.weight", "lm_head.weight"] in info.tied_groups
    assert info.tensors["lm_head.weight"].tied_with == ["embed_tokens.weight"]
    assert info.total_params == total - m.embed_tokens.weight.numel()  # counted once
    assert s.dirty and "lm_head.weight" in desc
    # the tied model runs and its output uses the embedding's values
    x = torch.randint(0, m.embed_tokens.num_embeddings, (2, 5))
    m(x)
    s.undo()
    assert m.lm_head.weight is old_head and m.lm_head.weight is not m.embed_tokens.weight
    assert model_hash(m) == before and not s.dirty
    assert s.opened.info.tensors["lm_head.weight"].tied_with == []
    s.redo()
    assert m.lm_head.weight is m.embed_tokens.weight


def test_tie_parameter_to_module_uses_the_same_attribute():
    s = decoder_session()
    tie(s, "embed_tokens.weight", "lm_head")
    assert s.model.lm_head.weight is s.model.embed_tokens.weight


def test_tied_grad_is_the_sum_over_uses():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Tanh(), nn.Linear(4, 4, bias=False))
    twin = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Tanh(), nn.Linear(4, 4, bias=False))
    twin[0].weight.data.copy_(net[0].weight.data)
    twin[2].weight.data.copy_(net[0].weight.data)  # same values, separate tensors
    s = Session(open_module(net))
    tie(s, "0.weight", "2.weight")
    assert net[0].weight is net[2].weight
    x = torch.randn(3, 4)
    net(x).pow(2).sum().backward()
    twin(x).pow(2).sum().backward()
    assert torch.allclose(net[0].weight.grad, twin[0].weight.grad + twin[2].weight.grad, atol=1e-6)
    assert not torch.allclose(net[0].weight.grad, twin[0].weight.grad)


@pytest.mark.parametrize(
    "source, target, message",
    [
        ("0.weight", "2.weight", "shapes differ"),
        ("0", "2", "shapes differ"),
        ("0.weight", "0.weight", "the same"),
        ("0.weight", "nothing.here", "neither a module nor a tensor"),
        ("0.weight", "1", "no parameter named 'weight'"),
        ("(root)", "0", "contains the other"),
        ("0.weight", "", "give both"),
    ],
)
def test_bad_ties_refuse_and_change_nothing(source, target, message, model_hash):
    s = Session(open_target("sample_models.book:make_param_net", input_specs=[parse_input_spec("2,4")]))
    before = model_hash(s.model)
    with pytest.raises(EditError, match=message):
        tie(s, source, target)
    assert model_hash(s.model) == before and not s.dirty and not s.undo_stack


def test_tie_refuses_buffers_dtypes_and_existing_ties():
    s = Session(open_target("sample_models.zoo:TinyGPT"))
    with pytest.raises(EditError, match="already tied"):
        tie(s, "tok.weight", "lm_head.weight")
    with pytest.raises(EditError, match="not a parameter"):
        tie(s, "causal", "pos.weight")
    net = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3).to(torch.float64))
    s2 = Session(open_module(net))
    with pytest.raises(EditError, match="dtypes differ"):
        tie(s2, "0.weight", "1.weight")
    assert not s.undo_stack and not s2.undo_stack


def test_untie_gives_an_own_copy_and_undo_ties_again():
    s = Session(open_target("sample_models.zoo:TinyGPT"))
    m = s.model
    total = s.opened.info.total_params
    untie(s, "lm_head.weight")
    assert m.lm_head.weight is not m.tok.weight
    assert torch.equal(m.lm_head.weight, m.tok.weight)
    assert s.opened.info.tied_groups == []
    assert s.opened.info.total_params == total + m.tok.weight.numel()
    with torch.no_grad():
        m.lm_head.weight.add_(1)
    assert not torch.equal(m.lm_head.weight, m.tok.weight)
    s.undo()
    assert m.lm_head.weight is m.tok.weight
    with pytest.raises(EditError, match="not tied"):
        untie(s, "pos.weight")


def test_untie_shared_module_copies_it():
    s = Session(open_target("sample_models.book:make_shared_net", input_specs=[parse_input_spec("2,4")]))
    m = s.model
    assert m[2] is m[4]
    with pytest.raises(EditError, match="untie the module"):
        untie(s, "4.weight")
    untie(s, "4")
    assert m[2] is not m[4] and torch.equal(m[2].weight, m[4].weight)
    info = s.opened.info
    assert info.modules["4"].shared_with == [] and info.tensors["4.weight"].tied_with == []
    m(torch.randn(2, 4))
    s.undo()
    assert m[2] is m[4]


def test_tie_then_save_safetensors_reloads_tied(tmp_path):
    s = decoder_session()
    tie(s, "embed_tokens", "lm_head")
    out = tmp_path / "tied.safetensors"
    save_state_dict(state_for_saving(s.opened), str(out))
    s.mark_saved()
    assert not s.dirty
    fresh = open_target("sample_models.zoo:tiny_decoder").model
    fresh.lm_head.weight = fresh.embed_tokens.weight
    load_weights(fresh, str(out))
    assert fresh.lm_head.weight is fresh.embed_tokens.weight
    assert torch.equal(fresh.embed_tokens.weight, s.model.embed_tokens.weight)
    listed = open_target(str(out)).info
    assert listed.tensors["lm_head.weight"].tied_with == ["embed_tokens.weight"]


def test_cast_is_undoable_bit_for_bit_and_keeps_ties(model_hash):
    s = Session(open_target("sample_models.zoo:TinyGPT"))
    m = s.model
    before = model_hash(m)
    cast(s, "bfloat16")
    assert {p.dtype for p in m.parameters()} == {torch.bfloat16}
    assert m.causal.dtype == torch.bool  # not floating point: left alone
    assert m.lm_head.weight is m.tok.weight
    assert s.opened.info.dtypes() == sorted(s.opened.info.dtypes()) and "bfloat16" in s.opened.info.dtypes()
    m(torch.randint(0, 512, (2, 8)))
    s.undo()
    assert {p.dtype for p in m.parameters()} == {torch.float32}
    assert model_hash(m) == before and not s.dirty
    s.redo()
    assert m.tok.weight.dtype == torch.bfloat16
    with pytest.raises(EditError, match="already bfloat16"):
        cast(s, "bfloat16")
    with pytest.raises(EditError, match="cannot cast"):
        cast(s, "int8")


def test_cast_with_grads_and_value_edits_undo_in_order(model_hash):
    from modeltui.core.editing import edit_values

    net = nn.Sequential(nn.Linear(3, 2))
    net(torch.randn(4, 3)).sum().backward()
    s = Session(open_module(net))
    before = model_hash(net)
    edit_values(s, "0.weight", "[0, 0] = 2.5")
    cast(s, "float16")
    assert net[0].weight.grad.dtype == torch.float16
    edit_values(s, "0.bias", "[:] = 1")
    s.undo(), s.undo(), s.undo()
    assert model_hash(net) == before and net[0].weight.grad.dtype == torch.float32


def test_device_refusals_change_nothing(model_hash):
    s = decoder_session()
    before = model_hash(s.model)
    with pytest.raises(EditError, match="already on cpu"):
        move(s, "cpu")
    with pytest.raises(EditError, match="unknown device"):
        move(s, "gpu7")
    with pytest.raises(EditError, match="meta"):
        move(s, "meta")
    if not torch.cuda.is_available():
        with pytest.raises(EditError, match="not available"):
            move(s, "cuda:0")
    assert model_hash(s.model) == before and not s.dirty


@pytest.mark.parametrize("kind", ["model.safetensors", "state_dict.pt", "legacy.pt", "lightning.ckpt", "sharded_safetensors", "dcp"])
def test_bare_checkpoints_become_editable_without_touching_the_file(ckpts, kind, tmp_path):
    import hashlib
    import os

    from modeltui.core.editable import make_editable
    from modeltui.core.editing import edit_values

    path = ckpts[kind]

    def digest():
        h = hashlib.sha256()
        for root, _, files in sorted(os.walk(path)) if os.path.isdir(path) else [("", [], [path])]:
            for f in sorted(files):
                h.update(open(os.path.join(root, f), "rb").read())
        return h.hexdigest()

    before_file = digest()
    o = open_target(path)
    listed = {n: (t.shape, t.dtype) for n, t in o.info.tensors.items()}
    ties = sorted(map(sorted, o.info.tied_groups))
    values = {n: o.tensor(n).clone() for n in o.info.tensors}
    make_editable(o)
    s = Session(o)
    assert {n: (t.shape, t.dtype) for n, t in o.info.tensors.items()} == listed
    assert sorted(map(sorted, o.info.tied_groups)) == ties
    assert {t.kind for t in o.info.tensors.values()} == {"tensor"}
    name = next(n for n, (shape, dt) in listed.items() if dt == "float32" and shape and len(shape) == 2)
    edit_values(s, name, "[0, 0] = 42")
    out = tmp_path / "out.safetensors"
    save_state_dict(state_for_saving(o), str(out))
    back = open_target(str(out))
    changed = {name, *o.info.tensors[name].tied_with}  # its tied names change with it
    assert all(float(back.tensor(n)[0, 0]) == 42 for n in changed)
    assert all(torch.equal(back.tensor(n), values[n]) for n in values if n not in changed)
    assert sorted(map(sorted, back.info.tied_groups)) == ties
    assert digest() == before_file
    s.undo()
    assert torch.equal(o.tensor(name), values[name])


def test_key_clash_refuses_editing_clearly():
    from modeltui.core.readers import DictSource, state_dict_info
    from modeltui.core.editable import NotEditable, make_editable
    from modeltui.core.targets import Opened

    flat = {"a": torch.ones(2), "a.b": torch.ones(2)}
    o = Opened(state_dict_info("x", flat), None, DictSource(flat))
    with pytest.raises(NotEditable, match="both a tensor and a prefix"):
        make_editable(o)
    assert o.model is None
