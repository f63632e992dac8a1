"""Activation statistics measured inside the forward hooks.

Every tensor a module outputs is measured where it lives (its device), whole
(outputs are small next to weights), and dropped: only a few numbers are
kept, never the output. On the CPU the figures are computed with numpy on
the tensor's own memory (no copy): single-threaded reductions, so the hooks
add no parallel regions to the pass (with torch's, each reduction is one
more fork and join of its thread pool, which on a busy machine cost more
than the arithmetic), and NaN/Inf are counted only when the extremes say
there are some. On an accelerator the figures are torch reductions that
stay on the device until the pass ends and are read back together, so the
hooks never make the device wait.

The figures of an output holding NaN or Inf are its counts; its mean, std,
min and max are ``None`` (undefined), on every device alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from modeltui.core.tensors import dtype_name

_HALF = ("float16", "bfloat16")


@dataclass(slots=True)
class ActivationStats:
    """The figures of one output tensor (or several merged: :func:`merge`)."""

    name: str  # "" for a lone tensor, "[0]", "['logits']" for parts of a tuple / dict output
    shape: tuple[int, ...]
    dtype: str
    numel: int = 0
    bytes: int = 0
    mean: float | None = None
    std: float | None = None  # population std
    min: float | None = None
    max: float | None = None
    zeros: int = 0
    nan: int = 0
    inf: int = 0
    measured: bool = False  # False: a kind of tensor with no figures (meta, sparse, quantized, empty)
    pending: Any = None  # device tensors read back when the pass ends (accelerators)

    @property
    def zero_fraction(self) -> float | None:
        return self.zeros / self.numel if self.measured and self.numel else None

    @property
    def finite(self) -> bool:
        return not (self.nan or self.inf)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "mean": _num(self.mean),
                "std": _num(self.std), "min": _num(self.min), "max": _num(self.max),
                "zero_fraction": _num(self.zero_fraction), "nan": self.nan, "inf": self.inf, "bytes": self.bytes}


def _num(v: float | None) -> float | None:
    """A figure for JSON: NaN and Inf are not JSON numbers."""
    return v if v is not None and math.isfinite(v) else None


def measure(t, name: str, defer: bool) -> ActivationStats:
    """The figures of output tensor ``t``; with ``defer`` they stay on its device until :func:`resolve`.

    Never keeps ``t``: only scalars (or 0-dim device tensors) are held.
    Never raises: a tensor torch cannot measure (a subclass, an odd
    layout, a dtype without kernels) gets no figures, and the model's
    forward pass goes on.
    """
    try:
        return _measure(t, name, defer)
    except Exception:
        try:
            return ActivationStats(name, tuple(t.shape), dtype_name(t.dtype), t.numel())
        except Exception:
            return ActivationStats(name, (), "?")


def _measure(t, name: str, defer: bool) -> ActivationStats:
    import torch

    st = ActivationStats(name, tuple(t.shape), dtype_name(t.dtype), t.numel())
    st.bytes = st.numel * t.element_size()
    if st.numel == 0 or t.is_meta or t.layout != torch.strided or t.is_quantized:
        return st
    x = t.detach()
    if x.is_complex():
        x = x.abs()
    elif not x.is_floating_point():
        x = x.double() if x.device.type == "cpu" else x.float()
    elif st.dtype in _HALF or st.dtype.startswith("float8"):
        x = x.float()  # half sums overflow; float8 lacks the kernels
    st.measured = True
    n = st.numel
    if not defer and x.device.type == "cpu":
        return _measure_numpy(st, x.resolve_conj().resolve_neg().numpy().reshape(-1))
    total = x.sum()
    lo, hi = torch.aminmax(x)
    mean = total / n
    sq = _centered_square_sum(x, mean)
    counts = torch.stack([torch.count_nonzero(x), torch.isnan(x).sum(), torch.isinf(x).sum()])
    st.pending = (torch.stack([mean, lo.to(mean.dtype), hi.to(mean.dtype), sq]), counts)
    if not defer:  # an accelerator asked to read at once (one wait per output)
        resolve([st])
    return st


def _centered_square_sum(x, mean):
    """The sum of squared deviations from ``mean`` (the two-pass algorithm: accurate, one temporary)."""
    d = x - mean
    d.mul_(d)
    return d.sum()


def _measure_numpy(st: ActivationStats, a) -> ActivationStats:
    """The figures of a CPU output, viewed as the 1-D float array ``a`` (pairwise sums: accurate)."""
    import numpy as np

    n = a.size
    lo, hi = float(a.min()), float(a.max())  # NaN propagates: then lo and hi are NaN
    st.zeros = 0 if lo > 0 or hi < 0 else n - int(np.count_nonzero(a))  # all of one sign: no zero to count
    if not (math.isfinite(lo) and math.isfinite(hi)):
        st.nan, st.inf = int(np.isnan(a).sum()), int(np.isinf(a).sum())
        return st
    mean = float(a.sum(dtype=a.dtype)) / n
    d = a - a.dtype.type(mean)
    np.multiply(d, d, out=d)
    st.mean, st.min, st.max = mean, lo, hi
    st.std = math.sqrt(max(float(d.sum()) / n, 0.0))
    return st


def resolve(stats: list[ActivationStats]) -> None:
    """Read back the figures :func:`measure` left on a device (one transfer per kind and device)."""
    import torch

    waiting = [s for s in stats if s.pending is not None]
    if not waiting:
        return
    by_device: dict[Any, list[ActivationStats]] = {}
    for s in waiting:
        by_device.setdefault(s.pending[0].device, []).append(s)
    for device, group in by_device.items():
        acc = torch.float32 if device.type == "mps" else torch.float64
        floats = torch.stack([s.pending[0].to(acc) for s in group]).tolist()
        counts = torch.stack([s.pending[1] for s in group]).tolist()
        for s, (mean, lo, hi, sq), (nonzero, nan, inf) in zip(group, floats, counts):
            s.pending = None
            s.zeros, s.nan, s.inf = s.numel - int(nonzero), int(nan), int(inf)
            if s.nan or s.inf:
                continue
            s.mean, s.min, s.max = mean, lo, hi
            s.std = math.sqrt(max(sq / s.numel, 0.0))


def merge(stats: list[ActivationStats], name: str = "") -> ActivationStats | None:
    """One set of figures over several outputs (the tensors of a tuple, the calls of a module).

    Moments are merged exactly (Chan et al.); with any NaN or Inf the
    moments are undefined, as for one tensor. None when nothing was measured.
    """
    parts = [s for s in stats if s.measured]
    if not parts:
        return None
    if len(parts) == 1 and parts[0].name == name:
        return parts[0]
    out = ActivationStats(name, parts[-1].shape, parts[-1].dtype, measured=True)
    count = 0
    mean = m2 = 0.0
    for s in parts:
        out.numel += s.numel
        out.bytes += s.bytes
        out.zeros += s.zeros
        out.nan += s.nan
        out.inf += s.inf
        if s.mean is None or s.std is None:
            continue
        n = s.numel
        total = count + n
        delta = s.mean - mean
        mean += delta * n / total
        m2 += s.std * s.std * n + delta * delta * count * n / total
        count = total
        out.min = s.min if out.min is None else min(out.min, s.min)
        out.max = s.max if out.max is None else max(out.max, s.max)
    if out.nan or out.inf or not count:
        out.min = out.max = None
        return out
    out.mean, out.std = mean, math.sqrt(max(m2 / count, 0.0))
    return out
