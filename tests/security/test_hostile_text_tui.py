"""Issue 11 items 1 and 2 in the TUI: text from a file is shown, never obeyed.

Escape sequences, bidi overrides and newlines in tensor names and metadata
are shown as escapes; ``[/]`` and ``[bold red]…`` are shown as the brackets
they are (never parsed as markup, never a MarkupError); the app keeps
running and an internal crash never exits 0.
"""

import json
import struct

from textual.widgets import DataTable, Static

from modeltui.ui.app import ModelTuiApp
from modeltui.ui.widgets import ModuleTree, NodeRef

HOSTILE = [
    "title\x1b]2;PWNED\x1b\\.w",
    "clear\x1b[2J.w",
    "[/]",
    "[bold red]RED[/].w",
    "[link=http://evil.example]click[/link].w",
    "rtl\u202eevil.w",
    "nl\nmodeltui: error: forged.w",
    "nul\x00c1\x9b.w",
]
META = {"note\x1b[2J": "v[/]\x1b]2;T\x07", "[b]k[/b]": "\u202e"}


def write_safetensors(path, names, metadata):
    """A valid safetensors file, written by hand so no library can object to the names."""
    header = {n: {"dtype": "F32", "shape": [2], "data_offsets": [8 * i, 8 * i + 8]} for i, n in enumerate(names)}
    header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + struct.pack(f"<{2 * len(names)}f", *range(2 * len(names))))


def plain(widget) -> str:
    return str(widget.render())


async def test_hostile_names_and_metadata_are_shown_escaped_never_obeyed(tmp_path, settle):
    path = tmp_path / "hostile.safetensors"
    write_safetensors(path, HOSTILE, META)
    app = ModelTuiApp(str(path))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert app.load_error is None and app.info is not None
        tree = app.query_one(ModuleTree)
        root_text = plain(app.query_one("#module-title", Static))
        assert "note\\x1b[2J" in root_text and "\\x07" in root_text and "\x1b" not in root_text
        for name in HOSTILE:
            tree.reveal(NodeRef("tensor", name))
            await settle(pilot)
            assert app.is_running
            assert app.selected == name
            title = plain(app.query_one("#tensor-title", Static))
            assert not any(c in title for c in "\x1b\x00\x9b\u202e\n"), repr(title)
        labels = [str(n.label) for n in tree.nodes_by_ref.values()]
        joined = "\n".join(labels)
        assert "title\\x1b]2;PWNED\\x1b\\" in joined
        assert "[bold red]RED[/]" in joined  # the brackets, not red text
        assert "rtl\\u202eevil" in joined and "nl\\nmodeltui" in joined
        table = app.query_one("#tensor-table", DataTable)
        cells = [str(c) for r in range(table.row_count) for c in table.get_row_at(r)]
        assert not any("\x1b" in c for c in cells)
        svg = app.export_screenshot()
        assert "\x1b" not in svg and "\u202e" not in svg
        await pilot.press("slash", *"bold", "enter")  # search over hostile names
        await settle(pilot)
        assert app.is_running


async def test_markup_in_a_load_error_is_shown_as_text(tmp_path, settle, notes):
    app = ModelTuiApp("no_such_pkg[/][bold red]x\x1b[2J:net")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert app.load_error
        shown = plain(app.query_one("#message", Static))
        assert "[/][bold red]x\\x1b[2J" in shown
        assert any("[/]" in n for n in notes(app))
        await pilot.press("q")
    assert app.return_code == 2 or app.return_value == 2


def test_an_internal_crash_never_exits_zero(monkeypatch):
    """A bug that ends the app must end the command with a non-zero code."""
    from textual.app import App

    from modeltui.ui import app as app_module
    from modeltui.ui.screens.main import MainScreen

    def boom(self, *a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(MainScreen, "show_model", boom)
    monkeypatch.setattr(app_module.ModelTuiApp, "run", lambda self: App.run(self, headless=True))
    from modeltui.core.request import OpenRequest

    code = app_module.run_app(OpenRequest.make("sample_models.book:make_param_net"))
    assert code != 0
