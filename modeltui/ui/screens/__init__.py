"""Screens: the main browse screen, the help screen and the layers view."""

from modeltui.ui.screens.help import HelpScreen
from modeltui.ui.screens.layers import LayersScreen
from modeltui.ui.screens.main import MainScreen

__all__ = ["HelpScreen", "LayersScreen", "MainScreen"]
