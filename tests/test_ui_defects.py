"""Regression tests for the TUI defects of issue 10 (keys racing dialogs, stale values, layout)."""

import os
import threading
import time

import pytest
import torch
from textual.widgets import DataTable, Input, Static

from modeltui.core import open_target, parse_input_spec
from modeltui.ui.app import ModelTuiApp
from modeltui.ui.dialogs import BusyScreen, EditDialog, InitDialog, SaveDialog, TieDialog
from modeltui.ui.widgets import ModuleTree, NodeRef


async def test_keys_typed_while_a_checkpoint_is_prepared_never_reach_app_actions(ckpts, monkeypatch, settle):
    """Item 4: t, then typing a name with e/t/s in it while the file is opened for editing: no stacked dialogs."""
    import modeltui.core.editable as editable

    real = editable.make_editable
    release = threading.Event()

    def slow(opened):
        release.wait(5)
        return real(opened)

    monkeypatch.setattr(editable, "make_editable", slow)
    path = ckpts["model.safetensors"]
    before = open(path, "rb").read()
    app = ModelTuiApp(path)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        app.query_one(ModuleTree).reveal(NodeRef("module", "lm_head"))
        await settle(pilot)
        await pilot.press("t", *"model.embed_tokens", "enter", "s", "y")
        await pilot.pause()
        assert isinstance(app.screen, BusyScreen)  # the keys went to it, i.e. nowhere
        release.set()
        await settle(pilot)
        assert isinstance(app.screen, TieDialog)
        assert len(app.screen_stack) == 2, app.screen_stack  # main screen + the tie dialog, nothing stacked
        assert app.screen.query_one("#source", Input).value == ""
    assert open(path, "rb").read() == before


async def test_escape_while_preparing_stops_waiting_and_opens_nothing(ckpts, monkeypatch, settle):
    import modeltui.core.editable as editable

    real = editable.make_editable
    release = threading.Event()  # not a sleep: a loaded machine can take longer than it to show the busy screen
    monkeypatch.setattr(editable, "make_editable", lambda o: (release.wait(5), real(o))[1])
    app = ModelTuiApp(ckpts["model.safetensors"])
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("i")
        await pilot.pause()
        assert isinstance(app.screen, BusyScreen)
        await pilot.press("escape")
        release.set()
        await settle(pilot)
        assert len(app.screen_stack) == 1 and app.session is not None  # ready for the next edit, no dialog


async def test_a_slow_old_values_result_never_paints_over_the_new_one(monkeypatch, settle):
    """Item 6: values computed before an edit arrive after the values computed after it: they are dropped."""
    import modeltui.core.preview as preview

    real = preview.value_grid
    calls = []

    def value_grid(t, text):
        grid = real(t, text)  # read now (before the edit for the first call) ...
        calls.append(grid)
        if len(calls) == 1:
            time.sleep(0.8)  # ... and arrive late
        return grid

    monkeypatch.setattr(preview, "value_grid", value_grid)
    app = ModelTuiApp("sample_models.book:make_param_net", input_specs=[parse_input_spec("2,4")])
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        app.query_one(ModuleTree).reveal(NodeRef("tensor", "0.bias"))
        await pilot.pause(0.2)  # the first (slow) values job is running
        from modeltui.core.editing import edit_values

        edit_values(app.session, "0.bias", "*= 2")
        app.refresh_views()
        await settle(pilot)
        time.sleep(0.9)
        await settle(pilot)
        table = app.query_one("#values", DataTable)
        shown = [str(c) for row in range(table.row_count) for c in table.get_row_at(row)[1:] if c is not None]
        from modeltui.core.preview import fmt_value

        want = [fmt_value(v) for v in app.opened.tensor("0.bias").tolist()]
        assert shown == want
        assert len(calls) >= 2


async def test_e_acts_on_the_highlighted_tensor_at_once(settle):
    """Item 10: e right after arrowing onto a tensor edits that tensor (no 'select a tensor first')."""
    app = ModelTuiApp("sample_models.book:make_param_net", input_specs=[parse_input_spec("2,4")])
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        await pilot.press("down", "right", "down", "e")  # 0, expand, 0.weight, e: no pause in between
        await pilot.pause()
        assert isinstance(app.screen, EditDialog) and app.screen.tensor_name == "0.weight"


async def test_e_acts_on_the_cursor_before_the_panels_catch_up(settle, notes):
    """Item 10, the race itself: the cursor has moved, the highlight has not reached the panels yet."""
    app = ModelTuiApp("sample_models.book:make_param_net", input_specs=[parse_input_spec("2,4")])
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        tree = app.query_one(ModuleTree)
        tree.reveal(NodeRef("tensor", "0.weight"))
        await settle(pilot)
        assert app.main.tensor_panel.tensor == "0.weight"
        tree.action_cursor_down()  # onto 0.bias
        app.action_edit_values()  # before the NodeHighlighted message is handled
        await pilot.pause()
        assert isinstance(app.screen, EditDialog) and app.screen.tensor_name == "0.bias"
        await pilot.press("escape")
        await settle(pilot)
        tree.action_cursor_down()  # onto module 1 (ReLU): no tensor under the cursor, the panel still shows 0.bias
        app.action_edit_values()
        await pilot.pause()
        assert not isinstance(app.screen, EditDialog), "e edited a tensor of another module than the one highlighted"
        assert "select a tensor first" in notes(app)[-1]


async def test_screenshot_goes_to_the_current_folder_and_says_where(tmp_path, monkeypatch, settle, notes):
    """Item 13: no ~/Downloads needed."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "nohome"))
    app = ModelTuiApp("sample_models.book:make_param_net")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        shot = next(c for c in app.get_system_commands(app.screen) if c.title == "Screenshot")
        shot.callback()
        await settle(pilot)
        saved = [f for f in os.listdir(tmp_path) if f.endswith(".svg")]
        assert len(saved) == 1
        assert any(str(tmp_path / saved[0]) in n for n in notes(app))


async def test_escape_leaves_the_search_box(settle):
    """Item 15: escape leaves any input; keys work again."""
    app = ModelTuiApp("sample_models.book:make_param_net")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("slash", "x")
        assert app.query_one("#search-input", Input).has_focus
        await pilot.press("escape")
        await pilot.pause()
        assert app.query_one(ModuleTree).has_focus
        await pilot.press("question_mark")
        await pilot.pause()
        assert app.screen.__class__.__name__ == "HelpScreen"


@pytest.mark.parametrize("width", [80, 120])
async def test_one_d_values_fit_the_width_with_true_indices(width, settle):
    """Item 16: every column of a 1-D slice is on screen, and row labels are the indices of their first value."""
    app = ModelTuiApp("sample_models.zoo:TinyGPT")
    async with app.run_test(size=(width, 40)) as pilot:
        await settle(pilot)
        app.query_one(ModuleTree).reveal(NodeRef("tensor", "blocks.0.ln1.weight"))
        await settle(pilot)
        w = app.opened.tensor("blocks.0.ln1.weight")
        with torch.no_grad():
            w.copy_(torch.arange(w.numel(), dtype=w.dtype) * 1.5)
        app.refresh_views()
        await pilot.press("v")
        box = app.query_one("#slice", Input)
        box.value = "[3:40:3]"
        await pilot.press("enter")
        await settle(pilot)
        table = app.query_one("#values", DataTable)
        assert table.virtual_size.width <= table.size.width, "columns run off the screen"
        want = w[3:40:3].tolist()
        cells, labels = [], []
        for r in range(table.row_count):
            row = table.get_row_at(r)
            labels.append(int(str(row[0])))
            cells.extend(float(str(c)) for c in row[1:] if c is not None)
        assert cells == want
        per_row = len(table.columns) - 1
        assert labels == list(range(3, 40, 3))[::per_row]


async def test_init_dialog_remembers_choices_and_defaults_sensibly(settle):
    """Items 5 and 17: a fresh labelled seed each time; last arguments and custom path remembered; weights for xavier."""
    app = ModelTuiApp("sample_models.book:make_param_net", input_specs=[parse_input_spec("2,4")])
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        await pilot.press("i")
        await settle(pilot)
        d = app.screen
        assert isinstance(d, InitDialog)
        seed1 = d.query_one("#seed", Input).value
        d.query_one("#init").value = "xavier_uniform_"
        await pilot.pause()
        assert str(d.query_one("#which").value) == "weights"  # xavier refuses biases
        d.query_one("#args", Input).value = "gain=2"
        await pilot.press("escape")  # cancelled: nothing is remembered from it
        await settle(pilot)
        await pilot.press("i")
        await settle(pilot)
        d = app.screen
        assert str(d.query_one("#init").value) == "normal_"
        d.query_one("#init").value = "xavier_uniform_"
        await pilot.pause()
        d.query_one("#args", Input).value = "gain=2"
        d.query_one("#ok").press()
        await settle(pilot)
        assert not isinstance(app.screen, InitDialog), "xavier on weights only applies"
        await pilot.press("i")
        await settle(pilot)
        d = app.screen
        assert str(d.query_one("#init").value) == "xavier_uniform_"
        assert d.query_one("#args", Input).value == "gain=2"
        assert d.query_one("#seed", Input).value != seed1
        labels = " ".join(str(lbl.render()) for lbl in d.query("Label"))
        assert "seed" in labels and "which tensors" in labels


async def test_tree_pane_resizes_with_keys(settle):
    """Item 26."""
    app = ModelTuiApp("sample_models.zoo:TinyGPT")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        tree = app.query_one(ModuleTree)
        before = tree.size.width
        await pilot.press("greater_than_sign", "greater_than_sign")
        await pilot.pause()
        wider = tree.size.width
        assert wider > before
        await pilot.press("less_than_sign", "less_than_sign", "less_than_sign")
        await pilot.pause()
        assert tree.size.width < wider


async def test_a_tree_label_that_does_not_fit_ends_with_an_ellipsis(settle):
    """Item 26: an output shape cut by the pane's edge must not read as another shape (2×16×64 shown as 2×16)."""
    from rich.style import Style

    app = ModelTuiApp("sample_models.zoo:TinyGPT", input_specs=[parse_input_spec("2,16:int64")])
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        tree = app.query_one(ModuleTree)
        tree.reveal(NodeRef("module", "blocks.0.mlp.0"))
        await settle(pilot)
        node = tree.nodes_by_ref[NodeRef("module", "blocks.0.mlp.0")]
        full = str(node.label)
        assert full.endswith("→ 2×16×256")
        room = tree.scrollable_content_region.width - 4 * tree.guide_depth  # depth 4: blocks, 0, mlp, 0
        for _ in range(8):  # narrow the pane until the label no longer fits
            if len(full) + 2 > room:
                break
            await pilot.press("less_than_sign")
            await pilot.pause()
            room = tree.scrollable_content_region.width - 4 * tree.guide_depth
        shown = tree.render_label(node, Style(), Style()).plain
        assert len(shown) <= room and shown.endswith("…"), (shown, room)
        for _ in range(8):
            await pilot.press("greater_than_sign")
        await pilot.pause()
        assert tree.render_label(node, Style(), Style()).plain.endswith("→ 2×16×256")


async def test_save_dialog_says_training_state_is_not_in_safetensors(ckpts, settle):
    """Item 2 (dialog part)."""
    opened = open_target(ckpts["lightning.ckpt"])
    assert opened.container is not None
    app = ModelTuiApp(ckpts["lightning.ckpt"], opened=opened)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("s")
        await settle(pilot)
        d = app.screen
        assert isinstance(d, SaveDialog)
        d.query_one("#path", Input).value = "x.safetensors"
        await pilot.pause()
        note = str(d.query_one("#container-note", Static).render())
        assert "not included" in note and "epoch" in note
        d.query_one("#path", Input).value = "x.ckpt"
        await pilot.pause()
        assert "kept" in str(d.query_one("#container-note", Static).render())
        d.query_one("#path", Input).value = "shards/"  # a sharded folder is safetensors too
        await pilot.pause()
        note = str(d.query_one("#container-note", Static).render())
        assert "not included" in note and "kept" not in note


async def test_editing_a_constant_says_it_will_not_be_saved(settle):
    """Item 3 (dialog part): said up front."""
    app = ModelTuiApp("sample_models.book:make_chimera", input_specs=[parse_input_spec("2,20")])
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        app.query_one(ModuleTree).reveal(NodeRef("tensor", "2.rand_weight"))
        await settle(pilot)
        await pilot.press("e")
        await settle(pilot)
        assert isinstance(app.screen, EditDialog)
        assert "no save keeps this edit" in str(app.screen.query_one("#not-saved", Static).render())


async def test_initialising_a_constant_says_it_will_not_be_saved(settle, notes):
    """Item 3 through i: a constant initialised (the tensor, or a module with constants included) is never saved."""
    from textual.widgets import Checkbox

    app = ModelTuiApp("sample_models.book:make_chimera", input_specs=[parse_input_spec("2,20")])
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        app.query_one(ModuleTree).reveal(NodeRef("tensor", "2.rand_weight"))
        await settle(pilot)
        await pilot.press("i")
        await settle(pilot)
        assert isinstance(app.screen, InitDialog)
        assert "no save keeps" in str(app.screen.query_one("#not-saved", Static).render())
        app.screen.query_one("#ok").press()
        await settle(pilot)
        assert not app.session.dirty and "2.rand_weight" in notes(app)[-1] and "no save keeps" in notes(app)[-1]
        app.query_one(ModuleTree).reveal(NodeRef("module", "2"))
        await settle(pilot)
        await pilot.press("i")
        await settle(pilot)
        box = app.screen.query_one("#constants", Checkbox)
        assert "never saved" in str(box.label)
        box.value = True
        app.screen.query_one("#ok").press()
        await settle(pilot)
        assert "2.rand_weight" in notes(app)[-1] and "no save keeps" in notes(app)[-1]


async def test_lazy_warning_names_f_and_goes_after_a_forward_pass(ui):
    """Item 11: in the app the answer to lazy layers is f, and the warning goes once they are materialised."""
    from modeltui.ui.widgets import ModulePanel

    app = ModelTuiApp(None)
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        root = str(app.query_one("#module-title", Static).render())
        assert "until a forward pass (f in the app" in root and "pass -i/--input-shape to materialise" not in root
        await ui.run_default_forward(pilot)
        assert not any("lazy" in w for w in app.info.warnings)
        app.query_one(ModuleTree).reveal(NodeRef("module", ""))
        await ui.settle(pilot)
        assert "lazy parameter" not in str(app.query_one(ModulePanel).query_one("#module-title", Static).render())


@pytest.mark.parametrize("width", [80, 120, 200])
async def test_forward_output_values_fit_the_result_dialog(width, ui):
    """Item 16: the output grid of a forward pass is laid out by the dialog's width (no wrapped rows)."""
    from modeltui.ui.dialogs import ForwardResultScreen

    app = ModelTuiApp("sample_models.book:make_net", input_specs=[parse_input_spec("2,20")])
    async with app.run_test(size=(width, 40)) as pilot:
        await ui.settle(pilot)
        await pilot.press("f", "enter")
        await ui.settle(pilot)
        assert isinstance(app.screen, ForwardResultScreen)
        body = app.screen.query_one(Static)
        lines = str(body.render()).splitlines()
        header = next(i for i, line in enumerate(lines) if line.startswith("output "))
        grid = lines[header + 2: header + 5]  # the column indices, then rows 0 and 1
        assert grid[0].split()[0] == "0" and grid[1].split()[0] == "0" and grid[2].split()[0] == "1", grid
        too_long = [line for line in lines if len(line) > body.content_region.width]
        assert not too_long, f"{len(too_long)} line(s) wrap in a {body.content_region.width}-column dialog"
