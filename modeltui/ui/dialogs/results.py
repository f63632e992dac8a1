"""The result of a forward pass: outputs with statistics and values, or the error; the slowest modules."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from modeltui.core.tensors import dtype_name
from modeltui.format import fmt_shape, visible

CELL = 10  # characters per value column
DIALOG_WIDTH = 84  # the width of a .dialog in app.tcss: the grid is laid out for it, not for the screen


def grid_lines(grid, width: int, max_rows: int = 8) -> Text:
    """A value grid as text with a header of column indices; as many columns as ``width`` allows."""
    t = Text()
    label_w = max([len(x) for x in grid.row_labels[:max_rows]] + [3])
    cols = max(1, min(len(grid.col_labels), (width - label_w - 4) // CELL))
    t.append(f"  {'':>{label_w}} ", style="dim")
    t.append("".join(f"{c:>{CELL}}" for c in grid.col_labels[:cols]) + "\n", style="dim bold")
    for label, row in list(zip(grid.row_labels, grid.cells))[:max_rows]:
        t.append(f"  {label:>{label_w}} ", style="dim")
        t.append("".join(f"{c:>{CELL}}" for c in row[:cols]) + "\n")
    # counted against the tensor's own extent, not the window read from it (at most MAX_ROWS x MAX_COLS)
    if len(grid.shape) >= 2:
        hidden_rows, hidden_cols = grid.shape[-2] - min(max_rows, len(grid.cells)), grid.shape[-1] - cols
    elif grid.shape:  # 1-D: rows of len(col_labels) values
        hidden_rows, hidden_cols = -(-grid.shape[0] // max(1, len(grid.col_labels))) - max_rows, len(grid.col_labels) - cols
    else:
        hidden_rows, hidden_cols = 0, 0
    if hidden_cols > 0 or hidden_rows > 0:
        more = []
        if hidden_rows > 0:
            more.append(f"{hidden_rows:,} more rows")
        if hidden_cols > 0:
            more.append(f"{hidden_cols:,} more columns")
        t.append(f"  … {' and '.join(more)}\n", style="dim")
    if len(grid.shape) > 2:
        t.append(f"  (the leading 2-D block of {list(grid.shape)})\n", style="dim")
    return t


class ForwardResultScreen(ModalScreen[None]):
    """The output of a forward pass (or the error), statistics and values."""

    BINDINGS = [Binding("escape,q,enter", "close", "Close"), Binding("l", "layers", "Layers")]

    def __init__(self, result, stats: list, grids: list):
        super().__init__()
        self.result, self.stats, self.grids = result, stats, grids

    def compose(self) -> ComposeResult:
        from modeltui.core.preview import fmt_value

        r = self.result
        # border, padding and a scrollbar take 6 columns of the dialog
        width = min(self.app.size.width, DIALOG_WIDTH) - 8 if self.app is not None else 72
        t = Text()
        t.append("Forward pass ", style="bold")
        t.append("inputs " + visible("; ".join(str(s) for s in r.inputs), limit=200), style="dim")
        t.append(f"  {r.ms:.1f} ms\n\n")
        if r.loss_kind and r.ok:
            t.append(f"backward ({r.loss_kind}) ", style="bold")
            t.append(f"loss {fmt_value(r.loss)}", style="bold cyan")
            t.append(f"  {visible(r.loss_note, limit=200)}\n", style="dim")
            how = "added to the grads already there" if r.accumulated else "grads cleared first"
            t.append(f"  {how}; {len(r.grad_norms):,} parameter name(s) have a grad (∇ in the tree, g shows one)\n\n")
        if r.first_nonfinite is not None:
            t.append("first NaN/Inf output: ", style="bold red")
            rec = r.records[r.first_nonfinite]
            t.append(f"{visible(r.first_nonfinite or '(root)', limit=120)} ({visible(rec.type, limit=60)})\n\n", style="bold red")
        if not r.ok:
            t.append("failed: ", style="bold red")
            t.append(visible(r.error, limit=1000) + "\n", style="red")
            t.append(f"\n{len(r.records)} module(s) ran before the failure; their output shapes are in the tree.\n", style="dim")
        for name, out, st, grid in zip(r.output_names, r.outputs, self.stats, self.grids):
            t.append(f"{visible(name, limit=80)} ", style="bold")
            t.append(fmt_shape(tuple(out.shape)), style="green")
            t.append(f" {dtype_name(out.dtype)}\n", style="dim")
            if st is not None and st.finite:
                t.append(f"  min {fmt_value(st.min)}  max {fmt_value(st.max)}  mean {fmt_value(st.mean)}  std {fmt_value(st.std)}")
                if st.nan or st.inf:
                    t.append(f"  NaN {st.nan}  Inf {st.inf}", style="bold red")
                t.append("\n")
            if grid is not None:
                t.append_text(grid_lines(grid, width))
            t.append("\n")
        slow = sorted(((p, rec) for p, rec in r.records.items() if p), key=lambda x: -x[1].ms)[:8]
        if slow:
            t.append("slowest modules\n", style="bold")
            for p, rec in slow:
                t.append(f"  {rec.ms:8.2f} ms  ", style="dim")
                t.append(f"{visible(p, limit=80)}  {', '.join(fmt_shape(s) for s in rec.shapes)}\n")
        t.append("\nl: layers view (statistics, grad norms, a plot by depth)   escape: close",
                 style="dim")
        with VerticalScroll(classes="dialog result"):
            yield Static(t)

    def action_close(self) -> None:
        self.dismiss(None)

    def action_layers(self) -> None:
        """Close, and open the layers view of this run."""
        self.dismiss(None)
        self.app.call_later(self.app.action_layers)
