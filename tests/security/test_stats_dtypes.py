"""Statistics for every dtype torch has, or a plain StatsError; never a raw torch error (issue 11 item 12)."""

import math

import pytest
import torch

from modeltui.core import StatsError
from modeltui.core.preview import value_grid
from modeltui.core.stats import tensor_stats
from modeltui.core.tensors import dtype_name

ALL_DTYPES = sorted({d for d in vars(torch).values() if isinstance(d, torch.dtype)}, key=str)
PACKED = {f"{p}{n}" for p in ("uint", "int") for n in range(1, 8)} | {"bits1x8", "bits2x4", "bits4x2", "bits8", "bits16"}


def sample(dtype):
    name = dtype_name(dtype)
    if name in PACKED or name == "float4_e2m1fn_x2":
        return torch.tensor([0x12, 0xF7, 0x00, 0x3A], dtype=torch.uint8).view(dtype)
    if dtype in (torch.qint8, torch.quint8, torch.qint32, torch.quint4x2, torch.quint2x4):
        return torch.quantize_per_tensor(torch.tensor([0.0, 0.5, 1.0, 1.5]), 0.5, 0, dtype)
    if dtype.is_complex:
        return torch.tensor([3 + 4j, 0j, -5j, 1 + 0j], dtype=torch.complex64).to(dtype)
    if dtype == torch.bool:
        return torch.tensor([True, False, True, True])
    if dtype.is_floating_point:
        return torch.tensor([0.5, 1.0, 2.0, 4.0]).to(dtype)
    return torch.tensor([0, 3, 7, 9]).to(dtype)


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
def test_every_dtype_gets_statistics_or_a_plain_refusal(dtype):
    t = sample(dtype)
    try:
        st = tensor_stats(t)
    except StatsError as e:
        assert dtype_name(dtype) in PACKED, e
        assert "no statistics" in str(e)
        return
    assert dtype_name(dtype) not in PACKED
    assert st.finite > 0 and st.min is not None and st.max >= st.min and sum(st.hist_counts) == st.finite
    try:
        value_grid(t, "")
    except Exception as e:  # the values pane refuses in one line too, never a raw error
        from modeltui.core.slicing import SliceError

        assert isinstance(e, SliceError) and dtype_name(dtype) in PACKED


@pytest.mark.parametrize("dtype", [torch.uint16, torch.uint32, torch.uint64])
def test_unsigned_integers_are_exact(dtype):
    top = {torch.uint16: 2**16 - 1, torch.uint32: 2**32 - 1, torch.uint64: 2**64 - 1}[dtype]
    vals = [0, 5, top] + ([2**63, 2**63 - 1] if dtype == torch.uint64 else [])
    st = tensor_stats(torch.tensor(vals, dtype=torch.uint64).to(dtype), chunk=2)
    assert (st.min, st.max, st.zeros, st.numel) == (0, top, 1, len(vals))
    assert math.isclose(st.mean, sum(vals) / len(vals), rel_tol=1e-12)
    assert value_grid(torch.tensor(vals, dtype=torch.uint64).to(dtype), "").cells[0][2] == str(top)


def test_what_the_figures_describe_is_said():
    c = tensor_stats(torch.tensor([3 + 4j, 0j], dtype=torch.complex64))
    assert (c.max, c.min) == (5.0, 0.0) and "magnitudes" in c.note
    sp = torch.sparse_coo_tensor([[0, 5]], [2.0, -1.0], (1000,))
    s = tensor_stats(sp)
    assert s.numel == 2 and s.mean == 0.5 and "stored values of a sparse tensor of 1,000" in s.note
    q = tensor_stats(torch.quantize_per_tensor(torch.tensor([0.0, 1.5]), 0.5, 0, torch.quint8))
    assert (q.min, q.max) == (0.0, 1.5) and "dequantized" in q.note
    f4 = tensor_stats(torch.tensor([0x12, 0xF7], dtype=torch.uint8).view(torch.float4_e2m1fn_x2))
    assert f4.numel == 4 and (f4.min, f4.max) == (-6.0, 6.0) and "two per" in f4.note  # 1, 0.5, 6, -6
    assert value_grid(torch.tensor([0x12], dtype=torch.uint8).view(torch.float4_e2m1fn_x2), "").cells[0] == ["1/0.5"]
    e8 = tensor_stats(torch.tensor([0.5, 2.0, float("nan")]).to(torch.float8_e8m0fnu))
    assert (e8.min, e8.max, e8.nan) == (0.5, 2.0, 1)
