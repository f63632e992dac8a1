"""GPU checks: run with ``pytest -m gpu`` on a CUDA machine; skipped without one."""

import pytest
import torch

from modeltui.core import open_target, parse_input_spec
from modeltui.core.forward import run_forward
from modeltui.core.saving import save_state_dict
from modeltui.core.stats import tensor_stats

pytestmark = pytest.mark.gpu


def test_open_on_cuda_and_forward_there():
    o = open_target("sample_models.zoo:TinyGPT", device="cuda")
    assert o.info.devices() == ["cuda:0"]
    r = run_forward(o.model, [parse_input_spec("2,16")])
    assert r.ok, r.error
    assert r.outputs[0].is_cuda and tuple(r.outputs[0].shape) == (2, 16, 512)


def test_stats_on_cuda_match_cpu():
    t = torch.randn(3_000_000, device="cuda", dtype=torch.float16) * 100
    t[0] = float("nan")
    g, c = tensor_stats(t), tensor_stats(t.cpu())
    assert (g.nan, g.min, g.max, g.zeros) == (c.nan, c.min, c.max, c.zeros)
    assert abs(g.mean - c.mean) < 1e-3 * max(1.0, abs(c.std))


def test_save_from_cuda_round_trip(tmp_path):
    o = open_target("sample_models.zoo:TinyGPT", device="cuda")
    sd = o.model.state_dict()
    for ext in (".safetensors", ".pt"):
        path = str(tmp_path / f"m{ext}")
        save_state_dict(dict(sd), path)
        back = open_target(path)
        assert all(torch.equal(back.tensor(k), v.cpu()) for k, v in sd.items())
        assert ["lm_head.weight", "tok.weight"] in [sorted(g) for g in back.info.tied_groups]


def test_move_to_cuda_keeps_ties_runs_and_comes_back():
    from modeltui.core.devices import list_devices
    from modeltui.core.session import Session
    from modeltui.core.surgery import move

    s = Session(open_target("sample_models.zoo:TinyGPT"))
    before = {k: v.clone() for k, v in s.model.state_dict().items()}
    seen = []
    move(s, "cuda", progress=lambda done, total: seen.append((done, total)))
    assert s.opened.device.startswith("cuda") and s.opened.info.devices() == ["cuda:0"]
    assert s.model.lm_head.weight is s.model.tok.weight
    assert seen and seen[-1][0] == seen[-1][1]
    r = run_forward(s.model, [parse_input_spec("2,16")])
    assert r.ok and r.outputs[0].is_cuda
    st = tensor_stats(s.opened.tensor("tok.weight"))
    assert st.numel == 512 * 64
    gpu = [d for d in list_devices() if d.name == "cuda:0"][0]
    assert gpu.free_bytes and gpu.total_bytes and gpu.free_bytes <= gpu.total_bytes  # memory shown in the dialog
    move(s, "cpu")
    assert all(torch.equal(v, before[k]) for k, v in s.model.state_dict().items())


def test_cancelled_move_leaves_everything_where_it_was():
    from modeltui.core.errors import Cancelled
    from modeltui.core.session import Session
    from modeltui.core.surgery import move

    s = Session(open_target("sample_models.zoo:TinyGPT"))
    calls = []
    with pytest.raises(Cancelled):
        move(s, "cuda", progress=lambda d, t: calls.append(d), should_stop=lambda: len(calls) >= 3)
    assert {p.device.type for p in s.model.parameters()} == {"cpu"}
    assert s.opened.device == "cpu"


def test_activation_figures_kept_on_cuda_match_those_read_at_once_and_grads_are_there():
    from modeltui.core.backward import run_backward

    torch.manual_seed(0)
    o = open_target("sample_models.zoo:TinyGPT", device="cuda")
    spec = [parse_input_spec("2,16")]
    kept = run_forward(o.model, spec, seed=0)  # the default on cuda: read back once, at the end
    read = run_forward(o.model, spec, seed=0, defer_stats=False)
    assert kept.ok and kept.order == read.order
    for path in kept.order:
        a, b = kept.records[path].summary, read.records[path].summary
        assert a.pending is None and (a.nan, a.inf, a.numel, a.zeros) == (b.nan, b.inf, b.numel, b.zeros)
        assert a.std == pytest.approx(b.std, rel=1e-5, abs=1e-7) and a.min == b.min and a.max == b.max
    r = run_backward(o.model, spec, "sum", seed=0)
    assert r.ok, r.error
    assert o.model.tok.weight.grad.is_cuda
    assert r.grad_norms["lm_head.weight"] == pytest.approx(float(o.model.tok.weight.grad.norm()), rel=1e-5)


def test_compare_a_cuda_tensor_with_a_cpu_one():
    from modeltui.core.difference import diff_tensors

    a = torch.randn(1000, 300)
    b = a.clone()
    b[400, 7] += 2.0
    d = diff_tensors(a.cuda(), b)
    assert d.differ == 1 and d.max_index == (400, 7) and abs(d.max_abs - 2.0) < 1e-6
    ints = diff_tensors(torch.arange(10).cuda(), torch.arange(10) * 2)
    assert ints.max_abs == 9 and ints.max_index == (9,)
    assert diff_tensors(a.cuda(), a).status == "identical"
