"""Frontier-size checkpoints: ~95k tensors in 160 sparse shards open lazily, with the right totals."""

from __future__ import annotations

import json
import os
import struct

import pytest

from modeltui.core.lazy_listing import LazyModules, LazyTensors
from modeltui.core.readers import open_checkpoint
from modeltui.core.structure import from_state_dict_entries
from sample_models.frontier import write_frontier, write_shard

LAST = "model.layers.63.mlp.experts.255.down_proj.weight"


@pytest.fixture(scope="module")
def frontier(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("frontier"))
    # real bytes for one fp8 weight in the last shard (the rest of the data is holes)
    pattern = bytes(range(256)) * (7168 * 2048 // 256)
    fr = write_frontier(folder, data={LAST: pattern})
    return fr, pattern


def test_generated_checkpoint_is_sparse_and_frontier_sized(frontier):
    fr, _ = frontier
    assert fr.tensors > 90_000 and len(fr.shards) == 160
    disk = sum(os.stat(os.path.join(fr.folder, s)).st_blocks * 512 for s in fr.shards)
    assert disk < 200 << 20 < fr.nbytes  # hundreds of GB described, a few MB written


def test_opens_lazily_with_the_right_totals(frontier):
    fr, _ = frontier
    info, module, source = open_checkpoint(fr.folder)
    assert module is None
    assert isinstance(info.tensors, LazyTensors) and isinstance(info.modules, LazyModules)
    assert len(info.tensors) == fr.tensors
    assert info.total_params == fr.params and info.total_bytes == fr.nbytes
    assert info.dtypes() == ["bfloat16", "float32", "float8_e4m3fn"]
    assert info.metadata["shards"] == 160
    # nothing was made for tensors nobody looked at
    assert not info.tensors._made
    assert info.root.children == ["lm_head", "model"]  # natural order, as safetensors keys always were
    experts = info.modules["model.layers.10.mlp.experts"]
    assert experts.children[:3] == [f"model.layers.10.mlp.experts.{i}" for i in range(3)]
    assert len(experts.children) == 256
    assert experts.params == 256 * 3 * 2048 * 7168 + 256 * 3 * 16 * 56
    assert info.modules["model"].params + info.modules["lm_head"].params == info.total_params
    t = info.tensors[LAST]
    assert (t.module, t.attr, t.shape, t.dtype) == ("model.layers.63.mlp.experts.255.down_proj", "weight", (7168, 2048), "float8_e4m3fn")
    assert len(info.tensors._made) == 1
    source.close()


def test_values_read_only_that_tensors_bytes(frontier):
    torch = pytest.importorskip("torch")
    fr, pattern = frontier
    info, _, source = open_checkpoint(fr.folder)
    try:
        x = source.get(LAST)
        assert x.dtype == torch.float8_e4m3fn and tuple(x.shape) == (7168, 2048)
        assert bytes(x.view(torch.uint8).flatten()[:512].tolist()) == pattern[:512]
        # only the last shard was opened, and the tensor is a view of exactly its own bytes there
        assert list(source._maps) == [os.path.join(fr.folder, fr.shards[-1])]
        shard, begin, end = fr.placement[LAST]
        data = source._maps[os.path.join(fr.folder, shard)][0]
        assert x.data_ptr() == data.data_ptr() + begin and x.numel() == end - begin
    finally:
        source.close()


NAMES = [
    "b.0.w", "b.10.w", "b.2.w", "b.2.a.x", "b.2.bias", "a", "a.w", "a.b-c.w", "a.b.w", "z.1", "z.01x", "",
    ".x", "a..b", "m.layers.3.mlp.experts.11.up", "m.layers.3.mlp.experts.2.up", "m.layers.3.norm",
]


def test_lazy_listing_matches_the_eager_one(tmp_path):
    path = str(tmp_path / "weird.safetensors")
    write_shard(path, [(n, "F32" if i % 2 else "BF16", (i + 1, 2)) for i, n in enumerate(NAMES)])
    info, _, source = open_checkpoint(path)
    source.close()
    assert isinstance(info.tensors, LazyTensors)
    eager = from_state_dict_entries(path, [(n, (i + 1, 2), "bfloat16" if i % 2 == 0 else "float32", "cpu")
                                           for i, n in enumerate(NAMES)], sort=True, metadata=info.metadata)
    for p, m in eager.modules.items():  # one module at a time (bisecting), before any whole walk
        assert info.modules[p] == m
    info, _, source = open_checkpoint(path)
    source.close()
    assert info.to_json() == eager.to_json()  # the whole walk, in one pass
    assert list(info.modules) == list(eager.modules) and list(info.tensors) == list(eager.tensors)
    for n, t in eager.tensors.items():
        assert info.tensors[n] == t
    assert "b.2" in info.modules and "b.3" not in info.modules and "b.2.w" not in info.modules
    with pytest.raises(KeyError):
        info.modules["nope"]


def test_a_duplicate_across_shards_is_refused(tmp_path):
    write_shard(str(tmp_path / "a.safetensors"), [("x.w", "F32", (2,))])
    write_shard(str(tmp_path / "b.safetensors"), [("x.w", "F32", (2,))])
    from modeltui.core.errors import CheckpointError

    with pytest.raises(CheckpointError, match="also appears in a.safetensors"):
        open_checkpoint(str(tmp_path))


def test_the_header_of_a_generated_shard_is_what_safetensors_reads(tmp_path):
    safetensors = pytest.importorskip("safetensors")
    path = str(tmp_path / "s.safetensors")
    write_shard(path, [("a.weight", "F8_E4M3", (4, 8)), ("a.weight_scale_inv", "F32", (1, 1))])
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        assert n % 8 == 0 and json.loads(f.read(n))["a.weight"]["dtype"] == "F8_E4M3"
    with safetensors.safe_open(path, "pt") as f:
        assert sorted(f.keys()) == ["a.weight", "a.weight_scale_inv"]


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=200, deadline=None)
@given(st.sets(st.text(alphabet="ab.01", max_size=7), min_size=1, max_size=12))
def test_lazy_tree_equals_the_eager_one_for_any_names(names):
    from modeltui.core.lazy_listing import lazy_info

    names = sorted(names)
    specs = {n: {"dtype": "F32", "shape": [i + 1]} for i, n in enumerate(names)}
    numel = {n: i + 1 for i, n in enumerate(names)}
    eager = from_state_dict_entries("x", [(n, (i + 1,), "float32", "cpu") for i, n in enumerate(names)], sort=True)
    lazy = lazy_info("x", specs, numel, lambda c: "float32", {"F32"}, 4 * sum(numel.values()))
    for p, m in eager.modules.items():
        assert lazy.modules[p] == m, p
    assert len(lazy.modules) == len(eager.modules)
    lazy2 = lazy_info("x", specs, numel, lambda c: "float32", {"F32"}, 4 * sum(numel.values()))
    assert lazy2.to_json() == eager.to_json()


def test_search_over_every_name_makes_no_objects(frontier):
    from modeltui.ui.widgets.search import find

    fr, _ = frontier
    info, _, source = open_checkpoint(fr.folder)
    source.close()
    hits = find(info, "layers.63.mlp.experts.255.down")
    assert [(r.kind, r.name) for r in hits] == [("module", "model.layers.63.mlp.experts.255.down_proj"),
                                               ("tensor", LAST), ("tensor", LAST + "_scale_inv")]
    assert not info.tensors._made and not info.modules._made
    assert len(find(info, "Q_B_PROJ.WEIGHT_scale")) == 64  # case-insensitive, one per layer


@pytest.mark.parametrize("names, expected", [
    (["module.a.w", "module.b.w", "module.module.c"], "module."),
    (["module.a.w", "module.b.w", "modulex.c"], ""),
    (["module._orig_mod.a.w", "module._orig_mod.z"], "module._orig_mod."),
    (["module.", "module.a"], ""),  # stripping would leave an empty key
])
def test_the_wrapper_prefix_of_a_lazy_listing(tmp_path, names, expected):
    from modeltui.core.keys import wrapper_on_open
    from modeltui.core.keyplan import wrapper_prefix

    path = str(tmp_path / "w.safetensors")
    write_shard(path, [(n, "F32", (2,)) for n in names])
    opened = type("Opened", (), {})()
    opened.info, opened.model, source = open_checkpoint(path)
    source.close()
    assert isinstance(opened.info.tensors, LazyTensors)
    assert wrapper_on_open(opened) == expected == wrapper_prefix(names)


# ------------------------------------------------------------------ repeated blocks


def test_repeated_blocks_collapse_into_groups(frontier):
    from modeltui.core.groups import Group, group_children

    fr, _ = frontier
    info, _, source = open_checkpoint(fr.folder)
    source.close()
    layers = group_children(info, "model.layers")
    assert [(r.label, len(r.members)) for r in layers.rows] == [("layers.[0-2]", 3), ("layers.[3-63]", 61)]
    dense, moe = layers.rows
    assert moe.members[0] == "model.layers.3" and moe.members[-1] == "model.layers.63"
    assert moe.params == sum(info.modules[f"model.layers.{i}"].params for i in range(3, 64)) == 61 * moe.member_params
    assert dense.params + moe.params == info.modules["model.layers"].params and not layers.odd
    experts = group_children(info, "model.layers.7.mlp.experts").rows
    assert len(experts) == 1 and isinstance(experts[0], Group) and experts[0].label == "experts.[0-255]"
    assert group_children(info, "model.layers.7.mlp").rows == [f"model.layers.7.mlp.{c}" for c in ("experts", "gate", "shared_experts")]


def _experts(tmp_path, odd: dict[int, tuple[str, tuple[int, ...]]], n: int = 10) -> str:
    path = str(tmp_path / "moe.safetensors")
    entries = []
    for e in range(n):
        code, shape = odd.get(e, ("BF16", (4, 8)))
        entries += [(f"moe.experts.{e}.w1.weight", code, shape), (f"moe.experts.{e}.w2.weight", "BF16", (8, 4))]
    entries.append(("moe.gate.weight", "F32", (n, 8)))
    write_shard(path, sorted(entries))
    return path


@pytest.mark.parametrize("odd", [{5: ("F32", (4, 8))}, {5: ("BF16", (4, 9))}])
def test_a_member_that_differs_breaks_out_of_its_group(tmp_path, odd):
    from modeltui.core.groups import group_children

    info, _, source = open_checkpoint(_experts(tmp_path, odd))
    source.close()
    g = group_children(info, "moe.experts")
    assert [r.label if hasattr(r, "label") else r for r in g.rows] == ["experts.[0-4]", "moe.experts.5", "experts.[6-9]"]
    assert g.odd == {"moe.experts.5"}


def test_groups_of_a_module_model_compare_classes_too():
    torch = pytest.importorskip("torch")
    from modeltui.core.describe import from_module
    from modeltui.core.groups import group_children

    blocks = torch.nn.ModuleList([torch.nn.Linear(4, 4) for _ in range(4)] + [torch.nn.Linear(4, 4, bias=False)]
                                 + [torch.nn.Sequential(torch.nn.Linear(4, 4)) for _ in range(3)])
    info, _ = from_module(torch.nn.Sequential(blocks), "m")
    g = group_children(info, "0")
    assert [r.label if hasattr(r, "label") else r for r in g.rows] == ["0.[0-3]", "0.4", "0.[5-7]"]
    assert g.odd == {"0.4"}


def test_summary_prints_a_group_once_and_counts_what_it_stands_for(frontier, tmp_path):
    import io

    from modeltui.summary import print_summary

    fr, _ = frontier
    info, _, source = open_checkpoint(fr.folder)
    source.close()
    out = io.StringIO()
    print_summary(info, file=out)
    text = out.getvalue()
    lines = text.splitlines()
    assert len(lines) < 150  # 95k tensors, one screenful or two
    row = next(line for line in lines if line.strip().startswith("layers.[3-63]"))
    assert "×61 blocks" in row and "702B" in row
    assert any(line.strip().startswith("experts.[0-255]") for line in lines)
    assert "experts.17" not in text and "not shown" not in text  # every block is either printed or stood for
    assert "in repeated blocks shown once per group" in text

    small, _, source = open_checkpoint(_experts(tmp_path, {5: ("F32", (4, 8))}))
    source.close()
    out = io.StringIO()
    print_summary(small, file=out)
    rows = [line.split()[0] for line in out.getvalue().splitlines()[3:] if line.strip()]
    assert rows[:5] == ["(root)", "moe", "experts", "experts.[0-4]", "0"]
    five = next(line for line in out.getvalue().splitlines() if line.strip().startswith("5 "))
    assert "≠ its numbered siblings" in five
    out = io.StringIO()
    print_summary(small, file=out, grouped=False)
    assert "experts.[" not in out.getvalue()
    assert [line.split()[0] for line in out.getvalue().splitlines() if line[:7].strip().isdigit()] == [str(i) for i in range(10)]
