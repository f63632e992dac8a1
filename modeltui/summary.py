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

from modeltui.core.groups import Group, group_children
from modeltui.core.structure import ModelInfo, ModuleInfo
from modeltui.format import fmt_bytes, fmt_count, fmt_shape, visible

MAX_ROWS = 3000
MAX_TENSOR_ROWS = 40
MAX_CHILD_ROWS = 100
MAX_TIED_SHOWN = 3
MAX_INDENT = 12  # levels of indentation; deeper rows show their level instead
MAX_METADATA = 50
MAX_PLAN_ROWS = 40  # runs of the device map printed


def _rows_of(m: ModuleInfo) -> int:
    """Rows a module prints itself: its row, its tensors, and the '… more' rows."""
    n = 1 + min(len(m.tensors), MAX_TENSOR_ROWS)
    n += len(m.tensors) > MAX_TENSOR_ROWS
    n += len(m.children) > MAX_CHILD_ROWS
    return n


def _kids(info: ModelInfo, m: ModuleInfo, grouped: bool, odd: set[str] | None = None) -> list[str | Group]:
    """A module's children as printed: runs of identical numbered blocks as one :class:`Group` each
    (``odd`` collects the numbered ones that differ from their grouped siblings)."""
    if not grouped or len(m.children) < 2:
        return list(m.children)
    g = group_children(info, m.path)
    if odd is not None:
        odd |= g.odd
    return g.rows


def _depth_limit(info: ModelInfo, requested: int | None, grouped: bool) -> int | None:
    """The deepest level to print: ``requested``, or the deepest that keeps to about MAX_ROWS rows."""
    if requested is not None:
        return requested
    level, depth, total = [""], 0, 0
    while level:
        rows = 0
        nxt: list[str] = []
        for p in level:
            m = info.modules[p]
            rows += _rows_of(m)
            for k in _kids(info, m, grouped)[:MAX_CHILD_ROWS]:
                if isinstance(k, Group):
                    rows += 1  # the group's row; its first block prints below it
                    nxt.append(k.first)
                else:
                    nxt.append(k)
        if total + rows > MAX_ROWS:
            return max(depth - 1, 0)
        total += rows
        level = nxt
        depth += 1
    return None


def _subtree_counts(info: ModelInfo, path: str) -> tuple[int, int]:
    """(modules, tensors) in the subtree of ``path``, itself included."""
    fast = getattr(info.modules, "subtree_counts", None)  # a lazy listing counts from its sorted names
    if fast is not None:
        return fast(path)
    modules = tensors = 0
    stack = [path]
    while stack:
        m = info.modules[stack.pop()]
        modules += 1
        tensors += len(m.tensors)
        stack.extend(m.children)
    return modules, tensors


def _indent(level: int) -> str:
    return "  " * level if level <= MAX_INDENT else "  " * MAX_INDENT + f"[{level}] "


def _tied(t) -> str:
    """``tied: a, b, c and 4,997 others`` in time linear in the names shown."""
    shown = ", ".join(visible(n, limit=200) for n in t.some_tied(MAX_TIED_SHOWN))
    if t.tied_count > MAX_TIED_SHOWN:
        shown += f" and {t.tied_count - MAX_TIED_SHOWN:,} others"
    return "tied: " + shown


def print_summary(info: ModelInfo, *, depth: int | None = None, file=None, grouped: bool = True, plan=None) -> None:
    """Print the header facts and the module/tensor tree of ``info``.

    ``grouped``: a run of numbered blocks with the same structure prints as one
    row (``layers.[3-60] ×58``, the total) followed by its first block.
    """
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    out = file or sys.stdout
    isatty = getattr(out, "isatty", lambda: False)()
    console = Console(file=out, width=None if isatty else 140, highlight=False, markup=False, emoji=False)
    limit = _depth_limit(info, depth, grouped)

    kind = "module" if info.kind == "module" else "state_dict (no architecture)"
    console.print(Text.assemble(("modeltui ", "bold"), (visible(info.label, limit=300), "bold cyan"), f"  [{kind}]"))
    constants = [t for t in info.tensors.values() if t.kind == "constant"] if info.kind == "module" else []
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
    represented_modules = represented_tensors = 0  # members of a group other than its first block
    cut_by_depth = cut_by_cap = False
    # items: ("module", path, level) or ("more", text, level)
    stack: list[tuple[str, str, int]] = [("module", "", 0)]
    groups: dict[str, Group] = {}  # first block -> its group, for the "group" items
    odd: set[str] = set()  # numbered blocks unlike their grouped siblings
    while stack:
        what, ref, level = stack.pop()
        indent = _indent(level)
        if what == "more":
            table.add_row(Text(indent + ref, style="dim"), "", "", "", "", "")
            continue
        if what == "group":
            g = groups[ref]
            table.add_row(Text(indent + visible(g.label, limit=200), style="bold magenta"),
                          Text(f"×{len(g.members):,} blocks"), "", "", fmt_count(g.params),
                          Text(f"identical: each {fmt_count(g.member_params)}, as {visible(g.first.rpartition('.')[2])} below"))
            one = _subtree_counts(info, g.first)  # the members are alike: each counts as the first
            represented_modules += one[0] * (len(g.members) - 1)
            represented_tensors += one[1] * (len(g.members) - 1)
            stack.append(("module", g.first, level + 1))
            continue
        m = info.modules[ref]
        shown_modules += 1
        notes = []
        if m.shared_with:
            notes.append("same module as " + ", ".join(visible(p, limit=200) for p in m.shared_with[:MAX_TIED_SHOWN])
                         + (f" and {len(m.shared_with) - MAX_TIED_SHOWN} others" if len(m.shared_with) > MAX_TIED_SHOWN else ""))
        if m.lazy:
            notes.append("lazy, uninitialised")
        if m.path in odd:
            notes.append("≠ its numbered siblings")
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
        rows = _kids(info, m, grouped, odd)
        kids = rows[:MAX_CHILD_ROWS]
        if len(rows) > MAX_CHILD_ROWS:
            cut_by_cap = True
            stack.append(("more", f"… {len(rows) - MAX_CHILD_ROWS:,} more submodules", level + 1))
        for c in reversed(kids):
            if isinstance(c, Group):
                groups[c.first] = c
                stack.append(("group", c.first, level + 1))
            else:
                stack.append(("module", c, level + 1))

    console.print(table)
    hidden_modules = len(info.modules) - shown_modules - represented_modules
    hidden_tensors = len(info.tensors) - shown_tensors - represented_tensors
    if represented_modules:
        console.print(Text(f"{represented_modules:,} module(s) and {represented_tensors:,} tensor(s) in repeated blocks "
                           "shown once per group (--no-groups lists every block)", style="dim"), soft_wrap=True)
    if hidden_modules or hidden_tensors:
        why = []
        if cut_by_depth:
            why.append(f"shown down to depth {limit}; pass --depth N to choose")
        if cut_by_cap:
            why.append(f"at most {MAX_TENSOR_ROWS} tensors and {MAX_CHILD_ROWS} submodules per module")
        console.print(Text(f"{hidden_modules:,} module(s) and {hidden_tensors:,} tensor(s) not shown ({'; '.join(why)})", style="dim"),
                      soft_wrap=True)
    _print_memory(console, info, plan)
    if info.metadata:
        console.print(Text("metadata", style="bold"))
        items = list(info.metadata.items())
        for k, v in items[:MAX_METADATA]:
            console.print(Text(f"  {visible(k, limit=200)}: {visible(v, limit=500)}"))
        if len(items) > MAX_METADATA:
            console.print(Text(f"  … {len(items) - MAX_METADATA:,} more entries", style="dim"))
    for w in info.warnings:
        console.print(Text("warning: " + visible(w, limit=2000), style="yellow"))


def _print_memory(console, info: ModelInfo, plan) -> None:
    """The memory section: the model's bytes as stored and cast; with ``plan``, where each module would go."""
    from rich.text import Text

    from modeltui.core.memory_plan import TARGETS, device_name, footprint, placement_runs

    f = footprint(info)
    line = f"memory  {fmt_bytes(f.stored)} as stored · as " + " · ".join(f"{k} {fmt_bytes(f.as_dtype(k))}" for k in TARGETS)
    console.print(Text(line + "  (int4: the weights alone, no scales)", style="bold"), soft_wrap=True)
    if plan is None:
        return
    asked = ", ".join(f"{device_name(d)} {fmt_bytes(n)}" for d, n in plan.max_memory.items())
    console.print(Text(f"device map (accelerate infer_auto_device_map within {asked})", style="bold"), soft_wrap=True)
    for d, n in plan.per_device.items():
        console.print(Text(f"  {d:<8} {fmt_bytes(n):>10}"))
    runs = placement_runs(plan.device_map)
    for first, last, count in runs[:MAX_PLAN_ROWS]:
        what = visible(first or "(everything)", limit=120)
        if count > 1:
            what += f" … {visible(last, limit=120)} ({count:,} entries)"
        console.print(Text(f"  {device_name(plan.device_map[first]):<8} {what}"), soft_wrap=True)
    if len(runs) > MAX_PLAN_ROWS:
        console.print(Text(f"  … {len(runs) - MAX_PLAN_ROWS:,} more runs", style="dim"))
