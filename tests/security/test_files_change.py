"""A checkpoint file truncated or rewritten while it is open: a clear error, never SIGBUS or garbage.

Issue 11 items 3 and 4. ``torch.save`` to the path of an open ``last.pt``
truncates it first; touching a mapped page past the new end kills the
process with SIGBUS (exit 135), and a file rewritten in place with another
layout silently turns the open tensors into garbage. Every dangerous step
runs in a child process, so a SIGBUS fails the test instead of killing
pytest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The child runs each job (path, how, kind): it opens the file, looks at
# tensor "a" (values and statistics), edits "b" when kind is "edited", lets
# the file change, then tries "b" every way the app does; it prints one JSON
# line: what each attempt raised, per job. One child for all jobs keeps the
# test fast; a SIGBUS in any job fails the test.
CHILD = r"""
import io, json, os, sys
import torch
from modeltui.core import open_target
from modeltui.core.preview import value_grid
from modeltui.core.stats import tensor_stats
results = []
for path, how, kind in json.loads(sys.argv[1]):
    o = open_target(path)
    value_grid(o.tensor("a"), "")
    tensor_stats(o.tensor("a"))
    if kind == "edited":
        from modeltui.core.editable import make_editable
        from modeltui.core.session import Session
        from modeltui.core.editing import edit_values
        make_editable(o)
        s = Session(o)
        edit_values(s, "b", "[0] = 42")
    if how == "truncate":
        os.truncate(path, 0)
    elif how == "shrink":
        os.truncate(path, os.path.getsize(path) // 2)
    else:  # what a training loop does: torch.save to the same path, another layout
        n = 3000 if how == "rewrite" else 1_000_000  # smaller (SIGBUS before) or larger (garbage before)
        obj = {"other": torch.full((n,), 7.7e31), "b": torch.zeros(5, dtype=torch.int8)}
        if path.endswith(".safetensors"):
            from safetensors.torch import save
            data = save(obj)
        else:
            buf = io.BytesIO(); torch.save(obj, buf); data = buf.getvalue()
        with open(path, "r+b") as f:  # in place: same inode, like open(path, "wb")
            f.truncate(0); f.write(data)
    out = {}
    for what, fn in [("values", lambda: value_grid(o.tensor("b"), "")), ("stats", lambda: tensor_stats(o.tensor("b"))),
                     ("check", lambda: o.source.check())]:
        try:
            fn()
            out[what] = "ok"
        except Exception as e:
            out[what] = f"{type(e).__name__}: {e}"
    results.append(out)
print(json.dumps(results))
"""


def write(path: str) -> None:
    g = torch.Generator().manual_seed(0)
    obj = {"a": torch.randn(64, 64, generator=g), "b": torch.randn(512, 1024, generator=g)}
    if path.endswith(".safetensors"):
        save_file(obj, path)
    else:
        torch.save(obj, path)


def run_child(jobs: list[tuple[str, str, str]]) -> list[dict]:
    r = subprocess.run([sys.executable, "-c", CHILD, json.dumps(jobs)], capture_output=True, text=True, cwd=ROOT, timeout=180)
    assert r.returncode == 0, f"child died with {r.returncode} (-7 is SIGBUS): {r.stderr[-2000:]}"
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", ["model.safetensors", "last.pt"])
def test_values_and_statistics_of_a_changed_file_say_so(tmp_path, name):
    jobs = []
    for how in ("truncate", "shrink", "rewrite", "grow"):
        for kind in ("plain", "edited"):
            path = str(tmp_path / f"{how}-{kind}-{name}")
            write(path)
            jobs.append((path, how, kind))
    for (path, how, kind), out in zip(jobs, run_child(jobs)):
        for what in ("values", "stats", "check"):
            assert out[what].startswith("FileChangedError"), (how, kind, what, out[what])
            assert os.path.basename(path) in out[what] and "changed on disk" in out[what] and "reopen" in out[what]


@pytest.mark.parametrize("name", ["model.safetensors", "last.pt"])
def test_unchanged_file_reads_the_same_values_through_pread(tmp_path, name):
    from modeltui.core import open_target
    from modeltui.core.readers import filewatch
    from modeltui.core.preview import value_grid
    from modeltui.core.stats import tensor_stats

    path = str(tmp_path / name)
    write(path)
    g = torch.Generator().manual_seed(0)
    torch.randn(64, 64, generator=g)  # "a" comes first in the file
    b = torch.randn(512, 1024, generator=g)
    o = open_target(path)
    t = o.tensor("b")
    loc = filewatch.locate(t)
    assert loc is not None and loc.clean  # the values below come from pread, not from mapped pages
    view = t.t()[3:40:3, 100:700:7]
    assert torch.equal(filewatch.read_window(filewatch.locate(view), view), b.t()[3:40:3, 100:700:7])
    grid = value_grid(t, "[5:9, 10:20]")
    assert grid.cells[0][0] == value_grid(b, "[5:9, 10:20]").cells[0][0]
    assert tensor_stats(t, chunk=1000).mean == tensor_stats(b, chunk=1000).mean
    o.close()


def test_a_file_replaced_by_rename_is_not_a_change(tmp_path):
    """An atomic save over the open file (modeltui's own included) leaves the opened contents readable."""
    from modeltui.core import open_target
    from modeltui.core.saving import save_opened
    from modeltui.core.stats import tensor_stats

    path = str(tmp_path / "model.safetensors")
    write(path)
    o = open_target(path)
    before = tensor_stats(o.tensor("b")).mean
    save_opened(o, path)  # temp file + os.replace over the mapped file
    o.source.check()
    assert tensor_stats(o.tensor("b")).mean == before
    save_opened(o, path)  # and again
    o.close()


def test_editing_and_undo_refuse_after_the_file_changed(tmp_path):
    from modeltui.core import open_target
    from modeltui.core.editable import make_editable
    from modeltui.core.editing import edit_values
    from modeltui.core.readers.filewatch import FileChangedError
    from modeltui.core.session import Session

    path = str(tmp_path / "last.pt")
    write(path)
    o = open_target(path)
    os.utime(path, ns=(1, 1))  # rewritten in place: same size, another mtime
    with pytest.raises(FileChangedError, match="last.pt: the file changed on disk"):
        make_editable(o)
    o2 = open_target(path)
    make_editable(o2)
    s = Session(o2)
    edit_values(s, "a", "[0, 0] = 1")
    os.utime(path, ns=(2, 2))
    with pytest.raises(FileChangedError, match="reopen"):
        edit_values(s, "a", "[0, 1] = 1")
    with pytest.raises(FileChangedError):
        s.undo()
    assert len(s.undo_stack) == 1


@pytest.mark.parametrize("name", ["model.safetensors", "last.pt"])
def test_a_save_from_a_file_rewritten_in_place_is_refused(tmp_path, name):
    """Issue 11 item 4: the stale mapping used to be saved and 'verified' against itself."""
    from modeltui.core import open_target
    from modeltui.core.readers.filewatch import FileChangedError
    from modeltui.core.saving import save_opened

    path = str(tmp_path / name)
    write(path)
    o = open_target(path)
    o.tensor("b")  # mapped
    out = tmp_path / ("out" + os.path.splitext(name)[1])
    out.write_bytes(b"keep me")
    big = {"other": torch.full((1_000_000,), 7.7e31), "b": torch.zeros(5, dtype=torch.int8)}
    data = open(path, "rb").read()
    with open(path, "r+b") as f:  # rewritten in place, larger: no SIGBUS, the mapping now shows garbage
        f.truncate(0)
        if name.endswith(".safetensors"):
            from safetensors.torch import save
            f.write(save(big))
        else:
            torch.save(big, f)
    assert len(data) < os.path.getsize(path)
    with pytest.raises(FileChangedError, match=f"{name}: the file changed on disk"):
        save_opened(o, str(out))
    assert out.read_bytes() == b"keep me"


async def test_the_app_says_the_file_changed_and_shows_no_stale_values(tmp_path, settle):
    """After a change the values pane said so, but kept the previous tensor's values under the new one's title."""
    from textual.widgets import DataTable, Static

    from modeltui.ui.app import ModelTuiApp
    from modeltui.ui.widgets import ModuleTree, NodeRef

    path = str(tmp_path / "last.pt")
    write(path)
    app = ModelTuiApp(path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        tree = app.query_one(ModuleTree)
        tree.reveal(NodeRef("tensor", "a"))
        await settle(pilot)
        values = app.query_one("#values", DataTable)
        assert values.row_count > 0
        os.utime(path, ns=(1, 1))  # rewritten in place (only the time differs: no mapped page can fault)
        tree.reveal(NodeRef("tensor", "b"))
        await settle(pilot)
        assert app.is_running and app.selected == "b"
        error = str(app.query_one("#slice-error", Static).render())
        assert "last.pt: the file changed on disk" in error and "reopen" in error
        assert "changed on disk" in str(app.query_one("#stats", Static).render())
        assert values.row_count == 0  # not a's values under b's title
