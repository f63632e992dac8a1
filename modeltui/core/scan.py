"""Scan a whole checkpoint for bad tensors: NaN/Inf, all zeros, constants, extreme values, outliers.

Like compare, in three steps: :func:`scan_names` (the unit of work) turns a
list of tensor names into :class:`TensorHealth` figures (plain, picklable),
reading each tensor in chunks once; :func:`build_scan` merges any split of
them (in the listing's order) and flags what is wrong, including the
cross-layer test, which needs every tensor's figures: a tensor whose std or
norm is far from those of the tensors of the same name in the other layers
(``layers.17.mlp.down_proj.weight`` against every ``layers.*.mlp.down_proj.weight``).
"""

from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from modeltui.core.difference import _num
from modeltui.core.errors import Cancelled, ModelTuiError, StatsError, first_line
from modeltui.core.tensors import dtype_name, is_lazy

PIECE = 1 << 18  # elements per chunk (the float64 work stays in the CPU's cache)
EXTREME = 1e4  # |value| at or above this is flagged (floating-point tensors)
OUTLIER = 5.0  # std or norm this many times above (or below 1/this of) the median of the same name in other layers
MIN_GROUP = 4  # tensors of one name across layers needed for the outlier test (a median of 3 others)

NAN, INF, ZERO, CONSTANT, EXTREME_FLAG, OUTLIER_FLAG = "nan", "inf", "all_zero", "constant", "extreme", "outlier"


@dataclass(slots=True)
class TensorHealth:
    """One pass over a tensor: counts, extremes and moments (finite values only)."""

    name: str
    shape: tuple[int, ...] | None
    dtype: str
    numel: int = 0
    floating: bool = False
    finite: int = 0
    nan: int = 0
    posinf: int = 0
    neginf: int = 0
    min: float | int | None = None
    max: float | int | None = None
    mean: float | None = None
    std: float | None = None  # population std
    norm: float | None = None
    note: str = ""  # why there are no figures, or what they describe

    @property
    def absmax(self) -> float | None:
        if self.min is None or self.max is None:
            return None
        return max(abs(self.min), abs(self.max))

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape) if self.shape is not None else None, "dtype": self.dtype,
                "numel": self.numel, "nan": self.nan, "inf": self.posinf + self.neginf,
                "min": _num(self.min), "max": _num(self.max), "mean": _num(self.mean), "std": _num(self.std),
                "norm": _num(self.norm), "note": self.note}


def scan_tensor(t, name: str = "", *, should_stop: Callable[[], bool] | None = None, piece: int = PIECE) -> TensorHealth:
    """:class:`TensorHealth` of ``t`` in one chunked pass (float64 moments, exact integer extremes).

    Memory stays bounded by a chunk; stride-0 dimensions are counted, not
    expanded; unedited file tensors are read with ``pread``.
    """
    from modeltui.core.readers.reading import chunks, narrow_repeats
    from modeltui.core.stats import TensorStats, _kind, _prepare

    if is_lazy(t) or t.is_meta:
        return TensorHealth(name, None if is_lazy(t) else tuple(t.shape), dtype_name(t.dtype),
                            note="no values (an uninitialised lazy parameter or a meta tensor)")
    t = t.detach()
    h = TensorHealth(name, tuple(t.shape), dtype_name(t.dtype), t.numel())
    if h.dtype in _NO_ARITHMETIC:
        h.note = f"{h.dtype} has no arithmetic: not scanned"
        return h
    st = TensorStats(h.numel, h.dtype)
    try:
        t = _prepare(t, st)
        h.note = st.note
        t, repeat = narrow_repeats(t)
        kind = _kind(t, h.dtype)
        h.floating = kind == "float"
        if t.numel():
            _pass(h, chunks(t, piece, reuse=True), kind, repeat, should_stop, min(piece, t.numel()))
    except (Cancelled, ModelTuiError):
        raise
    except (RuntimeError, NotImplementedError, TypeError, ValueError) as e:
        h.note = f"torch cannot scan a {h.dtype} tensor ({first_line(e, 120)})"
    return h


_NO_ARITHMETIC = tuple(f"{p}{n}" for p in ("uint", "int") for n in range(1, 8)) + ("bits1x8", "bits2x4", "bits4x2", "bits8", "bits16")


def _pass(h: TensorHealth, read, kind: str, repeat: int, should_stop, size: int) -> None:
    import torch

    from modeltui.core.stats import _convert, _extremes

    buf = torch.empty(size, dtype=torch.float64)  # made once: fresh memory per chunk costs page faults
    lo = hi = None
    count = 0
    mean = m2 = 0.0
    for c in read():
        if should_stop is not None and should_stop():
            raise Cancelled()
        c = _convert(c, h.dtype)
        if kind == "float":
            if dtype_name(c.dtype) not in ("float16", "bfloat16", "float32", "float64"):
                c = c.float()
            a, b = torch.aminmax(c)  # NaN propagates: a clean chunk needs no other test
            clo, chi = float(a), float(b)
            if not (math.isfinite(clo) and math.isfinite(chi)):
                h.nan += int(torch.isnan(c).sum()) * repeat
                h.posinf += int(torch.isposinf(c).sum()) * repeat
                h.neginf += int(torch.isneginf(c).sum()) * repeat
                c = c[torch.isfinite(c)]
                if not c.numel():
                    continue
                a, b = torch.aminmax(c)
                clo, chi = float(a), float(b)
        else:
            clo, chi = _extremes(c, kind)
        n = c.numel()
        lo = clo if lo is None else min(lo, clo)
        hi = chi if hi is None else max(hi, chi)
        x = buf[:n].copy_(c) if kind != "uint64" and n <= size else _uint64_float(c) if kind == "uint64" else c.double()
        cmean = float(x.sum()) / n
        x.sub_(cmean)
        cm2 = float(torch.dot(x, x))
        total = count + n
        delta = cmean - mean
        mean += delta * n / total
        m2 += cm2 + delta * delta * count * n / total
        count = total
    h.finite = count * repeat
    if count:
        h.min, h.max, h.mean = lo, hi, mean
        h.std = math.sqrt(max(m2 / count, 0.0))
        h.norm = math.sqrt(max(m2 + count * mean * mean, 0.0) * repeat)


def _uint64_float(c):
    import torch

    s = c.view(torch.int64)
    return torch.where(s < 0, s.to(torch.float64) + 2.0 ** 64, s.to(torch.float64))


def scan_names(opened, names: Iterable[str], *, should_stop: Callable[[], bool] | None = None,
               progress: Callable[[int], None] | None = None) -> list[TensorHealth]:
    """The unit of work: one :class:`TensorHealth` per name of ``opened`` (``progress(bytes)`` after each)."""
    out = []
    for n in names:
        out.append(scan_one(opened, n, should_stop=should_stop))
        if progress is not None:
            progress(opened.info.tensors[n].nbytes)
    return out


def scan_one(opened, name: str, *, should_stop: Callable[[], bool] | None = None) -> TensorHealth:
    from modeltui.core.compare import _read

    t = _read(opened, name)
    return scan_tensor(t, name, should_stop=should_stop)


@dataclass(frozen=True, slots=True)
class Flag:
    """Something wrong with one tensor: its kind, a sentence, and the figures behind it."""

    name: str
    kind: str  # NAN | INF | ZERO | CONSTANT | EXTREME_FLAG | OUTLIER_FLAG
    reason: str
    figures: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "flag": self.kind, "reason": self.reason,
                "figures": {k: _num(v) for k, v in self.figures.items()}}


@dataclass
class ScanReport:
    """Every tensor's figures (in the listing's order) and the flags raised."""

    target: str
    tensors: list[TensorHealth]
    flags: list[Flag]
    initial: list[str] = field(default_factory=list)  # 1-D tensors all 0 or all 1: biases and norms as initialised, not flagged

    @property
    def flagged(self) -> list[str]:
        """Names with at least one flag, in order."""
        return list(dict.fromkeys(f.name for f in self.flags))

    def to_json(self) -> dict[str, Any]:
        """The ``--scan --json`` contract (see README)."""
        return {"target": self.target, "tensors": len(self.tensors), "flagged": len(self.flagged),
                "flags": [f.to_json() for f in self.flags], "initial": self.initial,
                "stats": [h.to_json() for h in self.tensors]}


def build_scan(label: str, order: list[str], parts: Iterable[Iterable[TensorHealth]]) -> ScanReport:
    """Merge per-tensor figures from any split into one report in ``order`` and raise the flags."""
    got: dict[str, TensorHealth] = {}
    for part in parts:
        for h in part:
            got[h.name] = h
    missing = [n for n in order if n not in got]
    if missing:
        raise StatsError(f"{len(missing):,} tensor(s) have no figures (e.g. '{missing[0]}')")
    healths = [got[n] for n in order]
    flags: list[Flag] = []
    initial: list[str] = []
    outliers = _outliers(healths)
    for h in healths:
        own = _own_flags(h)
        if _is_initial(h, own):
            initial.append(h.name)
        else:
            flags.extend(own)
        flags.extend(outliers.get(h.name, []))
    return ScanReport(label, healths, flags, initial)


def _is_initial(h: TensorHealth, own: list[Flag]) -> bool:
    """A 1-D tensor of all zeros or all ones: a bias or a norm's scale or shift as ``reset_parameters`` leaves it.

    Every freshly initialised (or lightly trained) model has dozens; flagging them would bury a real NaN.
    A 2-D or larger tensor of one value is still flagged: a weight matrix that was never loaded or trained.
    """
    return (len(own) == 1 and own[0].kind in (ZERO, CONSTANT) and h.shape is not None and len(h.shape) == 1
            and h.min in (0.0, 1.0))


def _own_flags(h: TensorHealth) -> list[Flag]:
    out = []
    if h.nan:
        out.append(Flag(h.name, NAN, f"{h.nan:,} NaN of {h.numel:,} elements", {"nan": h.nan, "numel": h.numel}))
    if h.posinf or h.neginf:
        out.append(Flag(h.name, INF, f"{h.posinf + h.neginf:,} Inf of {h.numel:,} elements (+{h.posinf:,} / -{h.neginf:,})",
                        {"posinf": h.posinf, "neginf": h.neginf, "numel": h.numel}))
    if not h.floating or h.min is None or h.numel <= 1:
        return out
    if h.finite == h.numel and h.min == h.max:
        if h.min == 0:
            out.append(Flag(h.name, ZERO, f"all {h.numel:,} elements are zero", {"numel": h.numel}))
        else:
            out.append(Flag(h.name, CONSTANT, f"all {h.numel:,} elements equal {h.min:.6g}", {"value": h.min, "numel": h.numel}))
    if h.absmax is not None and h.absmax >= EXTREME:
        out.append(Flag(h.name, EXTREME_FLAG, f"largest |value| {h.absmax:.4g} (flagged from {EXTREME:g}; min {h.min:.4g}, max {h.max:.4g})",
                        {"min": h.min, "max": h.max, "threshold": EXTREME}))
    return out


_NUMBER = re.compile(r"(?:(?<=\.)|^)\d+(?=\.|$)")


def layer_key(name: str) -> str | None:
    """``layers.17.mlp.w`` -> ``layers.*.mlp.w``: the name with its layer numbers starred (None without any)."""
    key, n = _NUMBER.subn("*", name)
    return key if n else None


def _outliers(healths: list[TensorHealth]) -> dict[str, list[Flag]]:
    groups: dict[str, list[TensorHealth]] = {}
    for h in healths:
        key = layer_key(h.name)
        if key is not None and h.floating and h.std is not None:
            groups.setdefault(key, []).append(h)
    out: dict[str, list[Flag]] = {}
    for key, members in groups.items():
        if len(members) < MIN_GROUP:
            continue
        same_size = len({m.numel for m in members}) == 1  # norms compare only between equal sizes
        stds = sorted(m.std for m in members)
        norms = sorted(m.norm for m in members) if same_size else []
        for m in members:
            parts, figures = [], {"group": key, "members": len(members)}
            for what, value, values in (("std", m.std, stds), ("norm", m.norm, norms)):
                if not values:
                    continue
                med = _median_without(values, value)
                if med > 0 and (value >= OUTLIER * med or value * OUTLIER <= med):
                    ratio = value / med
                    parts.append(f"{what} {value:.4g} is {ratio:.3g}x the median {med:.4g}")
                    figures.update({what: value, f"median_{what}": med, f"{what}_ratio": ratio})
            if parts:
                out[m.name] = [Flag(m.name, OUTLIER_FLAG, "; ".join(parts) + f" of the {len(members) - 1} other '{key}'", figures)]
    return out


def _median_without(values: list[float], value: float) -> float:
    """The median of sorted ``values`` with one occurrence of ``value`` left out."""
    p = bisect.bisect_left(values, value)
    n = len(values) - 1

    def at(j: int) -> float:
        return values[j] if j < p else values[j + 1]

    k = n // 2
    return at(k) if n % 2 else (at(k - 1) + at(k)) / 2


def scan_opened(opened, *, workers: int = 1, should_stop: Callable[[], bool] | None = None,
                progress: Callable[[int, int], None] | None = None) -> ScanReport:
    """Scan every state_dict tensor of ``opened`` on ``workers`` threads and flag what is wrong."""
    from modeltui.core.compare import _compared
    from modeltui.core.workpool import run_items

    info = opened.info
    names = [n for n, t in info.tensors.items() if _compared(t)]
    if opened.source is not None:
        opened.source.check()
    results = run_items(names, lambda n, stop: scan_one(opened, n, should_stop=stop),
                        weights=[info.tensors[n].nbytes for n in names], workers=workers,
                        should_stop=should_stop, progress=progress)
    return build_scan(info.label, names, [results])
