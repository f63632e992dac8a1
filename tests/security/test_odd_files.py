"""Odd but valid files and models get a plain answer (issue 11 items 12, 13, 15).

fp8 ``fnuz`` safetensors are read; a deflate-compressed zip ``.pt`` is read
into memory with a warning instead of being called corrupt; weights nested
deep in a pickle are found, and past the search depth the error says how
deep it went; a list holding itself does not hang; a 5 MB ``extra_repr`` is
cut.
"""

import zipfile

import pytest
import torch
from torch import nn

from modeltui.core import CheckpointError, open_target


def _equal(a, b):
    return a.dtype == b.dtype and torch.equal(a.view(torch.uint8), b.view(torch.uint8))


# ------------------------------------------------------------ issue 11.15: deep nesting


def test_weights_nested_ten_deep_are_found(tmp_path):
    obj = {"w": torch.ones(2)}
    for _ in range(10):
        obj = {"a": obj}
    torch.save(obj, tmp_path / "deep.pt")
    info = open_target(str(tmp_path / "deep.pt")).info
    assert info.metadata["weights_key"] == "a"  # the outer key holds the weights
    assert list(info.tensors) == ["a." * 9 + "w"]


def test_weights_nested_past_the_search_say_how_deep_it_went(tmp_path):
    obj = {"w": torch.ones(2)}
    for _ in range(30):
        obj = {"a": obj}
    torch.save(obj, tmp_path / "deeper.pt")
    with pytest.raises(CheckpointError, match=r"holds no tensors in the first 16 levels of nesting .*searches 16 levels"):
        open_target(str(tmp_path / "deeper.pt"))


def test_a_list_holding_itself_does_not_hang(tmp_path):
    # [tensor, <the list itself> x 40]: a naive walk 16 levels deep would visit 40**16 items
    x = torch.ones(1)
    lst = [x]
    for _ in range(40):
        lst.append(lst)
    torch.save(lst, tmp_path / "cycle.pt")
    info = open_target(str(tmp_path / "cycle.pt")).info
    assert list(info.tensors) == ["0"]


# ------------------------------------------------------------ issue 11.12 / 11.13: dtypes and compression


def test_fp8_fnuz_safetensors_list_and_read(tmp_path):
    from safetensors.torch import save_file

    t = {"a": torch.tensor([0.5, -1.0, 2.0]).to(torch.float8_e4m3fnuz),
         "b": torch.tensor([0.25, 4.0]).to(torch.float8_e5m2fnuz)}
    save_file(t, tmp_path / "f8.safetensors")
    o = open_target(str(tmp_path / "f8.safetensors"))
    assert {n: x.dtype for n, x in o.info.tensors.items()} == {"a": "float8_e4m3fnuz", "b": "float8_e5m2fnuz"}
    for k, v in t.items():
        assert _equal(o.tensor(k), v)


def test_deflate_compressed_pt_reads_its_real_values(tmp_path):
    sd = {"w": torch.randn(64, 64), "b": torch.randn(64)}
    torch.save(sd, tmp_path / "stored.pt")
    with zipfile.ZipFile(tmp_path / "stored.pt") as zin, zipfile.ZipFile(tmp_path / "deflated.pt", "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
    o = open_target(str(tmp_path / "deflated.pt"))
    assert any("compressed zip archive" in w and "read into memory" in w for w in o.info.warnings)
    for k, v in sd.items():
        assert torch.equal(o.tensor(k), v)


# ------------------------------------------------------------ issue 11.15: huge extra_repr


class Chatty(nn.Module):
    def extra_repr(self):
        return "x" * 5_000_000


def test_a_huge_extra_repr_is_cut():
    from modeltui.core.describe import MAX_EXTRA_REPR, from_module

    info, _ = from_module(Chatty(), "chatty")
    text = info.root.extra_repr
    assert len(text) < MAX_EXTRA_REPR + 100
    assert text.startswith("xxx") and "5,000,000 characters in all" in text
