"""Undo never lies (issue 11 item 5, issue 10 items 3, 5, 14, 17).

An initialiser that replaces Parameters, changes ``.data``'s shape or dtype,
or fails half way is undone exactly; a failed undo stays on its stack; the
unsaved mark follows what a save would write; every initialiser run draws
its own seed.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from modeltui.core import open_module, open_target, parse_input_spec
from modeltui.core.editing import edit_values, fresh_seed, initialise, initialise_custom, not_saved_reason
from modeltui.core.initializers import REGISTRY, InitError
from modeltui.core.session import EditError, Session


def net_session():
    torch.manual_seed(0)
    return Session(open_module(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))))


def snapshot(model):
    """Objects, data identities, dtypes, shapes and values of every tensor slot."""
    out = {}
    for path, m in model.named_modules():
        for k, p in list(m._parameters.items()) + list(m._buffers.items()):
            out[f"{path}.{k}"] = None if p is None else (id(p), p.dtype, tuple(p.shape), p.detach().clone())
    return out


def same(a, b) -> bool:
    if a.keys() != b.keys():
        return False
    for k in a:
        if (a[k] is None) != (b[k] is None):
            return False
        if a[k] is not None and (a[k][:3] != b[k][:3] or not torch.equal(a[k][3], b[k][3])):
            return False
    return True


def test_replaced_parameter_is_undone_and_marked_unsaved():
    s = net_session()
    old = snapshot(s.model)
    w0 = s.model[0].weight
    initialise_custom(s, "bad_inits:replace_weight")
    assert s.model[0].weight is not w0 and torch.all(s.model[0].weight == 3)
    assert s.dirty
    s.undo()
    assert s.model[0].weight is w0 and same(snapshot(s.model), old)
    assert not s.dirty
    s.redo()
    assert torch.all(s.model[0].weight == 3) and s.dirty


def test_data_of_another_shape_is_undone():
    s = net_session()
    old = snapshot(s.model)
    initialise_custom(s, "bad_inits:reshape_data")
    assert s.model[0].weight.shape == (3, 3)
    assert s.undo() and same(snapshot(s.model), old) and not s.dirty
    s.redo()
    assert s.model[2].weight.shape == (3, 3)
    s.undo()
    assert same(snapshot(s.model), old)


def test_shape_change_then_exception_changes_nothing():
    s = net_session()
    old = snapshot(s.model)
    with pytest.raises(EditError, match="RuntimeError: boom; nothing was changed"):
        initialise_custom(s, "bad_inits:reshape_then_fail")
    assert same(snapshot(s.model), old) and not s.undo_stack and not s.dirty


def test_data_of_another_dtype_is_undone():
    s = net_session()
    old = snapshot(s.model)
    initialise_custom(s, "bad_inits:to_double")
    assert s.model[0].weight.dtype == torch.float64
    s.undo()
    assert s.model[0].weight.dtype == torch.float32 and same(snapshot(s.model), old)


def test_added_and_removed_slots_are_undone():
    s = net_session()
    old = snapshot(s.model)
    initialise_custom(s, "bad_inits:add_parameter")
    assert s.model[0].bias is None and "extra" in s.model[0]._parameters
    assert "0.extra" in s.opened.info.tensors
    s.undo()
    assert "extra" not in s.model[0]._parameters and "count" not in s.model[0]._buffers
    assert same(snapshot(s.model), old) and "0.extra" not in s.opened.info.tensors


def test_initialiser_that_changes_nothing_is_not_an_edit():
    s = net_session()
    with pytest.raises(EditError, match="changed nothing"):
        initialise_custom(s, "bad_inits:nothing")
    assert not s.undo_stack and not s.dirty


def test_failed_undo_stays_on_its_stack_and_says_so(monkeypatch):
    import modeltui.core.session as session_mod

    s = net_session()
    edit_values(s, "0.weight", "[:] = 1")
    edit_values(s, "0.bias", "[:] = 2")
    edit_values(s, "2.bias", "[:] = 3")
    initialise(s, "zeros_", tensor="2.weight")
    # an undo touching two tensors whose second restore fails: the first is put back again
    initialise(s, "ones_", module="2")
    after = snapshot(s.model)
    real, calls = session_mod._put, []

    def flaky(state):
        calls.append(state)
        if len(calls) == 2:
            raise RuntimeError("disk on fire")
        return real(state)

    monkeypatch.setattr(session_mod, "_put", flaky)
    with pytest.raises(EditError, match="undo of 'ones_ on 2.weight, 2.bias, seed .*' failed .*stays on the undo stack"):
        s.undo()
    monkeypatch.setattr(session_mod, "_put", real)
    assert len(s.undo_stack) == 5 and not s.redo_stack
    assert same(snapshot(s.model), after) and s.dirty
    s.undo()
    assert torch.all(s.model[2].weight == 0)


# ---------------------------------------------------------------- unsaved mark (issue 10 item 3)


def chimera():
    return Session(open_target("sample_models.book:make_chimera", input_specs=[parse_input_spec("2,20")]))


def test_constant_edits_are_not_unsaved_changes_but_are_named():
    s = chimera()
    assert not_saved_reason(s, "2.rand_weight").startswith("'2.rand_weight' is a constant")
    assert not_saved_reason(s, "2.linear.weight") is None
    edit_values(s, "2.rand_weight", "[0, 0] = 42")
    assert not s.dirty and s.unsaved_constants() == ["2.rand_weight"]
    edit_values(s, "2.linear.bias", "[0] = 1")
    assert s.dirty
    s.undo()
    assert not s.dirty and s.unsaved_constants() == ["2.rand_weight"]
    s.mark_saved()
    assert s.unsaved_constants() == []
    s.undo()  # undoing the constant edit changes nothing a save writes either
    assert not s.dirty and s.unsaved_constants() == ["2.rand_weight"]


def test_non_persistent_buffer_is_not_saved():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2)
            self.register_buffer("scratch", torch.zeros(3), persistent=False)

    s = Session(open_module(Net()))
    assert "non-persistent buffer" in not_saved_reason(s, "scratch")
    edit_values(s, "scratch", "[0] = 1")
    assert not s.dirty and s.unsaved_constants() == ["scratch"]


def test_unsaved_mark_across_saves_undo_redo_and_branches():
    s = net_session()
    edit_values(s, "0.bias", "[0] = 1")  # A
    edit_values(s, "0.bias", "[1] = 1")  # B
    s.mark_saved()  # saved after B
    assert not s.dirty
    s.undo()
    assert s.dirty  # B undone since the save
    s.redo()
    assert not s.dirty  # back at the saved point
    s.undo(), s.undo()
    edit_values(s, "2.bias", "[0] = 5")  # a new branch: the saved state is unreachable
    assert s.dirty
    s.undo()
    assert s.dirty  # still differs from the save (A and B are gone)
    s.mark_saved()
    edit_values(s, "2.bias", "[0] = 6")
    s.undo()
    assert not s.dirty


# ---------------------------------------------------------------- seeds (issue 10 item 5)


def test_every_initialise_draws_its_own_seed_and_logs_it():
    s = Session(open_target("sample_models.book:make_chimera", input_specs=[parse_input_spec("2,20")]))
    r1 = initialise(s, "normal_", module="1")
    r2 = initialise(s, "normal_", module="2.linear")
    a = s.model[1].weight.detach().flatten()
    b = s.model[2].linear.weight.detach().flatten()[: a.numel()]
    assert not torch.equal(a, b)
    assert r1.seed != r2.seed and f"seed {r1.seed}" in r1.description and f"seed {r1.seed}" in s.log[-2]
    s.undo()
    again = initialise(s, "normal_", module="2.linear", seed=r2.seed)  # the logged seed reproduces the run
    assert torch.equal(s.model[2].linear.weight.detach().flatten()[: a.numel()], b) and again.seed == r2.seed
    c = initialise_custom(s, "sample_models.book:init_normal", module="0")
    assert c.seed is not None and f"seed {c.seed}" in c.description
    assert isinstance(fresh_seed(), int) and fresh_seed() != fresh_seed()


# ---------------------------------------------------------------- registry (issue 10 items 14, 17)


def test_rank_message_and_registry_defaults(model_hash):
    s = net_session()
    before = model_hash(s.model)
    with pytest.raises(InitError) as e:
        initialise(s, "xavier_uniform_", tensor="0.bias")
    assert "needs a tensor of at least 2 dimensions, not 1-d [4]" in str(e.value) and "a at least" not in str(e.value)
    assert REGISTRY["xavier_uniform_"].min_rank == 2 and REGISTRY["xavier_uniform_"].default_filter == "weights"
    assert REGISTRY["normal_"].min_rank == 0 and REGISTRY["normal_"].default_filter == "all"
    with pytest.raises(InitError, match="try the 'weights' filter"):
        initialise(s, "kaiming_normal_", module="0")
    assert model_hash(s.model) == before and not s.undo_stack


def test_initialiser_leaving_tensors_without_values_is_recorded_and_undone():
    """The report's moments used to raise on meta tensors after the edit was applied: the app said
    'failed' while the model had changed (and was marked unsaved)."""
    s = net_session()
    old = snapshot(s.model)
    report = initialise_custom(s, "bad_inits:to_meta")
    assert s.model[0].weight.is_meta and s.dirty and len(s.undo_stack) == 1
    assert "0.weight" in report.names and report.after["0.weight"].mean != report.after["0.weight"].mean  # NaN
    s.undo()
    assert same(snapshot(s.model), old) and not s.dirty
