"""Widgets of the main screen: header bar, module tree, module and tensor panels."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Input, Static, Tree
from textual.widgets.tree import TreeNode

from modeltui.core.structure import ModelInfo, ModuleInfo, TensorInfo
from modeltui.format import fmt_bytes, fmt_count, fmt_shape

TIED, FROZEN, LAZY, BAD = "⇄", "❄", "?", "⚠"


@dataclass(frozen=True, slots=True)
class NodeRef:
    """What a tree node stands for: a module path or a tensor name."""

    kind: str  # "module" | "tensor"
    name: str


class HeaderBar(Static):
    """Target, totals, bytes, devices, dtypes and the unsaved-changes mark."""

    def show_loading(self, target: str) -> None:
        self.update(Text.assemble(("modeltui ", "bold"), (target, "bold cyan"), ("  opening…", "dim")))

    def show_info(self, info: ModelInfo, dirty: bool = False) -> None:
        t = Text()
        t.append("modeltui ", style="bold")
        t.append(info.target, style="bold cyan")
        if info.kind != "module":
            t.append(" (state_dict)", style="dim")
        t.append("  params ", style="dim")
        t.append(fmt_count(info.total_params), style="bold")
        if info.kind == "module":
            t.append("  trainable ", style="dim")
            t.append(fmt_count(info.trainable_params))
        t.append("  ", style="dim")
        t.append(fmt_bytes(info.total_bytes))
        t.append("  ", style="dim")
        t.append(",".join(info.devices()) or "-", style="magenta")
        t.append("  ", style="dim")
        t.append(",".join(info.dtypes()) or "-", style="yellow")
        if dirty:
            t.append("  ● unsaved", style="bold red")
        self.update(t)


def module_label(m: ModuleInfo, info: ModelInfo, bad: set[str], outputs: dict | None = None) -> Text:
    """``name Class 1.2K ⇄❄?⚠ → [2, 10]``: marks, and the last forward's output shape."""
    t = Text()
    t.append(m.name or "(root)", style="bold")
    if m.type:
        t.append(f" {m.type}", style="cyan")
    t.append(f" {fmt_count(m.params)}", style="dim")
    own = [info.tensors[n] for n in m.tensors]
    marks = ""
    if m.shared_with or any(x.tied_with for x in own):
        marks += TIED
    if any(x.kind == "parameter" and not x.requires_grad and x.shape is not None for x in own):
        marks += FROZEN
    if m.lazy:
        marks += LAZY
    if any(x.name in bad for x in own):
        marks += BAD
    if marks:
        t.append(f" {marks}", style="bold yellow")
    shapes = (outputs or {}).get(m.path)
    if shapes is not None:
        t.append(" → " + ", ".join(fmt_shape(s) for s in shapes[:2]) + ("…" if len(shapes) > 2 else ""), style="magenta")
    return t


def tensor_label(x: TensorInfo, bad: set[str]) -> Text:
    """``weight [8, 4] float32`` with the same marks as modules."""
    t = Text()
    style = {"parameter": "", "buffer": "italic", "constant": "italic magenta", "tensor": ""}[x.kind]
    t.append(f".{x.attr}", style=style or "white")
    t.append(f" {fmt_shape(x.shape)}", style="green")
    t.append(f" {x.dtype}", style="dim")
    if x.kind in ("buffer", "constant"):
        t.append(f" {x.kind}", style="dim italic")
    marks = ""
    if x.tied_with:
        marks += TIED
    if x.kind == "parameter" and not x.requires_grad and x.shape is not None:
        marks += FROZEN
    if x.shape is None:
        marks += LAZY
    if x.name in bad:
        marks += BAD
    if marks:
        t.append(f" {marks}", style="bold yellow")
    return t


class ModuleTree(Tree[NodeRef]):
    """The module tree, filled lazily: children are added when a node expands."""

    BINDINGS = [
        Binding("left", "collapse_or_parent", "Parent", show=False),
        Binding("right", "expand_node", "Expand", show=False),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__("…", data=None, **kwargs)
        self.info: ModelInfo | None = None
        self.bad: set[str] = set()  # tensors known to hold NaN/Inf
        self.outputs: dict[str, list] = {}  # module path -> output shapes of the last forward
        self.nodes_by_ref: dict[NodeRef, TreeNode[NodeRef]] = {}
        self._filled: set[int] = set()
        self.show_root = True
        self.guide_depth = 2

    def load(self, info: ModelInfo) -> None:
        """Show ``info``: the root and its children only."""
        self.info = info
        self.clear()
        self.nodes_by_ref.clear()
        self._filled.clear()
        root_ref = NodeRef("module", "")
        self.root.data = root_ref
        self.root.set_label(module_label(info.root, info, self.bad, self.outputs))
        self.nodes_by_ref[root_ref] = self.root
        self.fill(self.root)
        self.root.expand()
        self.move_cursor(self.root)

    def fill(self, node: TreeNode[NodeRef]) -> None:
        """Add the children of a module node once."""
        if self.info is None or node.data is None or node.data.kind != "module" or node.id in self._filled:
            return
        self._filled.add(node.id)
        m = self.info.modules[node.data.name]
        # own tensors first, then children: the order of state_dict()
        for name in m.tensors:
            ref = NodeRef("tensor", name)
            leaf = node.add_leaf(tensor_label(self.info.tensors[name], self.bad), data=ref)
            self.nodes_by_ref[ref] = leaf
        for c in m.children:
            cm = self.info.modules[c]
            ref = NodeRef("module", c)
            child = node.add(module_label(cm, self.info, self.bad, self.outputs), data=ref, allow_expand=bool(cm.children or cm.tensors))
            self.nodes_by_ref[ref] = child

    def on_tree_node_expanded(self, event: Tree.NodeExpanded[NodeRef]) -> None:
        self.fill(event.node)

    def reveal(self, ref: NodeRef) -> TreeNode[NodeRef] | None:
        """Expand the path to ``ref`` (adding nodes as needed) and select it."""
        if self.info is None:
            return None
        module = ref.name if ref.kind == "module" else self.info.tensors[ref.name].module
        chain = []
        p = module
        while True:
            chain.append(p)
            if not p:
                break
            p = p.rpartition(".")[0]
        node = None
        for path in reversed(chain):
            node = self.nodes_by_ref.get(NodeRef("module", path))
            if node is None:
                return None
            self.fill(node)
            if path != module or ref.kind == "tensor":
                node.expand()
        target = self.nodes_by_ref.get(ref)
        if target is not None:
            # new nodes get their line numbers when the tree is next laid out
            self.call_after_refresh(self._select, target)
        return target

    def _select(self, node: TreeNode[NodeRef]) -> None:
        self.move_cursor(node)
        self.scroll_to_node(node, animate=False)

    def mark_bad(self, name: str) -> None:
        """Mark tensor ``name`` (and its module) as holding NaN/Inf."""
        if self.info is None or name in self.bad:
            return
        self.bad.add(name)
        t = self.info.tensors.get(name)
        leaf = self.nodes_by_ref.get(NodeRef("tensor", name))
        if leaf is not None and t is not None:
            leaf.set_label(tensor_label(t, self.bad))
        if t is not None:
            mnode = self.nodes_by_ref.get(NodeRef("module", t.module))
            if mnode is not None:
                mnode.set_label(module_label(self.info.modules[t.module], self.info, self.bad, self.outputs))

    def relabel(self, info: ModelInfo) -> None:
        """New labels for every node already added (same structure, new facts)."""
        self.info = info
        for ref, node in self.nodes_by_ref.items():
            if ref.kind == "module" and ref.name in info.modules:
                node.set_label(module_label(info.modules[ref.name], info, self.bad, self.outputs))
            elif ref.kind == "tensor" and ref.name in info.tensors:
                node.set_label(tensor_label(info.tensors[ref.name], self.bad))

    def action_collapse_or_parent(self) -> None:
        node = self.cursor_node
        if node is None:
            return
        if node.allow_expand and node.is_expanded:
            node.collapse()
        elif node.parent is not None:
            self.move_cursor(node.parent)

    def action_expand_node(self) -> None:
        node = self.cursor_node
        if node is not None and node.allow_expand and not node.is_expanded:
            self.fill(node)
            node.expand()
        elif node is not None and node.children:
            self.move_cursor(node.children[0])


class ModulePanel(Vertical):
    """The selected module: class, extra_repr, totals and a table of its tensors."""

    def compose(self):
        yield Static(id="module-title")
        yield DataTable(id="tensor-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for col in ("name", "kind", "shape", "dtype", "device", "numel", "grad", "tied with"):
            table.add_column(col, key=col)

    def show(self, info: ModelInfo, m: ModuleInfo) -> None:
        t = Text()
        t.append(m.path or "(root)", style="bold")
        if m.type:
            t.append(f"  {m.type}", style="cyan")
        if m.extra_repr:
            t.append(f"({m.extra_repr})", style="dim")
        t.append("\n")
        t.append(f"subtree params {fmt_count(m.params)} ({m.params:,})  own {fmt_count(m.own_params)}  children {len(m.children)}", style="dim")
        if m.shared_with:
            t.append(f"\nsame module object as {', '.join(m.shared_with)}", style="yellow")
        if m.lazy:
            t.append("\nlazy: uninitialised until a forward pass (-i SHAPE)", style="yellow")
        if not m.path:
            for k, v in list(info.metadata.items())[:12]:
                text = str(v)
                t.append(f"\n{k}: ", style="bold dim")
                t.append(text if len(text) <= 120 else text[:120] + "…", style="dim")
            for w in info.warnings:
                t.append(f"\n⚠ {w}", style="yellow")
        self.query_one("#module-title", Static).update(t)
        table = self.query_one(DataTable)
        table.clear()
        for name in m.tensors:
            x = info.tensors[name]
            grad = "yes" if x.has_grad else ("-" if x.kind != "parameter" else ("no" if x.requires_grad else "frozen"))
            table.add_row(
                x.attr, x.kind, fmt_shape(x.shape), x.dtype, x.device,
                f"{x.numel:,}" if x.shape is not None else "?", grad, ", ".join(x.tied_with), key=name,
            )
        table.display = bool(m.tensors)


class TensorPanel(Vertical):
    """The selected tensor: statistics, histogram, a slice box and its values."""

    def compose(self):
        yield Static(id="tensor-title")
        with Horizontal(id="stats-row"):
            yield Static(id="stats")
            yield Static(id="histogram")
        yield Input(placeholder="slice, e.g. [0, :10] or [..., -1]  (enter)", id="slice")
        yield Static(id="slice-error")
        yield Static(id="values-note")
        yield DataTable(id="values", zebra_stripes=True)
