"""Tensor statistics: exact, chunked, overflow-free, cancellable.

Chunks are upcast (float64 on CPU, float32 on accelerators) and their moments
merged, so fp16/bf16 sums never overflow and 100M+ element tensors never need
a full upcast copy. NaN and Inf are counted, never mixed into min/max/mean.
Memory stays bounded by the chunk size for any layout (stride-0 dimensions
are counted, not expanded), and tensors of a checkpoint file are read through
:mod:`modeltui.core.readers.reading` (the file is checked; unedited ones by ``pread``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterator

from modeltui.core.errors import Cancelled, ModelTuiError, StatsError, first_line
from modeltui.core.tensors import dtype_name, is_lazy

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
    note: str = ""  # what the figures describe when it is not simply the values (complex, sparse, quantized, fp4)

    @property
    def inf(self) -> int:
        return self.posinf + self.neginf


# dtypes torch declares but has no arithmetic for (packed layouts for custom kernels)
_SHELL = tuple(f"{p}{n}" for p in ("uint", "int") for n in range(1, 8)) + ("bits1x8", "bits2x4", "bits4x2", "bits8", "bits16")
# float4_e2m1fn_x2 packs two values per byte: sign, 2 exponent bits (bias 1), 1 mantissa bit
_FP4 = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)


def _prepare(t, st: TensorStats):
    """``t`` as a strided tensor to read, with ``st.note`` saying what the figures describe."""
    import torch

    name = st.dtype
    if name in _SHELL:
        raise StatsError(f"{name} is a packed dtype torch has no arithmetic for (custom kernels unpack it): no statistics")
    if t.layout != torch.strided:
        values = t.coalesce().values() if t.layout == torch.sparse_coo else t.values()
        st.note = f"statistics of the {values.numel():,} stored values of a sparse tensor of {t.numel():,} elements (implicit zeros not counted)"
        st.numel = values.numel()
        return values
    if t.is_quantized:
        st.note = "statistics of the dequantized values"
    elif t.is_complex():
        st.note = "statistics of the magnitudes |z| of a complex tensor"
    elif name == "float4_e2m1fn_x2":
        st.note = "statistics of the unpacked fp4 values, two per float4_e2m1fn_x2 element"
        st.numel = 2 * t.numel()
    return t


def _kind(t, name: str) -> str:
    """How the converted chunks of ``t`` compare: "float", "int", "uint64" or "bool"."""
    import torch

    if t.is_quantized or t.is_complex() or t.is_floating_point() or name == "float4_e2m1fn_x2":
        return "float"
    if t.dtype == torch.bool:
        return "bool"
    return "uint64" if name == "uint64" else "int"


def _convert(c, name: str):
    """A chunk in a dtype with the kernels statistics need (exact for integers)."""
    import torch

    if c.is_complex():
        return c.abs() if c.dtype != torch.complex32 else c.to(torch.complex64).abs()
    if name in ("uint16", "uint32"):
        return c.to(torch.int64)
    if name == "float4_e2m1fn_x2":
        u = c.view(torch.uint8)
        lut = torch.tensor(_FP4, dtype=torch.float32, device=c.device)
        return torch.cat([lut[(u & 0xF).long()], lut[(u >> 4).long()]])
    if c.is_floating_point() and dtype_name(c.dtype) not in _NATIVE_FLOATS:
        return c.float()  # float8 and friends lack most kernels
    return c


def _extremes(good, kind: str):
    """Exact ``(min, max)`` of a non-empty chunk."""
    import torch

    if kind == "uint64":
        s = good.view(torch.int64)
        low, high = s[s >= 0], s[s < 0]  # values below / from 2**63
        lo = int(low.min()) if low.numel() else int(high.min()) + (1 << 64)
        hi = int(high.max()) + (1 << 64) if high.numel() else int(low.max())
        return lo, hi
    if kind == "int":
        return good.min().item(), good.max().item()
    if kind == "bool":
        return int(good.min()), int(good.max())
    a, b = torch.aminmax(good)
    return float(a), float(b)


def tensor_stats(
    t,
    *,
    bins: int = 32,
    chunk: int = CHUNK,
    should_stop: Callable[[], bool] | None = None,
) -> TensorStats:
    """Compute :class:`TensorStats` for ``t`` in chunks, in memory bounded by ``chunk``.

    Works for every dtype torch computes with (integers exactly, unsigned
    64-bit included; fp8; complex as magnitudes; sparse on the stored values;
    quantized dequantized; the ``note`` says so) and raises
    :class:`StatsError` with a plain reason otherwise. Dimensions of stride 0
    are computed once and counted as often as they repeat. A tensor from a
    checkpoint file is checked first (:class:`~modeltui.core.filewatch.FileChangedError`
    when the file changed) and, if unedited, read with ``pread``.
    ``should_stop`` is polled between chunks; when it returns True the
    computation raises :class:`Cancelled`.
    """

    from modeltui.core.readers.reading import chunks, narrow_repeats

    if is_lazy(t):
        raise StatsError("uninitialised lazy parameter: run a forward pass first (f, or -i/--input-shape)")
    if t.is_meta:
        raise StatsError("tensor on the meta device has no values")
    t = t.detach()
    st = TensorStats(numel=t.numel(), dtype=dtype_name(t.dtype))
    try:
        return _compute(t, st, bins, chunk, should_stop, chunks, narrow_repeats)
    except (StatsError, Cancelled, ModelTuiError):
        raise
    except (RuntimeError, NotImplementedError, TypeError, ValueError) as e:
        raise StatsError(f"torch cannot compute statistics of a {st.dtype} tensor ({first_line(e, 120)})") from None


def _compute(t, st: TensorStats, bins, chunk, should_stop, chunks, narrow_repeats) -> TensorStats:
    import torch

    t = _prepare(t, st)
    name = st.dtype
    t, repeat = narrow_repeats(t)
    acc = torch.float64 if t.device.type == "cpu" else torch.float32
    if t.device.type == "mps":
        acc = torch.float32
    if t.numel() == 0:
        return st
    _passes(chunks(t, chunk), st, name, _kind(t, name), acc, bins, should_stop, t.device, repeat)
    _scale(st, repeat)
    return st


def chunk_stats(read: Callable[[], Iterator], numel: int, *, dtype: str = "float64", bins: int = 32,
                should_stop: Callable[[], bool] | None = None) -> TensorStats:
    """:class:`TensorStats` of values that come as chunks, not as one tensor (a difference of two tensors).

    ``read()`` returns a fresh iterator of 1-D float64 CPU chunks (it is
    called twice: one pass for the extremes, one for the moments and the
    histogram); ``numel`` is how many values there are in all.
    """
    import torch

    st = TensorStats(numel=numel, dtype=dtype)
    if numel:
        _passes(read, st, "float64", "float", torch.float64, bins, should_stop, torch.device("cpu"), 1)
    return st


def _passes(read, st: TensorStats, name: str, kind: str, acc, bins, should_stop, device, repeat: int) -> None:
    """The two passes over ``read()``'s chunks that fill ``st`` (counts before any stride-0 scaling)."""
    import torch

    is_float = kind == "float"
    # Pass 1, in the chunk's own dtype (cheap): NaN/Inf counts, zeros, min and max.
    lo = hi = None
    finite = 0
    for c in read():
        if should_stop is not None and should_stop():
            raise Cancelled()
        c = _convert(c, name)
        good = _finite_part(c, st) if is_float else c
        st.zeros += int((good == 0).sum())
        n = good.numel()
        if n == 0:
            continue
        finite += n
        cmin, cmax = _extremes(good, kind)
        lo = cmin if lo is None else min(lo, cmin)
        hi = cmax if hi is None else max(hi, cmax)
    st.finite = finite
    if not finite:
        return
    # Pass 2, upcast: moments (merged per chunk, Chan et al.), the histogram and a quantile sample.
    edges, bins, hist_lo, hist_hi = _bins(float(lo), float(hi), bins, is_float)
    counts = torch.zeros(bins, dtype=acc, device=device)
    has_bad = st.nan + st.posinf + st.neginf > 0
    count = 0
    mean = m2 = sumsq = 0.0
    gen = torch.Generator(device="cpu").manual_seed(0)
    sample = []
    for c in read():
        if should_stop is not None and should_stop():
            raise Cancelled()
        c = _convert(c, name)
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
        sample.append(_sample(x, n, finite, gen))
        total = count + n
        delta = cmean - mean
        mean += delta * n / total
        m2 += cm2 + delta * delta * count * n / total
        count = total
    st.min, st.max = lo, hi
    st.mean = mean
    st.std = math.sqrt(max(m2 / count, 0.0))
    st.norm = math.sqrt(sumsq * repeat)
    if hi > lo:
        st.hist_counts, st.hist_edges = [int(v) for v in counts.tolist()], edges
    else:
        st.hist_counts, st.hist_edges = [count], [float(lo), float(hi)]
    st.quantiles = _quantiles(torch.cat(sample) if sample else torch.empty(0, dtype=acc))
    st.sampled = finite > SAMPLE


def _sample(x, n: int, finite: int, gen):
    """This chunk's share of a uniform sample of at most SAMPLE values (all of them for small tensors)."""
    import torch

    if finite <= SAMPLE:
        return x
    k = max(1, round(SAMPLE * n / finite))
    idx = torch.randint(0, n, (k,), generator=gen).to(x.device)
    return x[idx]


def _scale(st: TensorStats, repeat: int) -> None:
    """Counts of a tensor whose elements each stand for ``repeat`` equal ones (stride-0 dimensions)."""
    if repeat == 1:
        return
    st.finite *= repeat
    st.zeros *= repeat
    st.nan *= repeat
    st.posinf *= repeat
    st.neginf *= repeat
    st.hist_counts = [c * repeat for c in st.hist_counts]
    st.sampled = st.sampled or st.finite > SAMPLE


def _finite_part(c, st: TensorStats):
    """The finite values of float chunk ``c``; NaN and ±Inf are counted into ``st``."""
    import torch

    if dtype_name(c.dtype) not in _NATIVE_FLOATS:
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


def _quantiles(x) -> dict[str, float]:
    """Quantiles of the finite sample ``x`` (already upcast)."""
    import torch

    if x.numel() == 0:
        return {}
    if x.numel() > 1 << 24:  # torch.quantile's limit
        x = x[: 1 << 24]
    q = torch.quantile(x, torch.tensor(QUANTILES, dtype=x.dtype, device=x.device))
    return {f"p{round(p * 100)}": float(v) for p, v in zip(QUANTILES, q.tolist())}
