"""Pilot tests of compare (c): the tree's marks, the changed-only filter (C), the compare panel, bad input,
stale comparisons, and the save dialog's list of the tensors an overwrite changes."""

import shutil

import pytest
import torch
from safetensors.torch import save_file
from textual.widgets import DataTable, Input, Static

from modeltui.core.preview import fmt_value
from modeltui.ui.app import ModelTuiApp
from modeltui.ui.dialogs import CompareDialog, Confirm, SaveDialog
from modeltui.ui.widgets import ModuleTree, NodeRef


@pytest.fixture
def pair(tmp_path):
    g = torch.Generator().manual_seed(0)
    sd = {f"layers.{i}.{p}": torch.randn(8, 6, generator=g) for i in range(3) for p in ("attn.weight", "mlp.weight")}
    sd["head.weight"] = torch.randn(4, 6, generator=g)
    save_file(sd, str(tmp_path / "a.safetensors"))
    other = {k: v.clone() for k, v in sd.items()}
    other["layers.1.mlp.weight"][2, 3] += 1.5
    del other["head.weight"]
    other["layers.2.extra.bias"] = torch.zeros(6)
    torch.save(other, str(tmp_path / "b.pt"))
    return sd, other, str(tmp_path / "a.safetensors"), str(tmp_path / "b.pt")


async def compare_with(ui, pilot, path: str) -> None:
    await pilot.press("c")
    await ui.settle(pilot)
    assert isinstance(pilot.app.screen, CompareDialog)
    pilot.app.screen.query_one("#other", Input).value = path
    await pilot.press("enter")
    await ui.settle(pilot, rounds=5)


def rendered(app, selector: str) -> str:
    """The text of a Static holding a rich renderable (a table, a group)."""
    from rich.console import Console

    console = Console(width=120, record=True, file=open("/dev/null", "w"))
    console.print(app.query_one(selector, Static).content)
    return console.export_text()


def label(app, kind: str, name: str) -> str:
    return str(app.query_one(ModuleTree).nodes_by_ref[NodeRef(kind, name)].label)


async def test_compare_marks_every_node_and_lists_what_only_the_other_has(ui, pair):
    _, _, a, b = pair
    app = ModelTuiApp(a)
    async with app.run_test(size=(120, 40)) as pilot:
        await ui.settle(pilot)
        await compare_with(ui, pilot, b)
        assert not isinstance(app.screen, CompareDialog)
        assert app.comparison.summary() == "1 changed, 1 only here, 1 only there, 5 identical"
        assert any("1 changed, 1 only here, 1 only there, 5 identical" in n for n in ui.notes(app))
        assert not any("\\n" in n for n in ui.notes(app))  # the report's lines are lines, not escaped newlines
        await ui.select(pilot, NodeRef("tensor", "layers.1.mlp.weight"))
        await ui.select(pilot, NodeRef("tensor", "layers.0.attn.weight"))
        await ui.select(pilot, NodeRef("tensor", "head.weight"))
        await ui.select(pilot, NodeRef("module", "layers.2"))
        app.query_one(ModuleTree).nodes_by_ref[NodeRef("module", "layers.2")].expand()
        await ui.settle(pilot)
        assert label(app, "module", "").startswith("~+− (root)")
        assert label(app, "module", "layers").startswith("~− layers")
        assert label(app, "module", "layers.0").startswith("= 0")
        assert label(app, "module", "layers.1").startswith("~ 1")
        assert label(app, "tensor", "layers.1.mlp.weight").startswith("~ .weight")
        assert label(app, "tensor", "layers.0.attn.weight").startswith("= .weight")
        assert label(app, "tensor", "head.weight").startswith("+ .weight")
        assert label(app, "other", "layers.2.extra.bias").startswith("− .extra.bias [6] float32 only there")


async def test_changed_only_filter(ui, pair):
    _, _, a, b = pair
    app = ModelTuiApp(a)
    async with app.run_test(size=(120, 40)) as pilot:
        await ui.settle(pilot)
        await pilot.press("C")
        await ui.settle(pilot)
        assert any("nothing compared yet" in n for n in ui.notes(app))
        await compare_with(ui, pilot, b)
        tree = app.query_one(ModuleTree)
        await pilot.press("C")
        await ui.settle(pilot)
        assert tree.changed_only
        layers = tree.nodes_by_ref[NodeRef("module", "layers")]
        layers.expand()
        await ui.settle(pilot)
        assert [n.data.name for n in layers.children] == ["layers.1", "layers.2"]  # layers.0 is identical: hidden
        one = tree.nodes_by_ref[NodeRef("module", "layers.1")]
        one.expand()
        await ui.settle(pilot)
        assert [n.data.name for n in one.children] == ["layers.1.mlp"]
        await pilot.press("C")
        await ui.settle(pilot)
        layers = tree.nodes_by_ref[NodeRef("module", "layers")]
        layers.expand()
        await ui.settle(pilot)
        assert not tree.changed_only and [n.data.name for n in layers.children] == ["layers.0", "layers.1", "layers.2"]


async def test_compare_panel_shows_figures_both_sides_and_values_side_by_side(ui, pair):
    sd, other, a, b = pair
    app = ModelTuiApp(a)
    async with app.run_test(size=(120, 50)) as pilot:
        await ui.settle(pilot)
        await compare_with(ui, pilot, b)
        await ui.select(pilot, NodeRef("tensor", "layers.1.mlp.weight"))
        figures = ui.text_of(app, "#compare-figures")
        x, y = sd["layers.1.mlp.weight"], other["layers.1.mlp.weight"]
        assert "1 of 48 differ" in figures and "at [2, 3]" in figures
        assert f"max |a−b| {float((x.double() - y.double()).abs().max()):.5g}" in figures
        stats = rendered(app, "#compare-stats")
        assert "this" in stats and "other" in stats and "a − b" in stats
        assert f"{float(y.double().max()):.5g}" in stats  # the other side's max
        assert "histogram of a − b" in rendered(app, "#compare-histogram")
        table = app.query_one("#compare-values", DataTable)
        rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        assert rows[6][0] == "2 a" and rows[7][0] == "  b" and rows[8][0] == "  Δ"
        assert rows[6][4] == fmt_value(float(x[2, 3])) and rows[7][4] == fmt_value(float(y[2, 3]))
        assert rows[8][4] == fmt_value(float(x[2, 3]) - float(y[2, 3])) and rows[8][1] == "0"
        # a new slice shows the same cells of both sides
        box = app.query_one("#slice", Input)
        box.value = "[2]"
        box.focus()
        await pilot.press("enter")
        await ui.settle(pilot)
        rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        assert [r[0] for r in rows] == ["0 a", "  b", "  Δ"] and rows[1][4] == fmt_value(float(y[2, 3]))
        # identical and only-here tensors say so without reading anything
        await ui.select(pilot, NodeRef("tensor", "layers.0.attn.weight"))
        assert "identical to" in ui.text_of(app, "#compare-figures")
        await ui.select(pilot, NodeRef("tensor", "head.weight"))
        assert "only here" in ui.text_of(app, "#compare-figures")


@pytest.mark.parametrize("other, words", [
    ("", "give a checkpoint"),
    ("/nonexistent/x.pt", "no such file"),
    ("not_a_module_xyz:Net", "cannot import module"),
])
async def test_bad_other_target_is_said_in_the_dialog(ui, pair, other, words):
    _, _, a, _ = pair
    app = ModelTuiApp(a)
    async with app.run_test(size=(100, 30)) as pilot:
        await ui.settle(pilot)
        await compare_with(ui, pilot, other)
        assert isinstance(app.screen, CompareDialog) and words in ui.error_text(app.screen)
        assert app.comparison is None
        await pilot.press("escape")
        await ui.settle(pilot)
        assert app.is_running and not isinstance(app.screen, CompareDialog)


async def test_nothing_in_common_and_a_broken_file_stay_in_the_dialog(ui, pair, tmp_path):
    _, _, a, _ = pair
    save_file({"x.y": torch.zeros(2)}, str(tmp_path / "unrelated.safetensors"))
    (tmp_path / "broken.safetensors").write_bytes(b"\x10\0\0\0\0\0\0")
    app = ModelTuiApp(a)
    async with app.run_test(size=(100, 30)) as pilot:
        await ui.settle(pilot)
        await compare_with(ui, pilot, str(tmp_path / "unrelated.safetensors"))
        assert "no tensor in common" in ui.error_text(app.screen)
        app.screen.query_one("#other", Input).value = str(tmp_path / "broken.safetensors")
        await pilot.press("enter")
        await ui.settle(pilot)
        assert "not a safetensors file" in ui.error_text(app.screen) and app.comparison is None


async def test_escape_cancels_a_running_compare(ui, pair, monkeypatch):
    """Escape closes the dialog and the job stops at its next chunk (a compare that would run for long)."""
    import threading
    import time

    import modeltui.core.compare as compare
    from modeltui.core.errors import Cancelled

    started, stopped = threading.Event(), threading.Event()

    def slow(a, b, *, workers=1, should_stop=None, progress=None):
        started.set()
        t0 = time.monotonic()
        while time.monotonic() - t0 < 20:
            if should_stop():
                stopped.set()
                raise Cancelled()
            time.sleep(0.01)
        raise AssertionError("never cancelled")

    monkeypatch.setattr(compare, "compare_opened", slow)
    _, _, a, b = pair
    app = ModelTuiApp(a)
    async with app.run_test(size=(100, 30)) as pilot:
        await ui.settle(pilot)
        await pilot.press("c")
        await ui.settle(pilot)
        app.screen.query_one("#other", Input).value = b
        await pilot.press("enter")
        for _ in range(200):
            await pilot.pause(0.05)
            if started.is_set():
                break
        assert started.is_set() and isinstance(app.screen, CompareDialog)
        await pilot.press("escape")
        await ui.settle(pilot)
        assert stopped.wait(5) and app.comparison is None and app.is_running
        assert not isinstance(app.screen, CompareDialog)


async def test_a_change_to_the_model_clears_the_comparison(ui, pair):
    _, _, a, b = pair
    app = ModelTuiApp(a)
    async with app.run_test(size=(120, 40)) as pilot:
        await ui.settle(pilot)
        await compare_with(ui, pilot, b)
        assert app.comparison is not None
        await ui.edit_values(pilot, "[0, 0] = 7", tensor="layers.0.mlp.weight")
        assert app.comparison is None and app.query_one(ModuleTree).marks is None
        assert any("the model changed since the comparison" in n for n in ui.notes(app))
        assert not label(app, "module", "").startswith(("~", "="))


async def test_compare_with_the_file_it_came_from_after_an_edit(ui, pair, tmp_path):
    """The dialog offers the file the model came from; the edit is the one change."""
    _, _, a, _ = pair
    copy = str(tmp_path / "copy.safetensors")
    shutil.copy(a, copy)
    app = ModelTuiApp(copy)
    async with app.run_test(size=(120, 40)) as pilot:
        await ui.settle(pilot)
        await ui.edit_values(pilot, "[1, 2] += 1", tensor="layers.2.attn.weight")
        await pilot.press("c")
        await ui.settle(pilot)
        assert app.screen.query_one("#other", Input).value == copy
        assert "came from" in ui.text_of(app.screen, "#compare-hint")
        await pilot.press("enter")
        await ui.settle(pilot, rounds=5)
        assert app.comparison.summary() == "1 changed, 0 only here, 0 only there, 6 identical"
        d = app.comparison.by_name["layers.2.attn.weight"]
        assert d.max_index == (1, 2) and d.max_abs == pytest.approx(1.0)


async def test_save_dialog_lists_the_tensors_an_overwrite_changes(ui, pair, tmp_path):
    _, _, a, b = pair
    copy = str(tmp_path / "copy.safetensors")
    shutil.copy(a, copy)
    app = ModelTuiApp(copy)
    async with app.run_test(size=(120, 40)) as pilot:
        await ui.settle(pilot)
        await ui.edit_values(pilot, "[0, 0] = 42", tensor="layers.1.mlp.weight")
        await ui.edit_values(pilot, "*= 2", tensor="head.weight")
        await pilot.press("s")
        await ui.settle(pilot)
        assert isinstance(app.screen, SaveDialog) and app.screen.query_one("#path", Input).value == copy
        note = ui.text_of(app.screen, "#changes-note")
        assert "changes 2 tensor(s): head.weight, layers.1.mlp.weight" in note
        await pilot.press("enter")
        await ui.settle(pilot)
        assert isinstance(app.screen, Confirm)
        assert "changes 2 tensor(s): head.weight, layers.1.mlp.weight" in str(app.screen.query_one(".dialog-title", Static).render())
        await pilot.press("y")
        await ui.settle(pilot)
        await pilot.press("s")
        await ui.settle(pilot)
        assert "changes no tensor" in ui.text_of(app.screen, "#changes-note")
        # undo after the save: the file holds the edit, the model no longer does
        await pilot.press("escape", "u")
        await ui.settle(pilot)
        await pilot.press("s")
        await ui.settle(pilot)
        assert "changes 1 tensor(s): head.weight" in ui.text_of(app.screen, "#changes-note")
        # a file the session never read or wrote: it says it cannot tell
        app.screen.query_one("#path", Input).value = b
        await ui.settle(pilot)
        assert "cannot tell what it holds" in ui.text_of(app.screen, "#changes-note")
        app.screen.query_one("#path", Input).value = str(tmp_path / "new.safetensors")
        await ui.settle(pilot)
        assert ui.text_of(app.screen, "#changes-note") == ""
