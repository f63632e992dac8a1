"""The selected tensor against the compared target: figures, both sides' statistics, the difference, values side by side.

Shown under the tensor panel while a comparison (c) is on. Its work runs in
a thread worker that posts :class:`CompareDetails`; a result for an older
request is dropped. Names from files are shown through ``visible()`` and
never as markup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import work
from textual.containers import Vertical
from textual.widgets import DataTable, Static
from textual.worker import get_current_worker

from modeltui.core.errors import Cancelled
from modeltui.format import fmt_shape, visible
from modeltui.ui.messages import CompareDetails
from modeltui.ui.widgets.histogram import render_histogram
from modeltui.ui.widgets.tensor_panel import error_text

if TYPE_CHECKING:
    from modeltui.core.compare_tree import Comparison
    from modeltui.core.stats import TensorStats
    from modeltui.core.targets import Opened


def _g(v: Any, digits: int = 5) -> str:
    from modeltui.core.preview import fmt_value

    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return fmt_value(v)


def figures_text(d, label: str) -> Text:
    """The one-paragraph verdict: what changed, the largest |a - b| and where, rel L2, cosine, how many differ."""
    from modeltui.core.compare import IDENTICAL, SHAPE

    t = Text()
    other = visible(label, limit=60)
    if d.status == IDENTICAL:
        t.append("= ", style="green")
        t.append(f"identical to {other}, bit for bit", style="green")
        return t
    t.append("~ ", style="bold yellow")
    if d.other != d.name:
        t.append(f"{other} calls it {visible(d.other, limit=120)}; ", style="dim")
    if d.dtype != d.other_dtype:
        t.append(f"dtype {d.dtype} → {d.other_dtype}; ", style="yellow")
    if d.status == SHAPE:
        t.append(f"shape {fmt_shape(d.shape)} → {fmt_shape(d.other_shape)}: no element-wise figures", style="yellow")
        return t
    if d.note and d.max_abs is None:
        t.append(visible(d.note, limit=200), style="yellow")
        return t
    t.append(f"{d.differ:,} of {d.numel:,} differ ({100 * d.differ_fraction:.3g}%)")
    if d.max_index is not None:
        t.append(f"; max |a−b| {_g(d.max_abs)} at {fmt_shape(d.max_index)} ({_g(d.a_at)} → {_g(d.b_at)})")
    t.append(f"; rel L2 {_g(d.rel_l2, 3)}; cosine {_g(d.cosine, 8)}")
    if d.nonfinite_a or d.nonfinite_b:
        t.append(f"; NaN/Inf only here {d.nonfinite_a:,}, only there {d.nonfinite_b:,}", style="bold red")
    if d.note:
        t.append(f"; {visible(d.note, limit=200)}", style="dim")
    return t


def stats_table(columns: list[tuple[str, TensorStats | None]]) -> Table:
    """One row per statistic, one column per side (this, other, a − b)."""
    table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
    table.add_column("")
    for title, _ in columns:
        table.add_column(Text(visible(title, limit=20)), justify="right", no_wrap=True)

    def cell(st, what):
        if st is None:
            return "-"
        if what in ("zeros", "nan"):
            return f"{getattr(st, what):,}"
        if what == "inf":
            return f"{st.inf:,}"
        return _g(getattr(st, what))

    for what in ("min", "max", "mean", "std", "norm", "zeros", "nan", "inf"):
        table.add_row(Text("NaN" if what == "nan" else "Inf" if what == "inf" else what, style="dim"),
                      *[cell(st, what) for _, st in columns])
    return table


class ComparePanel(Vertical):
    """The selected tensor against the compared target (hidden when there is no comparison)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.comparison: Comparison | None = None
        self.opened: Opened | None = None
        self.tensor: str | None = None  # A's tensor shown, or None
        self.other_name: str | None = None  # B's tensor shown (a tensor only B has, or A's counterpart)
        self._request = 0
        self._grids: tuple | None = None
        self._stats: dict[tuple, tuple] = {}  # (A name, B name) -> (this, other, a − b) statistics already computed

    def compose(self):
        yield Static(id="compare-title")
        yield Static(id="compare-figures")
        yield Static(id="compare-stats")
        yield Static(id="compare-histogram")
        yield Static(id="compare-values-note")
        yield DataTable(id="compare-values", zebra_stripes=True)

    def set(self, comparison: Comparison | None, opened: Opened | None) -> None:
        """Show (or stop showing, None) a comparison; nothing is selected yet."""
        self.comparison, self.opened = comparison, opened
        self._stats.clear()
        self.hide()

    def hide(self) -> None:
        self.tensor = self.other_name = None
        self._request += 1
        self.remove_class("visible")

    def _begin(self, title: Text) -> None:
        self._request += 1
        self._grids = None
        self.query_one("#compare-title", Static).update(title)
        for sel in ("#compare-figures", "#compare-stats", "#compare-histogram", "#compare-values-note"):
            self.query_one(sel, Static).update("")
        self.query_one("#compare-values", DataTable).clear(columns=True)
        self.add_class("visible")

    def _title(self, what: str) -> Text:
        t = Text()
        t.append("compared with ", style="dim")
        t.append(visible(self.comparison.label, limit=80), style="bold cyan")
        t.append(f"  {what}", style="dim")
        return t

    def show_tensor(self, name: str, text: str) -> None:
        """Tensor ``name`` of this model against its counterpart, for the slice ``text``."""
        c = self.comparison
        if c is None or self.opened is None:
            return
        self.tensor, self.other_name = name, None
        d = c.by_name.get(name)
        self._begin(self._title(visible(name, limit=120)))
        figures = self.query_one("#compare-figures", Static)
        if d is None:
            only = c.marks.tensors.get(name) == "+"
            figures.update(Text(f"+ only here: {visible(c.label, limit=60)} has no such tensor" if only
                                else "not compared (not part of the state_dict)", style="bold cyan" if only else "dim"))
            return
        self.other_name = d.other
        figures.update(figures_text(d, c.label))
        if d.status == "identical":
            return
        self.query_one("#compare-stats", Static).update(Text("computing both sides' statistics…", style="dim"))
        self.details(self._request, name, d.other, text, d.status != "shape", self._stats.get((name, d.other)))

    def show_other(self, other: str, text: str) -> None:
        """A tensor only the compared target has."""
        c = self.comparison
        if c is None:
            return
        self.tensor, self.other_name = None, other
        self._begin(self._title(visible(other, limit=120)))
        self.query_one("#compare-figures", Static).update(
            Text(f"− only there: this model has no such tensor; {visible(c.label, limit=60)}'s values below", style="bold red"))
        self.details(self._request, None, other, text, False, self._stats.get((None, other)))

    def show_slice(self, text: str) -> None:
        """The slice box changed: the same cells of both sides."""
        if self.tensor is not None and self.other_name is not None:
            self.show_tensor(self.tensor, text)
        elif self.other_name is not None:
            self.show_other(self.other_name, text)

    @work(thread=True, exclusive=True, exit_on_error=False, group="compare-details")
    def details(self, request: int, name: str | None, other: str, text: str, paired: bool, cached: tuple | None) -> None:
        from modeltui.core.difference import difference_stats
        from modeltui.core.preview import value_grid, value_grids
        from modeltui.core.stats import tensor_stats

        worker = get_current_worker()
        stop = lambda: worker.is_cancelled  # noqa: E731
        msg = CompareDetails(request, name or "")
        try:
            tb = self.comparison.other.tensor(other)
            ta = self.opened.tensor(name) if name is not None else None
        except Exception as e:
            msg.errors.append(error_text(e))
            self.post_message(msg)
            return
        jobs = [("other", lambda: tensor_stats(tb, should_stop=stop))]
        if cached is not None:  # a new slice of the tensor shown: only its values are new
            msg.this, msg.other, msg.diff = cached
            jobs = []
        elif ta is not None:
            jobs.insert(0, ("this", lambda: tensor_stats(ta, should_stop=stop)))
            if paired:
                jobs.append(("diff", lambda: difference_stats(ta, tb, should_stop=stop)))
        for field, job in jobs:
            try:
                setattr(msg, field, job())
            except Cancelled:
                return
            except Exception as e:
                msg.errors.append(f"{field}: {error_text(e)}")
        try:
            msg.grids = value_grids(ta, tb, text) if paired else (None, value_grid(tb, text), None)
        except Exception as e:
            msg.errors.append(f"values: {error_text(e)}")
        self.post_message(msg)

    def on_compare_details(self, message: CompareDetails) -> None:
        message.stop()
        if message.request != self._request or self.comparison is None:
            return
        if message.other is not None and not any(e.startswith(("this:", "diff:")) for e in message.errors):
            self._stats[(self.tensor, self.other_name)] = (message.this, message.other, message.diff)
        cols = []
        if self.tensor is not None:
            cols.append(("this", message.this))
        cols.append(("other", message.other))
        if message.diff is not None:
            cols.append(("a − b", message.diff))
        self.query_one("#compare-stats", Static).update(stats_table(cols))
        if message.diff is not None:
            d = message.diff
            self.query_one("#compare-histogram", Static).update(
                Group(Text("histogram of a − b", style="dim"), render_histogram(d.hist_counts, d.hist_edges, bins=8)))
        self._grids = message.grids
        note = Text()
        if message.errors:
            note.append("\n".join(visible(e, limit=300) for e in message.errors) + "\n", style="yellow")
        if message.grids is not None:
            note.append("values side by side: a this model, b " if self.tensor is not None else "values of ", style="dim")
            note.append(visible(self.comparison.label, limit=60), style="dim cyan")
            if self.tensor is not None:
                note.append(", Δ a − b", style="dim")
            grid = next(g for g in message.grids if g is not None)
            if grid.note:
                note.append(f"  ({visible(grid.note)})", style="dim")
        self.query_one("#compare-values-note", Static).update(note)
        self._render_values()

    def _render_values(self) -> None:
        table = self.query_one("#compare-values", DataTable)
        table.clear(columns=True)
        if self._grids is None:
            return
        ga, gb, gd = self._grids
        base = ga or gb
        table.add_column("", key="__row__")
        for i, c in enumerate(base.col_labels):
            table.add_column(c, key=f"c{i}")
        for r, label in enumerate(base.row_labels):
            if ga is not None:
                table.add_row(Text(f"{label} a", style="dim"), *ga.cells[r])
                table.add_row(Text("  b", style="dim"), *gb.cells[r])
                table.add_row(Text("  Δ", style="dim"),
                              *[Text(v, style="dim" if v in ("0", "-0") else "bold yellow") for v in gd.cells[r]])
            else:
                table.add_row(Text(f"{label} b", style="dim"), *gb.cells[r])

