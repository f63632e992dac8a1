"""Turn a (sliced) tensor into a small grid of display strings with real indices."""

from __future__ import annotations

from dataclasses import dataclass, field

from modeltui.core.slicing import SliceError, check_slice, parse_slice

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
    note says so. Labels are indices into the original tensor.
    """
    import torch

    if t.is_meta:
        raise SliceError("tensor on the meta device has no values (open without -d meta to see them)")
    index = parse_slice(text)
    shape = tuple(t.shape)
    check_slice(index, shape)
    per_dim = _per_dim(index, len(shape))
    kept = [(d, s) for d, s in enumerate(per_dim) if isinstance(s, slice)]
    labels = [list(range(shape[d]))[s] for d, s in kept]
    out = t[tuple(per_dim)] if per_dim else t
    if t.is_complex():
        out = out.abs()
    note = ""
    while out.dim() > 2:
        note = f"showing the leading 2-D block of a {out.dim()}-d result {list(out.shape)}"
        out = out[0]
        labels = labels[1:]
    res_shape = tuple(t[tuple(per_dim)].shape) if per_dim else shape
    grid = ValueGrid(res_shape, note=note)
    if out.dim() == 0:
        grid.row_labels = [""]
        grid.col_labels = ["value"]
        grid.cells = [[fmt_value(out.item())]]
        return grid
    if out.dim() == 1:
        n = out.shape[0]
        lab = labels[-1] if labels else list(range(n))
        width = 8
        take = min(n, MAX_ROWS * width)
        vals = _to_list(out[:take], torch)
        grid.col_labels = [f"+{i}" for i in range(min(width, n))]
        for r in range(0, take, width):
            grid.row_labels.append(str(lab[r]))
            grid.cells.append([fmt_value(v) for v in vals[r:r + width]])
        if take < n:
            grid.note = f"showing {take:,} of {n:,} values; narrow the slice to see more"
        return grid
    rows, cols = out.shape
    rl, cl = (labels[-2], labels[-1]) if len(labels) >= 2 else (list(range(rows)), list(range(cols)))
    r_take, c_take = min(rows, MAX_ROWS), min(cols, MAX_COLS)
    vals = _to_list(out[:r_take, :c_take], torch)
    grid.row_labels = [str(x) for x in rl[:r_take]]
    grid.col_labels = [str(x) for x in cl[:c_take]]
    grid.cells = [[fmt_value(v) for v in row] for row in vals]
    if r_take < rows or c_take < cols:
        extra = f"showing {r_take} of {rows} rows and {c_take} of {cols} columns; narrow the slice to see more"
        grid.note = (grid.note + "; " if grid.note else "") + extra
    return grid


def _to_list(x, torch):
    if x.is_floating_point() and x.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        x = x.float()
    if x.dtype in (torch.bfloat16, torch.float16):
        x = x.float()
    return x.detach().cpu().tolist()


__all__ = ["ValueGrid", "value_grid", "SliceError", "fmt_value"]
