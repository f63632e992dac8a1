"""Bad input in every dialog: a message where the user is looking, the model unchanged.

One table: (key, selection, field values, words of the message). Each row
opens the app on a tied language model, types the input, presses OK, and
checks the message and that the hash of every tensor, the undo stack and the
unsaved mark did not move.
"""

import os

import pytest
from textual.widgets import Button, Input, Select, Static

from modeltui.ui.app import ModelTuiApp
from modeltui.ui.widgets import ModuleTree, NodeRef

T, M = "tensor", "module"
TABLE = [
    # forward pass
    ("f", None, {"shapes": ""}, "at least one input shape"),
    ("f", None, {"shapes": "2,x"}, "x"),
    ("f", None, {"shapes": "2,16:complex"}, "complex"),
    ("f", None, {"shapes": "-1,3"}, "-1"),
    ("f", None, {"shapes": "2,16", "high": "0"}, "at least 1"),
    ("f", None, {"shapes": "2,16:int64; 3,x"}, "x"),
    ("f", None, {"shapes": "99999999999,99999999999"}, "too large"),
    # initialise
    ("i", (M, "blocks.0"), {"init": "normal_", "args": "foo=1"}, "foo"),
    ("i", (M, "blocks.0"), {"init": "normal_", "args": "std=abc"}, "abc"),
    ("i", (M, "blocks.0"), {"init": "normal_", "args": "std"}, "name=value"),
    ("i", (M, "blocks.0"), {"init": "xavier_uniform_", "args": "gain=bogus"}, "bogus"),
    ("i", (T, "blocks.0.ln1.bias"), {"init": "orthogonal_"}, "at least 2"),
    ("i", (M, "blocks.0"), {"init": "custom (import path)", "custom": ""}, "import path"),
    ("i", (M, "blocks.0"), {"init": "custom (import path)", "custom": "nosuch.module:f"}, "nosuch"),
    ("i", (M, "blocks.0"), {"init": "custom (import path)", "custom": "sample_models.book:BOOK_INPUTS"}, "BOOK_INPUTS"),
    ("i", (M, "blocks.0"), {"init": "normal_", "cls": "NoSuchLayer"}, "NoSuchLayer"),
    # edit values
    ("e", (T, "pos.weight"), {"expr": ""}, "write an edit"),
    ("e", (T, "pos.weight"), {"expr": "[0, 0] = abc"}, "abc"),
    ("e", (T, "pos.weight"), {"expr": "[999, 0] = 1"}, "999"),
    ("e", (T, "pos.weight"), {"expr": "[0, 0, 0] = 1"}, "too many indices"),
    ("e", (T, "pos.weight"), {"expr": "[0, 0] == 1"}, "'= 1' is not a number"),
    ("e", (T, "pos.weight"), {"expr": "[0:2] = [1, 2]"}, "'[1, 2]' is not a number"),
    ("e", (T, "causal"), {"expr": "[0, 0] = 2.5"}, "bool"),
    # tie / untie
    ("t", (T, "pos.weight"), {"source": "tok.weight"}, "shapes differ"),
    ("t", (T, "pos.weight"), {"source": "no.such"}, "neither a module nor a tensor"),
    ("t", (T, "pos.weight"), {"source": "pos.weight"}, "the same"),
    ("t", (T, "pos.weight"), {"source": "causal"}, "not a parameter"),
    ("t", (T, "pos.weight"), {"source": ""}, "give both"),
    ("t", (T, "pos.weight"), {"mode": "untie"}, "not tied"),
    ("t", (T, "lm_head.weight"), {"mode": "tie", "source": "tok.weight"}, "already tied"),
    ("t", (M, "blocks.0"), {"source": "blocks"}, "contains the other"),
    # save
    ("s", None, {"path": ""}, "give a path"),
    ("s", None, {"path": "model.txt"}, "unknown format"),
    ("s", None, {"path": "out/", "shard": "0"}, "not a size above zero"),  # a folder: the sharded layout
    ("s", None, {"path": "out/", "shard": "5XB"}, "is not a size"),
    ("s", None, {"path": "/no/such/folder/m.safetensors"}, "does not exist"),
    # load weights
    ("w", None, {"path": ""}, "give the checkpoint's path"),
    ("w", None, {"path": "/no/such/weights.pt"}, "no such file"),
    ("w", None, {"path": "/"}, "no checkpoint"),
    # device and dtype
    ("d", None, {}, "already on cpu"),
    ("d", None, {"device-text": "cuda:7"}, "not available"),
    ("d", None, {"device-text": "gpu"}, "unknown device"),
    ("d", None, {"device-text": "meta"}, "meta"),
]


def _id(row):
    key, sel, fields, _ = row
    return f"{key}-{sel[1] if sel else 'root'}-{'-'.join(f'{k}={v}' for k, v in fields.items())}"


@pytest.mark.parametrize("row", TABLE, ids=[_id(r) for r in TABLE])
async def test_bad_dialog_input_is_answered_and_changes_nothing(row, tmp_path, monkeypatch, ui):
    key, sel, fields, words = row
    monkeypatch.chdir(tmp_path)
    app = ModelTuiApp("sample_models.zoo:TinyGPT")
    async with app.run_test(size=(120, 40)) as pilot:
        await ui.settle(pilot)
        before = ui.model_hash(app.opened.model)
        if sel:
            app.query_one(ModuleTree).reveal(NodeRef(*sel))
            await ui.settle(pilot)
        await pilot.press(key)
        await ui.settle(pilot)  # d lists devices in a worker before its dialog opens
        dialog = app.screen
        for field, value in fields.items():
            w = dialog.query_one(f"#{field}")
            if isinstance(w, Select):
                w.value = value
            else:
                assert isinstance(w, Input)
                w.value = value
        await pilot.pause()
        dialog.query_one("#ok", Button).press()
        await ui.settle(pilot)
        assert app.screen is dialog, "the dialog must stay open for a correction"
        message = str(dialog.query_one("#error", Static).render())
        assert message.startswith("✗") and words in message, message
        await pilot.press("escape")
        await ui.settle(pilot)
        assert ui.model_hash(app.opened.model) == before
        assert not app.session.undo_stack and not app.session.dirty
        assert os.listdir(tmp_path) == []
        assert app.is_running


async def test_slice_and_search_bad_input_answered(ui):
    app = ModelTuiApp("sample_models.zoo:TinyGPT")
    async with app.run_test(size=(120, 40)) as pilot:
        await ui.settle(pilot)
        before = ui.model_hash(app.opened.model)
        app.query_one(ModuleTree).reveal(NodeRef("tensor", "pos.weight"))
        await ui.settle(pilot)
        for bad, words in [("[abc]", "abc"), ("[999]", "999"), ("[0, 0, 0]", "too many indices"), ("[::0]", "step")]:
            box = app.query_one("#slice", Input)
            box.value = bad
            await pilot.pause()
            box.focus()
            await pilot.press("enter")
            await ui.settle(pilot)
            shown = str(app.query_one("#slice-error", Static).render())
            assert shown.startswith("✗") and words in shown, (bad, shown)
        assert app.run_search("zzzz-no-such") == 0
        assert ui.model_hash(app.opened.model) == before and app.is_running


def test_table_counts():
    print(f"\n{len(TABLE)} dialog inputs + 5 slice/search inputs")
    assert len({r[0] for r in TABLE}) == 7  # every dialog: f i e t w s d
