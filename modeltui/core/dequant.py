"""Dequantized views of fp8 weights that come with a scale tensor.

DeepSeek-V3 style checkpoints store ``w.weight`` in ``float8_e4m3fn`` and
``w.weight_scale_inv`` in float32, one scale per 128 x 128 block: the real
weight is ``weight * scale`` with the scale repeated over its block. FP8
checkpoints of other tools store ``weight_scale`` per tensor or per output row.
The view is float32, computed on demand; the stored tensors are never changed.
"""

from __future__ import annotations

from dataclasses import dataclass

from modeltui.core.errors import ModelTuiError
from modeltui.core.structure import ModelInfo

#: companion names of a quantized weight's scale, most specific first
SCALE_SUFFIXES = ("_scale_inv", "_scale")
DEFAULT_BLOCK = 128  # DeepSeek-V3's weight_block_size, and what fp8 block quantization uses


@dataclass(frozen=True)
class Scaling:
    """How ``weight`` is scaled: by ``scale``, in blocks of ``block`` elements (rows, columns)."""

    weight: str
    scale: str
    block: tuple[int, int]

    def describe(self) -> str:
        rows, cols = self.block
        how = "one scale for all" if rows == cols == 0 else f"{rows}×{cols} blocks"
        return f"{self.weight.rpartition('.')[2]} × {self.scale.rpartition('.')[2]}, {how}"


def _quantized(dtype: str) -> bool:
    return dtype.startswith("float8") or dtype in ("int8", "uint8")


def scaling_of(info: ModelInfo, name: str) -> Scaling | None:
    """The scale that goes with ``name`` when it is a quantized weight that has one, else None."""
    x = info.tensors.get(name)
    if x is None or x.shape is None or not _quantized(x.dtype) or len(x.shape) != 2:
        return None
    for suffix in SCALE_SUFFIXES:
        s = info.tensors.get(name + suffix)
        if s is None or s.shape is None or s.dtype.startswith("float8") and s.dtype != "float8_e8m0fnu":
            continue
        block = _blocks(tuple(x.shape), tuple(s.shape))
        if block is not None:
            return Scaling(name, name + suffix, block)
    return None


def _blocks(w: tuple[int, ...], s: tuple[int, ...]) -> tuple[int, int] | None:
    """The block (rows, cols) a scale of shape ``s`` tiles a weight of shape ``w`` with, or None; (0, 0): one scale."""
    n = 1
    for d in s:
        n *= d
    if n == 1:
        return (0, 0)
    if len(s) == 1 or (len(s) == 2 and s[1] == 1):  # one scale per output row
        return (1, w[1]) if s[0] == w[0] else None
    if len(s) != 2 or 0 in s:
        return None
    return (_side(w[0], s[0]), _side(w[1], s[1])) if _side(w[0], s[0]) and _side(w[1], s[1]) else None


def _side(n: int, blocks: int) -> int:
    """The block length that cuts ``n`` into ``blocks`` pieces: 128 (the usual one) when it does, else the even cut; 0: none."""
    for size in (DEFAULT_BLOCK, -(-n // blocks)):
        if size and -(-n // size) == blocks:
            return size
    return 0


def dequantize(weight, scale, block: tuple[int, int]):
    """``weight * scale`` in float32, each scale repeated over its block."""
    import torch

    w = weight.to(torch.float32)
    s = scale.to(torch.float32)
    if block == (0, 0):
        return w * s.reshape(())
    rows, cols = block
    if s.dim() == 1 or (s.dim() == 2 and s.shape[1] == 1):
        return w * s.reshape(-1, 1)
    if s.dim() != 2:
        raise ModelTuiError(f"a scale of shape {tuple(s.shape)} does not tile a weight of shape {tuple(w.shape)}")
    if w.data_ptr() == weight.data_ptr():  # already float32: never scale the stored tensor in place
        w = w.clone()
    for i in range(s.shape[0]):  # one row of blocks at a time: no second weight-sized tensor
        w[i * rows:(i + 1) * rows] *= s[i].repeat_interleave(cols)[: w.shape[1]]
    return w
