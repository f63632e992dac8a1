"""Tensor statistics: exact, chunked, overflow-free, cancellable.

Chunks are upcast (float64 on CPU, float32 on accelerators) and their moments
merged, so fp16/bf16 sums never overflow and 100M+ element tensors never need
a full upcast copy. NaN and Inf are counted, never mixed into min/max/mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from modeltui.core.errors import Cancelled, StatsError

CHUNK = 1 << 22  # elements per chunk: 32 MiB as float64
SAMPLE = 1 << 20  # values drawn for quantiles
QUANTILES = (0.01, 0.25, 0.5, 0.75, 0.99)
_NATIVE_FLOATS = ("float16", "bfloat16", "float32", "float64")


@dataclass(slots=True)
class TensorStats:
    """Summary statistics of one tensor. Float fields are None when undefined."""

    numel: int
    dtype: str
    finite: int = 0  # finite (non-NaN, non-Inf) elements
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None  # population std over finite values
    norm: float | None = None  # L2 norm over finite values
    zeros: int = 0
    nan: int = 0
    posinf: int = 0
    neginf: int = 0
    hist_counts: list[int] = field(default_factory=list)
    hist_edges: list[float] = field(default_factory=list)  # len(counts) + 1 edges
    quantiles: dict[str, float] = field(default_factory=dict)  # from a sample of at most SAMPLE values
    sampled: bool = False  # True when quantiles come from a sample

    @property
    def inf(self) -> int:
        return self.posinf + self.neginf

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in self.__slots__}


def _chunks(flat, size: int):
    n = flat.numel()
    for start in range(0, n, size):
        yield flat[start:start + size]


def _flat(t):
    if t.is_contiguous():
        return t.reshape(-1)
    return t.contiguous().reshape(-1)


def tensor_stats(
    t,
    *,
    bins: int = 32,
    chunk: int = CHUNK,
    should_stop: Callable[[], bool] | None = None,
) -> TensorStats:
    """Compute :class:`TensorStats` for ``t`` in chunks.

    ``should_stop`` is polled between chunks; when it returns True the
    computation raises :class:`Cancelled`.
    """
    import torch

    if isinstance(t, torch.nn.parameter.UninitializedTensorMixin):
        raise StatsError("uninitialised lazy parameter: run a forward pass first (f, or -i/--input-shape)")
    if t.is_meta:
        raise StatsError("tensor on the meta device has no values")
    t = t.detach()
    dtype = str(t.dtype).removeprefix("torch.")
    if t.is_complex():
        t = t.abs()
    acc = torch.float64 if t.device.type == "cpu" else torch.float32
    if t.device.type == "mps":
        acc = torch.float32
    flat = _flat(t)
    numel = flat.numel()
    st = TensorStats(numel=numel, dtype=dtype)
    if numel == 0:
        return st
    is_float = flat.is_floating_point()
    is_bool = flat.dtype == torch.bool
    exact_int = not is_float and not is_bool

    # Pass 1, in the tensor's own dtype (cheap): NaN/Inf counts, zeros, min and max.
    lo = hi = None
    finite = 0
    for c in _chunks(flat, chunk):
        if should_stop is not None and should_stop():
            raise Cancelled()
        good = _finite_part(c, st) if is_float else c
        st.zeros += int((good == 0).sum())
        n = good.numel()
        if n == 0:
            continue
        finite += n
        if exact_int:
            cmin, cmax = good.min().item(), good.max().item()
        elif is_bool:
            cmin, cmax = int(good.min()), int(good.max())
        else:
            a, b = torch.aminmax(good)
            cmin, cmax = float(a), float(b)
        lo = cmin if lo is None else min(lo, cmin)
        hi = cmax if hi is None else max(hi, cmax)
    st.finite = finite
    if not finite:
        return st
    # Pass 2, upcast: moments (merged per chunk, Chan et al.) and the histogram together.
    edges, bins, hist_lo, hist_hi = _bins(float(lo), float(hi), bins, is_float)
    counts = torch.zeros(bins, dtype=acc, device=flat.device)
    has_bad = st.nan + st.posinf + st.neginf > 0
    count = 0
    mean = m2 = sumsq = 0.0
    for c in _chunks(flat, chunk):
        if should_stop is not None and should_stop():
            raise Cancelled()
        if is_float and has_bad:
            c = c[torch.isfinite(c)]
        n = c.numel()
        if n == 0:
            continue
        x = c.to(acc)
        cmean = float(x.mean())
        d = x - cmean
        cm2 = float(torch.dot(d, d))
        sumsq += float(torch.dot(x, x))
        if hi > lo:
            counts += torch.histc(x, bins=bins, min=hist_lo, max=hist_hi)
        total = count + n
        delta = cmean - mean
        mean += delta * n / total
        m2 += cm2 + delta * delta * count * n / total
        count = total
    st.min, st.max = lo, hi
    st.mean = mean
    st.std = math.sqrt(max(m2 / count, 0.0))
    st.norm = math.sqrt(sumsq)
    if hi > lo:
        st.hist_counts, st.hist_edges = [int(v) for v in counts.tolist()], edges
    else:
        st.hist_counts, st.hist_edges = [count], [float(lo), float(hi)]
    st.quantiles = _quantiles(flat, acc, is_float)
    st.sampled = numel > SAMPLE
    return st


def _finite_part(c, st: TensorStats):
    """The finite values of float chunk ``c``; NaN and ±Inf are counted into ``st``."""
    import torch

    if str(c.dtype).removeprefix("torch.") not in _NATIVE_FLOATS:
        c = c.float()  # float8 and friends lack most kernels
    fin = torch.isfinite(c)
    if bool(fin.all()):
        return c
    st.nan += int(torch.isnan(c).sum())
    st.posinf += int(torch.isposinf(c).sum())
    st.neginf += int(torch.isneginf(c).sum())
    return c[fin]


def _bins(lo: float, hi: float, bins: int, is_float: bool):
    """Edges, bin count and the range given to histc (one bin per integer for small int ranges)."""
    if not is_float and hi - lo + 1 <= bins:
        bins = int(hi - lo + 1)
        lo, hi = lo - 0.5, hi + 0.5
    edges = [lo + (hi - lo) * i / bins for i in range(bins + 1)]
    return edges, bins, lo, hi


def _quantiles(flat, acc, is_float: bool) -> dict[str, float]:
    import torch

    n = flat.numel()
    if n > SAMPLE:
        g = torch.Generator(device="cpu").manual_seed(0)
        idx = torch.randint(0, n, (SAMPLE,), generator=g).to(flat.device)
        x = flat[idx]
    else:
        x = flat
    x = x.float().to(acc) if (is_float and x.element_size() == 1) else x.to(acc)
    if is_float:
        x = x[torch.isfinite(x)]
    if x.numel() == 0:
        return {}
    if x.numel() > 1 << 24:  # torch.quantile's limit
        x = x[: 1 << 24]
    q = torch.quantile(x, torch.tensor(QUANTILES, dtype=x.dtype, device=x.device))
    return {f"p{round(p * 100)}": float(v) for p, v in zip(QUANTILES, q.tolist())}
