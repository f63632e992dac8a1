"""``--summary``: a readable tree table printed with rich."""

from __future__ import annotations

import sys

from modeltui.core.structure import ModelInfo
from modeltui.format import fmt_bytes, fmt_count, fmt_shape

MAX_ROWS = 3000


def _depth_limit(info: ModelInfo, requested: int | None) -> tuple[int | None, int]:
    if requested is not None:
        return requested, 0
    depth_rows: dict[int, int] = {}
    for m in info.modules.values():
        d = m.path.count(".") + 1 if m.path else 0
        depth_rows[d] = depth_rows.get(d, 0) + 1 + len(m.tensors)
    total = 0
    for d in sorted(depth_rows):
        total += depth_rows[d]
        if total > MAX_ROWS:
            hidden = sum(v for k, v in depth_rows.items() if k >= d)
            return d - 1, hidden
    return None, 0


def print_summary(info: ModelInfo, *, depth: int | None = None, file=None) -> None:
    """Print the header facts and the module/tensor tree of ``info``."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    out = file or sys.stdout
    console = Console(file=out, width=None if out.isatty() else 140, highlight=False)
    limit, hidden = _depth_limit(info, depth)

    kind = "module" if info.kind == "module" else "state_dict (no architecture)"
    console.print(Text.assemble(("modeltui ", "bold"), (info.target, "bold cyan"), f"  [{kind}]"))
    console.print(
        f"params {fmt_count(info.total_params)} ({info.total_params:,})"
        + (f"  trainable {fmt_count(info.trainable_params)}" if info.kind == "module" else "")
        + f"  bytes {fmt_bytes(info.total_bytes)}  dtypes {', '.join(info.dtypes()) or '-'}"
        + f"  devices {', '.join(info.devices()) or '-'}  modules {len(info.modules):,}  tensors {len(info.tensors):,}"
    )
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("name", no_wrap=True)
    table.add_column("type / kind", no_wrap=True)
    table.add_column("shape", no_wrap=True)
    table.add_column("dtype", no_wrap=True)
    table.add_column("params", justify="right", no_wrap=True)
    table.add_column("notes")

    def visit(path: str, level: int) -> None:
        m = info.modules[path]
        indent = "  " * level
        label = (m.name or "(root)") if path else "(root)"
        notes = []
        if m.shared_with:
            notes.append("same module as " + ", ".join(m.shared_with))
        if m.lazy:
            notes.append("lazy, uninitialised")
        table.add_row(Text(indent + label, style="bold"), m.type or "", "", "", fmt_count(m.params), "; ".join(notes))
        for name in m.tensors:
            t = info.tensors[name]
            tn = []
            if t.tied_with:
                tn.append("tied: " + ", ".join(t.tied_with))
            if t.kind == "parameter" and not t.requires_grad:
                tn.append("frozen")
            if t.kind == "buffer" and not t.persistent:
                tn.append("not in state_dict")
            table.add_row(
                Text(indent + "  ." + t.attr, style="dim" if t.kind != "parameter" else ""),
                t.kind,
                fmt_shape(t.shape),
                t.dtype,
                fmt_count(t.numel) if t.shape is not None else "?",
                "; ".join(tn),
            )
        if limit is not None and level >= limit:
            return
        for c in m.children:
            visit(c, level + 1)

    visit("", 0)
    console.print(table)
    if hidden:
        console.print(f"[dim]{hidden:,} deeper rows hidden; pass --depth N to choose[/dim]")
    if info.metadata:
        console.print("[bold]metadata[/bold]")
        for k, v in info.metadata.items():
            console.print(f"  {k}: {v}", markup=False)
    for w in info.warnings:
        console.print(Text("warning: " + w, style="yellow"))
