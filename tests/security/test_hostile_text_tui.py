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


# ---------------------------------------------------------------- dialogs, the palette, notifications

RAW = "\x1b\x00\x9b\u202e"

USER_MODEL = '''
import torch
from torch import nn
Evil = type("Cls[/][bold red]x[/]\\x1b]2;CLS\\x07", (nn.Module,), {})
def evil():
    m = nn.Module()
    m.add_module("typed", Evil())
    m.add_module("fc", nn.Linear(2, 2))
    return m
'''


def _clean(text: str) -> bool:
    return not any(c in text for c in RAW)


async def test_the_palette_shows_names_and_classes_as_text(tmp_path, monkeypatch, settle):
    """The palette parsed its prompt and help as markup: a class named ``[/]`` ended the app, ``[b]x[/]`` lost its brackets."""
    from textual.command import CommandPalette
    from textual.widgets import OptionList

    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "evil_palette.py").write_text(USER_MODEL)
    app = ModelTuiApp("evil_palette.py:evil")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert app.load_error is None
        for query, shown in (("typed", "module Cls[/][bold red]x[/]\\x1b]2;CLS\\x07"), ("bold", "Go to typed")):
            await pilot.press("ctrl+p")
            await settle(pilot)
            await pilot.press(*query)
            await pilot.pause(0.5)
            await settle(pilot)
            assert app.is_running and isinstance(app.screen, CommandPalette)
            options = app.screen.query_one(OptionList)
            prompts = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
            assert any(shown in p for p in prompts), prompts
            assert all(_clean(p) for p in prompts)
            await pilot.press("escape")
            await settle(pilot)
    hostile = tmp_path / "h.safetensors"
    write_safetensors(hostile, ["[bold red]x[/].w"], {})
    app = ModelTuiApp(str(hostile))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p")
        await settle(pilot)
        await pilot.press(*"red")
        await pilot.pause(0.5)
        await settle(pilot)
        options = app.screen.query_one(OptionList)
        prompts = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
        assert "Go to [bold red]x[/]" in "\n".join(prompts), prompts  # the brackets, not a red x


async def test_dialogs_show_hostile_names_escaped_and_still_work_on_them(tmp_path, settle, notes):
    """The init and tie dialogs showed a tensor name raw (it retitled the terminal); the save box showed the file's name raw."""
    from textual.widgets import Input

    name = "title\x1b]2;PWNED\x07.w"
    source = "src\x1b[2J.w"
    path = tmp_path / "evil\x1b]2;FILE\x07.safetensors"
    write_safetensors(path, [name, source], {})
    app = ModelTuiApp(str(path))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        app.query_one(ModuleTree).reveal(NodeRef("tensor", name))
        await settle(pilot)
        await pilot.press("i")
        await settle(pilot)
        title = plain(app.screen.query_one(".dialog-title", Static))
        assert title.startswith("Initialise tensor title\\x1b]2;PWNED\\x07") and _clean(title)
        await pilot.press("escape")
        await settle(pilot)
        await pilot.press("t")
        await settle(pilot)
        box = app.screen.query_one("#target", Input)
        assert box.value == "title\\x1b]2;PWNED\\x07.w"
        app.screen.query_one("#source", Input).value = "src\\x1b[2J.w"  # typed as it is shown
        await pilot.press("enter")
        await settle(pilot)
        assert app.session.model is not None and app.info.tensors[name].tied_count == 1, notes(app)
        await pilot.press("s")
        await settle(pilot)
        box = app.screen.query_one("#path", Input)
        assert _clean(box.value) and "evil\\x1b]2;FILE\\x07.safetensors" in box.value
        await pilot.press("enter")  # left as shown: the real file, after the overwrite question
        await settle(pilot)
        assert _clean(plain(app.screen.query_one(".dialog-title", Static)))
        await pilot.press("y")
        await settle(pilot)
        assert any(n.startswith("saved ") for n in notes(app)), notes(app)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    from modeltui.core import open_target

    assert open_target(str(path)).info.tensors[name].tied_count == 1


async def test_a_newline_in_a_name_never_forges_a_line_in_a_notification(tmp_path, settle, notes):
    """``-w`` warnings and load errors kept the newline of a name: a second 'modeltui: error' line in the toast."""
    weights = tmp_path / "w.safetensors"
    write_safetensors(weights, ["nl\nmodeltui: error: forged"], {})
    app = ModelTuiApp("sample_models.book:make_my_linear_net", weights=str(weights))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        shown = notes(app)
        assert any("nl\\nmodeltui: error: forged" in n for n in shown), shown
        assert not any(line.startswith("modeltui: error") for n in shown for line in n.splitlines())
    app = ModelTuiApp("no_such_pkg\nmodeltui: error: forged:net")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        panel = plain(app.query_one("#message", Static))
        assert "\\nmodeltui: error: forged" in panel
        lines = panel.splitlines() + [line for n in notes(app) for line in n.splitlines()]
        assert not any(line.startswith("modeltui: error") for line in lines), lines
