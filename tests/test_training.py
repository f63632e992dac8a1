"""Issue 15, the core: activation statistics, the first non-finite module, backward and grad norms, bad inputs."""

import gc
import math
import re
import weakref

import pytest
import torch
from torch import nn

from modeltui.core import open_target, parse_input_spec
from modeltui.core.backward import BackwardError, grad_norms, run_backward, zero_grads
from modeltui.core.describe import walk_modules
from modeltui.core.forward import run_forward
from modeltui.core.layers import forward_json, layer_rows, sort_rows


def reference_outputs(model, specs, seed=0):
    """Every module's outputs in call order, as float64, by the path the run gives each call (k-th call: k-th path)."""
    paths: dict[int, list[str]] = {}
    for path, mod in walk_modules(model):
        paths.setdefault(id(mod), []).append(path)
    calls: dict[int, int] = {}
    outs: dict[str, list] = {}

    def hook(mod, args, output):
        k = calls[id(mod)] = calls.get(id(mod), -1) + 1
        ps = paths[id(mod)]
        tensors = []
        stack = [output]
        while stack:  # depth-first, in order, as the records name them
            x = stack.pop(0)
            if isinstance(x, torch.Tensor):
                tensors.append(x.detach().double().clone())
            elif isinstance(x, (list, tuple)):
                stack[:0] = list(x)
            elif isinstance(x, dict):
                stack[:0] = list(x.values())
        outs.setdefault(ps[k % len(ps)], []).append(tensors)

    handles = [m.register_forward_hook(hook) for m in {id(m): m for _, m in walk_modules(model)}.values()]
    try:
        run_forward(model, specs, seed=seed, record=False)
    finally:
        for h in handles:
            h.remove()
    return outs


def check_figures(st, xs):
    x = torch.cat([t.reshape(-1) for t in xs])
    assert st.numel == x.numel()
    assert st.zeros == int((x == 0).sum())
    assert st.nan == 0 and st.inf == 0
    sd, mean = torch.std_mean(x, correction=0)
    assert st.mean == pytest.approx(float(mean), rel=1e-5, abs=1e-6)
    assert st.std == pytest.approx(float(sd), rel=1e-5, abs=1e-7)
    assert st.min == float(x.min()) and st.max == float(x.max())


@pytest.mark.parametrize("target, shapes", [
    ("sample_models.book:make_net", ["2,20"]),
    ("sample_models.book:make_chimera", ["2,20"]),  # FixedHiddenMLP calls its linear twice: both calls merged
    ("sample_models.book:make_shared_net", ["2,20"]),  # one module at two paths: each call its own path
    ("sample_models.book:make_my_sequential", ["2,20"]),
    ("sample_models.zoo:make_transformer", ["2,10,32", "2,7,32"]),
    ("sample_models.zoo:TinyGPT", ["2,16"]),
    ("sample_models.zoo:LSTMTagger", ["4,10,16"]),  # tuple outputs: (out, (h, c))
])
@pytest.mark.parametrize("defer", [False, True], ids=["read-at-once", "kept-on-device"])
def test_activation_figures_equal_a_float64_reference(target, shapes, defer):
    torch.manual_seed(0)
    model = open_target(target).model
    specs = [parse_input_spec(s) for s in shapes]
    run_forward(model, specs)  # lazy layers first
    ref = reference_outputs(model, specs)
    r = run_forward(model, specs, defer_stats=defer)
    assert r.ok, r.error
    assert set(r.order) == set(ref)
    for path, calls in ref.items():
        rec = r.records[path]
        check_figures(rec.summary, [t for call in calls for t in call])
        assert len(rec.outputs) == len(calls[-1])  # each tensor of the last call's output
        for st, t in zip(rec.outputs, calls[-1]):
            check_figures(st, [t])
            assert st.bytes == t.numel() * 4 and list(st.shape) == list(t.shape)


def test_tuple_outputs_are_named_and_measured_each():
    torch.manual_seed(0)
    r = run_forward(open_target("sample_models.zoo:LSTMTagger").model, [parse_input_spec("4,10,16")])
    assert [s.name for s in r.records["lstm"].outputs] == ["[0]", "[1][0]", "[1][1]"]
    assert [s.shape for s in r.records["lstm"].outputs] == [(4, 10, 32), (2, 4, 32), (2, 4, 32)]


def test_execution_order_and_layers():
    torch.manual_seed(0)
    o = open_target("sample_models.book:make_chimera")
    r = run_forward(o.model, [parse_input_spec("2,20")])
    assert r.order == ["0.net.0", "0.net.1", "0.net.2", "0.net.3", "0.net", "0.linear", "0", "1", "2.linear", "2", ""]
    rows = layer_rows(r)
    assert [x.path for x in rows if x.leaf] == ["0.net.0", "0.net.1", "0.net.2", "0.net.3", "0.linear", "1", "2.linear"]
    assert rows[8].calls == 2  # FixedHiddenMLP's linear, twice
    by_std = sort_rows(rows, "std")
    assert [x.stats.std for x in by_std] == sorted((x.stats.std for x in rows), reverse=True)
    assert sort_rows(rows, "time", reverse=False)[0].ms == min(x.ms for x in rows)


def test_hooks_do_not_keep_outputs_alive():
    model = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 4))
    refs = []
    h = model[1].register_forward_hook(lambda m, a, out: refs.append(weakref.ref(out)) and None)
    r = run_forward(model, [parse_input_spec("16,8")])
    h.remove()
    gc.collect()
    assert r.ok and r.records["1"].summary.numel == 16 * 64
    assert refs and refs[0]() is None  # the hidden activation is gone: only its figures were kept


def test_a_nan_planted_in_a_weight_names_that_layer_first(nan_net):
    r = run_forward(nan_net(2), [parse_input_spec("2,4")])
    assert r.ok
    assert r.first_nonfinite == "2"
    rec = r.records["2"].summary
    assert rec.nan == 2 and rec.mean is None and rec.std is None  # undefined, the counts say why
    assert r.records["0"].summary.finite and not r.records["4"].summary.finite
    d = forward_json(r)
    assert d["first_nonfinite"] == "2"
    entry = next(m for m in d["modules"] if m["path"] == "2")
    assert entry["nan"] == 2 and entry["mean"] is None and entry["std"] is None
    assert run_forward(nan_net(2), [parse_input_spec("2,4")], defer_stats=True).first_nonfinite == "2"


def test_inf_is_counted_and_an_all_finite_model_has_none(nan_net):
    net = nan_net(0)
    with torch.no_grad():
        net[0].weight[0, 0] = 0.0
        net[2].bias[1] = float("inf")  # +inf in one unit of layer 2's output, nothing else
    r = run_forward(net, [parse_input_spec("2,4")])
    assert r.first_nonfinite == "2" and r.records["2"].summary.inf == 2 and r.records["2"].summary.nan == 0
    assert run_forward(nn.Sequential(nn.Linear(4, 4)), [parse_input_spec("2,4")]).first_nonfinite is None


# ------------------------------------------------------------ backward


def captured_input(model, specs, seed=0):
    """The input the run builds for ``specs`` (caught by a pre-hook on the root)."""
    got = []
    h = model.register_forward_pre_hook(lambda m, args: got.append([a.clone() for a in args]) and None)
    run_forward(model, specs, seed=seed, record=False)
    h.remove()
    return got[0]


@pytest.mark.parametrize("loss", ["sum", "mean", "mse", "ce"])
def test_grad_norms_equal_autograd_with_a_tied_pair_and_a_frozen_layer(loss, tied_frozen):
    model = tied_frozen()
    specs = [parse_input_spec("3,5")]
    (x,) = captured_input(model, specs)
    model.eval()
    out = model(x)
    if loss == "ce":
        gen = torch.Generator().manual_seed(1)
        target = torch.randint(0, 20, (15,), generator=gen)
        value = nn.functional.cross_entropy(out.reshape(-1, 20), target)
    else:
        value = {"sum": out.sum(), "mean": out.mean(), "mse": out.pow(2).mean()}[loss]
    params = [model.emb.weight, model.top.weight, model.top.bias]
    expected = [float(g.norm()) for g in torch.autograd.grad(value, params)]

    r = run_backward(model, specs, loss)
    assert r.ok, r.error
    assert r.loss == pytest.approx(float(value.detach()), rel=1e-6)
    assert r.grad_norms["emb.weight"] == pytest.approx(expected[0], rel=1e-5)
    assert r.grad_norms["out.weight"] == r.grad_norms["emb.weight"]  # one grad: the sum over both uses
    assert model.out.weight.grad is model.emb.weight.grad
    assert r.grad_norms["top.weight"] == pytest.approx(expected[1], rel=1e-5)
    assert r.grad_norms["top.bias"] == pytest.approx(expected[2], rel=1e-5)
    assert "mid.weight" not in r.grad_norms and model.mid.weight.grad is None  # frozen: none
    assert r.module_grad_norms["top"] == pytest.approx(math.hypot(expected[1], expected[2]), rel=1e-5)
    assert r.records["top"].summary is not None  # the activation figures come with it


def test_grads_are_cleared_first_or_accumulated(tied_frozen):
    model = tied_frozen()
    specs = [parse_input_spec("3,5")]
    first = run_backward(model, specs, "sum")
    g = model.top.weight.grad.clone()
    again = run_backward(model, specs, "sum")
    assert not again.accumulated and torch.equal(model.top.weight.grad, g)
    acc = run_backward(model, specs, "sum", accumulate=True)
    assert acc.ok and acc.accumulated
    assert torch.allclose(model.top.weight.grad, 2 * g)
    assert acc.grad_norms["top.weight"] == pytest.approx(2 * first.grad_norms["top.weight"], rel=1e-6)
    assert zero_grads(model) == 3  # emb (tied, once), top.weight, top.bias
    assert all(p.grad is None for p in model.parameters()) and grad_norms(model) == {}


def grads_of(model):
    return {n: (None if p.grad is None else p.grad.clone()) for n, p in model.named_parameters()}


def same_grads(model, before):
    now = grads_of(model)
    return now.keys() == before.keys() and all(
        (a is None and b is None) or (a is not None and b is not None and torch.equal(a, b))
        for a, b in ((now[k], before[k]) for k in now))


def with_grads(model, specs):
    run_backward(model, specs, "sum")
    return grads_of(model)


def test_nothing_requires_grad_is_refused_before_anything_runs(model_hash):
    model = nn.Sequential(nn.Linear(4, 4))
    model.requires_grad_(False)
    h = model_hash(model)
    with pytest.raises(BackwardError, match="no parameter requires grad"):
        run_backward(model, [parse_input_spec("2,4")], "sum")
    assert model_hash(model) == h and model[0].weight.grad is None


class ArgMax(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x):
        return self.lin(x).argmax(-1)


class Detached(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x):
        return self.lin(x).detach()


@pytest.mark.parametrize("model_fn, loss, message", [
    (ArgMax, "sum", "the output is int64: a loss needs a floating-point output"),
    (Detached, "mean", "does not depend on any parameter that requires grad"),
    (lambda: nn.Sequential(nn.Linear(4, 1)), "ce", r"ce needs a classifier-shaped output .* output has shape \[2, 1\]"),
    (lambda: nn.Sequential(nn.Linear(4, 3), nn.Flatten(0)), "ce", "ce needs a classifier-shaped output"),
])
def test_a_loss_that_does_not_fit_leaves_model_and_grads_as_before(model_fn, loss, message, model_hash):
    torch.manual_seed(0)
    model = model_fn()
    specs = [parse_input_spec("2,4")]
    with torch.no_grad():
        for p in model.parameters():
            p.grad = torch.full_like(p, 7.0)  # grads from before
    before, h = grads_of(model), model_hash(model)
    r = run_backward(model, specs, loss)
    assert not r.ok and r.loss is None
    assert re.search(message, r.error), r.error
    assert r.error.endswith("the model and its grads are as they were")
    assert same_grads(model, before) and model_hash(model) == h


class OOMForward(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.boom = nn.Identity()

    def forward(self, x):
        x = self.lin(x)
        if torch.is_grad_enabled():
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return x


def test_out_of_memory_in_the_forward_or_the_backward_restores_the_grads(model_hash):
    specs = [parse_input_spec("2,4")]
    model = OOMForward()
    with torch.no_grad():
        model.lin.weight.grad = torch.ones_like(model.lin.weight)
    before, h = grads_of(model), model_hash(model)
    r = run_backward(model, specs, "sum")
    assert r.oom and r.error.startswith("out of memory during the forward or backward pass")
    assert "try a smaller input" in r.error and same_grads(model, before) and model_hash(model) == h

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    before = with_grads(net, specs)  # grads from an earlier backward

    def boom(grad):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")

    handle = net[0].weight.register_hook(boom)  # the last layer's grads are made, then this one fails
    r = run_backward(net, specs, "sum")
    handle.remove()
    assert r.oom and not r.ok
    assert same_grads(net, before)  # the grads made before the failure are gone, the old ones back


class Branch(nn.Module):
    """Uses ``a`` or ``b`` depending on a flag: a pass reaches only one of them."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 2), nn.Linear(4, 2)
        self.use_a = True

    def forward(self, x):
        return self.a(x) if self.use_a else self.b(x)


def test_accumulating_adds_where_the_pass_reached_and_keeps_the_rest():
    torch.manual_seed(0)
    model = Branch()
    specs = [parse_input_spec("2,4")]
    run_backward(model, specs, "sum")
    ga = model.a.weight.grad.clone()
    assert model.b.weight.grad is None
    model.use_a = False
    run_backward(model, specs, "sum", accumulate=True)
    assert torch.equal(model.a.weight.grad, ga) and model.b.weight.grad is not None  # kept / added
    run_backward(model, specs, "sum")
    assert model.a.weight.grad is None  # cleared first: a pass that does not reach a leaves it none


def test_an_output_torch_cannot_measure_gets_no_figures_and_the_pass_goes_on(monkeypatch):
    import modeltui.core.activations as activations

    real = activations._measure

    def picky(t, name, defer):
        if t.shape[-1] == 8:
            raise RuntimeError("no kernel for this tensor subclass")
        return real(t, name, defer)

    monkeypatch.setattr(activations, "_measure", picky)
    r = run_forward(nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 3)), [parse_input_spec("2,4")])
    assert r.ok and r.records["0"].summary is None and r.records["0"].shapes == [(2, 8)]
    assert r.records["1"].summary.numel == 6
