"""The compare engine: key matching, per-tensor figures against a float64 reference, the merge, the scan's flags."""

import pytest
import torch
from safetensors.torch import save_file

from modeltui.core import open_target
from modeltui.core.compare import CHANGED, IDENTICAL, SHAPE, compare_opened, diff_names, merge_diff, plan_diff
from modeltui.core.difference import diff_tensors, difference_stats
from modeltui.core.errors import Cancelled, StatsError, TargetError
from modeltui.core.keymatch import match_keys
from modeltui.core.scan import build_scan, layer_key, scan_names, scan_opened, scan_tensor


def layered(seed=0, layers=6):
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for i in range(layers):
        sd[f"layers.{i}.attn.weight"] = torch.randn(24, 16, generator=g)
        sd[f"layers.{i}.mlp.down_proj.weight"] = torch.randn(16, 40, generator=g) * 0.05
        sd[f"layers.{i}.mlp.down_proj.bias"] = torch.randn(16, generator=g) * 0.01
    sd["embed.weight"] = torch.randn(50, 16, generator=g)
    sd["steps"] = torch.tensor([3, 1, 4, 1, 5], dtype=torch.int64)
    return sd


def reference(a, b):
    """The figures computed the obvious way, on whole float64 copies."""
    x, y = a.double().reshape(-1), b.double().reshape(-1)
    d = x - y
    i = int(torch.argmax(d.abs()))
    idx = []
    flat = i
    for s in reversed(a.shape):
        idx.append(flat % s)
        flat //= s
    return {
        "max_abs": float(d.abs().max()), "max_index": tuple(reversed(idx)), "differ": int((x != y).sum()),
        "rel_l2": float(d.norm() / x.norm()), "cosine": float(x @ y / (x.norm() * y.norm())),
    }


def check_against_reference(got, a, b):
    ref = reference(a, b)
    assert got.max_abs == pytest.approx(ref["max_abs"], rel=1e-12)
    assert got.max_index == ref["max_index"]
    assert got.differ == ref["differ"]
    assert got.rel_l2 == pytest.approx(ref["rel_l2"], rel=1e-9)
    assert got.cosine == pytest.approx(ref["cosine"], rel=1e-12)


# ---------------------------------------------------------------- one tensor


@pytest.mark.parametrize("piece", [7, 1000, 1 << 18])
def test_one_element_changed_gives_its_index_and_figures(piece):
    a = torch.randn(37, 53, dtype=torch.float32, generator=torch.Generator().manual_seed(1))
    b = a.clone()
    b[20, 41] += 0.75
    d = diff_tensors(a, b, "w", piece=piece)
    assert d.status == CHANGED and d.differ == 1 and d.max_index == (20, 41)
    assert d.a_at == float(a[20, 41]) and d.b_at == float(b[20, 41])
    check_against_reference(d, a, b)


@pytest.mark.parametrize("piece", [5, 64, 1 << 18])
def test_every_element_changed_in_layouts_that_differ(piece):
    g = torch.Generator().manual_seed(2)
    a = torch.randn(30, 20, generator=g)
    b = (a + 0.01 * torch.randn(30, 20, generator=g)).t().contiguous().t()  # same values, column-major
    assert not b.is_contiguous()
    check_against_reference(diff_tensors(a, b, piece=piece), a, b)
    # a stride-0 side: every element of the expanded row
    row = torch.randn(1, 20, generator=g)
    wide = row.expand(30, 20)
    check_against_reference(diff_tensors(wide, a, piece=piece), wide.contiguous(), a)


def test_identical_bits_and_the_norms_read_later():
    a = torch.randn(1000)
    assert diff_tensors(a, a.clone(), piece=64).status == IDENTICAL
    b = a.clone()
    b[-1] = 5.0  # the first pieces are bit-identical: their norms are read afterwards
    check_against_reference(diff_tensors(a, b, piece=64), a, b)


def test_dtype_change_is_compared_in_float64():
    a = torch.randn(64, 8)
    b = a.to(torch.bfloat16)
    d = diff_tensors(a, b)
    assert d.status == CHANGED and (d.dtype, d.other_dtype) == ("float32", "bfloat16")
    check_against_reference(d, a, b.float())
    same = diff_tensors(a, a.double())
    assert same.status == CHANGED and same.differ == 0 and same.max_abs == 0 and same.max_index is None
    assert "another dtype" in same.note


def test_shape_change_has_no_element_figures():
    d = diff_tensors(torch.zeros(4, 4), torch.zeros(4, 5), "w")
    assert d.status == SHAPE and d.shape == (4, 4) and d.other_shape == (4, 5) and d.max_abs is None


def test_integers_are_exact_even_at_the_int64_and_uint64_limits():
    a = torch.tensor([0, 2**62, -2**63, 5, 9], dtype=torch.int64)
    b = torch.tensor([0, -2**62, 2**63 - 1, 5, 8], dtype=torch.int64)
    d = diff_tensors(a, b)
    assert d.differ == 3 and d.max_abs == 2**64 - 1 and d.max_index == (2,)
    assert (d.a_at, d.b_at) == (-2**63, 2**63 - 1)
    u = torch.tensor([7, 2**64 - 1, 3], dtype=torch.uint64)
    v = torch.tensor([7, 1, 3], dtype=torch.uint64)
    e = diff_tensors(u, v)
    assert e.differ == 1 and e.max_abs == 2**64 - 2 and e.max_index == (1,) and e.a_at == 2**64 - 1
    small = diff_tensors(torch.tensor([1, 200], dtype=torch.uint8), torch.tensor([1, 3], dtype=torch.int16))
    assert small.max_abs == 197 and isinstance(small.max_abs, int)


def test_nan_on_one_side_is_counted_and_left_out_of_the_figures():
    a = torch.randn(100, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    b = a.clone()
    b[10] = float("nan")
    b[11] = float("inf")
    b[50] += 1.0
    a[90] = b[90] = float("nan")  # NaN on both sides: the same, not a difference
    d = diff_tensors(a, b, piece=16)
    assert d.nonfinite_b == 2 and d.nonfinite_a == 0
    assert d.differ == 3 and d.max_index == (50,) and d.max_abs == pytest.approx(1.0)
    keep = torch.ones(100, dtype=torch.bool)
    keep[[10, 11, 90]] = False
    check = reference(a[keep], b[keep])
    assert d.rel_l2 == pytest.approx(check["rel_l2"]) and d.cosine == pytest.approx(check["cosine"])


def test_difference_statistics_match_the_whole_difference():
    g = torch.Generator().manual_seed(4)
    a, b = torch.randn(300, generator=g), torch.randn(300, generator=g)
    st = difference_stats(a, b)
    ref = a.double() - b.double()
    assert st.min == pytest.approx(float(ref.min())) and st.max == pytest.approx(float(ref.max()))
    assert st.mean == pytest.approx(float(ref.mean())) and st.std == pytest.approx(float(ref.std(unbiased=False)))
    assert sum(st.hist_counts) == 300
    with pytest.raises(StatsError):
        difference_stats(torch.zeros(3), torch.zeros(4))


def test_cancelled_between_pieces():
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(Cancelled):
        diff_tensors(torch.randn(1000), torch.randn(1000), should_stop=stop, piece=10)


# ---------------------------------------------------------------- matching keys


def test_known_prefix_is_found_and_reported():
    a = {"fc.weight": (4, 3), "fc.bias": (4,)}
    b = {"module.fc.weight": (4, 3), "module.fc.bias": (4,)}
    m = match_keys(a, b)
    assert m.pairs == [("fc.weight", "module.fc.weight"), ("fc.bias", "module.fc.bias")]
    assert (m.mapping.a_prefix, m.mapping.b_prefix, m.mapping.found, m.mapping.count) == ("", "module.", "known", 2)
    back = match_keys({"_orig_mod.fc.weight": (4, 3)}, {"fc.weight": (4, 3)})
    assert back.mapping.a_prefix == "_orig_mod." and back.pairs == [("_orig_mod.fc.weight", "fc.weight")]


def test_prefix_found_by_suffixes_and_shapes():
    a = {f"backbone.layers.{i}.w": (i + 2, 3) for i in range(5)} | {"head.w": (9,)}
    b = {f"encoder.layers.{i}.w": (i + 2, 3) for i in range(5)} | {"head.w": (9,), "extra": (1,)}
    m = match_keys(a, b)
    assert (m.mapping.a_prefix, m.mapping.b_prefix, m.mapping.found) == ("backbone.", "encoder.", "suffix")
    assert ("backbone.layers.3.w", "encoder.layers.3.w") in m.pairs and ("head.w", "head.w") in m.pairs
    assert m.only_b == ["extra"] and m.only_a == []


def test_shapes_must_agree_for_a_found_prefix():
    a = {f"x.{i}": (2,) for i in range(4)}
    b = {f"y.{i}": (3,) for i in range(4)}
    m = match_keys(a, b)
    assert m.pairs == [] and m.mapping is None and len(m.only_a) == 4


def test_nothing_in_common_is_one_line(tmp_path):
    save_file({"a.w": torch.zeros(2)}, str(tmp_path / "a.safetensors"))
    save_file({"b.v": torch.zeros(3)}, str(tmp_path / "b.safetensors"))
    a, b = open_target(str(tmp_path / "a.safetensors")), open_target(str(tmp_path / "b.safetensors"))
    with pytest.raises(TargetError) as e:
        plan_diff(a.info, b.info)
    assert "no tensor in common" in str(e.value) and "\n" not in str(e.value)


# ---------------------------------------------------------------- whole checkpoints


@pytest.fixture
def pair(tmp_path):
    sd = layered()
    other = {k: v.clone() for k, v in sd.items()}
    other["layers.2.attn.weight"][5, 7] += 0.125
    other["embed.weight"] = other["embed.weight"].to(torch.float16)
    other["layers.4.mlp.down_proj.bias"] = torch.zeros(17)
    del other["layers.5.attn.weight"]
    other["new.weight"] = torch.ones(3)
    save_file(sd, str(tmp_path / "a.safetensors"))
    torch.save(other, str(tmp_path / "b.pt"))
    return sd, other, str(tmp_path / "a.safetensors"), str(tmp_path / "b.pt")


@pytest.mark.parametrize("workers", [1, 2])
def test_changes_of_every_kind(pair, workers):
    sd, other, pa, pb = pair
    report = compare_opened(open_target(pa), open_target(pb), workers=workers)
    by = report.by_name()
    assert not report.identical
    check_against_reference(by["layers.2.attn.weight"], sd["layers.2.attn.weight"], other["layers.2.attn.weight"])
    assert by["layers.2.attn.weight"].max_index == (5, 7) and by["layers.2.attn.weight"].differ == 1
    assert (by["embed.weight"].dtype, by["embed.weight"].other_dtype) == ("float32", "float16")
    check_against_reference(by["embed.weight"], sd["embed.weight"], other["embed.weight"].float())
    assert by["layers.4.mlp.down_proj.bias"].status == SHAPE
    assert [t.name for t in report.only_a] == ["layers.5.attn.weight"]
    assert [t.name for t in report.only_b] == ["new.weight"]
    same = [d for d in report.diffs if d.status == IDENTICAL]
    assert len(same) == len(sd) - 1 - 3  # all but the three changed and the dropped one
    assert report.counts()["changed"] == 2 and report.counts()["shape"] == 1


def test_the_merge_is_the_same_for_any_split(pair):
    _, _, pa, pb = pair
    a, b = open_target(pa), open_target(pb)
    plan = plan_diff(a.info, b.info)
    whole = merge_diff(plan, [diff_names(a, b, plan.pairs)])
    halves = [diff_names(a, b, plan.pairs[1::2]), diff_names(a, b, plan.pairs[::2])]
    split = merge_diff(plan, reversed(halves))
    assert split.to_json() == whole.to_json()
    with pytest.raises(StatsError):
        merge_diff(plan, [halves[0]])
    with pytest.raises(StatsError):
        merge_diff(plan, [halves[0], halves[0], halves[1]])


def test_identical_copies_in_every_format(ckpts):
    paths = [ckpts[k] for k in ("state_dict.pt", "legacy.pt", "model.safetensors", "plain.safetensors",
                                "sharded_safetensors", "sharded_bin", "dcp", "lightning.ckpt")]
    first = open_target(paths[0])
    for p in paths[1:]:
        report = compare_opened(first, open_target(p))
        assert report.identical, p
        assert all(d.status == IDENTICAL for d in report.diffs)
        assert all(t.tied_to == "tok.weight" for t in report.only_a + report.only_b)  # lm_head.weight, stored once


# ---------------------------------------------------------------- scan


def test_scan_figures_match_torch():
    g = torch.Generator().manual_seed(5)
    t = torch.randn(301, 7, generator=g).to(torch.bfloat16)
    h = scan_tensor(t, "w", piece=100)
    x = t.double()
    assert h.min == float(x.min()) and h.max == float(x.max())
    assert h.mean == pytest.approx(float(x.mean()), rel=1e-12)
    assert h.std == pytest.approx(float(x.std(unbiased=False)), rel=1e-12)
    assert h.norm == pytest.approx(float(x.norm()), rel=1e-12)
    big = torch.tensor([2**63 + 5, 1], dtype=torch.uint64)
    assert scan_tensor(big).max == 2**63 + 5


def test_scan_flags_nan_zero_constant_extreme_and_outliers(tmp_path):
    sd = layered(layers=8)
    sd["layers.3.attn.weight"][2, 2] = float("nan")
    sd["layers.6.mlp.down_proj.weight"] = sd["layers.6.mlp.down_proj.weight"] * 10  # std 10x the others
    sd["zeros"] = torch.zeros(4, 4)
    sd["ones"] = torch.ones(2, 8)
    sd["norm.weight"], sd["norm.bias"], sd["half"] = torch.ones(8), torch.zeros(8), torch.full((8,), 0.5)
    sd["huge"] = torch.tensor([1.0, -3e5])
    save_file(sd, str(tmp_path / "m.safetensors"))
    report = scan_opened(open_target(str(tmp_path / "m.safetensors")), workers=2)
    kinds = {(f.name, f.kind) for f in report.flags}
    assert ("layers.3.attn.weight", "nan") in kinds
    assert ("zeros", "all_zero") in kinds and ("ones", "constant") in kinds and ("huge", "extreme") in kinds
    out = [f for f in report.flags if f.kind == "outlier"]
    assert [f.name for f in out] == ["layers.6.mlp.down_proj.weight"]
    stds = [float(sd[f"layers.{i}.mlp.down_proj.weight"].double().std(unbiased=False)) for i in range(8) if i != 6]
    median = sorted(stds)[len(stds) // 2]
    assert out[0].figures["median_std"] == pytest.approx(median, rel=1e-12)
    assert out[0].figures["std_ratio"] == pytest.approx(out[0].figures["std"] / median)
    assert "layers.*.mlp.down_proj.weight" in out[0].reason
    nan = next(f for f in report.flags if f.kind == "nan")
    assert nan.figures["nan"] == 1
    # every other tensor is clean, and the report's order is the file's
    assert set(report.flagged) == {"layers.3.attn.weight", "layers.6.mlp.down_proj.weight", "zeros", "ones", "huge", "half"}
    # a 1-D tensor of zeros or ones is a bias or a norm as initialised: said, not flagged (it would bury a NaN)
    assert report.initial == ["norm.bias", "norm.weight"] and report.to_json()["initial"] == report.initial


def test_scan_merge_of_any_split_flags_the_same(tmp_path):
    sd = layered(layers=6)
    sd["layers.1.attn.weight"] = sd["layers.1.attn.weight"] * 0.01  # far below the others: flagged too
    save_file(sd, str(tmp_path / "m.safetensors"))
    opened = open_target(str(tmp_path / "m.safetensors"))
    order = list(opened.info.tensors)
    parts = [scan_names(opened, order[::3]), scan_names(opened, order[1::3]), scan_names(opened, order[2::3])]
    one = build_scan("x", order, [scan_names(opened, order)])
    assert build_scan("x", order, parts).to_json() == one.to_json()
    assert [(f.name, f.kind) for f in one.flags] == [("layers.1.attn.weight", "outlier")]
    assert one.flags[0].figures["std_ratio"] < 0.2


def test_layer_key():
    assert layer_key("model.layers.17.mlp.down_proj.weight") == "model.layers.*.mlp.down_proj.weight"
    assert layer_key("0.weight") == "*.weight"
    assert layer_key("blocks.2.experts.11.w1") == "blocks.*.experts.*.w1"
    assert layer_key("fc2.weight") is None
