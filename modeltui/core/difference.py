"""How two tensors of the same name differ: exact, chunked, in float64 (integers exactly).

:func:`diff_tensors` reads both sides side by side in row-major pieces
(:func:`modeltui.core.readers.reading.paired`: ``pread`` for unedited file
tensors, so neither file is ever held whole) and fills a :class:`TensorDiff`:
bit-identical or not, how many elements differ, the largest ``|a - b|`` and
where it is, ``‖a - b‖ / ‖a‖``, the cosine similarity, and the elements that
are NaN/Inf on one side only. Floating-point pieces are upcast to float64
(complex to complex128); integer pieces are compared exactly (64-bit ones
too). Pieces whose bits are equal cost one comparison; their norms are read
only if the tensor turns out to differ elsewhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from modeltui.core.errors import Cancelled, StatsError
from modeltui.core.stats import TensorStats
from modeltui.core.tensors import dtype_name, is_lazy, same_bits

PIECE = 1 << 18  # elements per side per step: float64 work stays in the CPU's cache

IDENTICAL, CHANGED, SHAPE, UNCOMPARED = "identical", "changed", "shape", "uncompared"

# dtypes without arithmetic (packed layouts for custom kernels): bits are compared, nothing else
_BITS_ONLY = tuple(f"{p}{n}" for p in ("uint", "int") for n in range(1, 8)) + (
    "bits1x8", "bits2x4", "bits4x2", "bits8", "bits16", "float4_e2m1fn_x2")
_SMALL_INTS = ("bool", "uint8", "int8", "int16", "uint16", "int32", "uint32")


@dataclass(slots=True)
class TensorDiff:
    """How tensor ``name`` of A differs from tensor ``other`` of B (plain data: picklable, JSON-able)."""

    name: str
    other: str
    status: str  # IDENTICAL | CHANGED | SHAPE | UNCOMPARED
    shape: tuple[int, ...] | None
    other_shape: tuple[int, ...] | None
    dtype: str
    other_dtype: str
    numel: int = 0
    differ: int = 0  # elements whose values differ (NaN equals NaN)
    max_abs: float | int | None = None  # largest |a - b| over elements finite on both sides
    max_index: tuple[int, ...] | None = None  # where it is (the first such element)
    a_at: float | int | None = None  # A's and B's values there
    b_at: float | int | None = None
    rel_l2: float | None = None  # ‖a - b‖ / ‖a‖ over elements finite on both sides (None when ‖a‖ = 0)
    cosine: float | None = None  # None when a side is all zeros
    nonfinite_a: int = 0  # elements NaN/Inf in A where B is finite
    nonfinite_b: int = 0  # elements NaN/Inf in B where A is finite
    note: str = ""

    @property
    def changed(self) -> bool:
        return self.status != IDENTICAL

    @property
    def differ_fraction(self) -> float:
        return self.differ / self.numel if self.numel else 0.0

    def to_json(self) -> dict[str, Any]:
        """This tensor's entry of the ``--diff --json`` contract (see README)."""
        return {
            "name": self.name, "other": self.other, "status": self.status,
            "shape": _list(self.shape), "other_shape": _list(self.other_shape),
            "dtype": self.dtype, "other_dtype": self.other_dtype, "numel": self.numel,
            "differ": self.differ, "differ_fraction": _num(self.differ_fraction),
            "max_abs": _num(self.max_abs), "max_index": _list(self.max_index),
            "a_at": _num(self.a_at), "b_at": _num(self.b_at),
            "rel_l2": _num(self.rel_l2), "cosine": _num(self.cosine),
            "nonfinite_a": self.nonfinite_a, "nonfinite_b": self.nonfinite_b, "note": self.note,
        }


def _list(x):
    return list(x) if x is not None else None


def _num(v):
    """A number JSON can hold (NaN and Inf, which strict JSON lacks, become strings)."""
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if v != v else ("inf" if v > 0 else "-inf")
    return v


def _facts(t) -> tuple[tuple[int, ...] | None, str]:
    if is_lazy(t):
        return None, dtype_name(t.dtype)
    return tuple(t.shape), dtype_name(t.dtype)


def diff_tensors(a, b, name: str = "", other: str | None = None, *,
                 should_stop: Callable[[], bool] | None = None, piece: int = PIECE) -> TensorDiff:
    """Compare tensor ``a`` (A's ``name``) with ``b`` (B's ``other``); see the module docstring.

    Memory stays bounded by a few pieces per side whatever the tensors'
    sizes or layouts. ``should_stop`` is polled between pieces
    (:class:`Cancelled`). A file behind either tensor that changed since it
    was opened raises :class:`~modeltui.core.readers.filewatch.FileChangedError`.
    """
    import torch

    shape, dtype = _facts(a)
    oshape, odtype = _facts(b)
    out = TensorDiff(name, name if other is None else other, CHANGED, shape, oshape, dtype, odtype)
    if shape is None or oshape is None or a.is_meta or b.is_meta:
        out.status, out.note = UNCOMPARED, "no values (an uninitialised lazy parameter or a meta tensor)"
        return out
    if shape != oshape:
        out.status = SHAPE
        return out
    out.numel = a.numel()
    a, b = a.detach(), b.detach()
    if a.layout != torch.strided or b.layout != torch.strided:
        if a.numel() > 1 << 24:
            out.status, out.note = UNCOMPARED, "sparse tensors this large are not compared"
            return out
        a, b = a.to_dense(), b.to_dense()
    if dtype in _BITS_ONLY or odtype in _BITS_ONLY:
        return _bits_only(a, b, out, should_stop)
    _Accumulator(out, a, b, should_stop, piece).run()
    return out


def _bits_only(a, b, out: TensorDiff, should_stop) -> TensorDiff:
    from modeltui.core.readers.reading import paired

    out.note = f"{out.dtype if out.dtype in _BITS_ONLY else out.other_dtype} has no arithmetic: only the bits are compared"
    same = out.dtype == out.other_dtype
    if same:
        for pa, pb in paired(a, b, PIECE):
            if should_stop is not None and should_stop():
                raise Cancelled()
            if not same_bits(pa, pb):
                same = False
                break
    out.status = IDENTICAL if same else CHANGED
    if same:
        out.max_abs, out.rel_l2, out.cosine = 0, 0.0, 1.0
    return out


class _Accumulator:
    """The running figures of one comparison, piece by piece."""

    def __init__(self, out: TensorDiff, a, b, should_stop, piece: int):
        import torch

        self.out, self.a, self.b, self.should_stop, self.piece = out, a, b, should_stop, piece
        self.complex = a.is_complex() or b.is_complex()
        floaty = self.complex or a.is_floating_point() or b.is_floating_point() or a.is_quantized or b.is_quantized
        names = {out.dtype, out.other_dtype}
        small = set(_SMALL_INTS)
        # exact integer arithmetic: small ints in int64; int64 (with small ints) or uint64 on both sides
        # through the wrapping |a - b| trick; uint64 beside another dtype falls back to float64
        self.exact = not floaty and (names <= small | {"int64"} or names == {"uint64"})
        self.wide = self.exact and not names <= small
        if not floaty and not self.exact:
            out.note = "uint64 beside another dtype: compared in float64 (not exact above 2**53)"
        self.acc = torch.complex128 if self.complex else torch.float64
        self.saa = self.sbb = self.sab = self.sdd = 0.0
        self.best: Any = None
        # upcast pieces go into buffers made once: fresh memory for every piece costs page faults
        size = min(piece, max(a.numel(), 1))
        self.bufs = [torch.empty(size, dtype=self.acc) for _ in range(3)]

    def run(self) -> None:
        from modeltui.core.readers.reading import ordered_chunks, paired

        out = self.out
        same_dtype = out.dtype == out.other_dtype
        differed = False
        pending = 0  # elements before the first difference, all bit-identical: their norms are read later if needed
        offset = 0
        for pa, pb in paired(self.a, self.b, self.piece, reuse=True):
            if self.should_stop is not None and self.should_stop():
                raise Cancelled()
            if pa.device != pb.device:  # a model on an accelerator against a file: compare on the CPU, piece by piece
                pa, pb = pa.cpu(), pb.cpu()
            k = pa.numel()
            # once a tensor differs, its pieces are not bit-compared first (a changed tensor mostly differs everywhere)
            if same_dtype and not differed and same_bits(pa, pb):
                if differed:
                    self._norms_only(pa)
                else:
                    pending += k
            else:
                differed = True
                self._piece(pa, pb, offset)
            offset += k
        if not differed:
            out.status, out.max_abs, out.rel_l2, out.cosine = IDENTICAL, 0, 0.0, 1.0
            return
        if pending:
            seen = 0
            for c in ordered_chunks(self.a, self.piece, reuse=True):
                if self.should_stop is not None and self.should_stop():
                    raise Cancelled()
                take = min(c.numel(), pending - seen)
                self._norms_only(c[:take])
                seen += take
                if seen >= pending:
                    break
        self._finish()

    def _wide(self, c, slot: int = 0):
        """Piece ``c`` upcast into buffer ``slot`` (a copy: the caller's tensor stays untouched)."""
        import torch

        from modeltui.core.stats import _convert

        name = dtype_name(c.dtype)
        if not self.complex:
            if name in ("uint16", "uint32"):
                c = c.to(torch.int64)
            elif c.is_floating_point() and name not in ("float16", "bfloat16", "float32", "float64"):
                c = _convert(c, name)
            elif name == "uint64":
                c = _uint64_to_float(c)
        buf = self.bufs[slot]
        if c.numel() > buf.numel():
            return c.to(self.acc, copy=True)
        return buf[:c.numel()].copy_(c)

    def _norms_only(self, c) -> None:
        """A bit-identical piece: it adds ‖c‖² to both norms and to the dot product."""
        import torch

        x = self._wide(c)
        s = _dot(x, x)
        if not math.isfinite(s):
            x = x[torch.isfinite(x)]
            s = _dot(x, x)
        self.saa += s
        self.sbb += s
        self.sab += s

    def _piece(self, pa, pb, offset: int) -> None:
        import torch

        x, y = self._wide(pa, 0), self._wide(pb, 1)
        saa, sbb = _dot(x, x), _dot(y, y)
        if math.isfinite(saa) and math.isfinite(sbb):
            d = self.bufs[2][:x.numel()]
            torch.sub(x, y, out=d)
            self.sab += _dot(x, y)
            self.sdd += _dot(d, d)
            self.saa += saa
            self.sbb += sbb
            mag = d.abs_() if not d.is_complex() else d.abs()
        else:  # NaN / Inf somewhere: figures over the elements finite on both sides
            fx, fy = torch.isfinite(x), torch.isfinite(y)
            both = fx & fy
            self.out.nonfinite_a += int((~fx & fy).sum())
            self.out.nonfinite_b += int((fx & ~fy).sum())
            bad = ~both
            same_bad = bad & ~fx & ~fy & ((x == y) | (torch.isnan(x) & torch.isnan(y)))
            self.out.differ += int(bad.sum()) - int(same_bad.sum())
            x0, y0 = x.masked_fill(bad, 0), y.masked_fill(bad, 0)
            d = x0 - y0
            self.saa += _dot(x0, x0)
            self.sbb += _dot(y0, y0)
            self.sab += _dot(x0, y0)
            self.sdd += _dot(d, d)
            mag = d.abs()
        if self.exact:
            self._exact_piece(pa, pb, offset)
            return
        self.out.differ += int(torch.count_nonzero(mag))
        m = float(mag.max())  # a plain reduction; the index is looked up only for a new largest
        if m > 0 and (self.best is None or m > self.best):
            i = int(torch.argmax(mag))
            self.best = m
            self.out.max_abs, self.out.max_index = m, _unravel(offset + i, self.out.shape)
            self.out.a_at, self.out.b_at = _value(pa[i]), _value(pb[i])

    def _exact_piece(self, pa, pb, offset: int) -> None:
        """Integers: the differing count and the largest |a - b| exactly (64-bit ones without overflow)."""
        import torch

        if not self.wide:
            a, b = pa.to(torch.int64), pb.to(torch.int64)
            mag = (a - b).abs_()
            self.out.differ += int(torch.count_nonzero(mag))
            i = int(torch.argmax(mag))
            m = int(mag[i])
        else:
            if self.out.dtype == "uint64":  # both uint64: order-preserving as signed once the top bit is flipped
                a, b = pa.view(torch.int64) ^ _TOP, pb.view(torch.int64) ^ _TOP
            else:
                a, b = pa.to(torch.int64), pb.to(torch.int64)
            mag = torch.maximum(a, b) - torch.minimum(a, b)  # wraps: the bits of the unsigned |a - b|
            self.out.differ += int(torch.count_nonzero(mag))
            high = mag < 0  # magnitudes from 2**63 up
            if bool(high.any()):
                i = int(torch.argmax(torch.where(high, mag, torch.iinfo(torch.int64).min)))
                m = int(mag[i]) + (1 << 64)
            else:
                i = int(torch.argmax(mag))
                m = int(mag[i])
        if m > 0 and (self.best is None or m > self.best):
            self.best = m
            self.out.max_abs, self.out.max_index = m, _unravel(offset + i, self.out.shape)
            self.out.a_at, self.out.b_at = _value(pa[i]), _value(pb[i])

    def _finish(self) -> None:
        out = self.out
        if out.max_abs is None:
            out.max_abs = 0.0 if not self.exact else 0
        if self.saa > 0:
            out.rel_l2 = math.sqrt(self.sdd) / math.sqrt(self.saa)
        elif self.sdd == 0:
            out.rel_l2 = 0.0
        if self.saa > 0 and self.sbb > 0:
            out.cosine = max(-1.0, min(1.0, self.sab / (math.sqrt(self.saa) * math.sqrt(self.sbb))))
        if out.differ == 0 and out.dtype != out.other_dtype:
            out.note = "the same values in another dtype"


_TOP = -(1 << 63)


def _uint64_to_float(c):
    import torch

    s = c.view(torch.int64)
    return torch.where(s < 0, s.to(torch.float64) + 2.0 ** 64, s.to(torch.float64))


def _dot(x, y) -> float:
    import torch

    return float(torch.vdot(x, y).real) if x.is_complex() else float(torch.dot(x, y))


def _value(v):
    """One element as a Python number (uint64 above 2**63 included)."""
    import torch

    name = dtype_name(v.dtype)
    if name == "uint64":
        s = int(v.view(torch.int64))
        return s + (1 << 64) if s < 0 else s
    if v.is_quantized:
        v = v.dequantize()
    if v.is_complex():
        return complex(v.to(torch.complex128))
    if v.is_floating_point():
        return float(v.float())
    return v.item() if name != "bool" else int(v)


def _unravel(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    out = []
    for d in reversed(shape):
        out.append(flat % d if d else 0)
        flat = flat // d if d else 0
    return tuple(reversed(out))


def difference_stats(a, b, *, bins: int = 32, should_stop: Callable[[], bool] | None = None) -> TensorStats:
    """:class:`TensorStats` of ``a - b`` in float64 (magnitudes for complex), in chunks: no difference tensor is made."""
    import torch

    from modeltui.core.readers.reading import paired
    from modeltui.core.stats import chunk_stats

    if is_lazy(a) or is_lazy(b) or a.is_meta or b.is_meta:
        raise StatsError("no values on one side (an uninitialised lazy parameter or a meta tensor)")
    if tuple(a.shape) != tuple(b.shape):
        raise StatsError(f"shapes differ ({list(a.shape)} and {list(b.shape)}): no element-wise difference")
    a, b = a.detach(), b.detach()
    if a.layout != torch.strided or b.layout != torch.strided:
        a, b = a.to_dense(), b.to_dense()
    names = (dtype_name(a.dtype), dtype_name(b.dtype))
    if any(n in _BITS_ONLY for n in names):
        raise StatsError(f"{names[0] if names[0] in _BITS_ONLY else names[1]} has no arithmetic: no difference to describe")
    acc = _Accumulator(TensorDiff("", "", CHANGED, None, None, names[0], names[1]), a, b, None, PIECE)

    def read():
        for pa, pb in paired(a, b, PIECE, reuse=True):
            d = acc._wide(pa, 0) - acc._wide(pb, 1)  # a fresh tensor: chunk_stats may keep it as its sample
            yield d.abs() if d.is_complex() else d

    note = "statistics of |a - b| (complex)" if acc.complex else "statistics of a - b (float64)"
    st = chunk_stats(read, a.numel(), dtype="float64", bins=bins, should_stop=should_stop)
    st.note = note
    return st
