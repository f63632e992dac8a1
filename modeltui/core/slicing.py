"""A small, safe grammar for tensor slices: ``[0, :10]``, ``[..., -1]``, ``[::2, 3]``.

Parsed by hand (never ``eval``); indices are checked against the shape so a
bad slice gets a clear message instead of an IndexError deep in torch.
"""

from __future__ import annotations

import re

from modeltui.core.errors import ModelTuiError


class SliceError(ModelTuiError):
    """The slice text is malformed or out of bounds for the tensor."""


_INT = re.compile(r"^[+-]?\d+$")


def parse_slice(text: str) -> tuple:
    """Parse ``"[0, :10]"`` (brackets optional) into a tuple of int/slice/Ellipsis."""
    s = text.strip()
    if s.startswith("["):
        if not s.endswith("]"):
            raise SliceError("missing closing ']'")
        s = s[1:-1]
    elif s.endswith("]"):
        raise SliceError("missing opening '['")
    s = s.strip()
    if not s:
        return ()
    out: list = []
    for raw in s.split(","):
        item = raw.strip()
        if item == "...":
            if Ellipsis in out:
                raise SliceError("only one '...' is allowed")
            out.append(Ellipsis)
        elif ":" in item:
            parts = item.split(":")
            if len(parts) > 3:
                raise SliceError(f"'{item}' has too many ':'")
            vals = []
            for p in parts:
                p = p.strip()
                if p == "":
                    vals.append(None)
                elif _INT.match(p):
                    vals.append(int(p))
                else:
                    raise SliceError(f"'{p}' in '{item}' is not an integer")
            while len(vals) < 3:
                vals.append(None)
            if vals[2] is not None and vals[2] <= 0:
                raise SliceError(f"step must be positive in '{item}'")
            out.append(slice(*vals))
        elif _INT.match(item):
            out.append(int(item))
        elif item == "":
            raise SliceError("empty index between commas")
        else:
            raise SliceError(f"'{item}' is not an index (use integers, a:b:c or ...)")
    return tuple(out)


def check_slice(index: tuple, shape: tuple[int, ...]) -> None:
    """Raise :class:`SliceError` if ``index`` does not fit ``shape``."""
    n_ell = sum(1 for i in index if i is Ellipsis)
    n_dims = len(index) - n_ell
    if n_dims > len(shape):
        raise SliceError(f"too many indices: {n_dims} for a {len(shape)}-d tensor of shape {list(shape)}")
    # position of each explicit index in the shape
    dims: list[int] = []
    if n_ell:
        k = index.index(Ellipsis)
        dims = list(range(k)) + [None] + list(range(len(shape) - (len(index) - k - 1), len(shape)))  # type: ignore[list-item]
    else:
        dims = list(range(len(index)))
    for item, d in zip(index, dims):
        if isinstance(item, int):
            size = shape[d]
            if not -size <= item < size:
                raise SliceError(f"index {item} is out of range for dimension {d} of size {size}")


def default_slice(shape: tuple[int, ...] | None) -> str:
    """A preview slice that fits a screen: ``[:8, :8]``-style leading block."""
    if not shape:
        return ""
    if len(shape) == 1:
        return ""
    lead = ", ".join("0" for _ in shape[:-2])
    return "[" + (lead + ", " if lead else "") + ":, :]"
