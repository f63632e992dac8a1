"""Snapshot images of the main screens (pytest-textual-snapshot).

Update the baselines after an intended change with
``pytest tests/test_snapshots.py --snapshot-update`` and look at the report.
"""

import torch

from modeltui.core import open_target, parse_input_spec
from modeltui.ui.app import ModelTuiApp
from modeltui.ui.widgets import ModuleTree, NodeRef


def fixed(target, *shapes, seed=0):
    import importlib

    importlib.import_module(target.partition(":")[0])  # its import-time instances draw random numbers too
    torch.manual_seed(seed)
    return open_target(target, input_specs=[parse_input_spec(s) for s in shapes])


def test_chimera_screen(snap_compare, settle):
    opened = fixed("sample_models.book:make_chimera", "2,20")

    async def run_before(pilot):
        await settle(pilot)
        pilot.app.query_one(ModuleTree).reveal(NodeRef("tensor", "2.rand_weight"))
        await settle(pilot)
        pilot.app.clear_notifications()
        await pilot.pause()

    assert snap_compare(ModelTuiApp("chimera", opened=opened), terminal_size=(120, 36), run_before=run_before)


def test_state_dict_checkpoint_screen(snap_compare, settle, tmp_path):
    from sample_models.checkpoints import model_for_checkpoints

    torch.save(model_for_checkpoints().state_dict(), tmp_path / "tiny.pt")
    opened = open_target(str(tmp_path / "tiny.pt"))
    opened.info.label = "tiny.pt"

    async def run_before(pilot):
        await settle(pilot)
        pilot.app.query_one(ModuleTree).reveal(NodeRef("tensor", "blocks.0.mlp.0.weight"))
        await settle(pilot)

    assert snap_compare(ModelTuiApp("tiny.pt", opened=opened), terminal_size=(120, 36), run_before=run_before)


def test_tied_language_model_screen(snap_compare, settle):
    opened = fixed("sample_models.zoo:TinyGPT", "2,16")

    async def run_before(pilot):
        await settle(pilot)
        pilot.app.query_one(ModuleTree).reveal(NodeRef("tensor", "lm_head.weight"))
        await settle(pilot)

    assert snap_compare(ModelTuiApp("TinyGPT", opened=opened), terminal_size=(120, 36), run_before=run_before)


def test_demo_at_80x24(snap_compare, settle):
    opened = fixed("modeltui.demo:DemoNet", "2,12")

    async def run_before(pilot):
        await settle(pilot)
        pilot.app.clear_notifications()
        await pilot.pause()

    assert snap_compare(ModelTuiApp("demo", opened=opened), terminal_size=(80, 24), run_before=run_before)
