"""Device names: validate what the user typed and list what torch sees."""

from __future__ import annotations

from dataclasses import dataclass

from modeltui.core.errors import TargetError


@dataclass(slots=True)
class DeviceInfo:
    name: str  # "cpu", "cuda:0", "mps", "meta"
    description: str
    free_bytes: int | None = None
    total_bytes: int | None = None


def resolve_device(spec: str):
    """Return a ``torch.device`` for ``spec``, or raise a clear TargetError."""
    import torch

    try:
        dev = torch.device(spec)
    except (RuntimeError, ValueError):
        raise TargetError(f"unknown device '{spec}' (expected cpu, cuda, cuda:N, mps or meta)") from None
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
