"""Pilot tests of repeated blocks in the tree: groups, the odd member, b, search into a group, edits refused on a group row."""

from modeltui.ui.app import ModelTuiApp
from modeltui.ui.widgets import ModuleTree, NodeRef
from sample_models.frontier import write_shard


def moe_file(tmp_path, n: int = 10) -> str:
    path = str(tmp_path / "moe.safetensors")
    entries = [("moe.gate.weight", "F32", (n, 8))]
    for e in range(n):
        entries += [(f"moe.experts.{e}.w1.weight", "F32" if e == 5 else "BF16", (4, 8)),
                    (f"moe.experts.{e}.w2.weight", "BF16", (8, 4))]
    write_shard(path, sorted(entries))
    return path


def rows(tree: ModuleTree, node) -> list[str]:
    return [str(c.label) for c in node.children]


async def test_groups_show_collapse_expand_and_toggle(tmp_path, ui):
    app = ModelTuiApp(moe_file(tmp_path))
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        tree = app.query_one(ModuleTree)
        tree.reveal(NodeRef("module", "moe.experts"))
        await ui.settle(pilot)
        experts = tree.nodes_by_ref[NodeRef("module", "moe.experts")]
        experts.expand()
        await ui.settle(pilot)
        labels = rows(tree, experts)
        assert len(labels) == 3
        assert labels[0].startswith("experts.[0-4] ×5") and labels[2].startswith("experts.[6-9] ×4")
        assert labels[1].startswith("5 ") and "≠ its numbered siblings" in labels[1]
        group = experts.children[0]
        assert group.data == NodeRef("group", "moe.experts.0", 5)
        tree.move_cursor(group)
        await pilot.press("right")
        await ui.settle(pilot)
        assert [c.data.name for c in group.children] == [f"moe.experts.{i}" for i in range(5)]
        # an edit on the group row is refused with a line saying what to do; nothing changes
        await pilot.press("x")
        await ui.settle(pilot)
        assert any("group of identical blocks" in n.message for n in app._notifications)
        assert len(app.info.tensors) == 21 and app.session is None
        await pilot.press("b")  # every block on its own; the cursor goes to the group's first block
        await ui.settle(pilot)
        experts = tree.nodes_by_ref[NodeRef("module", "moe.experts")]
        assert [c.data.name for c in experts.children] == [f"moe.experts.{i}" for i in range(10)]
        assert tree.cursor_ref() == NodeRef("module", "moe.experts.0")
        await pilot.press("b")
        await ui.settle(pilot)
        assert [c.data.kind for c in tree.nodes_by_ref[NodeRef("module", "moe.experts")].children] == ["group", "module", "group"]


async def test_search_reveals_a_block_inside_its_group(tmp_path, ui):
    app = ModelTuiApp(moe_file(tmp_path))
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        await pilot.press("slash")
        await pilot.press(*"experts.8.w2")
        await pilot.press("enter")
        await ui.settle(pilot)
        tree = app.query_one(ModuleTree)
        assert tree.cursor_ref() == NodeRef("module", "moe.experts.8.w2")  # the module first, then its tensor
        await pilot.press("n")
        await ui.settle(pilot)
        assert tree.cursor_ref() == NodeRef("tensor", "moe.experts.8.w2.weight")
        node = tree.cursor_node
        chain = []
        while node is not None:
            chain.append(node.data.kind)
            node = node.parent
        assert chain[:4] == ["tensor", "module", "module", "group"]  # w2 in 8 in experts.[6-9]
        assert app.main.tensor_panel.tensor == "moe.experts.8.w2.weight"
