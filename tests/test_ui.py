"""Pilot tests of the browse screen: every action and every error path."""

import pytest
import torch
from textual.widgets import DataTable, Input, Static

from modeltui.core import open_target, parse_input_spec
from modeltui.core.stats import tensor_stats
from modeltui.ui.app import ModelTuiApp
from modeltui.ui.screens import HelpScreen
from modeltui.ui.widgets import ModuleTree, NodeRef





@pytest.mark.parametrize(
    "target, root_type",
    [(None, "DemoNet"), ("sample_models.book:make_chimera", "Sequential"), ("sample_models.zoo:TinyGPT", "TinyGPT")],
)
async def test_opens_modules(target, root_type, ui):
    app = ModelTuiApp(target)
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        assert app.info is not None and app.info.root.type == root_type
        assert root_type in str(app.query_one(ModuleTree).root.label)
        assert "params" in ui.text_of(app, "#header")


@pytest.mark.parametrize("name", ["state_dict.pt", "model.safetensors", "lightning.ckpt", "sharded_safetensors", "dcp", "legacy.pt"])
async def test_opens_checkpoints(ckpts, name, ui):
    app = ModelTuiApp(ckpts[name])
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        assert app.info.kind == "state_dict"
        assert "state_dict" in ui.text_of(app, "#header")
        tree = app.query_one(ModuleTree)
        assert tree.root.children and len(app.info.tensors) > 10


async def test_bad_target_is_shown_and_app_keeps_running(ckpts, ui):
    app = ModelTuiApp(ckpts["full_module.pt"])
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        assert app.load_error and "refused to load" in app.load_error
        assert "refused to load" in ui.text_of(app, "#message")
        assert any("refused" in m for m in ui.notes(app))
        await pilot.press("question_mark")  # still responsive
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.press("q")
    assert app.return_value == 2


async def test_move_through_tree_and_select_tensor_stats_match_core(ui):
    app = ModelTuiApp("sample_models.book:make_param_net", input_specs=[parse_input_spec("2,4")])
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        tree = app.query_one(ModuleTree)
        await pilot.press("down")  # module 0
        await pilot.pause()
        assert tree.cursor_node.data == NodeRef("module", "0")
        await pilot.press("right", "down")  # expand 0, go to 0.weight
        await ui.settle(pilot)
        assert tree.cursor_node.data == NodeRef("tensor", "0.weight")
        assert app.selected == "0.weight"
        st = app.stats_cache[("0.weight", False)]
        ref = tensor_stats(app.opened.tensor("0.weight"))
        assert (st.min, st.max, st.mean, st.std, st.norm) == (ref.min, ref.max, ref.mean, ref.std, ref.norm)
        shown = ui.text_of(app, "#stats")
        from modeltui.core.preview import fmt_value

        assert fmt_value(ref.min) in shown and fmt_value(ref.mean) in shown
        table = app.query_one("#tensor-table", DataTable)
        assert table.row_count == 2  # weight and bias of module 0


async def test_slice_preview_and_bad_slice(ui):
    app = ModelTuiApp("sample_models.book:make_my_linear_net")
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        app.query_one(ModuleTree).reveal(NodeRef("tensor", "0.weight"))
        await ui.settle(pilot)
        w = app.opened.tensor("0.weight")
        await pilot.press("v")
        await pilot.pause()
        box = app.query_one("#slice", Input)
        assert box.has_focus
        box.value = ""
        await pilot.press(*"[1, :3]", "enter")
        await ui.settle(pilot)
        values = app.query_one("#values", DataTable)
        assert values.row_count == 1
        row = values.get_row_at(0)
        from modeltui.core.preview import fmt_value

        assert [str(c) for c in row[1:]] == [fmt_value(v) for v in w[1, :3].tolist()]
        assert "[1, :3] → shape [3]" in ui.text_of(app, "#values-note")
        # a slice that worked gives the keys back (issue 10 item 15): e is an action again, not typing
        assert not box.has_focus and app.query_one(ModuleTree).has_focus
        before = {k: v.clone() for k, v in app.opened.model.state_dict().items()}
        await pilot.press("v")
        await pilot.pause()
        box.value = ""
        await pilot.press(*"[99, 0]", "enter")
        await ui.settle(pilot)
        assert "out of range for dimension 0 of size 64" in ui.text_of(app, "#slice-error")
        assert box.has_class("-invalid") and box.has_focus  # a bad slice keeps the box for a correction
        await pilot.press("escape")  # escape leaves any input
        await pilot.pause()
        assert not box.has_focus
        box.focus()
        box.value = "[x]"
        await pilot.press("enter")
        await ui.settle(pilot)
        assert "'x' is not an index" in ui.text_of(app, "#slice-error")
        after = app.opened.model.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before)


async def test_search_jumps_and_cycles(ui):
    app = ModelTuiApp("sample_models.book:make_chimera", input_specs=[parse_input_spec("2,20")])
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        await pilot.press("slash")
        await pilot.pause()
        assert app.query_one("#search-input", Input).has_focus
        await pilot.press(*"rand_weight", "enter")
        await ui.settle(pilot)
        tree = app.query_one(ModuleTree)
        assert tree.cursor_node.data == NodeRef("tensor", "2.rand_weight")
        assert app.selected == "2.rand_weight"
        assert ui.text_of(app, "#search-count") == "1/1"
        # by class, across the whole model, with next / previous
        await pilot.press("slash")
        app.query_one("#search-input", Input).value = ""
        await pilot.press(*"relu", "enter")
        await ui.settle(pilot)
        first = tree.cursor_node.data
        await pilot.press("n")
        await pilot.pause()
        assert tree.cursor_node.data != first
        await pilot.press("N")
        await pilot.pause()
        assert tree.cursor_node.data == first
        await pilot.press("slash")
        app.query_one("#search-input", Input).value = ""
        await pilot.press(*"nothing-like-this", "enter")
        await ui.settle(pilot)
        assert ui.text_of(app, "#search-count") == "no match"


async def test_help_screen_opens_and_closes(ui):
    app = ModelTuiApp("sample_models.book:make_param_net")
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        import io

        from rich.console import Console

        from modeltui.ui.screens.help import help_text

        console = Console(width=100, file=io.StringIO(), record=True)
        console.print(help_text())
        assert "search modules" in console.export_text()
        assert app.screen.query_one("#help-text", Static).visual is not None
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)


async def test_small_terminal_80x24_keyboard_only(ui):
    app = ModelTuiApp(None, input_specs=[parse_input_spec("2,12")])
    async with app.run_test(size=(80, 24)) as pilot:
        await ui.settle(pilot)
        await pilot.press("slash", *"head.weight", "enter")
        await ui.settle(pilot)
        assert app.selected == "head.weight"
        assert "tied with embed.weight" in ui.text_of(app, "#tensor-title")
        await pilot.resize_terminal(200, 60)
        await pilot.pause()
        assert app.selected == "head.weight"


async def test_grad_toggle(ui):
    opened = open_target("sample_models.book:make_param_net", input_specs=[parse_input_spec("2,4")])
    opened.model(torch.rand(2, 4)).sum().backward()
    opened.refresh()
    app = ModelTuiApp(opened=opened)
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        app.query_one(ModuleTree).reveal(NodeRef("tensor", "0.bias"))
        await ui.settle(pilot)
        await pilot.press("g")
        await ui.settle(pilot)
        assert app.show_grad
        grad = opened.model[0].bias.grad
        st = app.stats_cache[("0.bias", True)]
        assert st.mean == tensor_stats(grad).mean
        assert "showing .grad" in ui.text_of(app, "#tensor-title")
        await pilot.press("g")  # back to values
        await ui.settle(pilot)
        assert not app.show_grad and "showing .grad" not in ui.text_of(app, "#tensor-title")


async def test_grad_toggle_without_grad_says_so(ui):
    app = ModelTuiApp("sample_models.book:make_my_linear_net")
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        await pilot.press("g")
        await pilot.pause()
        assert "select a tensor first" in ui.notes(app)
        app.query_one(ModuleTree).reveal(NodeRef("tensor", "0.bias"))
        await ui.settle(pilot)
        await pilot.press("g")
        await pilot.pause()
        assert not app.show_grad
        assert any("has no gradient" in m for m in ui.notes(app))


async def test_nan_mark_appears_after_stats(ui):
    opened = open_target("sample_models.book:make_my_linear_net")
    with torch.no_grad():
        opened.model[0].weight[0, 0] = float("nan")
    app = ModelTuiApp(opened=opened)
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        app.query_one(ModuleTree).reveal(NodeRef("tensor", "0.weight"))
        await ui.settle(pilot)
        tree = app.query_one(ModuleTree)
        assert "⚠" in str(tree.nodes_by_ref[NodeRef("tensor", "0.weight")].label)
        assert "⚠" in str(tree.nodes_by_ref[NodeRef("module", "0")].label)
        assert "NaN 1" in ui.text_of(app, "#stats")


async def test_lazy_tree_fills_on_expand_only(ui):
    app = ModelTuiApp("sample_models.zoo:make_moe_small")
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        tree = app.query_one(ModuleTree)
        assert NodeRef("module", "layers.0.experts.3") not in tree.nodes_by_ref
        tree.reveal(NodeRef("tensor", "layers.1.experts.7.down.weight"))
        await ui.settle(pilot)
        assert app.selected == "layers.1.experts.7.down.weight"
        assert NodeRef("module", "layers.0.experts.3") not in tree.nodes_by_ref


async def test_command_palette_has_actions_and_goto(ui):
    app = ModelTuiApp("sample_models.book:make_chimera", input_specs=[parse_input_spec("2,20")])
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for t in ("Search", "Next match", "Toggle gradient", "Edit slice", "Keys"):
            assert t in titles
        from modeltui.ui.commands import GoToProvider

        provider = GoToProvider(app.screen)
        hits = [h async for h in provider.search("rand_weight")]
        assert hits
        hits[0].command()
        await ui.settle(pilot)
        assert app.selected == "2.rand_weight"


async def test_checkpoint_metadata_and_warnings_on_root(ckpts, ui):
    app = ModelTuiApp(ckpts["lightning.ckpt"])
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        title = ui.text_of(app, "#module-title")
        assert "epoch: 3" in title and "global_step: 1200" in title and "weights_key: state_dict" in title


async def test_meta_device_tensor_says_no_values(ui):
    app = ModelTuiApp("sample_models.zoo:tiny_decoder", device="meta")
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        app.query_one(ModuleTree).reveal(NodeRef("tensor", "lm_head.weight"))
        await ui.settle(pilot)
        assert "meta device has no values" in ui.text_of(app, "#stats")
        assert "meta device has no values" in ui.text_of(app, "#slice-error")
        assert not any(n.severity == "error" for n in app._notifications)
