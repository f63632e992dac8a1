"""The selected module: class, extra_repr, totals and a table of its own tensors."""

from __future__ import annotations

from rich.text import Text
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from modeltui.core.memory_plan import footprint
from modeltui.core.structure import ModelInfo, ModuleInfo, TensorInfo
from modeltui.format import fmt_bytes, fmt_count, fmt_shape, visible
from modeltui.ui.widgets.tree_labels import grad_text

MAX_ROWS = 200  # tensors listed per module; the tree and search reach the rest
MAX_TIED_SHOWN = 3
MAX_REPR = 400


def tied_text(x: TensorInfo, limit: int = MAX_TIED_SHOWN) -> str:
    """``a, b, c and 4,997 others`` (a pickle can give one tensor thousands of names)."""
    shown = ", ".join(visible(n, limit=60) for n in x.some_tied(limit))
    return shown + (f" and {x.tied_count - limit:,} others" if x.tied_count > limit else "")


def memory_line(f) -> str:
    """``memory 1.2 GiB · as f32 2.4 GiB · bf16 1.2 GiB · fp8 620 MiB · int4 310 MiB`` (stored, then cast)."""
    from modeltui.core.memory_plan import SHORT

    return f"memory {fmt_bytes(f.stored)} · as " + " · ".join(f"{short} {fmt_bytes(f.as_dtype(k))}" for k, short in SHORT.items())


class ModulePanel(Vertical):
    """Class, extra_repr, totals, metadata (at the root) and a table of the module's tensors."""

    COLUMNS = ("name", "kind", "shape", "dtype", "device", "numel", "grad", "tied with")

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.grad_norms: dict[str, float] = {}  # tensor name -> grad norm, after a backward

    def compose(self):
        yield Static(id="module-title")
        yield DataTable(id="tensor-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for col in self.COLUMNS:
            table.add_column(col, key=col)

    def show(self, info: ModelInfo, m: ModuleInfo, group=None) -> None:
        """Render module ``m`` of ``info`` (the first block of ``group``, a run of identical ones, when given)."""
        t = Text()
        if group is not None:
            t.append(f"{visible(group.label, limit=120)} ×{len(group.members):,}", style="bold magenta")
            t.append(f"  identical blocks, {fmt_count(group.params)} params, "
                     f"{fmt_bytes(footprint(info, m.path).stored * len(group.members))} stored; the first of them:\n", style="magenta")
        t.append(visible(m.path or "(root)", limit=200), style="bold")
        if m.type:
            t.append(f"  {visible(m.type)}", style="cyan")
        if m.extra_repr:
            t.append(f"({visible(m.extra_repr, limit=MAX_REPR)})", style="dim")
        t.append("\n")
        t.append(f"subtree params {fmt_count(m.params)} ({m.params:,})  own {fmt_count(m.own_params)}  children {len(m.children):,}", style="dim")
        t.append("\n" + memory_line(footprint(info, m.path)), style="dim")
        if m.shared_with:
            t.append(f"\nsame module object as {', '.join(visible(p) for p in m.shared_with[:5])}", style="yellow")
        if m.lazy:
            t.append("\nlazy: uninitialised until a forward pass (f)", style="yellow")
        if not m.path:
            for k, v in list(info.metadata.items())[:12]:
                t.append(f"\n{visible(k, limit=60)}: ", style="bold dim")
                t.append(visible(v, limit=120), style="dim")
            for w in info.warnings[:20]:
                t.append(f"\n⚠ {visible(w, limit=300)}", style="yellow")
        self.query_one("#module-title", Static).update(t)
        table = self.query_one(DataTable)
        table.clear()
        for name in m.tensors[:MAX_ROWS]:
            x = info.tensors[name]
            grad = "yes" if x.has_grad else ("-" if x.kind != "parameter" else ("no" if x.requires_grad else "frozen"))
            if x.has_grad and name in self.grad_norms:
                grad = grad_text(self.grad_norms[name])
            table.add_row(
                Text(visible(x.attr, limit=60)), x.kind, fmt_shape(x.shape), x.dtype, x.device,
                f"{x.numel:,}" if x.shape is not None else "?", grad, Text(tied_text(x)), key=name,
            )
        if len(m.tensors) > MAX_ROWS:
            table.add_row(Text(f"… {len(m.tensors) - MAX_ROWS:,} more", style="dim italic"), "", "", "", "", "", "", "",
                          key=f"\0more:{m.path}")
        table.display = bool(m.tensors)
