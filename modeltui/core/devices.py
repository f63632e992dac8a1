"""Device names: validate what the user typed and list what torch sees."""

from __future__ import annotations

import re
from dataclasses import dataclass

from modeltui.core.errors import TargetError
from modeltui.format import visible

# torch's device-string grammar: a type, then an optional index without leading zeros
_DEVICE_NAME = re.compile(r"[a-z_]+(:(0|[1-9][0-9]*))?")


@dataclass(slots=True)
class DeviceInfo:
    name: str  # "cpu", "cuda:0", "mps", "meta"
    description: str
    free_bytes: int | None = None
    total_bytes: int | None = None


def _unknown(spec: str) -> TargetError:
    return TargetError(f"unknown device '{visible(spec)}' (expected cpu, cuda, cuda:N, mps or meta)")


def check_device_name(spec: str) -> None:
    """Raise a clear TargetError for a device name torch cannot parse (no torch import: the CLI checks it first).

    Whether the device exists here is for :func:`resolve_device`, which applies this same check.
    """
    if not _DEVICE_NAME.fullmatch(spec):
        raise _unknown(spec)


def resolve_device(spec: str):
    """Return a ``torch.device`` for ``spec``, or raise a clear TargetError."""
    check_device_name(spec)
    import torch

    try:
        dev = torch.device(spec)
    except (RuntimeError, ValueError):
        raise _unknown(spec) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise TargetError(f"device '{spec}' is not available: torch sees no CUDA GPU here")
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise TargetError(f"device '{spec}' is not available: torch sees {n} CUDA GPU(s) (cuda:0..cuda:{n - 1})")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise TargetError(f"device '{spec}' is not available: this torch has no working MPS backend")
    elif dev.type not in ("cpu", "meta"):
        if not getattr(getattr(torch, dev.type, None), "is_available", lambda: False)():
            raise TargetError(f"device '{spec}' is not available here")
    return dev


def list_devices() -> list[DeviceInfo]:
    """The devices torch sees, with names and free memory where known."""
    import torch

    out = [DeviceInfo("cpu", "CPU")]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            try:
                free, total = torch.cuda.mem_get_info(i)
            except Exception:
                free = total = None
            out.append(DeviceInfo(f"cuda:{i}", torch.cuda.get_device_name(i), free, total))
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        out.append(DeviceInfo("mps", "Apple GPU (MPS)"))
    out.append(DeviceInfo("meta", "structure only, no memory"))
    return out
