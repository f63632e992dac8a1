"""The selected tensor: title, statistics, histogram, a slice box and its values.

The panel owns its state (which tensor, gradient or values, the slice) and
its workers. Every request has a number; a result for an older request is
dropped, so a slow statistics job for the tensor you left, or for the values
before an edit, never paints over what is on screen now.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import DataTable, Input, Static
from textual.worker import get_current_worker

from modeltui.core.errors import Cancelled, ModelTuiError
from modeltui.format import fmt_count, fmt_shape, visible
from modeltui.ui.messages import StatsFailed, StatsReady, ValuesFailed, ValuesReady
from modeltui.ui.widgets.histogram import render_histogram

if TYPE_CHECKING:
    from modeltui.core.preview import ValueGrid
    from modeltui.core.stats import TensorStats
    from modeltui.core.targets import Opened


def error_text(e: BaseException) -> str:
    """A worker's exception as one safe line (a user's code can raise anything)."""
    text = str(e) if isinstance(e, ModelTuiError) else f"{type(e).__name__}: {e}"
    return visible(text, limit=400)


def stats_text(st: TensorStats) -> Text:
    """The statistics column: min, max, mean, std, norm, zeros, NaN/Inf, quantiles."""
    from modeltui.core.preview import fmt_value

    t = Text()

    def row(label, value, style=""):
        t.append(f"{label:>8} ", style="dim")
        t.append(f"{value}\n", style=style)

    def num(v):
        return "-" if v is None else fmt_value(v)

    row("min", num(st.min))
    row("max", num(st.max))
    row("mean", num(st.mean))
    row("std", num(st.std))
    row("norm", num(st.norm))
    row("zeros", f"{st.zeros:,} ({100 * st.zeros / max(st.numel, 1):.1f}%)")
    row("NaN", f"{st.nan:,}", "bold red" if st.nan else "")
    row("Inf", f"{st.inf:,}" + (f" (+{st.posinf:,} / -{st.neginf:,})" if st.inf else ""), "bold red" if st.inf else "")
    if getattr(st, "note", ""):
        t.append(f"{st.note}\n", style="italic cyan")
    if st.quantiles:
        q = st.quantiles
        row("p1/p50", f"{num(q.get('p1'))} / {num(q.get('p50'))}")
        row("p99", num(q.get("p99")) + ("  (sampled)" if st.sampled else ""))
    return t


def _labels_1d(shape: tuple[int, ...] | None, text: str):
    """The indices (a range) of a 1-D slice's values in their dimension, or None."""
    from modeltui.core.preview import _per_dim
    from modeltui.core.slicing import parse_slice

    if shape is None:
        return None
    try:
        index = parse_slice(text) if text.strip() else ()
        kept = [(d, s) for d, s in enumerate(_per_dim(index, len(shape))) if isinstance(s, slice)]
    except Exception:
        return None
    if len(kept) != 1:
        return None
    d, s = kept[0]
    return range(shape[d])[s]


def fit_columns(grid: ValueGrid, width: int, labels) -> ValueGrid:
    """Re-flow a 1-D grid so every value of a row fits ``width`` columns (2-D grids scroll instead).

    ``labels`` are the values' indices (see :func:`_labels_1d`); without them
    the grid is left as it is.
    """
    from modeltui.core.preview import ValueGrid

    if labels is None or not grid.col_labels or not grid.col_labels[0].startswith("+"):
        return grid
    values = [c for row in grid.cells for c in row]
    cell = max((len(v) for v in values), default=1) + 2
    label_w = max(len(str(labels[0])), len(str(labels[-1]))) + 2 if len(labels) else 3
    per_row = max(1, min(len(values), (width - label_w - 2) // cell))
    if per_row == len(grid.col_labels):
        return grid
    out = ValueGrid(grid.shape, note=grid.note)
    out.col_labels = [f"+{i}" for i in range(per_row)]
    for i in range(0, len(values), per_row):
        out.row_labels.append(str(labels[i]) if i < len(labels) else "")
        out.cells.append(values[i:i + per_row])
    return out


DEQUANT = "dequant"  # the panel's mode for an fp8 weight times its scale


class TensorPanel(Vertical):
    """Statistics, histogram and values of one tensor (or of its gradient)."""

    class NonFinite(Message):
        """Statistics found NaN or Inf in tensor ``tensor`` (the tree marks it)."""

        def __init__(self, name: str, grad: bool) -> None:
            super().__init__()
            self.tensor, self.grad = name, grad

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.opened: Opened | None = None
        self.tensor: str | None = None
        self.show_grad = False
        self.show_dequant = False  # an fp8 weight times its scale tensor (D)
        self.stats_cache: dict[tuple[str, bool | str], TensorStats] = {}
        self._stats_request = 0
        self._values_request = 0
        self._typed_request = -1  # the values request of a slice typed into the box
        self._grid: ValueGrid | None = None
        self._grid_text = ""
        self._grid_of: tuple[str, bool | str] | None = None  # (tensor, mode) the grid shows
        self._dequantized = None  # ((opened, name), float32 tensor) of the last dequantized view

    def compose(self):
        yield Static(id="tensor-title")
        with Horizontal(id="stats-row"):
            yield Static(id="stats")
            yield Static(id="histogram")
        yield Input(placeholder="slice, e.g. [0, :10] or [..., -1]  (enter)", id="slice")
        yield Static(id="slice-error")
        yield Static(id="values-note")
        yield DataTable(id="values", zebra_stripes=True)

    # ------------------------------------------------------------ state

    @property
    def info(self):
        return self.opened.info if self.opened is not None else None

    @property
    def slice_text(self) -> str:
        """The slice in the box now (the compare panel shows the same cells)."""
        return self.query_one("#slice", Input).value

    def show(self, opened: Opened, name: str) -> None:
        """Show tensor ``name``: its facts now, statistics and values from workers."""
        if name not in opened.info.tensors:
            return
        same = name == self.tensor and opened is self.opened
        self.opened, self.tensor = opened, name
        if not same:
            from modeltui.core.slicing import default_slice

            self.show_grad = self.show_dequant = False
            self.query_one("#slice", Input).value = default_slice(opened.info.tensors[name].shape)
            self._slice_error("")
        self.add_class("visible")
        self._load()

    def hide(self) -> None:
        self.tensor = None
        self._stats_request += 1
        self._values_request += 1
        self.remove_class("visible")

    def invalidate(self) -> None:
        """The model changed: forget cached statistics and repaint what is shown."""
        self.stats_cache.clear()
        self._dequantized = None
        if self.tensor is not None and self.info is not None:
            if self.tensor in self.info.tensors:
                self._load()
            else:
                self.hide()

    def focus_slice(self) -> None:
        """Put the cursor in the slice box (v)."""
        box = self.query_one("#slice", Input)
        box.focus()
        box.scroll_visible()

    def toggle_grad(self) -> str | None:
        """Switch between values and gradient; returns why not, or None."""
        if self.tensor is None or self.info is None:
            return "select a tensor first"
        x = self.info.tensors[self.tensor]
        if not x.has_grad and not self.show_grad:
            why = ("only parameters have one" if x.kind != "parameter" else "it is frozen" if not x.requires_grad
                   else "run a backward pass first: f, then pick a loss")
            return f"'{visible(x.name)}' has no gradient ({why})"
        self.show_grad = not self.show_grad
        self.show_dequant = False
        self._load()
        return None

    def toggle_dequant(self) -> str | None:
        """Switch between the stored values and the dequantized ones (weight × its scale); returns why not, or None."""
        if self.tensor is None or self.info is None:
            return "select a tensor first"
        from modeltui.core.dequant import scaling_of

        if scaling_of(self.info, self.tensor) is None and not self.show_dequant:
            return (f"'{visible(self.tensor, limit=120)}' has no scale to dequantize with "
                    "(an fp8 / int8 2-D weight with a '_scale_inv' or '_scale' tensor next to it)")
        self.show_dequant = not self.show_dequant
        self.show_grad = False
        self._load()
        return None

    @property
    def mode(self) -> bool | str:
        """What the panel shows of the tensor: False its values, True its .grad, DEQUANT its dequantized values."""
        return True if self.show_grad else DEQUANT if self.show_dequant else False

    def _load(self) -> None:
        name = self.tensor
        x = self.info.tensors[name]
        self._render_title()
        self._stats_request += 1
        self._values_request += 1
        if x.shape is None:
            self.query_one("#stats", Static).update(Text("uninitialised lazy parameter: no values until a forward pass (f)", style="yellow"))
            self.query_one("#histogram", Static).update("")
            self._clear_values("")
            return
        key = (name, self.mode)
        if key in self.stats_cache:
            self._render_stats(self.stats_cache[key])
        else:
            self.query_one("#stats", Static).update(Text("computing statistics…", style="dim"))
            self.query_one("#histogram", Static).update("")
            self.compute_stats(self._stats_request, name, self.mode)
        self.compute_values(self._values_request, name, self.mode, self.query_one("#slice", Input).value)

    def _render_title(self) -> None:
        x = self.info.tensors[self.tensor]
        t = Text()
        t.append(visible(x.name, limit=200), style="bold")
        t.append(f"  {x.kind}  ", style="dim")
        t.append(fmt_shape(x.shape), style="green")
        t.append(f"  {x.dtype}  {x.device}  {fmt_count(x.numel)} elements", style="dim")
        if x.tied_count:
            from modeltui.ui.widgets.module_panel import tied_text

            t.append(f"  tied with {tied_text(x)}", style="yellow")
        if x.kind == "parameter" and not x.requires_grad:
            t.append("  frozen", style="cyan")
        if x.kind == "constant":
            t.append("  constant: not in the state_dict, not saved", style="magenta")
        if self.show_grad:
            t.append("  [showing .grad]", style="bold magenta")
        elif x.has_grad:
            t.append("  (has .grad: press g)", style="magenta")
        from modeltui.core.dequant import scaling_of

        scaling = scaling_of(self.info, x.name)
        if self.show_dequant and scaling is not None:
            t.append(f"  [dequantized: {visible(scaling.describe())}, float32]", style="bold magenta")
        elif scaling is not None:
            t.append("  (scaled: press D for the dequantized values)", style="magenta")
        self.query_one("#tensor-title", Static).update(t)

    # ------------------------------------------------------------ workers

    def _tensor(self, opened: Opened, name: str, grad: bool | str):
        if grad == DEQUANT:
            from modeltui.core.dequant import dequantize, scaling_of

            scaling = scaling_of(opened.info, name)
            if scaling is None:
                raise ModelTuiError(f"'{name}' has no scale to dequantize with")
            cached = self._dequantized
            if cached is not None and cached[0] == (opened, name):
                return cached[1]
            x = dequantize(opened.tensor(name), opened.tensor(scaling.scale), scaling.block)
            self._dequantized = ((opened, name), x)  # stats and values share one (the last tensor's only)
            return x
        t = opened.tensor(name)
        if grad:
            if t.grad is None:
                raise ModelTuiError(f"'{name}' has no gradient")
            return t.grad
        return t

    @work(thread=True, exclusive=True, exit_on_error=False, group="stats")
    def compute_stats(self, request: int, name: str, grad: bool) -> None:
        from modeltui.core.stats import tensor_stats

        worker = get_current_worker()
        opened = self.opened
        try:
            st = tensor_stats(self._tensor(opened, name, grad), should_stop=lambda: worker.is_cancelled)
        except Cancelled:
            return
        except Exception as e:  # never leave the panel on "computing…"
            self.post_message(StatsFailed(request, name, error_text(e)))
            return
        self.post_message(StatsReady(request, name, grad, st))

    @work(thread=True, exclusive=True, exit_on_error=False, group="values")
    def compute_values(self, request: int, name: str, grad: bool, text: str) -> None:
        from modeltui.core.preview import value_grid

        opened = self.opened
        try:
            grid = value_grid(self._tensor(opened, name, grad), text)
        except Exception as e:
            self.post_message(ValuesFailed(request, name, text, error_text(e)))
            return
        self.post_message(ValuesReady(request, name, grad, text, grid))

    # ------------------------------------------------------------ results

    def on_stats_ready(self, message: StatsReady) -> None:
        message.stop()
        current = message.request == self._stats_request
        if current:
            self.stats_cache[(message.name, message.grad)] = message.stats
            self._render_stats(message.stats)
        if message.stats.nan or message.stats.inf:
            self.post_message(self.NonFinite(message.name, message.grad))

    def on_stats_failed(self, message: StatsFailed) -> None:
        message.stop()
        if message.request == self._stats_request:
            self.query_one("#stats", Static).update(Text(f"no statistics: {message.error}", style="yellow"))
            self.query_one("#histogram", Static).update("")

    def _render_stats(self, st: TensorStats) -> None:
        self.query_one("#stats", Static).update(stats_text(st))
        self.query_one("#histogram", Static).update(render_histogram(st.hist_counts, st.hist_edges))

    def on_values_ready(self, message: ValuesReady) -> None:
        message.stop()
        if message.request != self._values_request:
            return
        self._slice_error("")
        self._grid, self._grid_text, self._grid_of = message.grid, message.text, (message.name, message.grad)
        self._render_values()
        if message.request == self._typed_request:
            self.post_message(self.SliceChosen())

    def on_values_failed(self, message: ValuesFailed) -> None:
        message.stop()
        if message.request != self._values_request:
            return
        if self._grid_of != (message.name, self.mode):  # never leave another tensor's values under this one's title
            self._clear_values("")
        self._slice_error(message.error)

    def _slice_error(self, error: str) -> None:
        box = self.query_one("#slice", Input)
        box.set_class(bool(error), "-invalid")
        self.query_one("#slice-error", Static).update(Text(f"✗ {error}") if error else "")

    def _render_values(self) -> None:
        grid = self._grid
        if grid is None:
            return
        width = self.query_one("#values", DataTable).size.width or self.size.width or 80
        x = self.info.tensors.get(self.tensor) if self.info is not None and self.tensor else None
        grid = fit_columns(grid, width, _labels_1d(x.shape if x is not None else None, self._grid_text))
        note = f"{self._grid_text or '[all]'} → shape {fmt_shape(grid.shape)}"
        if grid.note:
            note += f"  ({grid.note})"
        self.query_one("#values-note", Static).update(Text(visible(note)))
        table = self.query_one("#values", DataTable)
        table.clear(columns=True)
        table.add_column("", key="__row__")
        for i, c in enumerate(grid.col_labels):
            table.add_column(c, key=f"c{i}")
        for label, cells in zip(grid.row_labels, grid.cells):
            table.add_row(Text(label, style="dim"), *cells)

    def on_resize(self) -> None:
        self._render_values()

    def _clear_values(self, note: str) -> None:
        self._grid = self._grid_of = None
        self.query_one("#values-note", Static).update(note)
        self.query_one("#values", DataTable).clear(columns=True)

    @on(Input.Submitted, "#slice")
    def _slice_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self.tensor is not None:
            self._values_request += 1
            self._typed_request = self._values_request
            self.compute_values(self._values_request, self.tensor, self.mode, event.value)

    class SliceChosen(Message):
        """A slice the user typed was shown: focus goes back to where keys work (a bad one keeps it)."""
