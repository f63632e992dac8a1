"""The modeltui application: opens a target in a worker and browses it."""

from __future__ import annotations

import os
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Input, Static, Tree
from textual.worker import Worker, WorkerState, get_current_worker

from modeltui.core.errors import ModelTuiError
from modeltui.format import fmt_count
from modeltui.ui.commands import GoToProvider
from modeltui.ui.histogram import render_histogram
from modeltui.ui.messages import StatsReady, TargetFailed, TargetLoaded, ValuesFailed, ValuesReady
from modeltui.ui.widgets import HeaderBar, ModulePanel, ModuleTree, NodeRef, TensorPanel

KEYS = [
    ("f", "forward pass on random inputs (x cancels a long run)"),
    ("i", "initialise the selected module's subtree or tensor"),
    ("e", "edit values of the selected tensor: [0, 0] = 42, [:] += 1, *= 0.5"),
    ("t", "tie the selected module or parameter to another one, or untie it"),
    ("w", "load weights from a checkpoint onto the model (undoable; misfits listed)"),
    ("s", "save the state_dict (.safetensors or .pt), verified, atomic"),
    ("d", "move the model to another device, or cast its dtype"),
    ("u / ctrl+y", "undo / redo"),
    ("↑ ↓", "move in the tree"),
    ("→ / ←", "expand / collapse (or go to parent)"),
    ("enter / space", "expand or collapse a module"),
    ("tab / shift+tab", "move between tree, tensor table, slice box and values"),
    ("/", "search modules and tensors by name or class"),
    ("n / N", "next / previous match"),
    ("v", "edit the slice of values shown, e.g. [0, :10] or [..., -1]"),
    ("g", "show the gradient instead of the values (when there is one)"),
    ("ctrl+p", "command palette (every action, and go to any module or tensor)"),
    ("?", "this help"),
    ("q", "quit"),
]


class DaemonThreadExecutor(ThreadPoolExecutor):
    """Runs each job on its own daemon thread and never waits for them on shutdown.

    Textual's thread workers go through the event loop's default executor,
    whose shutdown (and Python's exit) joins every thread: ``q`` during a
    40-second load would hang for 40 seconds. Torch calls cannot be
    interrupted, so quitting abandons them instead; a save cut short this way
    leaves the old file whole, like any other interrupted save.
    """

    def __init__(self) -> None:
        super().__init__(max_workers=1)

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as e:  # handed to the awaiting worker
                future.set_exception(e)

        threading.Thread(target=run, name="modeltui-worker", daemon=True).start()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        pass


def abandoned_work() -> bool:
    """True when worker threads are still running (their results are no longer wanted)."""
    return any(t.name == "modeltui-worker" and t.is_alive() for t in threading.enumerate())


class HelpScreen(ModalScreen[None]):
    """A list of keys; any of escape, q or ? closes it."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        t = Text()
        t.append("modeltui keys\n\n", style="bold")
        for key, what in KEYS:
            t.append(f"{key:>16}  ", style="bold cyan")
            t.append(f"{what}\n")
        t.append("\nMarks in the tree: ", style="dim")
        t.append("⇄ tied  ❄ frozen  ? lazy (uninitialised)  ⚠ NaN/Inf", style="yellow")
        yield Static(t, id="help-box")

    def action_dismiss(self, result: Any = None) -> None:
        self.dismiss(result)


class ModelTuiApp(App[int]):
    """Browse a PyTorch model or checkpoint."""

    CSS_PATH = "app.tcss"
    TITLE = "modeltui"
    COMMANDS = App.COMMANDS | {GoToProvider}
    BINDINGS = [
        Binding("f", "forward", "Forward"),
        Binding("i", "initialise", "Init"),
        Binding("e", "edit_values", "Edit"),
        Binding("t", "tie", "Tie"),
        Binding("w", "load_weights", "Weights"),
        Binding("s", "save", "Save"),
        Binding("d", "device", "Device"),
        Binding("u", "undo", "Undo"),
        Binding("ctrl+y", "redo", "Redo"),
        Binding("x", "cancel_forward", "Cancel run", show=False),
        Binding("slash", "search", "Search"),
        Binding("n", "next_match", "Next match", show=False),
        Binding("N", "prev_match", "Prev match", show=False),
        Binding("v", "edit_slice", "Slice"),
        Binding("g", "toggle_grad", "Grad"),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
        Binding("escape", "close_search", "Close search", show=False),
    ]

    def __init__(
        self,
        target: str | None = None,
        *,
        weights: str | None = None,
        device: str | None = None,
        input_specs=(),
        trust: bool = False,
        opened: Any = None,
    ) -> None:
        super().__init__()
        self.target = target
        self.options = dict(weights=weights, device=device, input_specs=list(input_specs), trust=trust)
        self.opened = opened  # a core.Opened, given directly in tests
        self.load_error: str | None = None
        self.selected: str | None = None  # tensor name shown in the tensor panel
        self.show_grad = False
        self.stats_cache: dict[tuple[str, bool], Any] = {}
        self.matches: list[NodeRef] = []
        self.match_index = -1
        self.session = None  # core.Session once a module target is open
        self.forward_records: dict = {}

    # ------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield HeaderBar(id="header")
        with Horizontal(id="search-bar"):
            yield Input(placeholder="search name or class, enter to jump; n / N for next / previous", id="search-input")
            yield Static("", id="search-count")
        with Horizontal(id="main"):
            yield ModuleTree(id="tree")
            with VerticalScroll(id="detail"):
                yield Static("", id="message")
                yield ModulePanel(id="module-panel")
                yield TensorPanel(id="tensor-panel")
        yield Footer()

    def on_mount(self) -> None:
        import asyncio

        # thread workers run on daemon threads: quitting never waits for a long load, stats or save
        asyncio.get_running_loop().set_default_executor(DaemonThreadExecutor())
        self.query_one(HeaderBar).show_loading(self.target or "demo")
        self.query_one(ModuleTree).focus()
        if self.opened is not None:
            self.post_message(TargetLoaded(self.opened))
        else:
            self.load_target()

    def get_system_commands(self, screen: Screen):
        yield from super().get_system_commands(screen)
        yield SystemCommand("Forward pass", "Run the model on random inputs and record output shapes (f)", self.action_forward)
        yield SystemCommand("Initialise", "Apply an initialiser to the selected module or tensor (i)", self.action_initialise)
        yield SystemCommand("Edit values", "Assign over a slice of the selected tensor (e)", self.action_edit_values)
        yield SystemCommand("Tie / untie", "Make a module or parameter share another's parameters, or give it its own copy (t)", self.action_tie)
        yield SystemCommand("Load weights", "Load a checkpoint's tensors onto the model, listing what does not fit (w)", self.action_load_weights)
        yield SystemCommand("Save", "Save the state_dict to .safetensors or .pt, verified (s)", self.action_save)
        yield SystemCommand("Device / dtype", "Move the model to a device or cast its floating-point tensors (d)", self.action_device)
        yield SystemCommand("Undo", "Undo the last change (u)", self.action_undo)
        yield SystemCommand("Redo", "Redo the last undone change (ctrl+y)", self.action_redo)
        yield SystemCommand("Search", "Search modules and tensors by name or class (/)", self.action_search)
        yield SystemCommand("Next match", "Jump to the next search match (n)", self.action_next_match)
        yield SystemCommand("Previous match", "Jump to the previous search match (N)", self.action_prev_match)
        yield SystemCommand("Edit slice", "Choose which values of the selected tensor to show (v)", self.action_edit_slice)
        yield SystemCommand("Toggle gradient", "Show the selected tensor's gradient instead of its values (g)", self.action_toggle_grad)
        yield SystemCommand("Keys", "Show the help screen of keys (?)", self.action_help)

    # ------------------------------------------------------------ loading

    @work(thread=True, exclusive=True, exit_on_error=False, group="load")
    def load_target(self) -> None:
        from modeltui.core.targets import open_target

        try:
            opened = open_target(self.target, **self.options)
        except ModelTuiError as e:
            self.post_message(TargetFailed(str(e)))
            return
        except Exception as e:  # a user's module can raise anything
            self.post_message(TargetFailed(f"{type(e).__name__}: {e}"))
            return
        self.post_message(TargetLoaded(opened))

    def on_target_loaded(self, message: TargetLoaded) -> None:
        self.opened = message.opened
        if self.opened.model is not None:
            from modeltui.core.session import Session

            self.session = Session(self.opened)
        info = self.opened.info
        self.query_one(HeaderBar).show_info(info)
        tree = self.query_one(ModuleTree)
        tree.load(info)
        self.show_module("")
        for w in info.warnings:
            self.notify(w, severity="warning", timeout=8)
        self.call_after_refresh(self._painted)

    def _painted(self) -> None:
        log = os.environ.get("MODELTUI_PAINT_LOG")
        if log:
            with open(log, "w") as f:
                f.write(f"{time.time()}\ntorch imported: {'torch' in sys.modules}\n{_peak_rss()}\n")
            if os.environ.get("MODELTUI_EXIT_AFTER_PAINT"):
                self.exit(0)

    def on_target_failed(self, message: TargetFailed) -> None:
        self.load_error = message.error
        self.query_one(HeaderBar).update(Text.assemble(("modeltui ", "bold"), (self.target or "demo", "bold cyan"), ("  could not open", "bold red")))
        msg = self.query_one("#message", Static)
        msg.update(Text.assemble(("Could not open the target\n\n", "bold"), message.error, ("\n\npress q to quit", "dim")))
        msg.add_class("visible")
        self.notify(message.error, title="Could not open", severity="error", timeout=15)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place where an unexpected worker error becomes visible."""
        if event.state == WorkerState.ERROR:
            err = event.worker.error
            text = str(err) if isinstance(err, ModelTuiError) else f"{type(err).__name__}: {err}"
            self.notify(text, title="Error", severity="error", timeout=10)

    # ------------------------------------------------------------ selection

    @property
    def info(self):
        return self.opened.info if self.opened is not None else None

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[NodeRef]) -> None:
        ref = event.node.data
        if ref is None or self.info is None:
            return
        if ref.kind == "module":
            self.show_module(ref.name)
        else:
            self.show_module(self.info.tensors[ref.name].module)
            self.select_tensor(ref.name)

    def show_module(self, path: str) -> None:
        info = self.info
        if info is None:
            return
        self.query_one(ModulePanel).show(info, info.modules[path])
        if self.selected is None or info.tensors[self.selected].module != path:
            self.selected = None
            self.query_one(TensorPanel).remove_class("visible")

    @on(DataTable.RowSelected, "#tensor-table")
    @on(DataTable.RowHighlighted, "#tensor-table")
    def _table_row(self, event) -> None:
        if isinstance(event, DataTable.RowHighlighted) and not event.data_table.has_focus:
            return  # filling the table highlights row 0: not a choice of the user
        if event.row_key is not None and event.row_key.value is not None and self.info is not None:
            if event.row_key.value in self.info.tensors:
                self.select_tensor(event.row_key.value)

    def select_tensor(self, name: str) -> None:
        """Show tensor ``name``: its facts now, statistics and values from workers."""
        info = self.info
        if info is None or name not in info.tensors:
            return
        same = name == self.selected
        self.selected = name
        if not same:
            self.show_grad = False
        panel = self.query_one(TensorPanel)
        panel.add_class("visible")
        if not same:
            from modeltui.core.slicing import default_slice

            panel.query_one("#slice", Input).value = default_slice(info.tensors[name].shape)
            panel.query_one("#slice-error", Static).update("")
        self._load_tensor_views()

    def _load_tensor_views(self) -> None:
        """Title now; statistics (cached) and values from workers."""
        panel = self.query_one(TensorPanel)
        name = self.selected
        x = self.info.tensors[name]
        self._render_title()
        if x.shape is None:
            panel.query_one("#stats", Static).update(Text("uninitialised lazy parameter: no values until a forward pass", style="yellow"))
            panel.query_one("#histogram", Static).update("")
            self._clear_values("")
            return
        key = (name, self.show_grad)
        if key in self.stats_cache:
            self._render_stats(self.stats_cache[key])
        else:
            panel.query_one("#stats", Static).update(Text("computing statistics…", style="dim"))
            panel.query_one("#histogram", Static).update("")
            self.compute_stats(name, self.show_grad)
        self.compute_values(name, self.show_grad, panel.query_one("#slice", Input).value)

    def _render_title(self) -> None:
        x = self.info.tensors[self.selected]
        t = Text()
        t.append(x.name, style="bold")
        t.append(f"  {x.kind}  ", style="dim")
        from modeltui.format import fmt_shape

        t.append(fmt_shape(x.shape), style="green")
        t.append(f"  {x.dtype}  {x.device}  {fmt_count(x.numel)} elements", style="dim")
        if x.tied_with:
            t.append(f"  tied with {', '.join(x.tied_with)}", style="yellow")
        if x.kind == "parameter" and not x.requires_grad:
            t.append("  frozen", style="cyan")
        if self.show_grad:
            t.append("  [showing .grad]", style="bold magenta")
        elif x.has_grad:
            t.append("  (has .grad: press g)", style="magenta")
        self.query_one("#tensor-title", Static).update(t)

    # ------------------------------------------------------------ workers

    def _tensor(self, name: str, grad: bool):
        t = self.opened.tensor(name)
        if grad:
            if t.grad is None:
                raise ModelTuiError(f"'{name}' has no gradient")
            return t.grad
        return t

    @work(thread=True, exclusive=True, exit_on_error=False, group="stats")
    def compute_stats(self, name: str, grad: bool) -> None:
        from modeltui.core.stats import tensor_stats
        from modeltui.core.errors import Cancelled

        worker = get_current_worker()
        try:
            st = tensor_stats(self._tensor(name, grad), should_stop=lambda: worker.is_cancelled)
        except Cancelled:
            return
        except ModelTuiError as e:
            self.call_from_thread(self._stats_unavailable, name, str(e))
            return
        if not worker.is_cancelled:
            self.post_message(StatsReady(name, grad, st))

    @work(thread=True, exclusive=True, exit_on_error=False, group="values")
    def compute_values(self, name: str, grad: bool, text: str) -> None:
        from modeltui.core.preview import value_grid

        try:
            grid = value_grid(self._tensor(name, grad), text)
        except ModelTuiError as e:
            self.post_message(ValuesFailed(name, text, str(e)))
            return
        if not get_current_worker().is_cancelled:
            self.post_message(ValuesReady(name, grad, text, grid))

    def _stats_unavailable(self, name: str, why: str) -> None:
        if name == self.selected:
            self.query_one("#stats", Static).update(Text(f"no statistics: {why}", style="yellow"))

    def on_stats_ready(self, message: StatsReady) -> None:
        self.stats_cache[(message.name, message.grad)] = message.stats
        if message.stats.nan or message.stats.inf:
            tree = self.query_one(ModuleTree)
            x = self.info.tensors.get(message.name) if self.info is not None else None
            for name in [message.name] + (x.tied_with if x is not None and not message.grad else []):
                tree.mark_bad(name)  # tied names hold the same values
        if message.name == self.selected and message.grad == self.show_grad:
            self._render_stats(message.stats)

    def _render_stats(self, st) -> None:
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
        if st.quantiles:
            q = st.quantiles
            row("p1/p50", f"{num(q.get('p1'))} / {num(q.get('p50'))}")
            row("p99", num(q.get("p99")) + ("  (sampled)" if st.sampled else ""))
        panel = self.query_one(TensorPanel)
        panel.query_one("#stats", Static).update(t)
        panel.query_one("#histogram", Static).update(render_histogram(st.hist_counts, st.hist_edges))

    def on_values_ready(self, message: ValuesReady) -> None:
        if message.name != self.selected or message.grad != self.show_grad:
            return
        grid = message.grid
        panel = self.query_one(TensorPanel)
        panel.query_one("#slice", Input).remove_class("-invalid")
        panel.query_one("#slice-error", Static).update("")
        from modeltui.format import fmt_shape

        note = f"{message.text or '[all]'} → shape {fmt_shape(grid.shape)}"
        if grid.note:
            note += f"  ({grid.note})"
        panel.query_one("#values-note", Static).update(note)
        table = panel.query_one("#values", DataTable)
        table.clear(columns=True)
        table.add_column("", key="__row__")
        for i, c in enumerate(grid.col_labels):
            table.add_column(c, key=f"c{i}")
        for label, cells in zip(grid.row_labels, grid.cells):
            table.add_row(Text(label, style="dim"), *cells)

    def on_values_failed(self, message: ValuesFailed) -> None:
        if message.name != self.selected:
            return
        panel = self.query_one(TensorPanel)
        panel.query_one("#slice", Input).add_class("-invalid")
        panel.query_one("#slice-error", Static).update(f"✗ {message.error}")

    def _clear_values(self, note: str) -> None:
        panel = self.query_one(TensorPanel)
        panel.query_one("#values-note", Static).update(note)
        panel.query_one("#values", DataTable).clear(columns=True)

    @on(Input.Submitted, "#slice")
    def _slice_submitted(self, event: Input.Submitted) -> None:
        if self.selected is not None:
            self.compute_values(self.selected, self.show_grad, event.value)

    # ------------------------------------------------------------ actions

    def action_toggle_grad(self) -> None:
        if self.selected is None or self.info is None:
            self.notify("select a tensor first", severity="warning")
            return
        x = self.info.tensors[self.selected]
        if not x.has_grad and not self.show_grad:
            self.notify(f"'{x.name}' has no gradient (run a backward pass first)", severity="warning")
            return
        self.show_grad = not self.show_grad
        self._load_tensor_views()

    # ------------------------------------------------------------ editing

    def _need_session(self, then: str | None = None) -> bool:
        """True when edits can go through the session now.

        A checkpoint without an architecture is made editable on the first
        edit (in a worker); ``then`` names the action to run once it is.
        """
        if self.session is not None:
            return True
        if self.opened is None:
            self.notify("the target is not open yet", severity="warning")
        elif then is not None and self.opened.model is None and self.opened.source is not None:
            if not any(w.group == "prepare" and w.is_running for w in self.workers):
                self.notify("opening the checkpoint's tensors for editing (the file itself is never changed)…", timeout=4)
                self.prepare_editing(then)
        return False

    @work(thread=True, exclusive=True, exit_on_error=False, group="prepare")
    def prepare_editing(self, then: str) -> None:
        from modeltui.core.editable import make_editable

        try:
            make_editable(self.opened)
        except ModelTuiError as e:
            self.call_from_thread(self.notify, str(e), title="Cannot edit", severity="error", timeout=10)
            return
        self.call_from_thread(self._editing_ready, then)

    def _editing_ready(self, then: str) -> None:
        from modeltui.core.session import Session

        self.session = Session(self.opened)
        self.refresh_views()
        getattr(self, f"action_{then}")()

    def _is_bare(self) -> bool:
        from modeltui.core.editable import is_bare

        return self.opened is not None and is_bare(self.opened)

    def _selection(self) -> tuple[str | None, str | None]:
        node = self.query_one(ModuleTree).cursor_node
        ref = node.data if node is not None else None
        if ref is None:
            return "", None
        return (ref.name, None) if ref.kind == "module" else (None, ref.name)

    def action_forward(self) -> None:
        if self._is_bare():
            self.notify("a checkpoint without an architecture cannot run: open the model with pkg.mod:Net -w CKPT", severity="warning")
            return
        if not self._need_session():
            return
        from modeltui.core.inputs import infer_input_specs
        from modeltui.ui.dialogs import ForwardDialog

        specs = self.options["input_specs"] or infer_input_specs(self.opened.model)
        self.push_screen(ForwardDialog(specs), self._forward_chosen)

    def _forward_chosen(self, specs) -> None:
        if specs:
            self.options["input_specs"] = specs
            self.notify("running forward pass… (x cancels)", timeout=3)
            self.run_forward_pass(specs)

    @work(thread=True, exclusive=True, exit_on_error=False, group="forward")
    def run_forward_pass(self, specs) -> None:
        from modeltui.core.forward import run_forward
        from modeltui.core.preview import value_grid
        from modeltui.core.slicing import default_slice
        from modeltui.core.stats import tensor_stats

        worker = get_current_worker()
        result = run_forward(self.opened.model, specs, should_stop=lambda: worker.is_cancelled)
        self.opened.refresh()  # lazy modules may have materialised; a big model takes a while
        stats, grids = [], []
        for out in result.outputs[:4]:
            try:
                stats.append(tensor_stats(out.float() if out.is_complex() else out))
            except ModelTuiError:
                stats.append(None)
            try:
                grids.append(value_grid(out, default_slice(tuple(out.shape))))
            except ModelTuiError:
                grids.append(None)
        self.call_from_thread(self._forward_done, result, stats, grids)

    def _forward_done(self, result, stats, grids) -> None:
        from modeltui.ui.dialogs import ForwardResultScreen

        self.forward_records = result.records
        self.refresh_views()
        if result.error == "cancelled":
            self.notify("forward pass cancelled", severity="warning")
            return
        if not result.ok:
            self.notify(result.error, title="Forward pass failed", severity="error", timeout=10)
        self.push_screen(ForwardResultScreen(result, stats, grids))

    def action_cancel_forward(self) -> None:
        running = [w for w in self.workers if w.group == "forward" and w.is_running]
        for w in running:
            w.cancel()
        if not running:
            self.notify("no forward pass is running")

    def action_initialise(self) -> None:
        if not self._need_session("initialise"):
            return
        from modeltui.ui.dialogs import InitDialog

        module, tensor = self._selection()
        self.push_screen(InitDialog(self.session, module=module, tensor=tensor), self._initialised)

    def _initialised(self, report) -> None:
        if report is None:
            return
        from modeltui.core.preview import fmt_value

        self.refresh_views()
        lines = [report.description]
        for n in report.names[:3]:
            b, a = report.before.get(n), report.after.get(n)
            if b and a:
                lines.append(f"{n}: mean {fmt_value(b.mean)} → {fmt_value(a.mean)}, std {fmt_value(b.std)} → {fmt_value(a.std)}")
        if len(report.names) > 3:
            lines.append(f"… and {len(report.names) - 3} more tensors")
        self.notify("\n".join(lines), title="Initialised", timeout=8)

    def action_edit_values(self) -> None:
        if not self._need_session("edit_values"):
            return
        if self.selected is None:
            self.notify("select a tensor first (its values are what e edits)", severity="warning")
            return
        from modeltui.ui.dialogs import EditDialog

        self.push_screen(EditDialog(self.session, self.selected), self._edited)

    def _edited(self, desc) -> None:
        if desc:
            self.refresh_views()
            self.notify(desc, title="Done", timeout=5)

    def action_tie(self) -> None:
        if not self._need_session("tie"):
            return
        from modeltui.ui.dialogs import TieDialog

        module, tensor = self._selection()
        self.push_screen(TieDialog(self.session, tensor if tensor is not None else module or ""), self._edited)

    def action_load_weights(self) -> None:
        if self._is_bare():
            self.notify("weights load onto an architecture: open the model (pkg.mod:Net), then press w", severity="warning")
            return
        if not self._need_session():
            return
        from modeltui.ui.dialogs import WeightsDialog

        self.push_screen(WeightsDialog(self.session, self.options["trust"]), self._weights_loaded)

    def _weights_loaded(self, report) -> None:
        if report is None:
            return
        self.refresh_views()
        lines = [f"{len(report.loaded)} tensors loaded from {os.path.basename(report.path)}"] + report.lines()
        bad = report.missing or report.unexpected or report.mismatched
        self.notify("\n".join(lines[:6]), title="Weights",
                    severity="warning" if bad else "information", timeout=12)

    def action_save(self) -> None:
        if self.opened is None:
            self.notify("the target is not open yet", severity="warning")
            return
        from modeltui.ui.dialogs import SaveDialog, default_save_path

        path = default_save_path(self.opened, self.target, self.options["weights"])
        self.push_screen(SaveDialog(self.opened, path), self._saved)

    def _saved(self, report) -> None:
        if report is None:
            return
        from modeltui.format import fmt_bytes

        if self.session is not None:
            self.session.mark_saved()
        self.refresh_views()
        tied = f", {len(report.aliases)} tied name(s) stored once" if report.aliases else ""
        self.notify(f"{report.path}\n{report.tensors} tensors, {fmt_bytes(report.nbytes)}{tied}; read back and verified",
                    title="Saved", timeout=8)

    def action_device(self) -> None:
        if self._need_session("device"):
            self.open_device_dialog()

    @work(thread=True, exclusive=True, exit_on_error=False, group="devices")
    def open_device_dialog(self) -> None:
        """List devices off the UI thread: the first CUDA query starts a context (seconds)."""
        from modeltui.core.devices import list_devices

        devices = list_devices()
        self.call_from_thread(self._show_device_dialog, devices)

    def _show_device_dialog(self, devices) -> None:
        from modeltui.ui.dialogs import DeviceDialog

        self.push_screen(DeviceDialog(self.session, devices), self._edited)

    def action_undo(self) -> None:
        self._undo_or_redo("undo", "undid")

    def action_redo(self) -> None:
        self._undo_or_redo("redo", "redid")

    def _undo_or_redo(self, verb: str, done: str) -> None:
        if self.opened is not None and self.session is None:
            self.notify(f"nothing to {verb} yet", severity="warning")
        elif self._need_session():
            self.run_history(verb, done)

    @work(thread=True, exclusive=False, exit_on_error=False, group="history")
    def run_history(self, verb: str, done: str) -> None:
        """Undo or redo in a worker (restoring a whole-model edit copies every tensor back)."""
        try:
            desc = getattr(self.session, verb)()  # the session's lock keeps presses in order
        except ModelTuiError as e:
            self.call_from_thread(self.notify, str(e), severity="warning")
            return
        self.call_from_thread(self._history_done, done, desc)

    def _history_done(self, done: str, desc: str) -> None:
        self.refresh_views()
        self.notify(f"{done}: {desc}", timeout=5)

    def refresh_views(self) -> None:
        """Refresh every view from the session's model."""
        info = self.opened.info
        self.stats_cache.clear()
        tree = self.query_one(ModuleTree)
        tree.bad.clear()
        tree.outputs = {p: r.shapes for p, r in self.forward_records.items()}
        tree.relabel(info)
        self.query_one(HeaderBar).show_info(info, dirty=self.session.dirty if self.session else False)
        node = tree.cursor_node
        if node is not None and node.data is not None:
            path = node.data.name if node.data.kind == "module" else info.tensors[node.data.name].module
            self.query_one(ModulePanel).show(info, info.modules[path])
        if self.selected is not None and self.selected in info.tensors:
            self._load_tensor_views()

    def action_edit_slice(self) -> None:
        if self.selected is None:
            self.notify("select a tensor first", severity="warning")
            return
        box = self.query_one("#slice", Input)
        box.focus()
        box.scroll_visible()

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_search(self) -> None:
        bar = self.query_one("#search-bar")
        bar.add_class("visible")
        self.query_one("#search-input", Input).focus()

    def action_close_search(self) -> None:
        bar = self.query_one("#search-bar")
        if bar.has_class("visible"):
            bar.remove_class("visible")
            self.query_one(ModuleTree).focus()

    @on(Input.Submitted, "#search-input")
    def _search_submitted(self, event: Input.Submitted) -> None:
        self.run_search(event.value)
        self.query_one(ModuleTree).focus()

    def run_search(self, query: str) -> int:
        """Find modules and tensors whose name or class contains ``query``."""
        info = self.info
        count = self.query_one("#search-count", Static)
        q = query.strip().lower()
        self.matches = []
        self.match_index = -1
        if info is None or not q:
            count.update("")
            return 0
        for m in info.modules.values():
            if q in m.path.lower() or (m.type and q in m.type.lower()):
                if m.path or q in (m.type or "").lower():
                    self.matches.append(NodeRef("module", m.path))
            for n in m.tensors:
                if q in n.lower():
                    self.matches.append(NodeRef("tensor", n))
        if not self.matches:
            count.update("no match")
            self.notify(f"no module or tensor matches '{query}'", severity="warning")
            return 0
        self.action_next_match()
        return len(self.matches)

    def _goto_match(self) -> None:
        ref = self.matches[self.match_index]
        self.query_one(ModuleTree).reveal(ref)
        self.query_one("#search-count", Static).update(f"{self.match_index + 1}/{len(self.matches)}")

    def action_next_match(self) -> None:
        if not self.matches:
            return
        self.match_index = (self.match_index + 1) % len(self.matches)
        self._goto_match()

    def action_prev_match(self) -> None:
        if not self.matches:
            return
        self.match_index = (self.match_index - 1) % len(self.matches)
        self._goto_match()

    def goto(self, ref: NodeRef) -> None:
        """Reveal and select a module or tensor (used by the command palette)."""
        self.query_one(ModuleTree).reveal(ref)
        self.query_one(ModuleTree).focus()

    async def action_quit(self) -> None:
        if self.session is not None and self.session.dirty:
            from modeltui.ui.dialogs import ConfirmQuit

            def decide(yes: bool | None) -> None:
                if yes:
                    self.exit(0)

            self.push_screen(ConfirmQuit(), decide)
            return
        self.exit(2 if self.load_error else 0)


def _peak_rss() -> int:
    """Peak resident memory of this process in bytes (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_app(target: str | None, *, weights=None, device=None, input_specs=(), trust=False) -> int:
    """Validate what can be checked cheaply, then run the app; returns the exit code."""
    import re

    from modeltui.core.errors import TargetError
    from modeltui.core.targets import classify_target

    if target is not None:
        classify_target(target)
    if weights is not None and not os.path.exists(weights):
        raise TargetError(f"--weights {weights}: no such file or folder")
    if device is not None and not re.fullmatch(r"(cpu|cuda(:\d+)?|mps|meta|xpu(:\d+)?)", device):
        raise TargetError(f"unknown device '{device}' (expected cpu, cuda, cuda:N, mps or meta)")
    app = ModelTuiApp(target, weights=weights, device=device, input_specs=input_specs, trust=trust)
    code = app.run()
    if app.load_error:
        sys.stderr.write(f"modeltui: error: {app.load_error}\n")
        code = 2
    if abandoned_work():
        # the terminal is restored; leave now rather than finalise the interpreter
        # under a torch call still running on a daemon thread
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code or 0)
    return code or 0
