"""The one table of keys: bindings, the footer, the command palette and the help screen come from it.

A test checks the README's key table against :data:`ACTIONS` and
:data:`NAVIGATION`, so the documentation cannot drift from the app.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True, slots=True)
class Action:
    """One app action: its key, its footer label, its palette entry and its help line."""

    key: str  # Textual key spec: "f", "ctrl+y", "slash"
    action: str  # the App's action_<name>
    label: str  # footer label (short)
    title: str  # command palette title
    help: str  # help screen / palette description
    shown: str = ""  # the key as people write it ("/" for slash); default: key
    footer: bool = True  # shown in the footer (the footer must fit 80 columns)
    palette: bool = True  # listed in the command palette

    @property
    def display_key(self) -> str:
        return self.shown or self.key


ACTIONS: tuple[Action, ...] = (
    Action("question_mark", "help", "Help", "Keys", "this help: every key", shown="?"),
    Action("f", "forward", "Run", "Forward pass", "forward pass on random inputs, optionally a backward with a loss; the tree shows output shapes, grad norms and the first NaN/Inf output (escape cancels a long run)"),
    Action("l", "layers", "Layers", "Layers view", "layers view of the last run: activation statistics and grad norms per module in execution order, a plot against depth, the run before side by side", footer=False),
    Action("i", "initialise", "Init", "Initialise", "initialise the selected module's subtree or tensor (torch.nn.init or a custom function, with a seed)"),
    Action("e", "edit_values", "Edit", "Edit values", "edit values of the selected tensor: [0, 0] = 42, [:] += 1, *= 0.5"),
    Action("t", "tie", "Tie", "Tie / untie", "tie the selected module or parameter to another one, or untie it"),
    Action("r", "rename", "Rename", "Rename keys", "rename keys: the selected node's prefix, or a regular expression over all keys (live preview; clashes refused)", footer=False),
    Action("x,delete", "drop", "Drop", "Drop", "drop the selected tensor or subtree (asks, naming how many tensors and bytes go)", shown="x / delete", footer=False),
    Action("z", "freeze", "Freeze", "Freeze / unfreeze", "freeze or unfreeze the selected subtree's parameters (requires_grad; ❄ in the tree)", footer=False),
    Action("w", "load_weights", "Weights", "Load weights", "load weights from a checkpoint onto the model (undoable; misfits listed)", footer=False),
    Action("s", "save", "Save", "Save", "save the state_dict (.safetensors or .pt), verified, atomic"),
    Action("c", "compare", "Diff", "Compare", "compare with another checkpoint or model, or the file it came from: "
           "the tree marks = identical, ~ changed, + only here, − only there", footer=False),
    Action("C", "changed_only", "Changed", "Changed only", "show only what the comparison found changed (toggle)", footer=False),
    Action("d", "device", "Dev", "Device / dtype", "move the model to another device, or cast its dtype"),
    Action("u", "undo", "Undo", "Undo", "undo the last change"),
    Action("ctrl+y", "redo", "Redo", "Redo", "redo the last undone change", footer=False),
    Action("b", "toggle_groups", "Blocks", "Group blocks", "show numbered blocks with the same structure as one row (layers.[3-60] ×58), or each on its own (toggle)", footer=False),
    Action("slash", "search", "Find", "Search", "search modules and tensors by name or class", shown="/"),
    Action("n", "next_match", "Next", "Next match", "next search match", footer=False),
    Action("N", "prev_match", "Prev", "Previous match", "previous search match", footer=False),
    Action("v", "edit_slice", "Slice", "Edit slice", "edit the slice of values shown, e.g. [0, :10] or [..., -1]", footer=False),
    Action("g", "toggle_grad", "Grad", "Toggle gradient", "show the gradient instead of the values (when there is one)", footer=False),
    Action("D", "toggle_dequant", "Dequant", "Dequantized", "an fp8 weight with a scale tensor (weight_scale_inv): show weight × scale, block by block, in float32 (toggle)", footer=False),
    Action("G", "zero_grads", "Zero grads", "Zero grads", "clear every parameter's grad (set to None; grads are not saved and not undone)", footer=False),
    Action("less_than_sign", "narrow_tree", "Narrower", "Narrower tree", "make the tree pane narrower", shown="<", footer=False),
    Action("greater_than_sign", "widen_tree", "Wider", "Wider tree", "make the tree pane wider", shown=">", footer=False),
    Action("q", "quit", "Quit", "Quit", "quit (asks first when there are unsaved changes)"),
)

#: Keys handled by widgets (the tree, tables, inputs), listed in the help and the README.
NAVIGATION: tuple[tuple[str, str], ...] = (
    ("↑ ↓", "move in the tree"),
    ("→ / ←", "expand / collapse (or go to the parent)"),
    ("enter / space", "expand or collapse a module"),
    ("tab / shift+tab", "move between the tree, the tensor table, the slice box and the values"),
    ("escape", "leave a text box, close the search bar, or cancel a running forward pass"),
    ("ctrl+p", "command palette: every action, go to any module or tensor, export the session as a script, a screenshot"),
)


def bindings() -> list[Binding]:
    """Bindings of the main screen, in footer order."""
    out = [Binding(a.key, a.action, a.label, show=a.footer) for a in ACTIONS]
    out.append(Binding("escape", "leave_input", "Back", show=False))
    return out


def help_rows() -> list[tuple[str, str]]:
    """``(key, what it does)`` for every action and navigation key."""
    return [(a.display_key, a.help) for a in ACTIONS] + list(NAVIGATION)
