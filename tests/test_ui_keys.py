"""Pilot tests of key surgery in the app: r, x / delete, z, the strip offers, extract and folders, keep patterns, export."""

import json
import os

import torch
from textual.widgets import Button, Checkbox, Input, Select

from modeltui.core import open_target
from modeltui.core.tensors import same_bits
from modeltui.ui.app import ModelTuiApp
from modeltui.ui.dialogs import Confirm, DeviceDialog, RenameDialog, SaveDialog, WeightsDialog
from modeltui.ui.widgets import ModuleTree, NodeRef
from sample_models import zoo


def ddp_file(tmp_path, seed=0, **kw):
    torch.manual_seed(seed)
    model = zoo.TinyGPT(**kw)
    path = str(tmp_path / "ddp.pt")
    torch.save({"module." + k: v for k, v in model.state_dict().items()}, path)
    return model, path


def labels(app) -> dict:
    return {ref.name: str(node.label) for ref, node in app.query_one(ModuleTree).nodes_by_ref.items()}


async def test_a_ddp_checkpoint_is_offered_the_strip_on_open_and_undo_puts_it_back(tmp_path, ui):
    model, path = ddp_file(tmp_path, vocab=64, d=16, layers=2, heads=2, ctx=16)
    app = ModelTuiApp(path)
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        note = next(n for n in app._notifications if n.title == "Wrapper prefix")
        assert "starts with 'module.' (added by DistributedDataParallel" in note.message and "Press r on the root" in note.message
        assert app.session is None  # said, not asked: nothing changes unasked
        await pilot.press("r")
        await ui.settle(pilot)  # made editable first, then the dialog opens with the strip filled in
        dialog = app.screen
        assert isinstance(dialog, RenameDialog) and dialog.query_one("#mode", Select).value == "regex"
        assert dialog.query_one("#old", Input).value == r"^module\." and dialog.query_one("#new", Input).value == ""
        await ui.settle(pilot)
        assert ui.text_of(dialog, "#preview").startswith("29 key(s) renamed:")
        await pilot.press("enter")
        await ui.settle(pilot)
        assert set(app.info.tensors) == set(model.state_dict())
        assert "unsaved" in ui.header(app) and "tok" in app.info.modules and "module" not in app.info.modules
        assert app.info.tensors["lm_head.weight"].tied_with == ["tok.weight"]
        await pilot.press("u")
        await ui.settle(pilot)
        assert all(n.startswith("module.") for n in app.info.tensors) and "unsaved" not in ui.header(app)
        await pilot.press("ctrl+y")
        await ui.settle(pilot)
        out = tmp_path / "clean.safetensors"
        await pilot.press("s")
        await pilot.pause()
        app.screen.query_one("#path", Input).value = str(out)
        await pilot.press("enter")
        await ui.settle(pilot)
    saved = open_target(str(out))
    assert set(saved.info.tensors) == set(model.state_dict())
    assert all(same_bits(saved.tensor(k), v) for k, v in model.state_dict().items())


async def test_rename_a_node_with_a_live_preview_and_refusals_inline(ckpts, ui):
    app = ModelTuiApp(ckpts["model.safetensors"])
    async with app.run_test(size=(120, 40)) as pilot:
        await ui.settle(pilot)
        await ui.select(pilot, NodeRef("module", "blocks"))
        await pilot.press("r")
        await ui.settle(pilot)  # made editable first
        assert isinstance(app.screen, RenameDialog)
        dialog = app.screen
        assert dialog.query_one("#old", Input).value == "blocks"
        dialog.query_one("#new", Input).value = "layers"
        await ui.settle(pilot)
        preview = ui.text_of(dialog, "#preview")
        assert preview.startswith("24 key(s) renamed:") and "blocks.0.attn.in_proj_bias → layers.0.attn.in_proj_bias" in preview
        h = ui.model_hash(app.opened.model)
        # a regular expression that makes two keys one: refused before anything changes
        dialog.query_one("#mode", Select).value = "regex"
        dialog.query_one("#old", Input).value = r"^blocks\.\d+\."
        dialog.query_one("#new", Input).value = ""
        await ui.settle(pilot)
        assert "clash: " in ui.text_of(dialog, "#preview")
        await pilot.press("enter")
        await ui.settle(pilot)
        assert isinstance(app.screen, RenameDialog) and "clash" in ui.error_text(app.screen)
        assert ui.model_hash(app.opened.model) == h and not app.session.undo_stack
        dialog.query_one("#old", Input).value = "("
        await ui.settle(pilot)
        assert "bad pattern" in ui.text_of(dialog, "#preview")
        dialog.query_one("#mode", Select).value = "prefix"
        dialog.query_one("#old", Input).value = "blocks"
        dialog.query_one("#new", Input).value = "model.layers"
        await ui.settle(pilot)
        await pilot.press("enter")
        await ui.settle(pilot)
        assert not isinstance(app.screen, RenameDialog)
        assert "model.layers.0.ln1.weight" in app.info.tensors and "blocks" not in app.info.modules
        assert app.query_one(ModuleTree).cursor_ref() == NodeRef("module", "model.layers")  # the cursor followed it
        assert "unsaved" in ui.header(app)
        await pilot.press("u")
        await ui.settle(pilot)
        assert "blocks.0.ln1.weight" in app.info.tensors and ui.model_hash(app.opened.model) == h


async def test_drop_asks_with_tensors_and_bytes_then_drops_and_undoes(ckpts, ui):
    app = ModelTuiApp(ckpts["model.safetensors"])
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        await ui.select(pilot, NodeRef("module", "blocks"))
        await pilot.press("x")
        await ui.settle(pilot)
        assert isinstance(app.screen, Confirm) and app.screen.question.startswith("Drop 24 tensors under 'blocks' (")
        await pilot.press("n")
        await ui.settle(pilot)
        assert "blocks" in app.info.modules and not app.session.undo_stack
        await pilot.press("delete")
        await pilot.pause()
        await pilot.press("y")
        await ui.settle(pilot)
        assert "blocks" not in app.info.modules and len(app.info.tensors) == 5
        assert "blocks" not in {r.name for r in app.query_one(ModuleTree).nodes_by_ref}
        await pilot.press("u")
        await ui.settle(pilot)
        assert "blocks" in app.info.modules


async def test_an_architecture_renames_and_drops_what_is_saved(tmp_path, ui, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = ModelTuiApp("sample_models.zoo:TinyGPT")
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        await pilot.press("r")
        await pilot.pause()
        dialog = app.screen
        assert "the keys a save writes" in str(dialog.title_text())
        dialog.query_one("#new", Input).value = "model"  # the root's prefix: every key gets model.
        await ui.settle(pilot)
        await pilot.press("enter")
        await ui.settle(pilot)
        await ui.select(pilot, NodeRef("tensor", "pos.weight"))
        assert "→ model.pos.weight" in labels(app)["pos.weight"]
        await ui.select(pilot, NodeRef("module", "ln_f"))
        await pilot.press("x")
        await pilot.pause()
        assert "left out of what is saved" in app.screen.question
        await pilot.press("y")
        await ui.settle(pilot)
        await ui.select(pilot, NodeRef("tensor", "ln_f.weight"))
        assert "✗ not saved" in labels(app)["ln_f.weight"] and "ln_f" in app.info.modules
        await pilot.press("s")
        await pilot.pause()
        app.screen.query_one("#path", Input).value = "out/"
        await pilot.press("enter")
        await ui.settle(pilot)
    saved = open_target(str(tmp_path / "out"))
    assert "model.tok.weight" in saved.info.tensors and not any("ln_f" in n for n in saved.info.tensors)
    assert saved.info.tied_groups == [["model.lm_head.weight", "model.tok.weight"]]


async def test_freeze_marks_the_subtree_counts_and_undoes(ui):
    app = ModelTuiApp("sample_models.zoo:TinyGPT")
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        total = app.info.trainable_params
        await ui.select(pilot, NodeRef("module", "blocks"))
        await pilot.press("z")
        await ui.settle(pilot)
        blocks = app.opened.model.blocks
        assert not any(p.requires_grad for p in blocks.parameters())
        await ui.select(pilot, NodeRef("tensor", "blocks.0.ln1.weight"))
        assert "❄" in labels(app)["blocks.0.ln1"] and "❄" in labels(app)["blocks.0.ln1.weight"]
        assert "❄" not in labels(app)["tok"]
        frozen = sum(p.numel() for p in blocks.parameters())
        assert app.info.trainable_params == total - frozen
        from modeltui.format import fmt_count

        assert f"trainable {fmt_count(total - frozen)}" in ui.header(app)
        assert "unsaved" not in ui.header(app)
        await ui.select(pilot, NodeRef("module", "blocks"))
        await pilot.press("z")  # again: unfreeze
        await ui.settle(pilot)
        assert all(p.requires_grad for p in blocks.parameters()) and app.info.trainable_params == total
        await pilot.press("u", "u")
        await ui.settle(pilot)
        assert all(p.requires_grad for p in blocks.parameters())


async def test_freeze_is_refused_for_a_bare_checkpoint(ckpts, ui, notes):
    app = ModelTuiApp(ckpts["model.safetensors"])
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        await pilot.press("z")
        await ui.settle(pilot)
        assert any("does not train" in n for n in notes(app)) and app.session is None


async def test_device_dialog_casts_keeping_patterns(ui):
    app = ModelTuiApp("sample_models.zoo:TinyGPT")
    async with app.run_test(size=(120, 40)) as pilot:
        await ui.settle(pilot)
        await pilot.press("d")
        await ui.settle(pilot)
        assert isinstance(app.screen, DeviceDialog)
        app.screen.query_one("#keep", Input).value = "*ln*, *.bias"
        app.screen.query_one("#ok", Button).press()
        await ui.settle(pilot)
        assert "patterns to keep go with a cast" in ui.error_text(app.screen)
        app.screen.query_one("#dtype", Select).value = "bfloat16"
        app.screen.query_one("#ok", Button).press()
        await ui.settle(pilot)
        m = app.opened.model
        assert m.ln_f.weight.dtype == torch.float32 and m.blocks[0].mlp[0].bias.dtype == torch.float32
        assert m.tok.weight.dtype == torch.bfloat16


async def test_save_only_the_selected_subtree(tmp_path, ui):
    app = ModelTuiApp("sample_models.zoo:TinyGPT")
    async with app.run_test(size=(120, 40)) as pilot:
        await ui.settle(pilot)
        await ui.select(pilot, NodeRef("module", "blocks"))
        await pilot.press("s")
        await pilot.pause()
        assert not app.screen.query_one("#shard").display  # a file: no shard size
        app.screen.query_one("#path", Input).value = str(tmp_path / "blocks.safetensors")
        app.screen.query_one("#extract", Checkbox).value = True
        await pilot.press("enter")
        await ui.settle(pilot)
        assert not isinstance(app.screen, SaveDialog)
    saved = open_target(str(tmp_path / "blocks.safetensors"))
    want = {k[len("blocks."):]: v for k, v in app.opened.model.state_dict().items() if k.startswith("blocks.")}
    assert set(saved.info.tensors) == set(want) and all(same_bits(saved.tensor(k), v) for k, v in want.items())


async def test_weights_that_fit_after_stripping_are_offered_at_open_and_with_w(tmp_path, ui):
    model, path = ddp_file(tmp_path, seed=4)
    app = ModelTuiApp("sample_models.zoo:TinyGPT", weights=path)
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        assert isinstance(app.screen, Confirm) and "fit the model once the prefix 'module.'" in app.screen.question
        await pilot.press("y")
        await ui.settle(pilot)
        assert torch.equal(app.opened.model.tok.weight, model.tok.weight)
        assert "prefix 'module.' stripped" in app.session.log[-1]
        assert any("tensors loaded from" in n for n in ui.notes(app)) and not any("\\n" in n for n in ui.notes(app))
        # w: asked before loading
        torch.manual_seed(9)
        _, path2 = ddp_file(tmp_path / "..", seed=9)
        await pilot.press("w")
        await pilot.pause()
        assert isinstance(app.screen, WeightsDialog)
        app.screen.query_one("#path", Input).value = path2
        await pilot.press("enter")
        await ui.settle(pilot)
        assert isinstance(app.screen, Confirm) and "Strip it while loading?" in app.screen.question
        await pilot.press("y")
        await ui.settle(pilot)
        torch.manual_seed(9)
        assert torch.equal(app.opened.model.pos.weight, zoo.TinyGPT().pos.weight)


async def test_export_from_the_palette_writes_a_script(tmp_path, monkeypatch, ui):
    monkeypatch.chdir(tmp_path)
    app = ModelTuiApp("sample_models.zoo:TinyGPT")
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert "Export session as a script" in titles
        app.action_export_script()
        await pilot.pause()
        assert "nothing to export yet" in ui.notes(app)[-1]
        await ui.edit_values(pilot, "[0, 0] = 3", tensor="pos.weight")
        app.action_export_script()
        await pilot.pause()
        assert app.screen.query_one("#script", Input).value == "TinyGPT_session.py"
        await pilot.press("enter")
        await ui.settle(pilot)
        assert "wrote" in ui.notes(app)[-1]
    text = open(tmp_path / "TinyGPT_session.py").read()
    assert "sd['pos.weight']" not in text and "T('pos.weight')[(0, 0)].fill_(3)" in text
    compile(text, "x", "exec")
    assert json.dumps(sorted(os.listdir(tmp_path))) == json.dumps(["TinyGPT_session.py"])


async def test_a_folder_holding_other_files_is_asked_about_then_gets_the_sharded_layout(tmp_path, ui):
    (tmp_path / "config.json").write_text("{}")
    app = ModelTuiApp("sample_models.zoo:TinyGPT")
    async with app.run_test(size=(120, 40)) as pilot:
        await ui.settle(pilot)
        await pilot.press("s")
        await pilot.pause()
        app.screen.query_one("#path", Input).value = str(tmp_path)
        await pilot.pause()
        assert app.screen.query_one("#shard").display  # a folder: its largest shard
        app.screen.query_one("#shard", Input).value = "100KB"
        await pilot.press("enter")
        await ui.settle(pilot)
        assert isinstance(app.screen, Confirm) and "holding other files (config.json)" in app.screen.question
        await pilot.press("n")
        await ui.settle(pilot)
        assert sorted(os.listdir(tmp_path)) == ["config.json"]
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("y")
        await ui.settle(pilot)
        assert not isinstance(app.screen, SaveDialog) and not app.session.dirty
    files = sorted(os.listdir(tmp_path))
    assert "model.safetensors.index.json" in files and "config.json" in files and len(files) > 3
    saved = open_target(str(tmp_path))
    assert set(saved.info.tensors) == set(app.opened.model.state_dict())
