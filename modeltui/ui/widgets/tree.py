"""The module tree: filled lazily as nodes expand, and in pages for huge modules.

A module with 200,000 tensors shows :data:`PAGE` of them at a time, with
"▼ N more" / "▲ N earlier" rows that move the window; search and "go to"
move the window to whatever they reveal. Names from a file are shown with
control characters made visible and never parsed as markup.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.binding import Binding
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from modeltui.core.compare_tree import CompareMarks, Ghost
from modeltui.core.groups import Group, Grouping, group_children
from modeltui.core.structure import ModelInfo, ModuleInfo, TensorInfo
from modeltui.ui.widgets.tree_labels import (  # noqa: F401 (grad_text and the marks are imported from here too)
    BAD, FROZEN, LAZY, NAME_LIMIT, TIED, _page_label, compact_shape, ghost_label, grad_text, group_label,
    module_label, tensor_label,
)

PAGE = 500  # rows per module node before "▼ N more"


@dataclass(frozen=True, slots=True)
class NodeRef:
    """What a tree node stands for: a module path, a tensor name, or a page of a big module."""

    kind: str  # "module" | "tensor" | "page" | "other" (a tensor only the compared target has) | "group"
    name: str  # module path / tensor name / module path of the page / the other target's tensor name / first member
    start: int = 0  # for "page": the first row of the page it shows; for "group": how many members


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
        self.nonfinite: set[str] = set()  # module paths whose output held NaN/Inf in the last run
        self.grad_norms: dict[str, float] = {}  # tensor name -> grad norm (after a backward)
        self.nodes_by_ref: dict[NodeRef, TreeNode[NodeRef]] = {}
        self._window: dict[int, int] = {}  # node id -> first row shown (filled nodes only)
        self.marks: CompareMarks | None = None  # a comparison's marks (c), or None
        self.changed_only = False  # with marks: hide what is identical
        self._ghosts: dict[str, Ghost] = {}
        self.grouped = True  # numbered siblings with the same structure show as one row (b toggles)
        self._groupings: dict[str, Grouping] = {}
        self._page_owner: dict[NodeRef, TreeNode[NodeRef]] = {}
        self.show_root = True
        self.guide_depth = 2

    def load(self, info: ModelInfo) -> None:
        """Show ``info``: the root and its children only."""
        self.info = info
        self.clear()
        self.nodes_by_ref.clear()
        self._window.clear()
        self._groupings.clear()
        self._page_owner.clear()
        root_ref = NodeRef("module", "")
        self.root.data = root_ref
        self.root.set_label(self._module_label(info.root))
        self.nodes_by_ref[root_ref] = self.root
        self.fill(self.root)
        self.root.expand()
        self.move_cursor(self.root)

    def _module_label(self, m: ModuleInfo) -> Text:
        t = module_label(m, self.info, self.bad, self.outputs, nonfinite=m.path in self.nonfinite,
                         mark=self._module_mark(m.path))
        if self.grouped and m.path and m.path in self._grouping(m.path.rpartition(".")[0]).odd:
            t.append(" ≠ its numbered siblings", style="bold yellow")
        return t

    def _grouping(self, path: str) -> Grouping:
        """The children of ``path`` with repeated blocks collapsed (worked out once per load)."""
        g = self._groupings.get(path)
        if g is None:
            g = group_children(self.info, path) if self.grouped and self.info is not None else Grouping(list(self.info.modules[path].children))
            self._groupings[path] = g
        return g

    def group(self, ref: NodeRef) -> Group | None:
        """The group a ``"group"`` row stands for."""
        if ref.kind != "group" or self.info is None:
            return None
        g = self._grouping(ref.name.rpartition(".")[0]).group_of(ref.name)
        return g if g is not None and g.first == ref.name else None

    def _tensor_label(self, x: TensorInfo) -> Text:
        return tensor_label(x, self.bad, self.grad_norms.get(x.name), self.info.saved_keys, self._tensor_mark(x.name))

    def set_compare(self, marks: CompareMarks | None, changed_only: bool = False) -> None:
        """Show a comparison's marks (None: none); ``changed_only`` hides what is identical. Call :meth:`load` after."""
        self.marks = marks
        self.changed_only = changed_only and marks is not None
        self._ghosts = {g.other: g for gs in marks.ghosts.values() for g in gs} if marks is not None else {}

    def ghost(self, name: str) -> Ghost | None:
        """The tensor only the compared target has, shown as row ``NodeRef("other", name)``."""
        return self._ghosts.get(name)

    def _module_mark(self, path: str) -> str:
        return self.marks.modules.get(path, "") if self.marks is not None else ""

    def _tensor_mark(self, name: str) -> str:
        return self.marks.tensors.get(name, "") if self.marks is not None else ""

    def rows(self, m: ModuleInfo) -> list[NodeRef]:
        """What a module node holds, in order: its own tensors, then its children (the order of state_dict()).

        With a comparison, the tensors only the other target has come after the
        module's own; with the changed-only filter, what is identical goes.
        """
        tensors = [NodeRef("tensor", n) for n in m.tensors]
        if self.marks is None:
            if not self.grouped or len(m.children) < 2:
                return tensors + [NodeRef("module", c) for c in m.children]
            return tensors + [NodeRef("group", r.first, len(r.members)) if isinstance(r, Group) else NodeRef("module", r)
                              for r in self._grouping(m.path).rows]
        children = [NodeRef("module", c) for c in m.children]  # a comparison marks every member: no groups
        ghosts = [NodeRef("other", g.other) for g in self.marks.ghosts.get(m.path, [])]
        if self.changed_only:
            tensors = [r for r in tensors if self.marks.changed(r.name)]
            children = [r for r in children if self.marks.module_changed(r.name)]
        return tensors + ghosts + children

    def _rows_for(self, ref: NodeRef) -> list[NodeRef]:
        if ref.kind == "group":
            g = self.group(ref)
            return [NodeRef("module", p) for p in g.members] if g is not None else []
        return self.rows(self.info.modules[ref.name])

    def fill(self, node: TreeNode[NodeRef], start: int = 0) -> None:
        """Add a module's (or a group's) rows once (a page of them from ``start``)."""
        ref = node.data
        if self.info is None or ref is None or ref.kind not in ("module", "group"):
            return
        if self._window.get(node.id) == start:
            return
        if node.id in self._window:
            self._forget(node)
            node.remove_children()
        self._window[node.id] = start
        rows = self._rows_for(ref)
        end = min(len(rows), start + PAGE)
        if start > 0:
            back = max(0, start - PAGE)
            page = NodeRef("page", ref.name, back)
            node.add_leaf(_page_label(start, later=False), data=page)
            self._page_owner[page] = node
        for r in rows[start:end]:
            if r.kind == "group":
                g = self.group(r)
                child = node.add(group_label(g, self.info), data=r, allow_expand=True)
            elif r.kind == "tensor":
                child = node.add_leaf(self._tensor_label(self.info.tensors[r.name]), data=r)
            elif r.kind == "other":
                child = node.add_leaf(ghost_label(self._ghosts[r.name]), data=r)
            else:
                cm = self.info.modules[r.name]
                ghosts = self.marks is not None and self.marks.ghosts.get(r.name)
                child = node.add(self._module_label(cm), data=r,
                                 allow_expand=bool(cm.children or cm.tensors or ghosts))
            self.nodes_by_ref[r] = child
        if end < len(rows):
            page = NodeRef("page", ref.name, end)
            node.add_leaf(_page_label(len(rows) - end, later=True), data=page)
            self._page_owner[page] = node

    def _forget(self, node: TreeNode[NodeRef]) -> None:
        """Drop the refs of every node below ``node`` (its rows are about to be replaced)."""
        stack = list(node.children)
        while stack:
            n = stack.pop()
            if n.data is not None and self.nodes_by_ref.get(n.data) is n:
                del self.nodes_by_ref[n.data]
            if n.data is not None and n.data.kind == "page":
                self._page_owner.pop(n.data, None)
            self._window.pop(n.id, None)
            stack.extend(n.children)

    def on_tree_node_expanded(self, event: Tree.NodeExpanded[NodeRef]) -> None:
        self.fill(event.node, self._window.get(event.node.id, 0))

    def on_tree_node_selected(self, event: Tree.NodeSelected[NodeRef]) -> None:
        ref = event.node.data
        if ref is not None and ref.kind == "page":
            self.show_page(ref)

    def show_page(self, ref: NodeRef) -> None:
        """Move a module's window to the page ``ref`` points at."""
        parent = self._page_owner.get(ref)
        if parent is None:
            return
        self.fill(parent, ref.start)
        parent.expand()
        if parent.children:
            self.call_after_refresh(self._select, parent.children[0])

    def reveal(self, ref: NodeRef) -> TreeNode[NodeRef] | None:
        """Expand the path to ``ref`` (adding nodes and moving pages as needed) and select it."""
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
        chain.reverse()
        node = None
        for i, path in enumerate(chain):
            node = self.nodes_by_ref.get(NodeRef("module", path))
            if node is None:
                return None
            last = i == len(chain) - 1
            if not last or ref.kind == "tensor":
                inner = NodeRef("module", chain[i + 1]) if not last else ref
                self._show_row(node, inner)
                node.expand()
            else:
                self.fill(node, self._window.get(node.id, 0))
        target = self.nodes_by_ref.get(ref)
        if target is not None:
            # new nodes get their line numbers when the tree is next laid out
            self.call_after_refresh(self._select, target)
        return target

    def _show_row(self, node: TreeNode[NodeRef], row: NodeRef) -> None:
        """Fill ``node`` with the page that holds ``row`` (through the group that holds it, expanded)."""
        known = self.nodes_by_ref.get(row)
        if known is not None and (known.parent is node or (known.parent is not None and known.parent.parent is node
                                                            and known.parent.data.kind == "group")):
            return
        rows = self._rows_for(node.data)
        holder = None
        try:
            index = rows.index(row)
        except ValueError:
            index = 0
            if row.kind == "module":
                holder = next((i for i, r in enumerate(rows) if r.kind == "group" and row.name in self.group(r).members), None)
                if holder is not None:
                    index = holder
        self.fill(node, index // PAGE * PAGE)
        if holder is not None:
            gnode = self.nodes_by_ref.get(rows[holder])
            if gnode is not None:
                self._show_row(gnode, row)
                gnode.expand()

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
            leaf.set_label(self._tensor_label(t))
        if t is not None:
            mnode = self.nodes_by_ref.get(NodeRef("module", t.module))
            if mnode is not None:
                mnode.set_label(self._module_label(self.info.modules[t.module]))

    def relabel(self, info: ModelInfo) -> bool:
        """New labels for every node already added (same structure, new facts); True when the groups changed."""
        self.info = info
        if self._groupings and any(group_children(info, p) != g for p, g in self._groupings.items()
                                   if self.grouped and p in info.modules):
            return True  # a member no longer matches its group (or now does): the caller loads again
        for ref, node in list(self.nodes_by_ref.items()):
            if ref.kind == "group":
                g = self.group(ref)
                if g is not None:
                    node.set_label(group_label(g, info))
            elif ref.kind == "module" and ref.name in info.modules:
                node.set_label(self._module_label(info.modules[ref.name]))
            elif ref.kind == "tensor" and ref.name in info.tensors:
                node.set_label(self._tensor_label(info.tensors[ref.name]))
        return False

    def render_label(self, node: TreeNode[NodeRef], base_style, style) -> Text:
        """The label, cut with "…" where the pane ends: a cut output shape never reads as a whole one."""
        text = super().render_label(node, base_style, style)
        width = self.scrollable_content_region.width
        if width > 0:
            depth, up = 0, node.parent
            while up is not None:
                depth, up = depth + 1, up.parent
            room = width - depth * self.guide_depth
            if 0 < room < text.cell_len:
                text.truncate(room, overflow="ellipsis")
        return text

    def cursor_ref(self) -> NodeRef | None:
        """What the cursor is on now (a module or a tensor), whatever the panels show."""
        node = self.cursor_node
        ref = node.data if node is not None else None
        return ref if ref is not None and ref.kind != "page" else None

    def toggle_groups(self) -> bool:
        """Group repeated blocks, or show every member; True when grouping is now on (call :meth:`load` after)."""
        self.grouped = not self.grouped
        return self.grouped

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
        if node is None:
            return
        if node.data is not None and node.data.kind == "page":
            self.show_page(node.data)
        elif node.allow_expand and not node.is_expanded:
            self.fill(node, self._window.get(node.id, 0))
            node.expand()
        elif node.children:
            self.move_cursor(node.children[0])
