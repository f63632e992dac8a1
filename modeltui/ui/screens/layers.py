"""The layers view (l): the last run's modules in execution order, a plot of std and grad norm
against depth, and the run before side by side (p), so "before / after xavier" is one key.

It is modal, so keys go to it only; enter on a row closes it on that module
in the tree. The plot's library is imported when the view first opens
(time to first paint does not pay for it).
"""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from modeltui.core.layers import SORTS, layer_rows
from modeltui.format import visible

SORT_CYCLE = ("order", "std", "grad", "zeros", "nonfinite", "time")


def run_title(result) -> Text:
    """The view's first line: inputs, time, loss, how the grads were made, the first NaN/Inf."""
    t = Text()
    t.append("Layers ", style="bold")
    t.append(visible("inputs " + "; ".join(str(s) for s in result.inputs), limit=120), style="dim")
    t.append(f"  {result.ms:.1f} ms", style="dim")
    if result.loss_kind:
        from modeltui.ui.widgets.layers_table import fig

        t.append(f"  loss ({result.loss_kind}) {fig(result.loss)}")
        t.append(", added to existing grads" if result.accumulated else ", grads cleared first", style="dim")
    else:
        t.append("  forward only (no grads)", style="dim")
    if result.first_nonfinite is not None:
        t.append("  first NaN/Inf: ", style="bold red")
        t.append(visible(result.first_nonfinite or "(root)", limit=80), style="bold red")
    if not result.ok:
        t.append(f"  failed: {visible(result.error, limit=200)}", style="red")
    return t


class LayersScreen(ModalScreen[str | None]):
    """The last run (and the one before): a sortable table and a plot; dismissed with a module path or None."""

    BINDINGS = [
        Binding("escape,q,l", "close", "Close"),
        Binding("s", "sort", "Sort"),
        Binding("r", "reverse", "Reverse"),
        Binding("p", "previous", "Before"),
        Binding("a", "all_modules", "All"),
    ]

    def __init__(self, result, before=None):
        super().__init__()
        self.result, self.before = result, before
        self.rows = layer_rows(result)
        self.before_rows = layer_rows(before) if before is not None else None
        self.compare = False
        self.leaves_only = True

    def compose(self) -> ComposeResult:
        from modeltui.ui.widgets.depth_plot import DepthPlot
        from modeltui.ui.widgets.layers_table import LayersTable

        yield Static(run_title(self.result), id="layers-title")
        yield DepthPlot(id="layers-plot")
        yield Static(id="layers-legend")
        yield LayersTable(id="layers-table")
        yield Static(id="layers-keys")

    def on_mount(self) -> None:
        self._show()
        self.table.focus()

    @property
    def table(self):
        from modeltui.ui.widgets.layers_table import LayersTable

        return self.query_one(LayersTable)

    @property
    def plot(self):
        from modeltui.ui.widgets.depth_plot import DepthPlot

        return self.query_one(DepthPlot)

    def _show(self) -> None:
        before = self.before_rows if self.compare else None
        self.plot.show(self.rows, before, self.leaves_only)
        self.query_one("#layers-legend", Static).update(self.plot.legend(self.leaves_only))
        self.table.show(self.rows, before)
        keys = Text()
        for key, what in (("s", f"sort: {SORTS[self.table.sort_by][0]}"), ("r", "reverse"),
                          ("p", "hide before" if self.compare else "run before"),
                          ("a", "all modules" if self.leaves_only else "layers only"), ("enter", "go to"), ("esc", "close")):
            keys.append(f" {key} ", style="bold reverse")
            keys.append(f" {what} ")
        if self.before_rows is None:
            keys.append(" (one run so far)", style="dim")
        self.query_one("#layers-keys", Static).update(keys)

    def action_close(self) -> None:
        self.dismiss(None)

    def action_sort(self) -> None:
        now = self.table.sort_by
        self.table.sort_by = SORT_CYCLE[(SORT_CYCLE.index(now) + 1) % len(SORT_CYCLE)] if now in SORT_CYCLE else "order"
        self.table.reverse = None
        self._show()

    def action_reverse(self) -> None:
        t = self.table
        default = t.sort_by not in ("order", "module")
        t.reverse = not (default if t.reverse is None else t.reverse)
        self._show()

    def action_previous(self) -> None:
        if self.before_rows is None:
            self.app.notify("there is no run before this one: run f again (e.g. after an initialiser) to compare",
                            severity="warning", markup=False)
            return
        self.compare = not self.compare
        self._show()

    def action_all_modules(self) -> None:
        self.leaves_only = not self.leaves_only
        self._show()

    @on(DataTable.HeaderSelected)
    def _header(self, event: DataTable.HeaderSelected) -> None:
        sort = self.table.sort_key_of(str(event.column_key.value))
        if sort is None:
            return
        if sort == self.table.sort_by:
            self.action_reverse()
            return
        self.table.sort_by, self.table.reverse = sort, None
        self._show()

    @on(DataTable.RowSelected)
    def _row(self, event: DataTable.RowSelected) -> None:
        if event.row_key is not None:
            self.dismiss(str(event.row_key.value))
