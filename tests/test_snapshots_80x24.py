"""Every dialog and the help screen at 80x24: it fits (buttons and error line on screen) or scrolls.

Update the baselines after an intended change with
``pytest tests/test_snapshots_80x24.py --snapshot-update`` and look at the report.
"""

import pytest
import torch
from textual.widgets import Input

from modeltui.core import open_target, parse_input_spec
from modeltui.ui.app import ModelTuiApp
from modeltui.ui.widgets import ModuleTree, NodeRef

SIZE = (80, 24)


def tiny_gpt():
    torch.manual_seed(0)
    opened = open_target("sample_models.zoo:TinyGPT", input_specs=[parse_input_spec("2,16")])
    return ModelTuiApp("TinyGPT", opened=opened)


def scenario(settle, select, *keys, then=None):
    async def run_before(pilot):
        await settle(pilot)
        pilot.app.clear_notifications()
        if select is not None:
            pilot.app.query_one(ModuleTree).reveal(NodeRef(*select))
            await settle(pilot)
        for k in keys:
            await pilot.press(k)
            await settle(pilot)
        if then is not None:
            await then(pilot)
            await settle(pilot)
        pilot.app.clear_notifications()
        _steady_cursors(pilot.app)
        await pilot.pause()

    return run_before


def _steady_cursors(app):
    """Text boxes' cursors shown steadily: a blink caught half way made the image depend on the machine's speed."""
    for box in app.screen.query(Input):
        box.cursor_blink = False


async def _bad_init(pilot):
    d = pilot.app.screen
    d.query_one("#init").value = "xavier_uniform_"
    await pilot.pause()
    d.query_one("#which").value = "all"
    await pilot.pause()
    d.query_one("#ok").press()  # refused on a bias: the error line must be visible at 80x24


@pytest.fixture(autouse=True)
def deterministic(monkeypatch):
    """A fixed seed in the init dialog and a clock that ticks 1 ms per reading (forward timings)."""
    import itertools
    import time
    import types

    import modeltui.core.forward as forward
    import modeltui.ui.dialogs.init as init

    monkeypatch.setattr(init, "new_seed", lambda: 1234)
    ticks = itertools.count()

    class Clock(types.SimpleNamespace):
        """The time module, but perf_counter ticks 1 ms per reading."""

        def __getattr__(self, name):
            return getattr(time, name)

    monkeypatch.setattr(forward, "time", Clock(perf_counter=lambda: next(ticks) / 1000))


@pytest.mark.parametrize("name, select, keys, then", [
    ("forward", None, ("f",), None),
    ("init_refused", ("module", "blocks.0"), ("i",), _bad_init),
    ("edit", ("tensor", "pos.weight"), ("e",), None),
    ("tie", ("module", "lm_head"), ("t",), None),
    ("save", None, ("s",), None),
    ("compare", None, ("c",), None),
    ("weights", None, ("w",), None),
    ("device", None, ("d",), None),
    ("help", None, ("question_mark",), None),
    ("forward_result", None, ("f", "enter"), None),
], ids=lambda v: v if isinstance(v, str) else "")
def test_dialog_fits_80x24(snap_compare, settle, name, select, keys, then):
    assert snap_compare(tiny_gpt(), terminal_size=SIZE, run_before=scenario(settle, select, *keys, then=then))


async def _quit_after_edit(pilot, settle):
    from modeltui.core.editing import edit_values

    await settle(pilot)
    edit_values(pilot.app.session, "pos.weight", "[0, 0] = 1")
    pilot.app.refresh_views()
    await pilot.press("q")
    await settle(pilot)
    pilot.app.clear_notifications()
    await pilot.pause()


def test_quit_confirm_fits_80x24(snap_compare, settle):
    assert snap_compare(tiny_gpt(), terminal_size=SIZE, run_before=lambda pilot: _quit_after_edit(pilot, settle))


async def _run_with_loss(pilot, settle, loss="ce"):
    pilot.app.action_forward()
    await settle(pilot)
    pilot.app.screen.query_one("#loss").value = loss
    await pilot.pause()
    pilot.app.screen.query_one("#ok").press()
    await settle(pilot)
    await pilot.press("escape")  # the result
    await settle(pilot)


async def _before_and_after_xavier(pilot, settle):
    from modeltui.core.editing import initialise

    await settle(pilot)
    await _run_with_loss(pilot, settle)
    initialise(pilot.app.session, "xavier_uniform_", {}, which="weights", seed=0)
    pilot.app.refresh_views()
    await _run_with_loss(pilot, settle)
    await pilot.press("l")
    await settle(pilot)
    await pilot.press("p")  # the run before xavier, side by side
    await settle(pilot)
    pilot.app.clear_notifications()
    await pilot.pause()


def test_layers_view_and_plot_fit_80x24(snap_compare, settle):
    """The layers view of TinyGPT before / after xavier: the plot (std and grad norm, both runs) and the table."""
    assert snap_compare(tiny_gpt(), terminal_size=SIZE, run_before=lambda pilot: _before_and_after_xavier(pilot, settle))
