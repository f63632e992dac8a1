"""Pilot tests of tie / untie (t), save (s) and device / dtype (d)."""

import os

import torch
from textual.widgets import Button, Input, ProgressBar, Select

from modeltui.core import open_target
from modeltui.core.tensors import same_bits
from modeltui.ui.app import ModelTuiApp
from modeltui.ui.dialogs import Confirm, DeviceDialog, SaveDialog, TieDialog
from modeltui.ui.widgets import ModuleTree, NodeRef



async def test_tie_from_dialog_updates_tree_totals_and_undo(ui):
    app = ModelTuiApp("sample_models.zoo:tiny_decoder")
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        total = app.info.total_params
        await ui.select(pilot, NodeRef("module", "lm_head"))
        await pilot.press("t")
        await pilot.pause()
        assert isinstance(app.screen, TieDialog)
        assert app.screen.query_one("#target", Input).value == "lm_head"
        app.screen.query_one("#source", Input).value = "embed_tokens"
        await pilot.press("enter")
        await ui.settle(pilot)
        assert not isinstance(app.screen, TieDialog)
        m = app.opened.model
        assert m.lm_head.weight is m.embed_tokens.weight
        assert app.info.total_params == total - 100 * 32
        assert "⇄" in str(app.query_one(ModuleTree).nodes_by_ref[NodeRef("module", "lm_head")].label)
        assert "unsaved" in ui.header(app)
        await pilot.press("u")
        await ui.settle(pilot)
        assert m.lm_head.weight is not m.embed_tokens.weight
        assert app.info.total_params == total and "unsaved" not in ui.header(app)


async def test_tie_mismatch_refused_inline_and_untie_tied_lm(ui):
    app = ModelTuiApp("sample_models.zoo:TinyGPT")
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        h = ui.model_hash(app.opened.model)
        await ui.select(pilot, NodeRef("tensor", "pos.weight"))
        await pilot.press("t")
        await pilot.pause()
        app.screen.query_one("#source", Input).value = "tok.weight"
        app.screen.query_one("#ok", Button).focus()  # Apply pressed from the keyboard (tab to it, enter)
        await pilot.press("enter")
        await ui.settle(pilot)
        assert isinstance(app.screen, TieDialog)
        assert "shapes differ" in ui.error_text(app.screen)
        # the focus is back in a text box (not on Cancel, where OK's disabling had moved it):
        # Enter submits the correction instead of cancelling the dialog
        assert isinstance(app.screen.focused, Input)
        await pilot.press("enter")
        await ui.settle(pilot)
        assert isinstance(app.screen, TieDialog) and "shapes differ" in ui.error_text(app.screen)
        await pilot.press("escape")
        await pilot.pause()
        assert ui.model_hash(app.opened.model) == h and not app.session.undo_stack
        # a tied parameter opens in untie mode
        await ui.select(pilot, NodeRef("tensor", "lm_head.weight"))
        await pilot.press("t")
        await pilot.pause()
        assert app.screen.query_one("#mode", Select).value == "untie"
        app.screen.query_one("#ok", Button).press()
        await ui.settle(pilot)
        m = app.opened.model
        assert m.lm_head.weight is not m.tok.weight and app.info.tied_groups == []


async def test_save_dialog_writes_verifies_clears_mark_and_asks_before_overwrite(tmp_path, monkeypatch, ui):
    monkeypatch.chdir(tmp_path)
    app = ModelTuiApp("sample_models.zoo:TinyGPT")
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        await ui.edit_values(pilot, "[0, 0] = 7", tensor="pos.weight")
        assert app.session.dirty
        await pilot.press("s")
        await pilot.pause()
        assert isinstance(app.screen, SaveDialog)
        assert app.screen.query_one("#path", Input).value == "TinyGPT.safetensors"
        await pilot.press("enter")
        await ui.settle(pilot)
        assert not isinstance(app.screen, SaveDialog)
        out = tmp_path / "TinyGPT.safetensors"
        assert out.exists() and not app.session.dirty and "unsaved" not in ui.header(app)
        listed = open_target(str(out))
        assert listed.info.tensors["lm_head.weight"].tied_with == ["tok.weight"]
        assert float(listed.tensor("pos.weight")[0, 0]) == 7.0
        sd = app.opened.model.state_dict()
        assert set(listed.info.tensors) == set(sd)
        assert all(same_bits(listed.tensor(k), v) for k, v in sd.items())  # bit for bit through the UI
        listed.close()
        # change again, save to the same path: confirm first; "n" keeps the file
        before = out.read_bytes()
        await ui.edit_values(pilot, "[0, 0] = 8")
        await pilot.press("s")
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, Confirm)
        await pilot.press("n")
        await pilot.pause()
        assert isinstance(app.screen, SaveDialog) and out.read_bytes() == before
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("y")
        await ui.settle(pilot)
        assert out.read_bytes() != before and not app.session.dirty


async def test_save_dialog_bad_paths_answered_inline(tmp_path, ui):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    app = ModelTuiApp("sample_models.zoo:TinyGPT")
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        await pilot.press("s")
        await pilot.pause()
        cases = [("model.txt", "unknown format"), (str(tmp_path / "no" / "m.pt"), "does not exist"), ("", "give a path")]
        if os.geteuid() != 0:  # root writes anywhere
            cases.append((str(ro / "m.safetensors"), "cannot write"))
        for path, message in cases:
            app.screen.query_one("#path", Input).value = path
            await pilot.press("enter")
            await ui.settle(pilot)
            assert isinstance(app.screen, SaveDialog), path
            assert message in ui.error_text(app.screen), (path, ui.error_text(app.screen))
        # a folder is the sharded layout: its largest shard must be a size
        app.screen.query_one("#path", Input).value = str(tmp_path) + "/"
        app.screen.query_one("#shard", Input).value = "5XB"
        await pilot.press("enter")
        await ui.settle(pilot)
        assert isinstance(app.screen, SaveDialog) and "'5XB' is not a size" in ui.error_text(app.screen)
        assert list(tmp_path.iterdir()) == [ro]


async def test_device_dialog_cast_and_missing_device(ui):
    app = ModelTuiApp("sample_models.zoo:TinyGPT")
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        h = ui.model_hash(app.opened.model)
        await pilot.press("d")
        await ui.settle(pilot)  # devices are listed in a worker first
        assert isinstance(app.screen, DeviceDialog)
        options = [str(o[0]) for o in app.screen.query_one("#device", Select)._options]
        assert any(o.startswith("cpu") and "now" in o for o in options)
        app.screen.query_one("#ok", Button).press()
        await ui.settle(pilot)
        assert "already on cpu" in ui.error_text(app.screen)
        app.screen.query_one("#device-text", Input).value = "cuda:7"
        app.screen.query_one("#ok", Button).press()
        await ui.settle(pilot)
        assert isinstance(app.screen, DeviceDialog) and "not available" in ui.error_text(app.screen)
        assert ui.model_hash(app.opened.model) == h
        app.screen.query_one("#device-text", Input).value = ""
        app.screen.query_one("#dtype", Select).value = "bfloat16"
        app.screen.query_one("#ok", Button).press()
        await ui.settle(pilot)
        assert not isinstance(app.screen, DeviceDialog)
        assert app.opened.model.tok.weight.dtype == torch.bfloat16
        assert "bfloat16" in ui.header(app) and "unsaved" in ui.header(app)
        await pilot.press("u")
        await ui.settle(pilot)
        assert ui.model_hash(app.opened.model) == h and "bfloat16" not in ui.header(app)



async def test_device_dialog_move_progress_cancel_and_partial_failure(ui, monkeypatch):
    """The move's progress bar, escape cancelling it, and a move that worked before its cast failed (CPU: the move is faked)."""
    import threading
    import time

    import modeltui.core.surgery as surgery
    from modeltui.core.errors import Cancelled
    from modeltui.core.session import EditError

    entered = threading.Event()

    def fake_move(session, device, *, progress=None, should_stop=None):
        for i in range(100):
            progress(i + 1, 100)
        if device == "cuda:1":  # waits to be cancelled
            entered.set()
            deadline = time.time() + 20
            while not should_stop() and time.time() < deadline:
                time.sleep(0.01)
            raise Cancelled()
        return f"moved to {device}"

    def fake_cast(session, dtype, keep=()):
        raise EditError(f"cannot cast to {dtype} here")

    monkeypatch.setattr(surgery, "move", fake_move)
    monkeypatch.setattr(surgery, "cast", fake_cast)
    app = ModelTuiApp("sample_models.zoo:TinyGPT")
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        await pilot.press("d")
        await ui.settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, DeviceDialog)
        dialog.query_one("#device-text", Input).value = "cuda:0"
        dialog.query_one("#dtype", Select).value = "float16"
        dialog.query_one("#ok", Button).press()
        await ui.settle(pilot)
        assert app.screen is dialog and ui.error_text(dialog) == "✗ moved to cuda:0, but: cannot cast to float16 here"
        assert dialog.query_one("#progress", ProgressBar).progress == 100
        assert not dialog.query_one("#ok", Button).disabled  # a correction can be tried
        dialog.query_one("#device-text", Input).value = "cuda:1"
        dialog.query_one("#dtype", Select).value = "keep"
        dialog.query_one("#ok", Button).press()
        for _ in range(200):
            await pilot.pause(0.01)
            if entered.is_set():
                break
        assert entered.is_set() and dialog.query_one("#ok", Button).disabled
        await pilot.press("escape")  # cancels the move, keeps the dialog
        await ui.settle(pilot)
        assert app.screen is dialog and ui.error_text(dialog) == "✗ move cancelled: the model stays where it was"
        await pilot.press("escape")
        await ui.settle(pilot)
        assert not isinstance(app.screen, DeviceDialog)

async def test_save_converts_a_bare_checkpoint(tmp_path, ckpts, ui):
    import shutil

    src = tmp_path / "state_dict.pt"
    shutil.copy(ckpts["state_dict.pt"], src)
    app = ModelTuiApp(str(src))
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        await pilot.press("s")
        await pilot.pause()
        assert app.screen.query_one("#path", Input).value == str(tmp_path / "state_dict.safetensors")
        await pilot.press("enter")
        await ui.settle(pilot)
        assert not isinstance(app.screen, SaveDialog)
    a, b = open_target(str(src)), open_target(str(tmp_path / "state_dict.safetensors"))
    assert set(a.info.tensors) == set(b.info.tensors)
    assert all(same_bits(a.tensor(k), b.tensor(k)) for k in a.info.tensors)
    assert sorted(map(sorted, a.info.tied_groups)) == sorted(map(sorted, b.info.tied_groups)) != []


async def test_checkpoint_surgery_without_architecture(tmp_path, ckpts, ui):
    """Fix a value and tie two tensors of a bare safetensors file, save over it, undo in between."""
    import shutil

    path = tmp_path / "model.safetensors"
    shutil.copy(ckpts["model.safetensors"], path)
    original = path.read_bytes()
    app = ModelTuiApp(str(path))
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        info = app.info
        two_d = [n for n, t in info.tensors.items() if t.dtype == "float32" and t.shape and len(t.shape) == 2]
        name = two_d[0]
        await ui.select(pilot, NodeRef("tensor", name))
        await pilot.press("e")
        await ui.settle(pilot)
        assert app.session is not None and app.info.kind == "state_dict"
        assert app.info.tensors[name].kind == "tensor" and app.info.modules[""].type == ""
        app.screen.query_one("#expr", Input).value = "[0, 0] = nan"
        await pilot.press("enter")
        await ui.settle(pilot)
        assert "unsaved" in ui.header(app)
        assert path.read_bytes() == original  # editing never writes through to the file
        # tie: two tensors of one shape, if the file has them
        shapes = {}
        for n in two_d:
            shapes.setdefault(app.info.tensors[n].shape, []).append(n)
        pair = next((ns for ns in shapes.values() if len(ns) >= 2 and not app.info.tensors[ns[1]].tied_with), None)
        if pair:
            await ui.select(pilot, NodeRef("tensor", pair[1]))
            await pilot.press("t")
            await pilot.pause()
            app.screen.query_one("#source", Input).value = pair[0]
            await pilot.press("enter")
            await ui.settle(pilot)
            assert pair[0] in app.info.tensors[pair[1]].tied_with
        await pilot.press("s")
        await pilot.pause()
        assert app.screen.query_one("#path", Input).value == str(path)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, Confirm)
        await pilot.press("y")
        await ui.settle(pilot)
        assert "unsaved" not in ui.header(app)
    back = open_target(str(path))
    assert torch.isnan(back.tensor(name)[0, 0])
    if pair:
        assert pair[0] in back.info.tensors[pair[1]].tied_with
    back.close()


async def test_load_weights_from_the_dialog_reports_misfits_and_undoes(tmp_path, ui):
    from modeltui.core.saving import save_state_dict
    from modeltui.ui.dialogs import WeightsDialog

    src = open_target("sample_models.zoo:TinyGPT").model.state_dict()
    sd = {k: v + 1 if v.is_floating_point() else v for k, v in src.items()}
    sd["pos.weight"] = torch.zeros(3, 3)  # mis-shaped
    sd["extra.bias"] = torch.zeros(2)  # unexpected
    del sd["ln_f.bias"]  # missing
    path = tmp_path / "w.pt"
    save_state_dict(sd, str(path))
    app = ModelTuiApp("sample_models.zoo:TinyGPT")
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        m = app.opened.model
        before = ui.model_hash(m)
        await pilot.press("w")
        await pilot.pause()
        assert isinstance(app.screen, WeightsDialog)
        app.screen.query_one("#path", Input).value = str(tmp_path / "nope.pt")
        await pilot.press("enter")
        await ui.settle(pilot)
        assert "no such file" in ui.error_text(app.screen) and ui.model_hash(m) == before
        app.screen.query_one("#path", Input).value = str(path)
        await pilot.press("enter")
        await ui.settle(pilot)
        assert not isinstance(app.screen, WeightsDialog)
        assert torch.equal(m.tok.weight, sd["tok.weight"]) and m.lm_head.weight is m.tok.weight
        assert not torch.equal(m.pos.weight[:3, :3], torch.zeros(3, 3))
        note = app._notifications
        text = "\n".join(n.message for n in note)
        assert "missing" in text and "unexpected" in text and "pos.weight" in text
        assert "unsaved" in ui.header(app)
        await pilot.press("u")
        await ui.settle(pilot)
        assert ui.model_hash(m) == before and not app.session.dirty


async def test_nan_mark_reaches_every_tied_name(ui):
    app = ModelTuiApp("sample_models.zoo:TinyGPT")
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        await ui.edit_values(pilot, "[0, 0] = nan", tensor="lm_head.weight")
        tree = app.query_one(ModuleTree)
        assert {"lm_head.weight", "tok.weight"} <= tree.bad
        assert "⚠" in str(tree.nodes_by_ref[NodeRef("module", "tok")].label)
