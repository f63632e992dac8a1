"""Modal dialogs: forward pass, initialise, edit values, confirm quit, results.

Each dialog validates its input, runs the torch work in a thread worker and
shows any refusal inline, staying open so the user can correct it; the
model is unchanged until an edit succeeds.
"""

from __future__ import annotations

from typing import Any, Callable

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from modeltui.core.errors import ModelTuiError
from modeltui.core.initializers import REGISTRY
from modeltui.core.inputs import InputSpec, parse_input_spec

CUSTOM = "custom (import path)"


class Dialog(ModalScreen[Any]):
    """Common frame: a title, a body, an inline error line, OK / Cancel."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    OK = "OK"

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.title_text(), classes="dialog-title")
            yield from self.body()
            yield Static("", classes="dialog-error", id="error")
            with Horizontal(classes="dialog-buttons"):
                yield Button(self.OK, variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    def title_text(self) -> str:
        return ""

    def body(self) -> ComposeResult:
        yield from ()

    def show_error(self, message: str) -> None:
        self.query_one("#error", Static).update(Text(f"✗ {message}", style="bold red"))
        self.query_one("#ok", Button).disabled = False

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#ok")
    def _ok(self) -> None:
        self.submit()

    @on(Input.Submitted)
    def _enter(self) -> None:
        self.submit()

    def submit(self) -> None:
        raise NotImplementedError

    def start(self, busy: str, job: Callable[[], Any]) -> None:
        """Run ``job`` off the UI thread, showing ``busy`` with OK disabled until it ends."""
        self.query_one("#ok", Button).disabled = True
        self.query_one("#error", Static).update(Text(busy, style="dim"))
        self._run(job)

    @work(thread=True, exclusive=True, exit_on_error=False, group="dialog")
    def _run(self, job: Callable[[], Any]) -> None:
        """Close with ``job``'s result, or show its error and stay open for a correction."""
        try:
            result = job()
        except Exception as e:  # a user's custom initialiser can raise anything
            message = str(e) if isinstance(e, ModelTuiError) else f"{type(e).__name__}: {e}"
            self.app.call_from_thread(self.show_error, message)
            return
        self.app.call_from_thread(self.dismiss, result)


def parse_specs(text: str, dtype: str, dist: str, high: str) -> list[InputSpec]:
    """``"2,10,32; 2,7,32"`` plus the dialog's dtype, distribution and bound."""
    parts = [p for p in text.replace("|", ";").split(";") if p.strip()]
    if not parts:
        raise ModelTuiError("give at least one input shape, e.g. 2,20 (separate several inputs with ;)")
    specs = [parse_input_spec(p) for p in parts]
    hi = None
    if high.strip():
        try:
            hi = int(high)
        except ValueError:
            raise ModelTuiError(f"upper bound '{high}' is not a whole number") from None
        if hi < 1:
            raise ModelTuiError("upper bound must be at least 1")
    out = []
    for s in specs:
        d = s.dtype if s.dtype else (None if dtype == "auto" else dtype)
        out.append(InputSpec(s.shape, d, hi if hi is not None else s.high, dist))
    return out


class ForwardDialog(Dialog):
    """Input shapes, dtype and distribution for a forward pass."""

    OK = "Run"

    def __init__(self, specs: list[InputSpec]):
        super().__init__()
        self.specs = specs

    def title_text(self) -> str:
        return "Forward pass on random inputs"

    def body(self) -> ComposeResult:
        yield Label("input shapes (several inputs: separate with ;)")
        yield Input("; ".join(",".join(map(str, s.shape)) + (f":{s.dtype}" if s.dtype else "") for s in self.specs), id="shapes")
        with Horizontal(classes="row"):
            yield Select([(d, d) for d in ("auto", "float32", "float16", "bfloat16", "int64")], value="auto", allow_blank=False, id="dtype")
            yield Select([(d, d) for d in ("rand", "randn", "randint")], value="rand", allow_blank=False, id="dist")
        high = next((str(s.high) for s in self.specs if s.high), "")
        yield Label("upper bound for integers (blank: the first Embedding's size)")
        yield Input(high, id="high", type="integer")

    def submit(self) -> None:
        try:
            specs = parse_specs(self.query_one("#shapes", Input).value, str(self.query_one("#dtype", Select).value),
                                str(self.query_one("#dist", Select).value), self.query_one("#high", Input).value)
        except ModelTuiError as e:
            self.show_error(str(e))
            return
        self.dismiss(specs)


def parse_kwargs(text: str) -> dict[str, str]:
    """``"a=0, b=1"`` -> ``{"a": "0", "b": "1"}``."""
    out: dict[str, str] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ModelTuiError(f"'{part.strip()}' is not name=value")
        out[key.strip()] = value.strip()
    return out


class InitDialog(Dialog):
    """Choose an initialiser, its arguments, filters and a seed."""

    OK = "Apply"

    def __init__(self, session, *, module: str | None, tensor: str | None):
        super().__init__()
        self.session = session
        self.module = module
        self.tensor = tensor

    def title_text(self) -> str:
        return f"Initialise {'tensor ' + self.tensor if self.tensor else 'module ' + (self.module or '(root)') + ' and its subtree'}"

    def body(self) -> ComposeResult:
        options = [(f"{n}  {i.help}", n) for n, i in REGISTRY.items()] + [(CUSTOM, CUSTOM)]
        yield Select(options, value="normal_", allow_blank=False, id="init")
        yield Label("arguments", id="args-label")
        yield Input(placeholder="", id="args")
        yield Input(placeholder="custom: pkg.module:func (module function, applied with .apply)", id="custom", disabled=True)
        with Horizontal(classes="row"):
            yield Select([("all parameters", "all"), ("weights only", "weights"), ("biases only", "biases")], value="all",
                         allow_blank=False, id="which", disabled=self.tensor is not None)
            yield Input(placeholder="only module class, e.g. Linear", id="cls", disabled=self.tensor is not None)
        with Horizontal(classes="row"):
            yield Input("0", placeholder="seed (blank: none)", id="seed", type="integer")
            yield Checkbox("include constants", id="constants", disabled=self.tensor is not None)

    def on_mount(self) -> None:
        self._describe_args("normal_")

    def _describe_args(self, name: str) -> None:
        label = self.query_one("#args-label", Label)
        box = self.query_one("#args", Input)
        if name == CUSTOM:
            label.update("arguments: none (the function gets a module, or a tensor)")
            box.disabled = True
            self.query_one("#custom", Input).disabled = False
            return
        self.query_one("#custom", Input).disabled = True
        init = REGISTRY[name]
        box.disabled = not init.args
        desc = ", ".join(f"{a.name}={a.default}" + (f" ({'|'.join(a.choices[:4])}…)" if a.kind == "gain" else "") for a in init.args)
        label.update(f"arguments: {desc or 'none'}")
        box.placeholder = ", ".join(f"{a.name}={a.default}" for a in init.args) or "no arguments"

    @on(Select.Changed, "#init")
    def _init_changed(self, event: Select.Changed) -> None:
        self._describe_args(str(event.value))

    def submit(self) -> None:
        try:
            name = str(self.query_one("#init", Select).value)
            seed_text = self.query_one("#seed", Input).value.strip()
            seed = int(seed_text) if seed_text else None
            opts = dict(
                module=None if self.tensor else self.module,
                tensor=self.tensor,
                which=str(self.query_one("#which", Select).value),
                module_class=self.query_one("#cls", Input).value.strip(),
                include_constants=self.query_one("#constants", Checkbox).value,
                seed=seed,
            )
            if name == CUSTOM:
                path = self.query_one("#custom", Input).value.strip()
                if not path:
                    raise ModelTuiError("give the custom initialiser's import path, e.g. sample_models.book:my_init")
            else:
                args = parse_kwargs(self.query_one("#args", Input).value)
        except (ModelTuiError, ValueError) as e:
            self.show_error(str(e))
            return
        from modeltui.core.editing import initialise, initialise_custom

        if name == CUSTOM:
            self.start("applying…", lambda: initialise_custom(self.session, path, **opts))
        else:
            self.start("applying…", lambda: initialise(self.session, name, args, **opts))


class EditDialog(Dialog):
    """An assignment over a slice of the selected tensor: ``[0, 0] = 42``."""

    OK = "Apply"

    def __init__(self, session, name: str):
        super().__init__()
        self.session = session
        self.tensor_name = name

    def title_text(self) -> str:
        return f"Edit values of {self.tensor_name}"

    def body(self) -> ComposeResult:
        yield Label("[slice] op value   e.g.  [0, 0] = 42   [:] += 1   *= 0.5   [1] = 0   [..., -1] = nan")
        yield Input(placeholder="[0, 0] = 42", id="expr")

    def submit(self) -> None:
        expr = self.query_one("#expr", Input).value
        if not expr.strip():
            self.show_error("write an edit, e.g. [0, 0] = 42")
            return
        from modeltui.core.editing import edit_values

        self.start("applying…", lambda: edit_values(self.session, self.tensor_name, expr))


class Confirm(ModalScreen[bool]):
    """A yes / no question: y or n (escape is no)."""

    BINDINGS = [Binding("y", "yes", "Yes"), Binding("n,escape", "no", "No")]

    def __init__(self, question: str, yes: str = "Yes", no: str = "No"):
        super().__init__()
        self.question, self.yes_label, self.no_label = question, yes, no

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.question, classes="dialog-title")
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.yes_label} (y)", variant="error", id="yes")
                yield Button(f"{self.no_label} (n)", variant="primary", id="no")

    def action_yes(self) -> None:
        self.dismiss(True)

    def action_no(self) -> None:
        self.dismiss(False)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class ConfirmQuit(Confirm):
    """Quit with unsaved changes? y / n."""

    def __init__(self):
        super().__init__("There are unsaved changes. Quit and lose them?", "Quit", "Stay")


class TieDialog(Dialog):
    """Tie a target to a source's parameters, or untie a target."""

    OK = "Apply"

    def __init__(self, session, selection: str):
        super().__init__()
        self.session = session
        self.selection = selection

    def title_text(self) -> str:
        return "Tie or untie parameters"

    def body(self) -> ComposeResult:
        from textual.suggester import SuggestFromList

        info = self.session.opened.info
        names = [p for p in info.modules if p] + [n for n, t in info.tensors.items() if t.kind == "parameter"]
        suggest = SuggestFromList(names, case_sensitive=True)
        tied = self._is_tied(self.selection)
        yield Select([("tie: the target uses the source's parameters", "tie"),
                      ("untie: the target gets its own copy", "untie")],
                     value="untie" if tied else "tie", allow_blank=False, id="mode")
        yield Label("target (module or parameter; → accepts a suggestion)")
        yield Input(self.selection or "(root)", id="target", suggester=suggest)
        yield Label("source (module or parameter): its parameters are kept", id="source-label")
        yield Input(placeholder="e.g. embed_tokens or tok.weight", id="source", suggester=suggest, disabled=tied)
        yield Static(Text("Modules are tied by matching parameter names (weight with weight); shapes, dtypes and devices "
                          "must match. u undoes.", style="dim"))

    def _is_tied(self, name: str) -> bool:
        info = self.session.opened.info
        if name in info.tensors:
            return bool(info.tensors[name].tied_with)
        return bool(name in info.modules and name and info.modules[name].shared_with)

    def on_mount(self) -> None:
        box = self.query_one("#target" if self._is_tied(self.selection) else "#source", Input)
        box.focus()

    @on(Select.Changed, "#mode")
    def _mode_changed(self, event: Select.Changed) -> None:
        self.query_one("#source", Input).disabled = event.value == "untie"

    def submit(self) -> None:
        mode = str(self.query_one("#mode", Select).value)
        target = self.query_one("#target", Input).value
        source = self.query_one("#source", Input).value
        from modeltui.core.surgery import tie, untie

        self.start("applying…", lambda: untie(self.session, target) if mode == "untie" else tie(self.session, source, target))


def default_save_path(opened, target: str | None, weights: str | None) -> str:
    """Where the save dialog suggests writing."""
    import os

    if weights and os.path.isfile(weights):
        return weights
    from modeltui.core.editable import is_bare

    if target and os.path.exists(target) and is_bare(opened):
        if os.path.isfile(target):
            stem, ext = os.path.splitext(target)
            return target if ext == ".safetensors" else stem + ".safetensors"
        return os.path.join(target.rstrip("/"), "model.safetensors")
    name = (target or "model").rpartition(":")[2].rpartition(".")[2] or "model"
    return name + ".safetensors"


class SaveDialog(Dialog):
    """Save the state_dict: the path decides the format; asks before overwriting."""

    OK = "Save"

    def __init__(self, opened, path: str):
        super().__init__()
        self.opened = opened
        self.path = path

    def title_text(self) -> str:
        return "Save the state_dict"

    def body(self) -> ComposeResult:
        yield Label("path (.safetensors, or .pt / .pth / .bin / .ckpt for torch.save)")
        yield Input(self.path, id="path")
        yield Static(Text("Written to a temp file, read back and checked, then moved into place; "
                          "tied tensors are stored once.", style="dim"))

    def submit(self) -> None:
        import os

        from modeltui.core.saving import SAFETENSORS, TORCH

        path = os.path.expanduser(self.query_one("#path", Input).value.strip())
        if not path:
            self.show_error("give a path to save to, e.g. model.safetensors")
            return
        if os.path.isdir(path):
            self.show_error(f"{path} is a folder; give a file name inside it")
            return
        if not path.endswith(SAFETENSORS + TORCH):
            self.show_error(f"{os.path.basename(path)}: unknown format; end the name with .safetensors, .pt, .pth, .bin or .ckpt")
            return
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            self.show_error(f"folder {folder} does not exist")
            return
        if os.path.exists(path):
            def answer(yes: bool | None) -> None:
                if yes:
                    self._start(path)

            self.app.push_screen(Confirm(f"{path} exists. Overwrite it?", "Overwrite", "Keep it"), answer)
            return
        self._start(path)

    def _start(self, path: str) -> None:
        from modeltui.core.saving import save_opened

        self.start("saving and verifying…", lambda: save_opened(self.opened, path))


class WeightsDialog(Dialog):
    """Load a checkpoint onto the open model (an undoable edit), reporting what did not fit."""

    OK = "Load"

    def __init__(self, session, trust: bool):
        super().__init__()
        self.session = session
        self.trust = trust

    def title_text(self) -> str:
        return "Load weights onto the model"

    def body(self) -> ComposeResult:
        yield Label("checkpoint (.safetensors, .pt/.bin/.ckpt, a sharded folder or its index.json)")
        yield Input(placeholder="e.g. runs/last.ckpt", id="path")
        yield Static(Text("Tensors whose name and shape fit are copied in (ties stay tied); missing, unexpected and "
                          "mis-shaped keys are listed. u undoes." + (" --trust is on." if self.trust else ""), style="dim"))

    def submit(self) -> None:
        from modeltui.core.weights import load_weights_into

        path = self.query_one("#path", Input).value
        self.start("loading…", lambda: load_weights_into(self.session, path, trust=self.trust))


class DeviceDialog(Dialog):
    """Move the model to a device and/or cast its floating-point tensors."""

    OK = "Apply"

    def __init__(self, session, devices):
        super().__init__()
        self.session = session
        self.devices = devices

    def title_text(self) -> str:
        return "Device and dtype"

    def body(self) -> ComposeResult:
        from textual.widgets import ProgressBar

        from modeltui.format import fmt_bytes

        current = self.session.opened.device
        options = []
        for d in self.devices:
            if d.name == "meta":
                continue
            label = f"{d.name}  {d.description}"
            if d.free_bytes is not None:
                label += f"  ({fmt_bytes(d.free_bytes)} free of {fmt_bytes(d.total_bytes or 0)})"
            if d.name == current:
                label += "  ← now"
            options.append((label, d.name))
        values = [v for _, v in options]
        yield Label("device")
        yield Select(options, value=current if current in values else values[0], allow_blank=False, id="device")
        yield Label("or type a device (e.g. cuda:1)")
        yield Input(placeholder="", id="device-text")
        yield Label("dtype of floating-point tensors (a cast is undone with u)")
        info = self.session.opened.info
        yield Select([("keep (" + ", ".join(info.dtypes()) + ")", "keep")] + [(d, d) for d in ("float32", "bfloat16", "float16")],
                     value="keep", allow_blank=False, id="dtype")
        yield ProgressBar(total=100, show_eta=False, id="progress")

    def submit(self) -> None:
        typed = self.query_one("#device-text", Input).value.strip()
        device = typed or str(self.query_one("#device", Select).value)
        dtype = str(self.query_one("#dtype", Select).value)
        if device == self.session.opened.device and dtype == "keep":
            self.show_error(f"the model is already on {device}; choose another device or a dtype")
            return
        self.query_one("#ok", Button).disabled = True
        self.query_one("#error", Static).update(Text("working… (escape cancels a move)", style="dim"))
        self.query_one("#progress").display = True
        self.run_change(device, dtype)

    def on_mount(self) -> None:
        self.query_one("#progress").display = False

    def action_cancel(self) -> None:
        running = [w for w in self.workers if w.is_running]
        for w in running:
            w.cancel()
        if not running:
            self.dismiss(None)

    @work(thread=True, exclusive=True, exit_on_error=False, group="device")
    def run_change(self, device: str, dtype: str) -> None:
        from textual.widgets import ProgressBar
        from textual.worker import get_current_worker

        from modeltui.core.errors import Cancelled
        from modeltui.core.surgery import cast, move

        worker = get_current_worker()
        bar = self.query_one("#progress", ProgressBar)
        last = [-1]

        def progress(done: int, total: int) -> None:
            pct = int(100 * done / max(total, 1))
            if pct != last[0]:
                last[0] = pct
                self.app.call_from_thread(bar.update, progress=pct)

        done = []
        try:
            if device != self.session.opened.device:
                done.append(move(self.session, device, progress=progress, should_stop=lambda: worker.is_cancelled))
            if dtype != "keep":
                done.append(cast(self.session, dtype))
        except Cancelled:
            self.app.call_from_thread(self._cancelled)
            return
        except ModelTuiError as e:
            self.app.call_from_thread(self._failed, str(e), done)
            return
        self.app.call_from_thread(self.dismiss, "; ".join(done))

    def _cancelled(self) -> None:
        self.show_error("move cancelled: the model stays where it was")

    def _failed(self, message: str, done: list[str]) -> None:
        if done:  # the move worked, the cast did not: say both, stay open
            message = f"{done[0]}, but: {message}"
            self.app.refresh_views()
        self.show_error(message)


class ForwardResultScreen(ModalScreen[None]):
    """The output of a forward pass (or the error), statistics and values."""

    BINDINGS = [Binding("escape,q,enter", "close", "Close")]

    def __init__(self, result, stats: list, grids: list):
        super().__init__()
        self.result, self.stats, self.grids = result, stats, grids

    def compose(self) -> ComposeResult:
        from modeltui.core.preview import fmt_value
        from modeltui.format import fmt_shape

        r = self.result
        t = Text()
        t.append("Forward pass ", style="bold")
        t.append("inputs " + "; ".join(str(s) for s in r.inputs), style="dim")
        t.append(f"  {r.ms:.1f} ms\n\n")
        if not r.ok:
            t.append("failed: ", style="bold red")
            t.append(r.error + "\n", style="red")
            t.append(f"\n{len(r.records)} module(s) ran before the failure; their output shapes are in the tree.\n", style="dim")
        for name, out, st, grid in zip(r.output_names, r.outputs, self.stats, self.grids):
            t.append(f"{name} ", style="bold")
            t.append(fmt_shape(tuple(out.shape)), style="green")
            t.append(f" {str(out.dtype).removeprefix('torch.')}\n", style="dim")
            if st is not None and st.finite:
                t.append(f"  min {fmt_value(st.min)}  max {fmt_value(st.max)}  mean {fmt_value(st.mean)}  std {fmt_value(st.std)}")
                if st.nan or st.inf:
                    t.append(f"  NaN {st.nan}  Inf {st.inf}", style="bold red")
                t.append("\n")
            if grid is not None:
                for label, row in list(zip(grid.row_labels, grid.cells))[:8]:
                    t.append(f"  {label:>4} ", style="dim")
                    t.append("  ".join(f"{c:>9}" for c in row[:8]) + "\n")
            t.append("\n")
        slow = sorted(((p, rec) for p, rec in r.records.items() if p), key=lambda x: -x[1].ms)[:8]
        if slow:
            t.append("slowest modules\n", style="bold")
            for p, rec in slow:
                t.append(f"  {rec.ms:8.2f} ms  ", style="dim")
                t.append(f"{p}  {', '.join(fmt_shape(s) for s in rec.shapes)}\n")
        t.append("\nescape to close", style="dim")
        with VerticalScroll(classes="dialog result"):
            yield Static(t)

    def action_close(self) -> None:
        self.dismiss(None)
