"""Statistics are exact, chunk-independent, overflow-free and NaN-safe."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from modeltui.core import Cancelled, StatsError
from modeltui.core.stats import tensor_stats


def reference(t):
    x = t.detach().to(torch.float64).reshape(-1)
    f = x[torch.isfinite(x)]
    return {
        "min": f.min().item(), "max": f.max().item(), "mean": f.mean().item(),
        "std": f.std(unbiased=False).item(), "norm": f.norm().item(),
        "zeros": int((f == 0).sum()), "nan": int(torch.isnan(x).sum()),
        "posinf": int(torch.isposinf(x).sum()), "neginf": int(torch.isneginf(x).sum()),
    }


def check(s, ref):
    for k in ("min", "max"):
        assert getattr(s, k) == ref[k], k
    for k in ("mean", "std", "norm"):
        assert math.isclose(getattr(s, k), ref[k], rel_tol=1e-9, abs_tol=1e-9), (k, getattr(s, k), ref[k])
    for k in ("zeros", "nan", "posinf", "neginf"):
        assert getattr(s, k) == ref[k], k


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("chunk", [7, 1000, 1 << 22])
def test_exact_against_float64_reference(dtype, chunk):
    g = torch.Generator().manual_seed(1)
    t = (torch.randn(50, 37, generator=g) * 3).to(dtype)
    t[0, :5] = 0
    s = tensor_stats(t, chunk=chunk)
    check(s, reference(t))
    assert s.numel == t.numel() and s.finite == t.numel()
    assert sum(s.hist_counts) == t.numel()
    assert len(s.hist_edges) == len(s.hist_counts) + 1


def test_fp16_sums_never_overflow():
    t = torch.full((100_000,), 60000.0, dtype=torch.float16)
    assert torch.isinf(t.sum())  # what a naive fp16 sum does on CPU
    s = tensor_stats(t, chunk=4096)
    assert s.mean == 60000.0 and s.std == 0.0
    assert math.isclose(s.norm, 60000.0 * math.sqrt(100_000), rel_tol=1e-12)


def test_nan_and_inf_are_counted_not_mixed_in():
    t = torch.tensor([1.0, float("nan"), float("inf"), -float("inf"), 3.0, float("nan")])
    s = tensor_stats(t)
    assert (s.nan, s.posinf, s.neginf, s.inf, s.finite) == (2, 1, 1, 2, 2)
    assert (s.min, s.max, s.mean) == (1.0, 3.0, 2.0)
    assert sum(s.hist_counts) == 2


def test_all_nan_has_no_moments():
    s = tensor_stats(torch.full((4,), float("nan")))
    assert s.nan == 4 and s.finite == 0 and s.min is None and s.mean is None


def test_integers_are_exact():
    t = torch.tensor([2**62, -(2**62), 5, 0], dtype=torch.int64)
    s = tensor_stats(t)
    assert s.min == -(2**62) and s.max == 2**62 and s.zeros == 1
    s = tensor_stats(torch.arange(5, dtype=torch.int32))
    assert s.hist_counts == [1, 1, 1, 1, 1]  # one bin per integer value
    assert s.mean == 2.0


def test_bool():
    s = tensor_stats(torch.tensor([True, False, True, True]))
    assert (s.min, s.max, s.zeros) == (0, 1, 1)
    assert s.mean == 0.75


def test_empty_and_scalar():
    assert tensor_stats(torch.zeros(0)).numel == 0
    s = tensor_stats(torch.tensor(4.0))
    assert s.min == s.max == 4.0 and s.hist_counts == [1]


def test_non_contiguous_view():
    t = torch.randn(30, 40).t()[::2]
    check(tensor_stats(t, chunk=64), reference(t))


def test_meta_and_uninitialised_refuse_clearly():
    with pytest.raises(StatsError, match="meta"):
        tensor_stats(torch.empty(3, device="meta"))
    with pytest.raises(StatsError, match="uninitialised"):
        tensor_stats(torch.nn.LazyLinear(3).weight)


def test_cancellation_between_chunks():
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(Cancelled):
        tensor_stats(torch.randn(10_000), chunk=100, should_stop=stop)


def test_quantiles_are_sampled_for_large_tensors():
    t = torch.arange(3_000_000, dtype=torch.float32)
    s = tensor_stats(t)
    assert s.sampled
    assert abs(s.quantiles["p50"] - 1_500_000) < 30_000


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.one_of(st.floats(-1e4, 1e4, width=32), st.sampled_from([float("nan"), float("inf"), -float("inf")])), min_size=1, max_size=200),
    st.integers(1, 64),
)
def test_property_chunking_never_changes_results(values, chunk):
    t = torch.tensor(values, dtype=torch.float32)
    a = tensor_stats(t, chunk=chunk)
    b = tensor_stats(t, chunk=1 << 20)
    assert (a.nan, a.posinf, a.neginf, a.zeros, a.min, a.max) == (b.nan, b.posinf, b.neginf, b.zeros, b.min, b.max)
    if a.finite:
        assert math.isclose(a.mean, b.mean, rel_tol=1e-9, abs_tol=1e-6)
        assert math.isclose(a.std, b.std, rel_tol=1e-6, abs_tol=1e-6)
        assert a.hist_counts == b.hist_counts
