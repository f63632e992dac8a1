"""The forward-pass dialog: input shapes (positional or by name), dtype, distribution."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Label, Select, Static

from modeltui.core.errors import ModelTuiError
from modeltui.core.inputs import InputSpec, parse_input_spec
from modeltui.format import visible
from modeltui.ui.dialogs.base import Dialog


def parse_specs(text: str, dtype: str, dist: str, high: str) -> list[InputSpec]:
    """``"2,10,32; 2,7,32"`` plus the dialog's dtype, distribution and bound."""
    import dataclasses

    parts = [p for p in text.replace("|", ";").split(";") if p.strip()]
    if not parts:
        raise ModelTuiError("give at least one input shape, e.g. 2,20 (separate several inputs with ;)")
    specs = [parse_input_spec(p) for p in parts]
    hi = None
    if high.strip():
        try:
            hi = int(high)
        except ValueError:
            raise ModelTuiError(f"upper bound '{visible(high)}' is not a whole number") from None
        if hi < 1:
            raise ModelTuiError("upper bound must be at least 1")
    out = []
    for s in specs:
        d = s.dtype if s.dtype else (None if dtype == "auto" else dtype)
        # a mask keeps its default (ones) unless another distribution was chosen
        drawn = s.dist if dist == "rand" and s.dist != "rand" else dist
        out.append(dataclasses.replace(s, dtype=d, high=hi if hi is not None else s.high, dist=drawn))
    return out


def spec_text(s: InputSpec) -> str:
    """An InputSpec as the dialog shows it: ``name=2,16:int64``."""
    name = getattr(s, "name", None)
    return (f"{name}=" if name else "") + ",".join(map(str, s.shape)) + (f":{s.dtype}" if s.dtype else "")


def forward_signature(model) -> str:
    """``forward(input_ids, attention_mask=…)`` for the dialog's hint (empty when unknown)."""
    from modeltui.core.inputs import forward_parameters

    params = forward_parameters(model)
    if not params:
        return ""
    parts = [name + ("=…" if has_default else "") for name, has_default in params[:8]]
    return f"forward({', '.join(parts + (['…'] if len(params) > 8 else []))})"


class ForwardDialog(Dialog[list[InputSpec]]):
    """Input shapes, dtype and distribution for a forward pass."""

    OK = "Run"

    def __init__(self, specs: list[InputSpec], model=None):
        super().__init__()
        self.specs = specs
        self.signature = forward_signature(model) if model is not None else ""

    def title_text(self) -> str:
        return "Forward pass on random inputs"

    def body(self) -> ComposeResult:
        yield Label("inputs: shapes in order, or by name (several: separate with ;)")
        if self.signature:
            yield Static(Text(visible(self.signature, limit=200), style="cyan"))
        yield Input("; ".join(spec_text(s) for s in self.specs), id="shapes", compact=True)
        yield Static(Text("e.g. 2,20   or   2,16:int64; attention_mask=2,16:int64  (masks default to ones)", style="dim"))
        with Horizontal(classes="row"):
            with Vertical():
                yield Label("dtype (auto: int64 after an Embedding)")
                yield Select([(d, d) for d in ("auto", "float32", "float16", "bfloat16", "int64")], value="auto",
                             allow_blank=False, id="dtype", compact=True)
            with Vertical():
                yield Label("values drawn with")
                yield Select([(d, d) for d in ("rand", "randn", "randint")], value="rand", allow_blank=False,
                             id="dist", compact=True)
        high = next((str(s.high) for s in self.specs if s.high), "")
        yield Label("upper bound for integers (blank: the first Embedding's size)")
        yield Input(high, id="high", type="integer", compact=True)

    def submit(self) -> None:
        try:
            specs = parse_specs(self.query_one("#shapes", Input).value, str(self.query_one("#dtype", Select).value),
                                str(self.query_one("#dist", Select).value), self.query_one("#high", Input).value)
        except ModelTuiError as e:
            self.show_error(str(e))
            return
        self.dismiss(specs)
