"""Modal dialogs, one module each; each is a ``ModalScreen`` with a typed result."""

from modeltui.ui.dialogs.base import BusyScreen, Confirm, ConfirmQuit, Dialog
from modeltui.ui.dialogs.compare import CompareDialog
from modeltui.ui.dialogs.device import DeviceDialog
from modeltui.ui.dialogs.edit import EditDialog
from modeltui.ui.dialogs.forward import ForwardChoice, ForwardDialog, parse_specs
from modeltui.ui.dialogs.init import InitDialog, parse_kwargs
from modeltui.ui.dialogs.rename import RenameDialog
from modeltui.ui.dialogs.results import ForwardResultScreen
from modeltui.ui.dialogs.save import SaveDialog
from modeltui.ui.dialogs.tie import TieDialog
from modeltui.ui.dialogs.weights import WeightsDialog

__all__ = [
    "BusyScreen", "CompareDialog", "Confirm", "ConfirmQuit", "DeviceDialog", "Dialog", "EditDialog", "ForwardChoice",
    "ForwardDialog", "ForwardResultScreen", "InitDialog", "RenameDialog", "SaveDialog", "TieDialog", "WeightsDialog",
    "parse_kwargs", "parse_specs",
]
