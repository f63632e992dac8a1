"""Issue 15 in the app: backward from the forward dialog, grad norms in the tree and the table, g, zero grads,
the layers view, the first NaN/Inf output, and the -i pass's marks at start."""

import math

import pytest
import torch
from textual.widgets import Checkbox, DataTable, Select

from modeltui.core import open_module, open_target, parse_input_spec
from modeltui.core.backward import run_backward
from modeltui.core.forward import run_forward
from modeltui.core.layers import layer_rows
from modeltui.core.request import OpenRequest
from modeltui.ui.app import ModelTuiApp
from modeltui.ui.dialogs import ForwardDialog, ForwardResultScreen
from modeltui.ui.screens import LayersScreen
from modeltui.ui.widgets import ModulePanel, ModuleTree, NodeRef, TensorPanel


@pytest.fixture
def tied(tied_frozen):
    """``tied()``: the conftest's tied / frozen model, opened."""
    return lambda: open_module(tied_frozen(), "tied")


async def forward(pilot, ui, loss=None, accumulate=False, close=True):
    """f, choose a loss (None: forward only), run, and close the result."""
    app = pilot.app
    await pilot.press("f")
    await ui.settle(pilot)
    assert isinstance(app.screen, ForwardDialog)
    app.screen.query_one("#loss", Select).value = loss or "none"
    app.screen.query_one("#accumulate", Checkbox).value = accumulate
    await pilot.pause()
    await pilot.click("#ok")
    await ui.settle(pilot)
    if close and isinstance(app.screen, ForwardResultScreen):
        await pilot.press("escape")
        await ui.settle(pilot)


def label(app, kind, name) -> str:
    tree = app.query_one(ModuleTree)
    tree.reveal(NodeRef(kind, name))
    return str(tree.nodes_by_ref[NodeRef(kind, name)].label)


async def test_backward_from_the_dialog_shows_grad_norms_and_g_shows_the_grad(ui, tied):
    opened = tied()
    app = ModelTuiApp("tied", opened=opened, input_specs=[parse_input_spec("3,5")])
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        await forward(pilot, ui, "sum", close=False)
        screen_text = str(app.screen.query_one("Static").render())
        assert "backward (sum) loss" in screen_text and "grads cleared first" in screen_text
        await pilot.press("escape")
        await ui.settle(pilot)
        norm = app.runs[-1].grad_norms["emb.weight"]
        assert f"∇{norm:.3g}" in label(app, "tensor", "emb.weight")
        assert f"∇{norm:.3g}" in label(app, "tensor", "out.weight")  # tied: the same grad
        assert "∇" not in label(app, "tensor", "mid.weight")  # frozen: none
        assert not app.session.dirty  # grads are not part of what a save writes
        await ui.select(pilot, NodeRef("module", "top"))
        table = app.query_one(ModulePanel).query_one(DataTable)
        assert str(table.get_cell("top.weight", "grad")) == f"∇{app.runs[-1].grad_norms['top.weight']:.3g}"
        await ui.select(pilot, NodeRef("module", "mid"))
        assert str(table.get_cell("mid.weight", "grad")) == "frozen"
        await ui.select(pilot, NodeRef("tensor", "top.weight"))
        await pilot.press("g")
        await ui.settle(pilot)
        panel = app.query_one(TensorPanel)
        assert panel.show_grad and "[showing .grad]" in ui.text_of(app, "#tensor-title")
        expected = float(opened.model.top.weight.grad.norm())
        assert app.stats_cache[("top.weight", True)].norm == pytest.approx(expected, rel=1e-6)


async def test_zero_grads_clears_them_and_marks_nothing_unsaved(ui, notes, tied):
    app = ModelTuiApp("tied", opened=tied(), input_specs=[parse_input_spec("3,5")])
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        await forward(pilot, ui, "mean")
        assert app.info.tensors["top.weight"].has_grad
        await pilot.press("G")
        await ui.settle(pilot)
        assert all(p.grad is None for p in app.opened.model.parameters())
        assert not app.info.tensors["top.weight"].has_grad and app.grad_norms == {}
        assert "∇" not in label(app, "tensor", "top.weight")
        assert any("cleared the grads of 3 parameter(s)" in n for n in notes(app))
        assert not app.session.dirty and not app.session.undo_stack


async def test_accumulate_is_said_and_adds(ui, tied):
    app = ModelTuiApp("tied", opened=tied(), input_specs=[parse_input_spec("3,5")])
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        await forward(pilot, ui, "sum")
        g = app.opened.model.top.weight.grad.clone()
        await forward(pilot, ui, "sum", accumulate=True, close=False)
        assert "added to the grads already there" in str(app.screen.query_one("Static").render())
        assert torch.allclose(app.opened.model.top.weight.grad, 2 * g)


async def test_nothing_requires_grad_is_said_in_the_dialog_and_changes_nothing(ui):
    model = torch.nn.Sequential(torch.nn.Linear(4, 4)).requires_grad_(False)
    app = ModelTuiApp("frozen", opened=open_module(model, "frozen"), input_specs=[parse_input_spec("2,4")])
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        h = ui.model_hash(model)
        await forward(pilot, ui, "sum", close=False)
        assert isinstance(app.screen, ForwardDialog)
        assert "no parameter requires grad" in ui.error_text(app.screen)
        assert ui.model_hash(model) == h and model[0].weight.grad is None and not app.runs


async def test_a_loss_that_does_not_fit_is_an_error_and_the_grads_stay(ui, notes):
    model = torch.nn.Sequential(torch.nn.Linear(4, 1))
    app = ModelTuiApp("reg", opened=open_module(model, "reg"), input_specs=[parse_input_spec("2,4")])
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        await forward(pilot, ui, "sum")
        g = model[0].weight.grad.clone()
        await forward(pilot, ui, "ce")
        assert any("ce needs a classifier-shaped output" in n and "grads are as they were" in n for n in notes(app))
        assert torch.equal(model[0].weight.grad, g) and app.info.tensors["0.weight"].has_grad




async def test_the_tree_jumps_to_the_first_nan_output(ui, notes, nan_net):
    app = ModelTuiApp("nan", opened=open_module(nan_net(2), "nan"), input_specs=[parse_input_spec("2,4")])
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        await forward(pilot, ui)
        tree = app.query_one(ModuleTree)
        assert tree.cursor_ref() == NodeRef("module", "2")
        assert "⚠" in label(app, "module", "2") and "⚠" not in label(app, "module", "0")
        assert any("first NaN/Inf output: '2' (Linear)" in n for n in notes(app))


async def test_inputs_at_start_show_the_marks_and_the_layers_at_once(ui):
    request = OpenRequest.make("sample_models.book:make_chimera", input_specs=[parse_input_spec("2,20")])
    app = ModelTuiApp(request=request)
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        assert "→ 2×20" in label(app, "module", "1")  # no f pressed
        assert "→ 2×16" in label(app, "module", "0")
        await pilot.press("l")
        await ui.settle(pilot)
        assert isinstance(app.screen, LayersScreen)
        assert app.screen.table.row_count == len(app.opened.forward.order)


async def test_the_layers_view_sorts_compares_and_goes_to_a_module(ui, notes):
    from modeltui.core.editing import initialise

    torch.manual_seed(0)
    opened = open_target("sample_models.zoo:tiny_decoder")
    app = ModelTuiApp("dec", opened=opened, input_specs=[parse_input_spec("2,8")])
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        await pilot.press("l")
        await ui.settle(pilot)
        assert "no run yet" in notes(app)[-1] and not isinstance(app.screen, LayersScreen)
        await forward(pilot, ui, "ce")
        initialise(app.session, "xavier_uniform_", {}, which="weights", seed=0)
        app.refresh_views()
        await forward(pilot, ui, "ce")
        await pilot.press("l")
        await ui.settle(pilot)
        screen = app.screen
        assert isinstance(screen, LayersScreen)
        table = screen.table
        assert [str(k.value) for k in table.rows][:3] == ["embed_tokens", "layers.0.input_norm", "layers.0.q_proj"]
        await pilot.press("s")  # sort by std, largest first
        await ui.settle(pilot)
        stds = [r.stats.std for r in screen.rows]
        first = str(next(iter(table.rows)).value)
        assert next(r for r in screen.rows if r.path == first).stats.std == max(s for s in stds if s is not None)
        await pilot.press("p")  # the run before (before xavier) side by side
        await ui.settle(pilot)
        assert "std_before" in [str(c.value) for c in table.columns]
        from modeltui.ui.widgets.layers_table import fig

        q = "layers.0.q_proj"
        old_std = next(r for r in screen.before_rows if r.path == q).stats.std
        new_std = next(r for r in screen.rows if r.path == q).stats.std
        assert old_std != new_std  # xavier changed the scale
        assert str(table.get_cell(q, "std_before")) == fig(old_std) and str(table.get_cell(q, "std")) == fig(new_std)
        assert any(s.label == "std before" for s in screen.plot.series)
        await pilot.press("s", "s", "s", "s", "s")  # back to execution order
        await ui.settle(pilot)
        table.move_cursor(row=2)
        await pilot.press("enter")
        await ui.settle(pilot)
        assert not isinstance(app.screen, LayersScreen)
        assert app.query_one(ModuleTree).cursor_ref() == NodeRef("module", "layers.0.q_proj")


async def test_grads_never_make_quit_ask_and_undo_puts_a_tensor_back_with_its_grad(ui, tmp_path, tied):
    from modeltui.core.editing import edit_values
    from modeltui.core.saving import save_opened

    opened = tied()
    app = ModelTuiApp("tied", opened=opened, input_specs=[parse_input_spec("3,5")])
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        h = ui.model_hash(opened.model)
        edit_values(app.session, "top.bias", "[0] = 5")
        app.refresh_views()
        await forward(pilot, ui, "sum")
        assert app.session.dirty and opened.model.top.bias.grad is not None
        await pilot.press("u")
        await ui.settle(pilot)
        assert ui.model_hash(opened.model) == h and not app.session.dirty  # the backward left the values alone
        # undo puts top.bias back whole, its grad as it was at the edit (none): its norm goes; the others stay
        assert opened.model.top.bias.grad is None and "∇" not in label(app, "tensor", "top.bias")
        assert opened.model.top.weight.grad is not None and "∇" in label(app, "tensor", "top.weight")
        report = save_opened(opened, str(tmp_path / "tied.safetensors"))
        assert report is not None and (tmp_path / "tied.safetensors").exists()  # grads are not saved, nothing fails
        await pilot.press("q")
        await ui.settle(pilot)
    assert app.return_code == 0  # no "unsaved changes?" question for grads


def test_the_plot_draws_std_and_grad_norm_against_depth_with_the_run_before_and_nan_marks(tied_frozen, nan_net):
    from modeltui.ui.widgets.depth_plot import log_ticks, make_series, tick_label

    model = tied_frozen()
    specs = [parse_input_spec("3,5")]
    before = layer_rows(run_backward(model, specs, "sum"))
    with torch.no_grad():
        model.top.weight.mul_(10)
    now = layer_rows(run_backward(model, specs, "sum"))
    series = {s.label: s for s in make_series(now, before)}
    assert set(series) == {"std", "grad norm", "std before", "grad norm before"}
    leaves = [r for r in now if r.leaf]
    assert series["std"].xs == list(range(len(leaves)))
    top = [r.path for r in leaves].index("top")
    assert series["std"].ys[top] == pytest.approx(math.log10(leaves[top].stats.std))
    assert series["std"].ys[top] > series["std before"].ys[top]  # 10x the weights, a wider output
    grads = dict(zip(series["grad norm"].xs, series["grad norm"].ys))
    assert set(grads) == {x for x, r in enumerate(leaves) if r.grad_norm is not None}  # mid is frozen: no point
    assert "NaN/Inf output" not in series
    nan_rows = layer_rows(run_forward(nan_net(2), [parse_input_spec("2,4")]))
    marks = next(s for s in make_series(nan_rows, None) if s.marks)
    assert marks.xs == [x for x, r in enumerate(r for r in nan_rows if r.leaf) if r.nonfinite] and marks.xs[0] == 2
    assert log_ticks(-2.3, 0.4) == ([-3.0, -2.0, -1.0, 0.0, 1.0], ["0.001", "0.01", "0.1", "1", "10"])
    assert tick_label(-6) == "1e-6" and tick_label(2) == "100"


async def test_hostile_module_names_in_the_layers_view_are_shown_never_obeyed(ui, notes):
    from torch import nn

    model = nn.Sequential()
    for name in ("[bold red]RED[/]", "clear\x1b[2J", "rtl\u202eevil"):
        model.add_module(name, nn.Linear(4, 4))
    with torch.no_grad():
        getattr(model, "clear\x1b[2J").weight[0, 0] = float("nan")
    app = ModelTuiApp("hostile", opened=open_module(model, "hostile"), input_specs=[parse_input_spec("2,4")])
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        await forward(pilot, ui, "sum")
        assert any("clear\\x1b[2J" in n for n in notes(app))  # the first NaN/Inf, named escaped
        await pilot.press("l")
        await ui.settle(pilot)
        table = app.screen.table
        cells = [str(table.get_cell(k, "module")) for k in ("[bold red]RED[/]", "clear\x1b[2J", "rtl\u202eevil")]
        assert cells[0] == "[bold red]RED[/]" and cells[1] == "clear\\x1b[2J" and "\u202e" not in cells[2]
        assert "clear\\x1b[2J" in str(app.screen.query_one("#layers-title").render())
        assert app.is_running
