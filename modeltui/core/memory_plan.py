"""Memory planning: what a model or a subtree takes as stored and in other dtypes, and where accelerate would put it.

The bytes come from the listing alone (shapes and dtypes), so a 671B
checkpoint is planned without reading a byte of its data. Floating-point
tensors are the ones a cast or a quantization changes; integer and boolean
tensors (indices, masks) keep their stored size in every column. ``int4``
counts half a byte per element: the weights alone, without the scales a
real int4 format adds.

The device map is accelerate's own ``infer_auto_device_map`` (the function
``from_pretrained(device_map="auto")`` uses), run on a module whose tensors
live on the ``meta`` device; accelerate is an optional extra
(``pip install modeltui[plan]``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from modeltui.core.errors import ModelTuiError
from modeltui.core.structure import ITEMSIZE, ModelInfo

#: the dtypes a plan shows, bytes per element
TARGETS: dict[str, float] = {"float32": 4, "bfloat16": 2, "float8": 1, "int4": 0.5}
SHORT = {"float32": "f32", "bfloat16": "bf16", "float8": "fp8", "int4": "int4"}  # for narrow panes

_FLOAT_CODES = {"F64", "F32", "F16", "BF16", "F8_E5M2", "F8_E4M3", "F8_E5M2FNUZ", "F8_E4M3FNUZ", "F8_E8M0", "F4", "C64"}


def _floating(dtype: str) -> bool:
    return dtype.startswith(("float", "bfloat", "complex"))


@dataclass(frozen=True)
class Footprint:
    """The bytes of one subtree: as stored, and its floating-point elements apart from the rest."""

    path: str
    stored: int
    float_elements: int  # elements a cast changes
    fixed: int  # bytes of integer / boolean tensors, the same in every dtype

    def as_dtype(self, name: str) -> int:
        return int(self.float_elements * TARGETS[name]) + self.fixed


def footprint(info: ModelInfo, path: str = "") -> Footprint:
    """The bytes of module ``path``'s subtree (everything for ``""``); a tensor tied under two names counts once."""
    fast = getattr(info.modules, "footprint_parts", None)  # a lazy listing: from the parsed headers
    if fast is not None:
        stored, elements, fixed = fast(path, _FLOAT_CODES)
        return Footprint(path, stored, elements, fixed)
    stored = elements = fixed = 0
    seen: set[str] = set()
    stack = [path]
    while stack:
        m = info.modules[stack.pop()]
        for n in m.tensors:
            t = info.tensors[n]
            if t.shape is None or t.kind == "constant" or n in seen:
                continue
            seen.add(n)
            seen.update(t.some_tied(t.tied_count))
            b = int(t.numel * ITEMSIZE.get(t.dtype, 4))
            stored += b
            if _floating(t.dtype):
                elements += t.numel
            else:
                fixed += b
        stack.extend(m.children)
    return Footprint(path, stored, elements, fixed)


# ---------------------------------------------------------------- device maps

_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_max_memory(text: str) -> dict[int | str, int]:
    """``cuda:0=80GiB,cuda:1=80GiB,cpu=512GiB`` -> ``{0: 85899345920, 1: ..., "cpu": ...}`` (accelerate's keys)."""
    out: dict[int | str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        dev, eq, size = part.partition("=")
        dev = dev.strip().lower()
        if not eq:
            raise ModelTuiError(f"--max-memory: '{part}' is not DEVICE=SIZE (e.g. cuda:0=80GiB)")
        m = _SIZE.match(size)
        if m is None:
            raise ModelTuiError(f"--max-memory: '{size.strip()}' is not a size (e.g. 80GiB, 512GB, 1.5TiB)")
        nbytes = int(float(m.group(1)) * _UNITS[(m.group(2) or "B").lower()])
        if dev in ("cpu", "disk"):
            key: int | str = dev
        elif re.fullmatch(r"(cuda:)?[0-9]+", dev):
            key = int(dev.rpartition(":")[2])
        else:
            raise ModelTuiError(f"--max-memory: unknown device '{dev}' (cuda:N, cpu or disk)")
        if key in out:
            raise ModelTuiError(f"--max-memory: {dev} is given twice")
        out[key] = nbytes
    if not out:
        raise ModelTuiError("--max-memory: no device given (e.g. cuda:0=80GiB,cpu=512GiB)")
    return out


def meta_module(info: ModelInfo):
    """The listing as a module of ``meta`` tensors (no memory): a checkpoint without an architecture, for planning."""
    import torch
    from torch import nn

    from modeltui.core.editable import build_key_tree

    items = []
    for name in info.tensors:
        t = info.tensors[name]
        if t.shape is None:
            continue
        dtype = getattr(torch, t.dtype, None)
        if not isinstance(dtype, torch.dtype):
            dtype = torch.uint8
        items.append((name, nn.Parameter(torch.empty(t.shape, dtype=dtype, device="meta"), requires_grad=False)))
    return build_key_tree(items)


def device_map(model, max_memory: dict[int | str, int], *, no_split: list[str] | None = None) -> dict[str, int | str]:
    """accelerate's ``infer_auto_device_map`` for ``model`` within ``max_memory`` (module path -> device)."""
    try:
        from accelerate import infer_auto_device_map
    except ImportError:
        raise ModelTuiError("--max-memory needs accelerate: pip install 'modeltui[plan]' (or pip install accelerate)") from None
    if no_split is None:
        no_split = list(getattr(model, "_no_split_modules", None) or [])
    return dict(infer_auto_device_map(model, max_memory=dict(max_memory), no_split_module_classes=no_split))


def device_name(d: int | str) -> str:
    return f"cuda:{d}" if isinstance(d, int) else str(d)


def placement_runs(dmap: dict[str, int | str]) -> list[tuple[str, str, int]]:
    """Consecutive entries of ``dmap`` on one device as ``(first, last, count)``, in order."""
    runs: list[tuple[str, str, int]] = []
    last_dev = None
    for path, dev in sorted(dmap.items(), key=lambda kv: _natural(kv[0])):
        name = device_name(dev)
        if runs and name == last_dev:
            first, _, count = runs[-1]
            runs[-1] = (first, path, count + 1)
        else:
            runs.append((path, path, 1))
            last_dev = name
    return runs


def _natural(path: str) -> tuple:
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in path.split("."))


def device_totals(dmap: dict[str, int | str], info: ModelInfo) -> dict[str, int]:
    """Stored bytes each device gets under ``dmap``."""
    out: dict[str, int] = {}
    for path, dev in dmap.items():
        b = footprint(info, path).stored if path in info.modules else _tensor_bytes(info, path)
        out[device_name(dev)] = out.get(device_name(dev), 0) + b
    return out


def _tensor_bytes(info: ModelInfo, name: str) -> int:
    t = info.tensors.get(name)
    return int(t.numel * ITEMSIZE.get(t.dtype, 4)) if t is not None and t.shape is not None else 0


@dataclass
class DevicePlan:
    """A device map and what it was asked for."""

    max_memory: dict[int | str, int]
    device_map: dict[str, int | str]
    per_device: dict[str, int]  # stored bytes each device gets


def plan_devices(opened, spec: str) -> DevicePlan:
    """The device map of ``opened`` (its model, or a meta module of its listing) within ``spec`` (``--max-memory``)."""
    import logging

    max_memory = parse_max_memory(spec)
    model = opened.model if opened.model is not None else meta_module(opened.info)
    quiet = logging.getLogger("accelerate")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "Device 0 is not available": planning for GPUs this machine need not have
    try:
        dmap = device_map(model, max_memory)
    finally:
        quiet.setLevel(level)
    return DevicePlan(max_memory, dmap, device_totals(dmap, opened.info))
