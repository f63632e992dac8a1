"""Issue 11 item 9 in the TUI: a module with tens of thousands of tensors is shown in pages.

The tree holds at most a page of rows per module node plus "more" rows; the
module table lists a bounded number of rows; search still finds any name and
"go to" moves the page to it.
"""

import json
import struct

from textual.widgets import DataTable

from modeltui.ui.app import ModelTuiApp
from modeltui.ui.widgets import ModuleTree, NodeRef
from modeltui.ui.widgets.module_panel import MAX_ROWS
from modeltui.ui.widgets.tree import PAGE

N = 20_000


def flat_checkpoint(path, n):
    """``n`` one-element tensors at the root of a safetensors file, written directly."""
    header = {f"t{i}": {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]} for i in range(n)}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + struct.pack(f"<{n}f", *range(n)))


async def test_many_tensors_in_one_module_are_paged(tmp_path, settle):
    path = tmp_path / "flat.safetensors"
    flat_checkpoint(path, N)
    app = ModelTuiApp(str(path))
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        tree = app.query_one(ModuleTree)
        assert len(tree.root.children) == PAGE + 1  # a page and a "▼ more" row
        assert "more" in str(tree.root.children[-1].label)
        table = app.query_one("#tensor-table", DataTable)
        assert table.row_count == MAX_ROWS + 1
        # search reaches the last tensor and moves the page to it
        await pilot.press("slash", *f"t{N - 1}", "enter")
        await settle(pilot)
        assert app.selected == f"t{N - 1}"
        assert tree.cursor_node.data == NodeRef("tensor", f"t{N - 1}")
        assert len(tree.root.children) <= PAGE + 2
        assert float(app.opened.tensor(f"t{N - 1}")[0]) == N - 1
        # the "▲ earlier" row pages back
        first = tree.root.children[0]
        assert first.data.kind == "page"
        tree.move_cursor(first)
        await pilot.press("enter")
        await settle(pilot)
        assert len(tree.root.children) <= PAGE + 2
        assert len(tree.nodes_by_ref) <= 2 * PAGE + 10
