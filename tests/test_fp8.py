"""fp8 and other new dtypes: listed, statistics upcast, saved bit for bit, and the dequantized view of a block-scaled weight."""

import os

import pytest
import torch
from safetensors.torch import load_file, save_file

from modeltui.cli import main
from modeltui.core import open_target
from modeltui.core.dequant import dequantize, scaling_of
from modeltui.core.stats import tensor_stats

NEW = [torch.float8_e4m3fn, torch.float8_e5m2, torch.float8_e4m3fnuz, torch.float8_e5m2fnuz, torch.float8_e8m0fnu,
       torch.uint16, torch.uint32, torch.uint64]


def new_dtypes() -> dict:
    g = torch.Generator().manual_seed(0)
    out = {}
    for dt in NEW:
        x = torch.randn(48, 40, generator=g) * 3
        out[str(dt).rpartition(".")[2]] = x.to(dt) if dt.is_floating_point else (x.abs() * 100).to(dt)
    return out


def bits(t):
    return t.contiguous().view(torch.uint8).flatten()


@pytest.mark.parametrize("ext", [".safetensors", ".pt"])
def test_new_dtypes_list_show_statistics_and_save_bit_for_bit(tmp_path, ext):
    sd = new_dtypes()
    src = str(tmp_path / "a.safetensors")
    save_file(sd, src)
    opened = open_target(src)
    assert {n: t.dtype for n, t in opened.info.tensors.items()} == {n: str(v.dtype).rpartition(".")[2] for n, v in sd.items()}
    for n, v in sd.items():
        st = tensor_stats(opened.tensor(n))
        ref = v.to(torch.float64)
        assert st.min == ref.min().item() and st.max == ref.max().item()
        assert st.mean == pytest.approx(ref.mean().item(), rel=1e-9)
    out = str(tmp_path / ("b" + ext))
    assert main([src, "--save", out]) == 0
    back = load_file(out) if ext == ".safetensors" else torch.load(out)
    for n, v in sd.items():
        assert back[n].dtype == v.dtype and torch.equal(bits(back[n]), bits(v)), n


def block_scaled(tmp_path, rows=300, cols=260):
    g = torch.Generator().manual_seed(1)
    w = (torch.randn(rows, cols, generator=g) * 2).to(torch.float8_e4m3fn)
    s = torch.rand(-(-rows // 128), -(-cols // 128), generator=g) + 0.5
    path = str(tmp_path / "q.safetensors")
    save_file({"l.weight": w, "l.weight_scale_inv": s, "l.bias": torch.zeros(rows)}, path)
    ref = w.float() * s.repeat_interleave(128, 0)[:rows].repeat_interleave(128, 1)[:, :cols]
    return path, w, s, ref


def test_a_block_scaled_weight_dequantizes_by_its_128_blocks(tmp_path):
    path, w, s, ref = block_scaled(tmp_path)
    opened = open_target(path)
    scaling = scaling_of(opened.info, "l.weight")
    assert scaling is not None and scaling.scale == "l.weight_scale_inv" and scaling.block == (128, 128)
    assert scaling_of(opened.info, "l.weight_scale_inv") is None and scaling_of(opened.info, "l.bias") is None
    stored = opened.tensor("l.weight")
    before = bits(stored).clone()
    x = dequantize(stored, opened.tensor("l.weight_scale_inv"), scaling.block)
    assert x.dtype == torch.float32 and torch.equal(x, ref)
    assert torch.equal(bits(opened.tensor("l.weight")), before)  # the stored weight is untouched


@pytest.mark.parametrize("scale_shape, block", [((1,), (0, 0)), ((), (0, 0)), ((300,), (1, 260)), ((300, 1), (1, 260)), ((3, 300), None)])
def test_per_tensor_and_per_row_scales_and_a_scale_that_does_not_tile(tmp_path, scale_shape, block):
    w = torch.randn(300, 260).to(torch.float8_e4m3fn)
    s = torch.rand(scale_shape) + 0.5
    path = str(tmp_path / "q.safetensors")
    save_file({"l.weight": w, "l.weight_scale": s}, path)
    opened = open_target(path)
    scaling = scaling_of(opened.info, "l.weight")
    if block is None:
        assert scaling is None  # 300 column blocks over 260 columns: not a block scale
        return
    assert scaling.block == block
    ref = w.float() * (s.reshape(-1, 1) if s.numel() > 1 else s.reshape(()))
    assert torch.equal(dequantize(opened.tensor("l.weight"), opened.tensor("l.weight_scale"), block), ref)


async def test_D_shows_the_dequantized_values_labelled_and_back(tmp_path, ui):
    from modeltui.ui.app import ModelTuiApp
    from modeltui.ui.widgets import ModuleTree, NodeRef

    path, w, s, ref = block_scaled(tmp_path)
    app = ModelTuiApp(path)
    async with app.run_test(size=(120, 36)) as pilot:
        await ui.settle(pilot)
        app.query_one(ModuleTree).reveal(NodeRef("tensor", "l.weight"))
        await ui.settle(pilot)
        panel = app.main.tensor_panel
        assert "press D for the dequantized values" in ui.text_of(panel, "#tensor-title")
        stored = panel.stats_cache[("l.weight", False)]
        assert stored.max == w.float().max().item()
        await pilot.press("D")
        await ui.settle(pilot)
        title = ui.text_of(panel, "#tensor-title")
        assert "[dequantized: weight × weight_scale_inv, 128×128 blocks, float32]" in title
        st = panel.stats_cache[("l.weight", "dequant")]
        assert st.max == ref.max().item() and st.min == ref.min().item()
        assert st.mean == pytest.approx(ref.double().mean().item(), rel=1e-6)
        assert [float(c) for c in panel._grid.cells[1][:3]] == pytest.approx(ref[1, :3].tolist(), rel=1e-3)
        await pilot.press("D")
        await ui.settle(pilot)
        assert "dequantized:" not in ui.text_of(panel, "#tensor-title")
        app.query_one(ModuleTree).reveal(NodeRef("tensor", "l.bias"))
        await ui.settle(pilot)
        await pilot.press("D")
        await ui.settle(pilot)
        assert any("has no scale to dequantize with" in n.message for n in app._notifications)
    assert os.path.getsize(path) > 0
