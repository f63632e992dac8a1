"""Pilot tests of forward, initialise, edit, undo/redo and the quit guard."""

import pytest
import torch
from textual.widgets import Button, Input, Select, Static

from modeltui.ui.app import ModelTuiApp
from modeltui.ui.dialogs import ConfirmQuit, EditDialog, ForwardDialog, ForwardResultScreen, InitDialog
from modeltui.ui.widgets import ModuleTree, NodeRef




async def test_forward_materialises_lazy_and_shows_shapes(ui):
    app = ModelTuiApp("sample_models.book:make_chimera")
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        assert app.info.tensors["1.weight"].shape is None
        await pilot.press("f")
        await pilot.pause()
        assert isinstance(app.screen, ForwardDialog)
        assert app.screen.query_one("#shapes", Input).value == "2,20"
        await pilot.press("enter")
        await ui.settle(pilot)
        assert isinstance(app.screen, ForwardResultScreen)
        assert app.info.tensors["1.weight"].shape == (20, 16)
        tree = app.query_one(ModuleTree)
        assert "→ 2×20" in str(tree.nodes_by_ref[NodeRef("module", "1")].label)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ForwardResultScreen)


async def test_forward_wrong_shape_names_module_and_app_stays_usable(ui):
    app = ModelTuiApp("sample_models.book:make_my_linear_net")
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        h = ui.model_hash(app.opened.model)
        await pilot.press("f")
        await pilot.pause()
        app.screen.query_one("#shapes", Input).value = "2,5"
        await pilot.press("enter")
        await ui.settle(pilot)
        assert isinstance(app.screen, ForwardResultScreen)
        assert "in module '0' (MyLinear)" in str(app.screen.query_one(Static).render())
        await pilot.press("escape")
        await pilot.press("down")
        await ui.settle(pilot)
        assert ui.model_hash(app.opened.model) == h


@pytest.mark.parametrize("bad", ["", "2,x", "2,20:complex", "-1,3"])
async def test_forward_dialog_bad_input_stays_open(bad, ui):
    app = ModelTuiApp("sample_models.book:make_my_linear_net")
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        await pilot.press("f")
        await pilot.pause()
        app.screen.query_one("#shapes", Input).value = bad
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ForwardDialog)
        assert "✗" in ui.error_text(app.screen)


async def test_initialise_from_dialog_then_undo_redo(ui):
    app = ModelTuiApp("sample_models.book:make_param_net", input_specs=[])
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        await ui.run_default_forward(pilot)
        original = ui.model_hash(app.opened.model)
        await pilot.press("i")
        await pilot.pause()
        dlg = app.screen
        assert isinstance(dlg, InitDialog)
        dlg.query_one("#init", Select).value = "constant_"
        await pilot.pause()
        dlg.query_one("#args", Input).value = "val=3"
        await pilot.click("#ok")
        await ui.settle(pilot)
        assert not isinstance(app.screen, InitDialog)
        assert torch.all(app.opened.model[0].weight == 3)
        assert "unsaved" in str(app.query_one("#header", Static).render())
        await pilot.press("u")
        await ui.settle(pilot)
        assert ui.model_hash(app.opened.model) == original
        assert any("undid: constant_(val=3)" in n.message for n in app._notifications)
        assert "unsaved" not in str(app.query_one("#header", Static).render())
        await pilot.press("ctrl+y")
        await ui.settle(pilot)
        assert torch.all(app.opened.model[2].weight == 3)


async def test_custom_initialiser_from_dialog(ui):
    app = ModelTuiApp("sample_models.book:make_param_net", input_specs=[])
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        await ui.run_default_forward(pilot)
        await pilot.press("i")
        await pilot.pause()
        dlg = app.screen
        dlg.query_one("#init", Select).value = "custom (import path)"
        await pilot.pause()
        dlg.query_one("#custom", Input).value = "sample_models.book:my_init"
        await pilot.click("#ok")
        await ui.settle(pilot)
        w = app.opened.model[0].weight.detach().abs()
        assert torch.all((w == 0) | ((w >= 5) & (w <= 10)))


@pytest.mark.parametrize(
    "init, args, custom, message",
    [
        ("eye_", "", "", "eye_ needs a 2-d tensor"),
        ("normal_", "std=-2", "", "std must not be negative"),
        ("uniform_", "a=1, b", "", "is not name=value"),
        ("xavier_uniform_", "gain=swish", "", "gain must be a number"),
        ("custom (import path)", "", "nosuch.module:fn", "no module named 'nosuch'"),
        ("custom (import path)", "", "", "give the custom initialiser's import path"),
    ],
)
async def test_init_dialog_bad_input_changes_nothing(init, args, custom, message, ui):
    app = ModelTuiApp("sample_models.book:make_my_linear_net")
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        await ui.select(pilot, NodeRef("tensor", "0.bias"))
        h = ui.model_hash(app.opened.model)
        await pilot.press("i")
        await pilot.pause()
        dlg = app.screen
        dlg.query_one("#init", Select).value = init
        await pilot.pause()
        dlg.query_one("#args", Input).value = args
        dlg.query_one("#custom", Input).value = custom
        await pilot.click("#ok")
        await ui.settle(pilot)
        assert app.screen is dlg
        assert message in ui.error_text(dlg)
        assert not dlg.query_one("#ok", Button).disabled
        assert ui.model_hash(app.opened.model) == h
        assert not app.session.undo_stack


async def test_edit_values_dialog_and_bad_edits(ui):
    app = ModelTuiApp("sample_models.book:make_my_linear_net")
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        await ui.select(pilot, NodeRef("tensor", "0.weight"))
        before = app.opened.model[0].weight.detach().clone()
        h = ui.model_hash(app.opened.model)
        for bad, msg in [("[0, 99] = 1", "out of range"), ("[0] = os.system('x')", "not a number"), ("[0] 5", "is not an edit")]:
            await pilot.press("e")
            await pilot.pause()
            dlg = app.screen
            assert isinstance(dlg, EditDialog)
            dlg.query_one("#expr", Input).value = bad
            await pilot.press("enter")
            await ui.settle(pilot)
            assert app.screen is dlg and msg in ui.error_text(dlg)
            await pilot.press("escape")
            await pilot.pause()
        assert ui.model_hash(app.opened.model) == h
        await ui.edit_values(pilot, "[:] += 1")
        await ui.edit_values(pilot, "[0, 0] = 42")
        w = app.opened.model[0].weight.detach()
        assert w[0, 0] == 42 and torch.equal(w[0, 1:], before[0, 1:] + 1)
        st = app.stats_cache.get(("0.weight", False))
        assert st is not None and st.max == float(w.max())  # statistics refreshed


async def test_quit_asks_when_unsaved(ui):
    app = ModelTuiApp("sample_models.book:make_my_linear_net")
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        await ui.edit_values(pilot, "= 0", tensor="0.bias")
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmQuit)
        await pilot.press("n")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmQuit) and app.is_running
        await pilot.press("q")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
    assert app.return_value == 0


async def test_a_checkpoint_without_architecture_cannot_run(ckpts, ui):
    app = ModelTuiApp(ckpts["model.safetensors"])
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        for key in ("f", "u"):
            await pilot.press(key)
            await ui.settle(pilot)
        messages = [n.message for n in app._notifications]
        assert any("cannot run" in m for m in messages) and any("nothing to undo" in m for m in messages)
        assert app.session is None and app.opened.model is None  # nothing was prepared for that
