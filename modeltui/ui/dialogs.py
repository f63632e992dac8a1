"""Modal dialogs: forward pass, initialise, edit values, confirm quit, results.

Each dialog validates its input, runs the torch work in a thread worker and
shows any refusal inline, staying open so the user can correct it; the
model is unchanged until an edit succeeds.
"""

from __future__ import annotations

from typing import Any

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
                job = ("custom", path, {}, opts)
            else:
                job = ("builtin", name, parse_kwargs(self.query_one("#args", Input).value), opts)
        except (ModelTuiError, ValueError) as e:
            self.show_error(str(e))
            return
        self.query_one("#ok", Button).disabled = True
        self.query_one("#error", Static).update(Text("applying…", style="dim"))
        self.run_job(job)

    @work(thread=True, exclusive=True, exit_on_error=False, group="edit")
    def run_job(self, job) -> None:
        from modeltui.core.editing import initialise, initialise_custom

        kind, name, args, opts = job
        try:
            if kind == "custom":
                report = initialise_custom(self.session, name, module=opts["module"], tensor=opts["tensor"],
                                           which=opts["which"], module_class=opts["module_class"],
                                           include_constants=opts["include_constants"], seed=opts["seed"])
            else:
                report = initialise(self.session, name, args, **opts)
        except ModelTuiError as e:
            self.app.call_from_thread(self.show_error, str(e))
            return
        except Exception as e:
            self.app.call_from_thread(self.show_error, f"{type(e).__name__}: {e}")
            return
        self.app.call_from_thread(self.dismiss, report)


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
        self.query_one("#ok", Button).disabled = True
        self.run_edit(expr)

    @work(thread=True, exclusive=True, exit_on_error=False, group="edit")
    def run_edit(self, expr: str) -> None:
        from modeltui.core.editing import edit_values

        try:
            desc = edit_values(self.session, self.tensor_name, expr)
        except ModelTuiError as e:
            self.app.call_from_thread(self.show_error, str(e))
            return
        self.app.call_from_thread(self.dismiss, desc)


class ConfirmQuit(ModalScreen[bool]):
    """Quit with unsaved changes? y / n."""

    BINDINGS = [Binding("y", "yes", "Quit"), Binding("n,escape", "no", "Stay")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static("There are unsaved changes. Quit and lose them?", classes="dialog-title")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Quit (y)", variant="error", id="yes")
                yield Button("Stay (n)", variant="primary", id="no")

    def action_yes(self) -> None:
        self.dismiss(True)

    def action_no(self) -> None:
        self.dismiss(False)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


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
