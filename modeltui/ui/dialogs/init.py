"""The initialise dialog: an initialiser, its arguments, filters and a seed (remembered between uses)."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Checkbox, Input, Label, Select, Static

from modeltui.core.errors import ModelTuiError
from modeltui.core.initializers import REGISTRY
from modeltui.format import visible
from modeltui.ui.dialogs.base import Dialog

if TYPE_CHECKING:
    from modeltui.core.editing import InitReport

CUSTOM = "custom (import path)"


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


def new_seed() -> int:
    """A fresh seed for the next initialise (shown, editable, logged)."""
    try:
        from modeltui.core.editing import fresh_seed
    except ImportError:
        return secrets.randbelow(2**31)
    return fresh_seed()


def default_filter(name: str) -> str:
    """"weights" for initialisers that refuse tensors of fewer than 2 dimensions (xavier, kaiming…), else "all"."""
    init = REGISTRY.get(name)
    return init.default_filter if init is not None else "all"


class InitDialog(Dialog["InitReport"]):
    """Choose an initialiser, its arguments, filters and a seed.

    ``memory`` (a dict the app keeps) carries the last choices to the next
    use: the initialiser, each initialiser's arguments, the custom path and
    the filters. The seed is fresh every time.
    """

    OK = "Apply"

    def __init__(self, session, *, module: str | None, tensor: str | None, memory: dict | None = None):
        super().__init__()
        self.session = session
        self.module = module
        self.tensor = tensor
        self.memory = memory if memory is not None else {}
        self._filter_touched = bool(self.memory.get("which_set"))
        self._prefill = self.memory.get("args", {}).get(self.memory.get("init", "normal_"), "")

    def title_text(self) -> str:
        what = f"tensor {self.tensor}" if self.tensor else f"module {self.module or '(root)'} and its subtree"
        return visible(f"Initialise {what}", limit=200)

    def body(self) -> ComposeResult:
        mem = self.memory
        name = mem.get("init", "normal_")
        options = [(f"{n}  {i.help}", n) for n, i in REGISTRY.items()] + [(CUSTOM, CUSTOM)]
        yield Label("initialiser")
        yield Select(options, value=name, allow_blank=False, id="init", compact=True)
        yield Label("arguments", id="args-label")
        yield Input(mem.get("args", {}).get(name, ""), placeholder="", id="args", compact=True)
        yield Label("custom function (pkg.module:func; a module function is applied with .apply)", id="custom-label")
        yield Input(mem.get("custom", ""), placeholder="e.g. sample_models.book:my_init", id="custom", disabled=True, compact=True)
        which = mem["which"] if mem.get("which_set") else default_filter(name)
        with Horizontal(classes="row"):
            with Vertical():
                yield Label("which tensors")
                yield Select([("all parameters", "all"), ("weights only", "weights"), ("biases only", "biases")], value=which,
                             allow_blank=False, id="which", disabled=self.tensor is not None, compact=True)
            with Vertical():
                yield Label("only modules of class")
                yield Input(mem.get("cls", ""), placeholder="e.g. Linear (blank: any)", id="cls",
                            disabled=self.tensor is not None, compact=True)
        with Horizontal(classes="row"):
            with Vertical():
                yield Label("seed (fresh each time)")
                yield Input(str(new_seed()), id="seed", type="integer", compact=True)
            with Vertical():
                yield Label(" ")
                yield Checkbox("include constants (never saved)", value=bool(mem.get("constants")), id="constants",
                               disabled=self.tensor is not None, compact=True)
        if self.tensor is not None:
            from modeltui.core.editing import not_saved_reason

            note = not_saved_reason(self.session, self.tensor)
            if note:
                yield Static(Text(note + "; the model uses the new values until you quit", style="bold yellow"), id="not-saved")

    def on_mount(self) -> None:
        self._describe_args(str(self.query_one("#init", Select).value))

    def _describe_args(self, name: str) -> None:
        label = self.query_one("#args-label", Label)
        box = self.query_one("#args", Input)
        custom = self.query_one("#custom", Input)
        if name == CUSTOM:
            label.update("arguments: none (the function gets a module, or a tensor)")
            box.disabled = True
            custom.disabled = False
            return
        custom.disabled = True
        init = REGISTRY[name]
        box.disabled = not init.args
        desc = ", ".join(f"{a.name}={a.default}" + (f" ({'|'.join(a.choices[:4])}…)" if a.kind == "gain" else "") for a in init.args)
        label.update(Text(f"arguments: {desc or 'none'}"))
        box.placeholder = ", ".join(f"{a.name}={a.default}" for a in init.args) or "no arguments"

    @on(Select.Changed, "#init")
    def _init_changed(self, event: Select.Changed) -> None:
        name = str(event.value)
        self._describe_args(name)
        box = self.query_one("#args", Input)
        if box.value == self._prefill:  # untouched since we filled it: show this initialiser's last arguments
            self._prefill = box.value = self.memory.get("args", {}).get(name, "")
        if not self._filter_touched and self.tensor is None:
            self.query_one("#which", Select).value = default_filter(name)

    @on(Select.Changed, "#which")
    def _which_changed(self, event: Select.Changed) -> None:
        name = str(self.query_one("#init", Select).value)
        default = default_filter(name)
        if event.value != default:
            self._filter_touched = True

    def submit(self) -> None:
        try:
            name = str(self.query_one("#init", Select).value)
            seed_text = self.query_one("#seed", Input).value.strip()
            seed = int(seed_text) if seed_text else None
            which = str(self.query_one("#which", Select).value)
            cls = self.query_one("#cls", Input).value.strip()
            constants = self.query_one("#constants", Checkbox).value
            opts = dict(module=None if self.tensor else self.module, tensor=self.tensor, which=which,
                        module_class=cls, include_constants=constants, seed=seed)
            args_text = self.query_one("#args", Input).value
            path = self.query_one("#custom", Input).value.strip()
            if name == CUSTOM:
                if not path:
                    raise ModelTuiError("give the custom initialiser's import path, e.g. sample_models.book:my_init")
            else:
                args = parse_kwargs(args_text)
        except (ModelTuiError, ValueError) as e:
            self.show_error(str(e))
            return
        mem = self.memory
        mem["init"] = name
        mem.setdefault("args", {})[name] = args_text
        if path:
            mem["custom"] = path
        mem["which"], mem["which_set"] = which, self._filter_touched
        mem["cls"], mem["constants"] = cls, constants
        from modeltui.core.editing import initialise, initialise_custom

        def job() -> InitReport:
            if name == CUSTOM:
                return initialise_custom(self.session, path, **opts)
            return initialise(self.session, name, args, **opts)

        self.start("applying…", job)
