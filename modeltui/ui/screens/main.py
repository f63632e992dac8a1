"""The main screen: it owns the layout and the browsing (tree, panels, search); the app owns the actions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static, Tree

from modeltui.format import visible
from modeltui.ui.widgets import ComparePanel, HeaderBar, ModulePanel, ModuleTree, NodeRef, SearchBar, TensorPanel

if TYPE_CHECKING:
    from modeltui.core.targets import Opened

TREE_WIDTHS = (24, 32, 40, 48, 56, 64, 72, 80, 96)  # columns; < and > step through them


class MainScreen(Screen):
    """Header, search bar, module tree, module and tensor panels, footer."""

    class Ready(Message):
        """The screen is composed: the app may start opening the target."""

    def __init__(self) -> None:
        super().__init__()
        self.opened: Opened | None = None
        self.tree_width: int | None = None  # None: the stylesheet's share of the screen

    def compose(self) -> ComposeResult:
        yield HeaderBar(id="header")
        yield SearchBar(id="search-bar")
        with Horizontal(id="main"):
            yield ModuleTree(id="tree")
            with VerticalScroll(id="detail"):
                yield Static("", id="message")
                yield ModulePanel(id="module-panel")
                yield ComparePanel(id="compare-panel")  # above the tensor panel: with a comparison on, it is what matters
                yield TensorPanel(id="tensor-panel")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.post_message(self.Ready())

    # ------------------------------------------------------------ typed accessors

    @property
    def header(self) -> HeaderBar:
        return self.query_one(HeaderBar)

    @property
    def tree(self) -> ModuleTree:
        return self.query_one(ModuleTree)

    @property
    def module_panel(self) -> ModulePanel:
        return self.query_one(ModulePanel)

    @property
    def tensor_panel(self) -> TensorPanel:
        return self.query_one(TensorPanel)

    @property
    def search_bar(self) -> SearchBar:
        return self.query_one(SearchBar)

    @property
    def compare_panel(self) -> ComparePanel:
        return self.query_one(ComparePanel)

    # ------------------------------------------------------------ showing a model

    def show_loading(self, target: str) -> None:
        self.header.show_loading(target)
        self.tree.focus()

    def show_failure(self, target: str, error: str) -> None:
        self.header.show_failed(target)
        msg = self.query_one("#message", Static)
        msg.update(Text.assemble(("Could not open the target\n\n", "bold"), visible(error), ("\n\npress q to quit", "dim")))
        msg.add_class("visible")

    def show_model(self, opened: Opened, dirty: bool = False, outputs: dict | None = None) -> None:
        """Show a freshly opened model: header, the tree's first level, the root's panel."""
        self.opened = opened
        self.search_bar.info = opened.info
        self.header.show_info(opened.info, dirty)
        self.tree.outputs = dict(outputs or {})
        self.tree.load(opened.info)
        self.show_module("")

    def show_run(self, nonfinite: set[str] | None, grad_norms: dict[str, float]) -> None:
        """What the last run found, for the next refresh: modules whose output held NaN/Inf (None: as it was), grad norms."""
        if nonfinite is not None:
            self.tree.nonfinite = set(nonfinite)
        self.tree.grad_norms = grad_norms
        self.module_panel.grad_norms = grad_norms

    def show_comparison(self, comparison, changed_only: bool = False) -> None:
        """Mark the tree with ``comparison`` (None: no marks), optionally only what changed, and keep the cursor."""
        if self.opened is None:
            return
        tree = self.tree
        ref = tree.cursor_ref()
        tree.set_compare(comparison.marks if comparison is not None else None, changed_only)
        tree.load(self.opened.info)
        self.compare_panel.set(comparison, self.opened)
        if ref is not None and ref.kind in ("module", "tensor") and (ref.name in self.opened.info.modules
                                                                     or ref.name in self.opened.info.tensors):
            tree.reveal(ref)
        else:
            self.show_module("")

    def refresh_model(self, dirty: bool, outputs: dict | None = None) -> None:
        """The model changed (an edit, undo, a forward pass): refresh every view from it."""
        info = self.opened.info
        self.search_bar.info = info
        tree = self.tree
        tree.bad.clear()
        if outputs is not None:
            tree.outputs = dict(outputs)
        if tree.info is not None and (tree.info.tensors.keys() != info.tensors.keys() or tree.info.modules.keys() != info.modules.keys()):
            self._rebuild_tree(info)  # keys renamed or dropped: a new structure
        if tree.relabel(info):
            self._rebuild_tree(info)  # a block no longer like its group (a cast, a reshape), or like it again
        self.header.show_info(info, dirty)
        ref = tree.cursor_ref()
        if ref is not None:
            path = ref.name if ref.kind in ("module", "group") else (info.tensors[ref.name].module if ref.name in info.tensors else "")
            if path in info.modules:
                self.module_panel.show(info, info.modules[path], group=tree.group(ref))
        self.tensor_panel.invalidate()

    def _rebuild_tree(self, info) -> None:
        """Load the tree again and put the cursor back on what it was on, or the nearest module still there."""
        tree = self.tree
        ref = tree.cursor_ref()
        tree.load(info)
        if ref is None or (ref.kind == "tensor" and ref.name in info.tensors) or (ref.kind == "module" and ref.name in info.modules):
            target = ref
        else:
            path = ref.name if ref.kind == "module" else ref.name.rpartition(".")[0]
            while path and path not in info.modules:
                path = path.rpartition(".")[0]
            target = NodeRef("module", path)
        if target is not None and target.name:
            tree.reveal(target)
        self.tensor_panel.hide()
        self.show_module(target.name if target is not None and target.kind == "module" else "")

    # ------------------------------------------------------------ selection

    def selection(self) -> tuple[str | None, str | None]:
        """``(module, None)`` or ``(None, tensor)`` under the tree's cursor now (not what the panels caught up with)."""
        ref = self.tree.cursor_ref()
        if ref is None:
            return "", None
        if ref.kind == "group":  # a row of repeated blocks stands inside its parent (edits refuse it: on_group)
            return ref.name.rpartition(".")[0], None
        return (ref.name, None) if ref.kind == "module" else (None, ref.name)

    def on_group(self) -> str | None:
        """The label of the group row under the cursor, or None."""
        ref = self.tree.cursor_ref()
        g = self.tree.group(ref) if ref is not None else None
        return g.label if g is not None else None

    def toggle_groups(self) -> bool:
        """Show repeated blocks as groups or one by one, keeping the cursor where it was; True when grouped."""
        ref = self.tree.cursor_ref()
        on = self.tree.toggle_groups()
        if self.opened is not None:
            self._rebuild_tree(self.opened.info)
            if ref is not None and ref.kind == "group":  # the group's first block, one by one
                self.tree.reveal(NodeRef("module", ref.name))
                self.show_module(ref.name)
        return on

    def selected_tensor(self) -> str | None:
        """The tensor under the cursor, else the one the panel shows of the module under the cursor (picked in its table)."""
        module, tensor = self.selection()
        if tensor is not None:
            return tensor
        shown = self.tensor_panel.tensor
        info = self.opened.info if self.opened is not None else None
        if shown is not None and info is not None and shown in info.tensors and info.tensors[shown].module == module:
            return shown
        return None

    @on(Tree.NodeHighlighted)
    def _highlighted(self, event: Tree.NodeHighlighted) -> None:
        ref = event.node.data
        if ref is None or self.opened is None or ref.kind == "page":
            return
        info = self.opened.info
        compare = self.compare_panel
        if ref.kind == "module":
            self.show_module(ref.name)
            compare.hide()
        elif ref.kind == "group":  # its first member stands for all (the label says how many, the totals)
            self.show_module(ref.name)
            if ref.name in info.modules:
                self.module_panel.show(info, info.modules[ref.name], group=self.tree.group(ref))
            self.tensor_panel.hide()
            compare.hide()
        elif ref.kind == "other":  # a tensor only the compared target has
            parent = event.node.parent.data if event.node.parent is not None else None
            self.show_module(parent.name if parent is not None else "")
            self.tensor_panel.hide()
            ghost = self.tree.ghost(ref.name)
            from modeltui.core.slicing import default_slice

            compare.show_other(ref.name, default_slice(ghost.shape) if ghost is not None else "")
        elif ref.name in info.tensors:
            self.show_module(info.tensors[ref.name].module)
            self.tensor_panel.show(self.opened, ref.name)
            compare.show_tensor(ref.name, self.tensor_panel.slice_text)

    def show_module(self, path: str) -> None:
        info = self.opened.info if self.opened is not None else None
        if info is None or path not in info.modules:
            return
        self.module_panel.show(info, info.modules[path])
        shown = self.tensor_panel.tensor
        if shown is None or shown not in info.tensors or info.tensors[shown].module != path:
            self.tensor_panel.hide()

    @on(DataTable.RowSelected, "#tensor-table")
    @on(DataTable.RowHighlighted, "#tensor-table")
    def _table_row(self, event) -> None:
        if isinstance(event, DataTable.RowHighlighted) and not event.data_table.has_focus:
            return  # filling the table highlights row 0: not a choice of the user
        key = event.row_key.value if event.row_key is not None else None
        if key is not None and self.opened is not None and key in self.opened.info.tensors:
            self.tensor_panel.show(self.opened, key)

    def goto(self, ref: NodeRef) -> None:
        """Reveal and select a module or tensor."""
        self.tree.reveal(ref)
        self.tree.focus()

    # ------------------------------------------------------------ messages from the widgets

    @on(SearchBar.Goto)
    def _search_goto(self, event: SearchBar.Goto) -> None:
        self.tree.reveal(event.ref)

    @on(SearchBar.Done)
    def _search_done(self) -> None:
        self.tree.focus()

    @on(SearchBar.NoMatch)
    def _no_match(self, event: SearchBar.NoMatch) -> None:
        self.app.notify(f"no module or tensor matches '{visible(event.query, limit=200)}'", severity="warning", markup=False)

    @on(TensorPanel.NonFinite)
    def _non_finite(self, event: TensorPanel.NonFinite) -> None:
        info = self.opened.info if self.opened is not None else None
        x = info.tensors.get(event.tensor) if info is not None else None
        names = [event.tensor] + (x.some_tied(1000) if x is not None and not event.grad else [])
        for name in names:  # tied names hold the same values
            self.tree.mark_bad(name)

    @on(TensorPanel.SliceChosen)
    def _slice_chosen(self) -> None:
        self.compare_panel.show_slice(self.tensor_panel.slice_text)
        self.tree.focus()

    # ------------------------------------------------------------ keys the app forwards

    def leave_input(self) -> bool:
        """Escape: leave a text box (back to the tree) and close the search bar; True if it did anything."""
        from textual.widgets import Input

        did = self.search_bar.close()
        if isinstance(self.focused, Input) or did:
            self.tree.focus()
            return True
        return False

    def resize_tree(self, step: int) -> int:
        """Make the tree pane one step wider (1) or narrower (-1); returns its width in columns."""
        current = self.tree_width or self.tree.size.width or 40
        widths = [w for w in TREE_WIDTHS if w <= max(self.size.width - 20, TREE_WIDTHS[0])]
        if step > 0:
            bigger = [w for w in widths if w > current]
            new = bigger[0] if bigger else widths[-1]
        else:
            smaller = [w for w in widths if w < current]
            new = smaller[-1] if smaller else widths[0]
        self.tree_width = new
        self.tree.styles.width = new
        return new
