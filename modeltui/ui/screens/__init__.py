"""Screens: the main browse screen and the help screen."""

from modeltui.ui.screens.help import HelpScreen
from modeltui.ui.screens.main import MainScreen

__all__ = ["HelpScreen", "MainScreen"]
