"""Turn a (sliced) tensor into a small grid of display strings with real indices."""

from __future__ import annotations

from dataclasses import dataclass, field

from modeltui.core.slicing import SliceError, check_slice, parse_slice
from modeltui.core.tensors import dtype_name

MAX_ROWS = 200
MAX_COLS = 40


@dataclass(slots=True)
class ValueGrid:
    """Display cells of a 2-D window of a tensor, with the indices they came from."""

    shape: tuple[int, ...]  # shape of the sliced result
    row_labels: list[str] = field(default_factory=list)
    col_labels: list[str] = field(default_factory=list)
    cells: list[list[str]] = field(default_factory=list)
    note: str = ""  # e.g. "showing 200 of 4096 rows"


def _per_dim(index: tuple, ndim: int) -> list:
    """Expand an index tuple to one entry per dimension (Ellipsis filled)."""
    if Ellipsis in index:
        k = index.index(Ellipsis)
        rest = index[k + 1:]
        fill = ndim - (len(index) - 1)
        full = list(index[:k]) + [slice(None)] * fill + list(rest)
    else:
        full = list(index) + [slice(None)] * (ndim - len(index))
    return full


def fmt_value(v) -> str:
    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v:
            return "nan"
        if v in (float("inf"), float("-inf")):
            return "inf" if v > 0 else "-inf"
        return f"{v:.5g}"
    return str(v)


def value_grid(t, text: str) -> ValueGrid:
    """Apply slice ``text`` to ``t`` and lay out at most MAX_ROWS x MAX_COLS cells.

    Results of more than two dimensions show their leading 2-D block; the
    note says so. Labels are indices into the original tensor. Only the
    cells shown are read (memory is bounded by the window, whatever the
    tensor's length or layout); a tensor of a checkpoint file is checked
    first and, if unedited, its window read with ``pread``.
    """
    shown = _shown(t, text)
    return _layout(shown, _to_list(shown.window))


def value_grids(a, b, text: str) -> tuple[ValueGrid, ValueGrid, ValueGrid]:
    """Grids of ``a``, ``b`` and ``a - b`` (in float64, per cell) for slice ``text``: the same cells of each.

    ``a`` and ``b`` must have the same shape. Cells without a numeric
    difference (fp4 pairs) show ``-`` in the third grid.
    """
    if tuple(a.shape) != tuple(b.shape):
        raise SliceError(f"the shapes differ ({list(a.shape)} and {list(b.shape)}): no cells to set side by side")
    sa, sb = _shown(a, text), _shown(b, text)
    va, vb = _to_list(sa.window), _to_list(sb.window)
    return _layout(sa, va), _layout(sb, vb), _layout(sa, _minus(va, vb))


def _minus(x, y):
    if isinstance(x, list):
        return [_minus(p, q) for p, q in zip(x, y)]
    if isinstance(x, str) or isinstance(y, str):
        return "-"
    return x - y if not isinstance(x, bool) else int(x) - int(y)


@dataclass(slots=True)
class _Shown:
    """The cells a grid shows: their tensor (small), their indices and what the note says."""

    window: object
    labels: list
    shape: tuple[int, ...]
    note: str
    total: int  # 1-D: how many values the slice has (the window holds the first of them)
    rows: int = 0  # 2-D: the block's rows and columns (the window holds at most MAX_ROWS x MAX_COLS of them)
    cols: int = 0


def _shown(t, text: str) -> _Shown:
    import torch

    if t.is_meta:
        raise SliceError("tensor on the meta device has no values (open without -d meta to see them)")
    if t.layout != torch.strided:
        if t.numel() > MAX_ROWS * MAX_COLS * 64:
            raise SliceError(f"a sparse tensor of {t.numel():,} elements is too large to lay out densely; "
                             "its statistics cover its stored values")
        t = t.to_dense()
    index = parse_slice(text)
    shape = tuple(t.shape)
    check_slice(index, shape)
    per_dim = _per_dim(index, len(shape))
    kept = [(d, s) for d, s in enumerate(per_dim) if isinstance(s, slice)]
    labels = [range(shape[d])[s] for d, s in kept]  # ranges: nothing allocated per index
    out = t[tuple(per_dim)] if per_dim else t
    res_shape = tuple(out.shape)
    note = ""
    while out.dim() > 2:
        note = f"showing the leading 2-D block of a {out.dim()}-d result {list(out.shape)}"
        out = out[0]
        labels = labels[1:]
    total = out.shape[0] if out.dim() == 1 else 0
    rows, cols = tuple(out.shape) if out.dim() == 2 else (0, 0)
    if out.dim() == 1:
        out = out[:min(total, MAX_ROWS * 8)]
    elif out.dim() == 2:
        out = out[:MAX_ROWS, :MAX_COLS]
    return _Shown(out, labels, res_shape, note, total, rows, cols)


def _layout(shown: _Shown, vals) -> ValueGrid:
    """A :class:`ValueGrid` of the values ``vals`` (nested lists of the shown window)."""
    out, labels, note = shown.window, shown.labels, shown.note
    grid = ValueGrid(shown.shape, note=note)
    if out.dim() == 0:
        grid.row_labels = [""]
        grid.col_labels = ["value"]
        grid.cells = [[fmt_value(vals)]]
        return grid
    if out.dim() == 1:
        n = shown.total
        lab = labels[-1] if labels else range(n)
        width = 8
        take = out.shape[0]
        grid.col_labels = [f"+{i}" for i in range(min(width, n))]
        for r in range(0, take, width):
            grid.row_labels.append(str(lab[r]))
            grid.cells.append([fmt_value(v) for v in vals[r:r + width]])
        if take < n:
            grid.note = f"showing {take:,} of {n:,} values; narrow the slice to see more"
        return grid
    r_take, c_take = out.shape
    rows, cols = shown.rows, shown.cols
    rl, cl = (labels[-2], labels[-1]) if len(labels) >= 2 else (range(rows), range(cols))
    grid.row_labels = [str(x) for x in rl[:r_take]]
    grid.col_labels = [str(x) for x in cl[:c_take]]
    grid.cells = [[fmt_value(v) for v in row] for row in vals]
    if r_take < rows or c_take < cols:
        extra = f"showing {r_take} of {rows} rows and {c_take} of {cols} columns; narrow the slice to see more"
        grid.note = (grid.note + "; " if grid.note else "") + extra
    return grid


def _to_list(x):
    """The shown window's values as Python numbers (complex as magnitudes), read safely."""
    import torch

    from modeltui.core.readers.reading import window

    name = dtype_name(x.dtype)
    try:
        x = x.dequantize() if x.is_quantized else window(x.detach())
        if name == "float4_e2m1fn_x2":
            return _fp4_pairs(x)
        if x.is_complex():
            x = (x.to(torch.complex64) if x.dtype == torch.complex32 else x).abs()
        if x.dtype in (torch.uint16, torch.uint32):
            x = x.to(torch.int64)
        if x.is_floating_point() and x.dtype not in (torch.float32, torch.float64):
            x = x.float()
        return x.detach().cpu().tolist()
    except (RuntimeError, NotImplementedError, TypeError) as e:
        from modeltui.core.errors import first_line

        raise SliceError(f"torch cannot show the values of a {name} tensor ({first_line(e, 120)})") from None


def _fp4_pairs(x):
    """Each float4_e2m1fn_x2 element as ``"low/high"``: the two fp4 values its byte packs."""
    from modeltui.core.stats import _FP4

    def pair(b: int) -> str:
        return f"{fmt_value(_FP4[b & 0xF])}/{fmt_value(_FP4[b >> 4])}"

    raw = x.contiguous().view(__import__("torch").uint8).cpu()
    shape = tuple(x.shape)
    flat = [pair(b) for b in raw.reshape(-1).tolist()]
    if not shape:
        return flat[0]
    if len(shape) == 1:
        return flat
    cols = shape[-1]
    return [flat[i:i + cols] for i in range(0, len(flat), cols)]


__all__ = ["ValueGrid", "value_grid", "value_grids", "SliceError", "fmt_value"]
