"""Small tensor facts used everywhere: dtype names, lazy parameters, identity, bit-exact comparison.

Nothing here imports torch at module import time (listing a safetensors
header must not load it).
"""

from __future__ import annotations

from typing import Any


def dtype_name(dtype: Any) -> str:
    """``torch.float32`` -> ``"float32"`` (also layouts: ``torch.sparse_coo`` -> ``"sparse_coo"``)."""
    return str(dtype).removeprefix("torch.")


def is_lazy(t: Any) -> bool:
    """True for an uninitialised lazy parameter or buffer (no shape, no values yet)."""
    from torch.nn.parameter import UninitializedTensorMixin

    return isinstance(t, UninitializedTensorMixin)


def tensor_identity(t: Any) -> Any:
    """A key equal for the same tensor object or the same view of one memory."""
    if is_lazy(t) or t.is_meta:
        return ("id", id(t))
    try:
        ptr = t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):
        return ("id", id(t))
    if ptr == 0:
        return ("id", id(t))
    return ("mem", t.device.type, t.device.index, ptr, t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)


def same_bits(a, b) -> bool:
    """True when ``a`` and ``b`` hold the same bits (NaN-safe; -0.0 differs from 0.0)."""
    import torch

    if a.device != b.device or a.dtype != b.dtype or tuple(a.shape) != tuple(b.shape):
        return False
    if not (a.is_floating_point() or a.is_complex()):
        return torch.equal(a, b)
    return torch.equal(*_wide_bits(a, b))


def _wide_bits(a, b):
    """Raw bytes of ``a`` and ``b`` viewed as the widest integer both allow.

    Comparing int64 words is several times faster than comparing bytes.
    """
    import torch

    ba = a.contiguous().reshape(-1).view(torch.uint8)
    bb = b.contiguous().reshape(-1).view(torch.uint8)
    for dt, size in ((torch.int64, 8), (torch.int32, 4), (torch.int16, 2)):
        if ba.numel() % size == 0:
            try:
                return ba.view(dt), bb.view(dt)
            except RuntimeError:  # storage offset not aligned for this width
                continue
    return ba, bb
