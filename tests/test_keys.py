"""Key surgery through the session: rename, drop, freeze, casts that keep some dtypes, wrapper prefixes (core)."""

import os

import pytest
import torch

from modeltui.core import open_module, open_target
from modeltui.core.editable import make_editable
from modeltui.core.keyplan import KeyOp, KeyPlanError, plan_keys, prefix_to_fit, wrapper_prefix
from modeltui.core import keys
from modeltui.core.saving import save_opened, state_for_saving
from modeltui.core.session import EditError, Session
from modeltui.core.surgery import cast
from modeltui.core.tensors import same_bits
from sample_models import zoo


def bare_session(path):
    o = open_target(path)
    make_editable(o)
    return Session(o)


def values(opened):
    return {k: v.detach().clone() for k, v in state_for_saving(opened).items()}


def test_rename_a_prefix_of_a_bare_checkpoint_keeps_tensors_and_ties_and_undoes(ckpts, model_hash):
    s = bare_session(ckpts["model.safetensors"])
    o = s.opened
    before = values(o)
    tok = o.tensors["tok.weight"]
    desc = keys.rename(s, *keys.prefix_rename("tok", "embed.tokens"))
    assert desc.startswith("rename 1 key(s): tok.weight → embed.tokens.weight")
    assert "embed.tokens.weight" in o.info.tensors and "tok.weight" not in o.info.tensors
    assert "embed.tokens" in o.info.modules
    # the same object, still tied with lm_head.weight (a partial rename keeps the tie)
    assert o.tensors["embed.tokens.weight"] is tok is o.tensors["lm_head.weight"]
    assert sorted(o.info.tensors["lm_head.weight"].tied_with) == ["embed.tokens.weight"]
    assert s.dirty and s.log[-1] == desc
    s.undo()
    assert list(values(o)) == list(before) and all(same_bits(values(o)[k], v) for k, v in before.items())
    assert o.tensors["tok.weight"] is tok
    s.redo()
    assert "embed.tokens.weight" in o.info.tensors


def test_regex_rename_preview_counts_and_refusals_leave_the_model_alone(ckpts, model_hash):
    s = bare_session(ckpts["model.safetensors"])
    o = s.opened
    p = keys.preview_rename(o, r"^blocks\.(\d+)\.", r"layers.\1.")
    assert p.count == 24 and not p.error and p.lines()[0] == "blocks.0.attn.in_proj_bias → layers.0.attn.in_proj_bias"
    assert p.lines()[-1] == "… and 19 more" and len(p.lines()) == 6
    h = model_hash(o.model)
    for pattern, repl, why in [
        ("(", "x", "bad pattern '('"),
        (r"^blocks\.\d+\.", "", "clash: "),
        ("^tok.weight$", "pos.weight", "clash: 'tok.weight' would be renamed 'pos.weight'"),  # two keys to one name (tied or not)
        ("^tok.weight$", "", "empty name"),
        ("^tok.weight$", "ln_f", "both a tensor and the prefix of"),
        ("^ln_f.weight$", "ln_f..w", "empty part"),
        ("nothing-like-this", "x", "matches no key"),
        ("^(tok)", r"\2", "bad replacement"),
    ]:
        assert why in keys.preview_rename(o, pattern, repl).error, pattern
        with pytest.raises(EditError, match=why.replace("(", r"\(").replace(".", r"\.")):
            keys.rename(s, pattern, repl)
    assert model_hash(o.model) == h and not s.undo_stack and not s.dirty


def test_rename_a_tied_group_onto_one_name_is_a_clash(ckpts):
    s = bare_session(ckpts["model.safetensors"])
    with pytest.raises(EditError, match="clash: 'lm_head.weight' and 'tok.weight' would both be named 'shared.weight'"):
        keys.rename(s, r"^(tok|lm_head)\.weight$", "shared.weight")


def test_drop_a_subtree_of_a_bare_checkpoint_and_save_it(ckpts, tmp_path):
    s = bare_session(ckpts["model.safetensors"])
    o = s.opened
    plan = keys.plan_drop(o, "blocks.1")
    assert len(plan.names) == 12 and plan.question().startswith("Drop 12 tensors under 'blocks.1' (")
    assert plan.nbytes == sum(o.info.tensors[n].nbytes for n in plan.names) == 3280 * 4
    keys.rename(s, r"^(tok|lm_head)\.", r"emb.\1.")
    tied = keys.plan_drop(o, "emb")  # the tied pair, counted once
    assert len(tied.names) == 2 and tied.nbytes == o.info.tensors["emb.tok.weight"].nbytes
    s.undo()
    keys.drop(s, "blocks.1")
    assert not any(n.startswith("blocks.1.") for n in o.info.tensors) and "blocks.1" not in o.info.modules
    s.undo()
    s.redo()
    assert not any(n.startswith("blocks.1.") for n in o.info.tensors)
    out = tmp_path / "dropped.safetensors"
    save_opened(o, str(out))
    assert set(open_target(str(out)).info.tensors) == set(o.info.tensors)
    s.undo()
    assert len([n for n in o.info.tensors if n.startswith("blocks.1.")]) == 12
    # dropping one name of a tied pair keeps the tensor under the other
    keys.drop(s, "lm_head.weight")
    assert "tok.weight" in o.info.tensors and o.info.tied_groups == []
    with pytest.raises(EditError, match="leave nothing to save"):
        keys.drop(s, "")


def test_architecture_rename_changes_the_saved_keys_not_the_model(tmp_path):
    torch.manual_seed(0)
    model = zoo.TinyGPT(vocab=64, d=16, layers=2, heads=2, ctx=16)
    o = open_module(model, "tinygpt")
    s = Session(o)
    x = torch.randint(0, 64, (2, 8))
    y = model(x)
    keys.rename(s, "^", "model.")
    assert o.info.saved_keys["tok.weight"] == "model.tok.weight"
    assert torch.equal(model(x), y)  # forward still works: the module names did not change
    keys.drop(s, "blocks.1")
    sd = state_for_saving(o)
    assert "model.tok.weight" in sd and not any(k.startswith("model.blocks.1.") for k in sd)
    assert sd["model.tok.weight"].data_ptr() == sd["model.lm_head.weight"].data_ptr()  # still one tensor
    out = tmp_path / "out.safetensors"
    report = save_opened(o, str(out))
    assert report.aliases == {"model.lm_head.weight": "model.tok.weight"}
    # a constant (not in the state_dict) has no key
    with pytest.raises(EditError, match="'causal' is a buffer that no state_dict holds"):
        keys.drop(s, "causal")
    s.undo()
    s.undo()
    assert o.keys == {} and "tok.weight" in state_for_saving(o)


def test_freeze_a_subtree_the_mark_the_count_and_the_next_backward():
    torch.manual_seed(0)
    model = zoo.TinyGPT(vocab=64, d=16, layers=2, heads=2, ctx=16)
    o = open_module(model, "tinygpt")
    s = Session(o)
    total = o.info.trainable_params
    desc = keys.freeze(s, "blocks.0")
    assert desc.startswith("freeze 12 parameter(s) of blocks.0")
    assert not any(p.requires_grad for p in model.blocks[0].parameters())
    assert o.info.trainable_params == total - sum(p.numel() for p in model.blocks[0].parameters())
    assert not s.dirty  # requires_grad is not in the state_dict
    model(torch.randint(0, 64, (2, 8))).sum().backward()
    assert all(p.grad is None for p in model.blocks[0].parameters())
    assert all(p.grad is not None for p in model.blocks[1].parameters())
    # a tied parameter freezes at both names: the description says so
    desc = keys.freeze(s, "lm_head")
    assert "also tok.weight" in desc and not model.tok.weight.requires_grad
    s.undo()
    s.undo()
    assert all(p.requires_grad for p in model.parameters()) and o.info.trainable_params == total
    assert keys.freeze(s, "", trainable=None).startswith("freeze")  # toggles: everything trains, so freeze
    assert keys.freeze(s, "").startswith("unfreeze")


def test_freeze_is_refused_for_a_bare_checkpoint(ckpts):
    s = bare_session(ckpts["model.safetensors"])
    with pytest.raises(EditError, match="does not train"):
        keys.freeze(s, "blocks")


def test_cast_keeps_the_dtype_of_tensors_matching_patterns():
    torch.manual_seed(0)
    model = zoo.TinyGPT(vocab=64, d=16, layers=2, heads=2, ctx=16)
    o = open_module(model, "tinygpt")
    s = Session(o)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    desc = cast(s, "bfloat16", keep=("*ln*", "*.bias"))
    assert "kept" in desc
    assert model.blocks[0].ln1.weight.dtype == torch.float32 and model.blocks[0].attn.out_proj.bias.dtype == torch.float32
    assert model.blocks[0].mlp[0].weight.dtype == torch.bfloat16 and model.tok.weight.dtype == torch.bfloat16
    s.undo()
    assert all(same_bits(v, before[k]) for k, v in model.state_dict().items())
    with pytest.raises(EditError, match="every floating-point tensor matches a pattern"):
        cast(s, "bfloat16", keep=("*",))


def test_wrapper_prefixes_are_found_and_fit_prefixes_suggested():
    assert wrapper_prefix(["module.a.w", "module.b"]) == "module."
    assert wrapper_prefix(["module._orig_mod.a", "module._orig_mod.b"]) == "module._orig_mod."
    assert wrapper_prefix(["model.a", "lm_head.weight"]) == ""
    assert prefix_to_fit(["a.w", "b"], ["model.a.w", "model.b", "loss.w"]) == "model."
    assert prefix_to_fit(["a.w"], ["a.w"]) == ""


def test_plan_keys_in_order_with_casts_drops_and_extracts():
    tensors = [("module.enc.0.w", (4, 4), "float32"), ("module.enc.norm.w", (4,), "float32"),
               ("module.head.w", (2, 4), "float32"), ("module.steps", (), "int64"), ("module.tied", (4, 4), "float32")]
    ops = [KeyOp("strip", ("module.",)), KeyOp("drop", ("head.*",)), KeyOp("cast", ("bfloat16",), ("*norm*",)),
           KeyOp("rename", (r"^enc\.", "encoder."))]
    plan = plan_keys(tensors, ops, [["module.enc.0.w", "module.tied"]])
    m = plan.mapping()
    assert m == {"module.enc.0.w": "encoder.0.w", "module.enc.norm.w": "encoder.norm.w", "module.steps": "steps",
                 "module.tied": "tied"}
    dt = {e.source: e.to_dtype for e in plan.kept()}
    assert dt["module.enc.0.w"] == dt["module.tied"] == "bfloat16" and dt["module.enc.norm.w"] == "float32"
    assert dt["module.steps"] == "int64"
    assert plan.bytes_before == 64 + 16 + 32 + 8 and plan.bytes_after == 32 + 16 + 8  # the tied pair once
    ex = plan_keys(tensors, [KeyOp("strip", ("module.",)), KeyOp("extract", ("enc",))])
    assert ex.mapping() == {"module.enc.0.w": "0.w", "module.enc.norm.w": "norm.w"}
    for bad, why in [([KeyOp("strip", ("x.",))], "no key starts with it"),
                     ([KeyOp("extract", ("nope",))], "no key lies under it"),
                     ([KeyOp("drop", ("*",))], "nothing left to save"),
                     ([KeyOp("rename", ("^module\\.enc\\.0\\.w$", "module.tied"))], "clash"),
                     ([KeyOp("cast", ("int8",))], "choose one of")]:
        with pytest.raises(KeyPlanError, match=why):
            plan_keys(tensors, bad)
    warn = plan_keys(tensors, [KeyOp("drop", ("zzz*",)), KeyOp("cast", ("float16",), ("*nothing*",))])
    assert warn.warnings == ["--drop 'zzz*' matches no key", "--keep-dtype '*nothing*' matches no key"]


def test_weights_with_a_ddp_prefix_are_offered_then_stripped(tmp_path):
    from modeltui.core.weights import load_weights, load_weights_into

    torch.manual_seed(1)
    src = zoo.TinyGPT(vocab=64, d=16, layers=2, heads=2, ctx=16)
    path = str(tmp_path / "ddp.pt")
    torch.save({"module." + k: v for k, v in src.state_dict().items()}, path)
    torch.manual_seed(2)
    model = zoo.TinyGPT(vocab=64, d=16, layers=2, heads=2, ctx=16)
    report = load_weights(model, path)
    assert report.fit_prefix == "module." and not report.fits and "fit the model once the prefix 'module.'" in report.lines()[0]
    s = Session(open_module(model, "m"))
    r = load_weights_into(s, path, strip="module.")
    assert r.fits and r.stripped == "module." and torch.equal(model.tok.weight, src.tok.weight)
    assert "prefix 'module.' stripped" in s.log[-1]
    model2 = zoo.TinyGPT(vocab=64, d=16, layers=2, heads=2, ctx=16)
    r2 = load_weights(model2, path, auto_strip=True)
    assert r2.fits and r2.stripped == "module." and torch.equal(model2.lm_head.weight, src.lm_head.weight)
    assert os.path.exists(path)
