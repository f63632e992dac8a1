"""The layers view's table: every module that ran, in execution order or sorted; the run before beside it."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from modeltui.core.layers import LayerRow, pair_rows, sort_rows
from modeltui.format import fmt_shape, visible

#: (column key, title, the sort it stands for), the figures read most first (they fit 80 columns)
COLUMNS = (
    ("index", "#", "order"), ("module", "module", "module"), ("output", "output", None), ("std", "std", "std"),
    ("grad", "grad norm", "grad"), ("zeros", "zeros", "zeros"), ("nonfinite", "NaN/Inf", "nonfinite"),
    ("mean", "mean", "mean"), ("min", "min", None), ("max", "max", None), ("ms", "ms", "time"), ("type", "type", None),
)
#: beside std and grad norm when the run before is shown
BEFORE = {"std": ("std_before", "std before"), "grad": ("grad_before", "grad before")}
MAX_ROWS = 5000  # a 50,000-module model: the slowest / worst are found by sorting


def fig(v) -> str:
    """A figure in a table cell, in 4 significant digits (``-`` when undefined)."""
    if v is None:
        return "-"
    if v == 0 or 1e-3 <= abs(v) < 1e5:
        return f"{v:.4g}"
    return f"{v:.3g}"


def row_cells(row: LayerRow, old: LayerRow | None = None, compare: bool = False) -> list:
    """The cells of one row (module names through ``visible()``, never markup); ``old``: the run before."""
    s = row.stats
    zf = s.zero_fraction if s is not None else None
    bad = row.nonfinite
    shapes = ", ".join(fmt_shape(x) for x in row.shapes[:2]) + ("…" if len(row.shapes) > 2 else "")
    cells = {
        "index": Text(str(row.index), style="dim"),
        "module": Text(visible(row.path or "(root)", limit=80), style="bold" if row.leaf else ""),
        "output": Text(shapes, style="green"),
        "std": fig(s.std if s else None),
        "grad": fig(row.grad_norm),
        "zeros": "-" if zf is None else f"{100 * zf:.1f}%",
        "nonfinite": Text(f"{s.nan:,}/{s.inf:,}" if s else "-", style="bold red" if bad else "dim"),
        "mean": fig(s.mean if s else None),
        "min": fig(s.min if s else None),
        "max": fig(s.max if s else None),
        "ms": f"{row.ms:.2f}" + (f" ×{row.calls}" if row.calls > 1 else ""),
        "type": Text(visible(row.type, limit=40), style="cyan"),
    }
    if compare:
        before = old.stats if old is not None else None
        cells["std_before"] = Text(fig(before.std if before else None), style="blue")
        cells["grad_before"] = Text(fig(old.grad_norm if old is not None else None), style="blue")
    return [cells[key] for key in column_keys(compare)]


def column_keys(compare: bool) -> list[str]:
    """The columns in order (the run before's beside std and grad norm)."""
    keys = []
    for key, _, _ in COLUMNS:
        keys.append(key)
        if compare and key in BEFORE:
            keys.append(BEFORE[key][0])
    return keys


class LayersTable(DataTable):
    """Rows keyed by module path; ``show`` fills it for a sort (and the run before, side by side)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.rows_now: list[LayerRow] = []
        self.sort_by = "order"
        self.reverse: bool | None = None

    def show(self, rows: list[LayerRow], before: list[LayerRow] | None = None) -> None:
        """Fill the table with ``rows`` in the current sort; ``before``: the run before, beside each row."""
        self.rows_now = rows
        self.clear(columns=True)
        compare = before is not None
        titles = {key: (title, sort) for key, title, sort in COLUMNS}
        titles.update({key: (title, None) for key, title in BEFORE.values()})
        for key in column_keys(compare):
            title, sort = titles[key]
            mark = ""
            if sort is not None and sort == self.sort_by:
                mark = " ▲" if (self.reverse is False or (self.reverse is None and sort in ("order", "module"))) else " ▼"
            self.add_column(title + mark, key=key)
        ordered = sort_rows(rows, self.sort_by, self.reverse)[:MAX_ROWS]
        pairs = pair_rows(ordered, before) if compare else [(r, None) for r in ordered]
        for row, old in pairs:
            self.add_row(*row_cells(row, old, compare), key=row.path)

    def sort_key_of(self, column_key: str) -> str | None:
        """The sort a column header stands for (None: not sortable)."""
        return next((sort for key, _, sort in COLUMNS if key == column_key), None)
