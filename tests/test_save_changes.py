"""What a save over a file would change, from the session's record alone (the save dialog's list)."""

import torch
from safetensors.torch import save_file
from torch import nn

from modeltui.core import open_target
from modeltui.core.editable import make_editable
from modeltui.core.editing import edit_values
from modeltui.core.saving import save_opened
from modeltui.core.session import Session
from modeltui.core.surgery import cast, tie
from modeltui.core.targets import open_module


def checkpoint(tmp_path):
    path = str(tmp_path / "m.safetensors")
    save_file({"a.weight": torch.randn(3, 3), "b.weight": torch.randn(3, 3), "c.bias": torch.zeros(3)}, path)
    opened = open_target(path)
    make_editable(opened)
    return opened, Session(opened), path


def test_edits_since_the_file_was_opened(tmp_path):
    opened, session, path = checkpoint(tmp_path)
    assert session.changed_since(path) == []
    edit_values(session, "b.weight", "[0, 0] = 1")
    assert session.changed_since(path) == ["b.weight"]
    edit_values(session, "a.weight", "*= 2")
    assert session.changed_since(path) == ["a.weight", "b.weight"]
    session.undo()
    assert session.changed_since(path) == ["b.weight"]
    session.undo()
    assert session.changed_since(path) == []  # back to what the file holds
    session.redo()
    assert session.changed_since(path) == ["b.weight"]
    assert session.changed_since(str(tmp_path / "other.safetensors")) is None  # a file it never read or wrote


def test_saves_and_a_branch_of_history(tmp_path):
    opened, session, path = checkpoint(tmp_path)
    edit_values(session, "a.weight", "[0, 0] = 5")
    out = str(tmp_path / "out.safetensors")
    save_opened(opened, out)
    session.mark_saved(out)
    assert session.changed_since(out) == [] and session.changed_since(path) == ["a.weight"]
    session.undo()  # out.safetensors holds the edit the model no longer has
    assert session.changed_since(out) == ["a.weight"] and session.changed_since(path) == []
    edit_values(session, "c.bias", "+= 1")  # a new edit drops the redo stack: out's state is gone from history
    assert session.changed_since(out) == ["a.weight", "c.bias"]
    assert session.changed_since(path) == ["c.bias"]


def test_structural_edits_name_what_they_change(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    file = str(tmp_path / "w.pt")
    torch.save(model.state_dict(), file)
    opened = open_module(model, "net")
    opened.path = file  # as if it had been opened from that file
    session = Session(opened)
    assert session.changed_since(file) == []
    tie(session, "0", "1")
    assert session.changed_since(file) == ["1.bias", "1.weight"]
    session.undo()
    cast(session, "float16")
    assert session.changed_since(file) == ["0.bias", "0.weight", "1.bias", "1.weight"]
