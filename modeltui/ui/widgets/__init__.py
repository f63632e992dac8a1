"""Widgets of the main screen, one module each; every panel renders itself."""

from modeltui.ui.widgets.compare_panel import ComparePanel
from modeltui.ui.widgets.header import HeaderBar
from modeltui.ui.widgets.module_panel import ModulePanel
from modeltui.ui.widgets.search import SearchBar
from modeltui.ui.widgets.tensor_panel import TensorPanel
from modeltui.ui.widgets.tree import ModuleTree, NodeRef

__all__ = ["ComparePanel", "HeaderBar", "ModulePanel", "ModuleTree", "NodeRef", "SearchBar", "TensorPanel"]
