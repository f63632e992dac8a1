"""``--summary``: a readable tree table printed with rich.

Names, classes, metadata and warnings come from files and from user code:
they go into rich as ``Text`` (never parsed as markup), through ``visible()``
(control characters shown as escapes). The table stays bounded: at most
``MAX_TENSOR_ROWS`` tensors and ``MAX_CHILD_ROWS`` submodules per module, and
unless ``--depth`` says otherwise the depth is cut so about ``MAX_ROWS`` rows
print. The closing line counts exactly what was left out. No recursion: a
model nested thousands deep prints like any other.
"""

from __future__ import annotations

import sys

from modeltui.core.structure import ModelInfo, ModuleInfo
from modeltui.format import fmt_bytes, fmt_count, fmt_shape, visible

MAX_ROWS = 3000
MAX_TENSOR_ROWS = 40
MAX_CHILD_ROWS = 100
MAX_TIED_SHOWN = 3
MAX_INDENT = 12  # levels of indentation; deeper rows show their level instead
MAX_METADATA = 50


def _rows_of(m: ModuleInfo) -> int:
    """Rows a module prints itself: its row, its tensors, and the '… more' rows."""
    n = 1 + min(len(m.tensors), MAX_TENSOR_ROWS)
    n += len(m.tensors) > MAX_TENSOR_ROWS
    n += len(m.children) > MAX_CHILD_ROWS
    return n


def _depth_limit(info: ModelInfo, requested: int | None) -> int | None:
    """The deepest level to print: ``requested``, or the deepest that keeps to about MAX_ROWS rows."""
    if requested is not None:
        return requested
    level, depth, total = [""], 0, 0
    while level:
        rows = sum(_rows_of(info.modules[p]) for p in level)
        if total + rows > MAX_ROWS:
            return max(depth - 1, 0)
        total += rows
        level = [c for p in level for c in info.modules[p].children[:MAX_CHILD_ROWS]]
        depth += 1
    return None


def _indent(level: int) -> str:
    return "  " * level if level <= MAX_INDENT else "  " * MAX_INDENT + f"[{level}] "


def _tied(t) -> str:
    """``tied: a, b, c and 4,997 others`` in time linear in the names shown."""
    shown = ", ".join(visible(n, limit=200) for n in t.some_tied(MAX_TIED_SHOWN))
    if t.tied_count > MAX_TIED_SHOWN:
        shown += f" and {t.tied_count - MAX_TIED_SHOWN:,} others"
    return "tied: " + shown


def print_summary(info: ModelInfo, *, depth: int | None = None, file=None) -> None:
    """Print the header facts and the module/tensor tree of ``info``."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    out = file or sys.stdout
    isatty = getattr(out, "isatty", lambda: False)()
    console = Console(file=out, width=None if isatty else 140, highlight=False, markup=False, emoji=False)
    limit = _depth_limit(info, depth)

    kind = "module" if info.kind == "module" else "state_dict (no architecture)"
    console.print(Text.assemble(("modeltui ", "bold"), (visible(info.label, limit=300), "bold cyan"), f"  [{kind}]"))
    constants = [t for t in info.tensors.values() if t.kind == "constant"]
    head = f"params {fmt_count(info.total_params)} ({info.total_params:,})"
    if info.kind == "module":
        head += f"  trainable {fmt_count(info.trainable_params)}"
    head += f"  bytes {fmt_bytes(info.total_bytes)}  dtypes {', '.join(visible(d) for d in info.dtypes()) or '-'}"
    head += f"  devices {', '.join(visible(d) for d in info.devices()) or '-'}  modules {len(info.modules):,}  tensors {len(info.tensors):,}"
    if constants:
        head += f"  constants {len(constants):,} ({fmt_count(sum(t.numel for t in constants))} elements, not in params)"
    console.print(Text(head))

    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    # capped: one long (or hostile) name must not squeeze the shape, dtype and params columns out of every row
    table.add_column("name", no_wrap=True, max_width=max(24, console.width * 9 // 20))  # longer text ends with "…"
    table.add_column("type / kind", no_wrap=True, max_width=max(12, console.width // 5))
    table.add_column("shape", no_wrap=True)
    table.add_column("dtype", no_wrap=True)
    table.add_column("params", justify="right", no_wrap=True)
    table.add_column("notes")

    shown_modules = shown_tensors = 0
    cut_by_depth = cut_by_cap = False
    # items: ("module", path, level) or ("more", text, level)
    stack: list[tuple[str, str, int]] = [("module", "", 0)]
    while stack:
        what, ref, level = stack.pop()
        indent = _indent(level)
        if what == "more":
            table.add_row(Text(indent + ref, style="dim"), "", "", "", "", "")
            continue
        m = info.modules[ref]
        shown_modules += 1
        notes = []
        if m.shared_with:
            notes.append("same module as " + ", ".join(visible(p, limit=200) for p in m.shared_with[:MAX_TIED_SHOWN])
                         + (f" and {len(m.shared_with) - MAX_TIED_SHOWN} others" if len(m.shared_with) > MAX_TIED_SHOWN else ""))
        if m.lazy:
            notes.append("lazy, uninitialised")
        at_limit = limit is not None and level >= limit and m.children
        if at_limit:
            notes.append(f"{len(m.children):,} submodule(s) not shown")
            cut_by_depth = True
        label = visible(m.name, limit=200) if m.path else "(root)"
        table.add_row(Text(indent + label, style="bold"), Text(visible(m.type, limit=200)), "", "", fmt_count(m.params), Text("; ".join(notes)))
        for name in m.tensors[:MAX_TENSOR_ROWS]:
            t = info.tensors[name]
            shown_tensors += 1
            tn = []
            if t.tied_count:
                tn.append(_tied(t))
            if t.kind == "parameter" and not t.requires_grad:
                tn.append("frozen")
            if t.kind == "constant":
                tn.append("constant (not in state_dict)")
            elif t.kind == "buffer" and not t.persistent:
                tn.append("not in state_dict")
            if t.shape is None:
                count = "?"
            elif t.kind in ("parameter", "tensor"):
                count = fmt_count(t.numel)
            else:
                count = "-"  # buffers and constants are not parameters: the totals leave them out
            table.add_row(
                Text(indent + "  ." + visible(t.attr, limit=200), style="dim" if t.kind != "parameter" else ""),
                t.kind,
                fmt_shape(t.shape),
                Text(visible(t.dtype)),
                count,
                Text("; ".join(tn)),
            )
        if len(m.tensors) > MAX_TENSOR_ROWS:
            cut_by_cap = True
            table.add_row(Text(indent + f"  … {len(m.tensors) - MAX_TENSOR_ROWS:,} more tensors", style="dim"), "", "", "", "", "")
        if at_limit:
            continue
        kids = m.children[:MAX_CHILD_ROWS]
        if len(m.children) > MAX_CHILD_ROWS:
            cut_by_cap = True
            stack.append(("more", f"… {len(m.children) - MAX_CHILD_ROWS:,} more submodules", level + 1))
        stack.extend(("module", c, level + 1) for c in reversed(kids))

    console.print(table)
    hidden_modules = len(info.modules) - shown_modules
    hidden_tensors = len(info.tensors) - shown_tensors
    if hidden_modules or hidden_tensors:
        why = []
        if cut_by_depth:
            why.append(f"shown down to depth {limit}; pass --depth N to choose")
        if cut_by_cap:
            why.append(f"at most {MAX_TENSOR_ROWS} tensors and {MAX_CHILD_ROWS} submodules per module")
        console.print(Text(f"{hidden_modules:,} module(s) and {hidden_tensors:,} tensor(s) not shown ({'; '.join(why)})", style="dim"),
                      soft_wrap=True)
    if info.metadata:
        console.print(Text("metadata", style="bold"))
        items = list(info.metadata.items())
        for k, v in items[:MAX_METADATA]:
            console.print(Text(f"  {visible(k, limit=200)}: {visible(v, limit=500)}"))
        if len(items) > MAX_METADATA:
            console.print(Text(f"  … {len(items) - MAX_METADATA:,} more entries", style="dim"))
    for w in info.warnings:
        console.print(Text("warning: " + visible(w, limit=2000), style="yellow"))
