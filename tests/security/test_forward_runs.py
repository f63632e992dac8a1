"""A forward pass stuck in plain Python is left to finish in the background (issue 11 item 14).

It cannot be interrupted, the app says so, and a later run works on its
own; when the abandoned run finally ends, its late result ("cancelled")
must not replace the later run's output shapes or report a cancel.
"""

from __future__ import annotations

import threading
import time

import torch
from torch import nn
from textual.widgets import Input

from modeltui.core import parse_input_spec
from modeltui.core.forward import ForwardRun, run_forward, runs_inside
from modeltui.ui.app import ModelTuiApp


class StuckOnce(torch.nn.Module):
    """The first forward loops in plain Python (no submodule call) until released; later ones return."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)
        self.release = threading.Event()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls == 1:
            while not self.release.is_set():
                time.sleep(0.01)
        return self.lin(x)


async def test_an_abandoned_stuck_run_ending_late_leaves_the_later_result_alone(settle, notes, wait_until):
    from modeltui.core import open_module
    from modeltui.ui.dialogs import ForwardResultScreen
    from modeltui.ui.forward_actions import STUCK_AFTER

    model = StuckOnce()
    app = ModelTuiApp("stuck", opened=open_module(model, "stuck"))
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot)
            await pilot.press("f")
            await pilot.pause()
            app.screen.query_one("#shapes", Input).value = "2,4"
            await pilot.press("enter")
            assert await wait_until(pilot, lambda: runs_inside(model))
            await pilot.press("escape")  # cancel: the run is stuck where no hook can stop it
            await pilot.pause(STUCK_AFTER + 0.5)
            assert any("cannot be interrupted" in n for n in notes(app))
            await pilot.press("f")
            await pilot.pause()
            await pilot.press("enter")
            assert await wait_until(pilot, lambda: isinstance(app.screen, ForwardResultScreen))
            assert app.screen.result.ok
            await pilot.press("escape")
            await settle(pilot)
            assert app.forward_records[""].shapes == [(2, 4)]
            shown = len(notes(app))
            model.release.set()  # the abandoned run ends now, as "cancelled"
            assert await wait_until(pilot, lambda: not runs_inside(model))
            await pilot.pause(0.5)
            await settle(pilot)
            root = app.forward_records.get("")  # the later run's shapes stay in the tree
            assert root is not None and root.shapes == [(2, 4)], app.forward_records
            assert "→ 2×4" in str(app.main.tree.root.label)
            assert not any("cancelled" in n for n in notes(app)[shown:]), notes(app)[shown:]
    finally:
        model.release.set()


async def test_a_stuck_forward_says_so_and_later_runs_work(settle, notes):
    """Issue 11 item 14: x cannot stop Python code that calls no submodule; say so; the next run is not 'cancelled'."""
    from modeltui.core import open_module
    from modeltui.ui.dialogs import ForwardResultScreen
    from modeltui.ui.forward_actions import STUCK_AFTER

    model = StuckOnce()
    app = ModelTuiApp("stuck", opened=open_module(model, "stuck"))
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot)
            await pilot.press("f")
            await pilot.pause()
            app.screen.query_one("#shapes", Input).value = "2,4"
            await pilot.press("enter")
            await pilot.pause(0.3)
            await pilot.press("escape")
            await pilot.pause(STUCK_AFTER + 0.5)
            assert any("cannot be interrupted" in n for n in notes(app))
            await pilot.press("f")
            await pilot.pause()
            await pilot.press("enter")
            deadline = time.time() + 20
            while not isinstance(app.screen, ForwardResultScreen) and time.time() < deadline:
                await pilot.pause(0.1)
            assert isinstance(app.screen, ForwardResultScreen) and app.screen.result.ok
            assert not any(n == "forward pass cancelled" for n in notes(app)[-2:])
    finally:
        model.release.set()


# ------------------------------------------------------------ issue 11.14: runs own their hooks


class Stuck(nn.Module):
    """Loops in pure Python (no submodule calls) while ``stuck`` is set, until released."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.stuck = True
        self.entered = threading.Event()
        self.release = threading.Event()

    def forward(self, x):
        x = self.lin(x)
        if self.stuck:
            self.entered.set()
            while not self.release.is_set():
                time.sleep(0.005)
        return self.lin(x)


def test_an_abandoned_stuck_run_does_not_cancel_later_runs():
    model = Stuck()
    spec = [parse_input_spec("2,3")]
    first = ForwardRun()
    results = {}
    thread = threading.Thread(target=lambda: results.setdefault("first", run_forward(model, spec, run=first)))
    thread.start()
    try:
        assert model.entered.wait(10)
        first.cancel()
        time.sleep(0.1)
        # the UI can tell the cancelled run is still inside the model, making no progress
        assert first.inside and runs_inside(model) == [first]
        assert first.seconds_since_progress() >= 0.1
        model.stuck = False
        later = run_forward(model, spec)
        assert later.ok, later.error
        assert later.records["lin"].shapes == [(2, 3)] and later.records[""].shapes == [(2, 3)]
    finally:
        model.release.set()
        thread.join(10)
    assert results["first"].error == "cancelled"
    assert not first.inside and runs_inside(model) == []
    assert not model.lin._forward_pre_hooks and not model.lin._forward_hooks


def test_cancel_before_the_first_module_stops_at_once():
    run = ForwardRun()
    run.cancel()
    r = run_forward(nn.Sequential(nn.Linear(2, 2)), [parse_input_spec("1,2")], run=run)
    assert r.error == "cancelled"
