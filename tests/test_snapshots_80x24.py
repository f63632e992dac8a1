"""Every dialog and the help screen at 80x24: it fits (buttons and error line on screen) or scrolls.

Update the baselines after an intended change with
``pytest tests/test_snapshots_80x24.py --snapshot-update`` and look at the report.
"""

import pytest
import torch

from modeltui.core import open_target, parse_input_spec
from modeltui.ui.app import ModelTuiApp
from modeltui.ui.widgets import ModuleTree, NodeRef

SIZE = (80, 24)


def tiny_gpt():
    torch.manual_seed(0)
    opened = open_target("sample_models.zoo:TinyGPT", input_specs=[parse_input_spec("2,16")])
    return ModelTuiApp("TinyGPT", opened=opened)


async def _wait(pilot):
    for _ in range(3):
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def scenario(select, *keys, then=None):
    async def run_before(pilot):
        await _wait(pilot)
        pilot.app.clear_notifications()
        if select is not None:
            pilot.app.query_one(ModuleTree).reveal(NodeRef(*select))
            await _wait(pilot)
        for k in keys:
            await pilot.press(k)
            await _wait(pilot)
        if then is not None:
            await then(pilot)
            await _wait(pilot)
        pilot.app.clear_notifications()
        from textual.widgets import Input

        for box in pilot.app.screen.query(Input):  # a blinking cursor made the picture depend on timing
            box.cursor_blink = False
        await pilot.pause()

    return run_before


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
def test_dialog_fits_80x24(snap_compare, name, select, keys, then):
    assert snap_compare(tiny_gpt(), terminal_size=SIZE, run_before=scenario(select, *keys, then=then))


async def _quit_after_edit(pilot):
    from modeltui.core.editing import edit_values

    await _wait(pilot)
    edit_values(pilot.app.session, "pos.weight", "[0, 0] = 1")
    pilot.app.refresh_views()
    await pilot.press("q")
    await _wait(pilot)
    pilot.app.clear_notifications()
    await pilot.pause()


def test_quit_confirm_fits_80x24(snap_compare):
    assert snap_compare(tiny_gpt(), terminal_size=SIZE, run_before=_quit_after_edit)
