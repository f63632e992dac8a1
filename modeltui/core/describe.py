"""Turn a live ``nn.Module`` into a :class:`ModelInfo`.

Walks ``_modules`` itself rather than ``named_modules()`` so a module used at
two places (the book's ``shared`` layer) appears at both paths, and finds
constant tensors: plain tensor attributes that ``state_dict`` leaves out.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from modeltui.core.tensors import dtype_name, is_lazy, tensor_identity
from modeltui.core.structure import ModelInfo, ModuleInfo, TensorInfo, finish

#: characters of a module's ``extra_repr`` kept (a user's may run to megabytes)
MAX_EXTRA_REPR = 4000


class KeyPrefix(nn.Module):
    """A key prefix of a checkpoint without an architecture, turned into a module for editing.

    Its tensors are parameters (so ties, initialisers, edits, casts, moves and
    saving work as for any model) shown as plain checkpoint tensors.
    """

    def forward(self, *args, **kwargs):
        from modeltui.core.errors import ModelTuiError

        raise ModelTuiError("a checkpoint without an architecture cannot run: open the model with -w CKPT")


def module_tensors(module: nn.Module) -> list[tuple[str, torch.Tensor, str, bool]]:
    """Own tensors of a module: ``(attr, tensor, kind, persistent)``."""
    out: list[tuple[str, torch.Tensor, str, bool]] = []
    params = module._parameters
    buffers = module._buffers
    for name, p in params.items():
        if p is not None:
            out.append((name, p, "parameter", True))
    if buffers:
        non_persistent = getattr(module, "_non_persistent_buffers_set", ())
        for name, b in buffers.items():
            if b is not None:
                out.append((name, b, "buffer", name not in non_persistent))
    Tensor, Param = torch.Tensor, nn.Parameter
    for name, v in module.__dict__.items():
        if isinstance(v, Tensor) and not isinstance(v, Param) and name not in buffers and name not in params:
            out.append((name, v, "constant", False))
    return out


def walk_modules(model: nn.Module):
    """Yield ``(path, module)`` in tree order, shared modules at every path.

    A module that contains itself (a cycle) is yielded once per path and not
    descended into again. No recursion, and linear in the depth: a model
    nested thousands deep walks like any other.
    """
    on_path: dict[int, int] = {}  # id -> times on the current path
    stack: list[tuple[str, nn.Module | None, int]] = [("", model, 0)]
    while stack:
        path, mod, leaving = stack.pop()
        if leaving:
            n = on_path[leaving] - 1
            if n:
                on_path[leaving] = n
            else:
                del on_path[leaving]
            continue
        yield path, mod
        key = id(mod)
        on_path[key] = on_path.get(key, 0) + 1
        stack.append((path, None, key))
        kids = [(k, m) for k, m in mod._modules.items() if m is not None]
        for k, m in reversed(kids):
            if id(m) in on_path:
                continue
            stack.append((f"{path}.{k}" if path else k, m, 0))


def from_module(model: nn.Module, label: str) -> tuple[ModelInfo, dict[str, torch.Tensor]]:
    """Describe ``model``; also return its tensors by full name (for values)."""
    modules: dict[str, ModuleInfo] = {}
    tensors: dict[str, TensorInfo] = {}
    by_name: dict[str, torch.Tensor] = {}
    identity: dict[str, Any] = {}
    paths_of: dict[int, list[str]] = {}
    lazy_count = 0
    for path, mod in walk_modules(model):
        try:
            extra = mod.extra_repr()
        except Exception as e:  # a user's extra_repr may fail on odd states
            extra = f"<extra_repr failed: {type(e).__name__}>"
        if not isinstance(extra, str):
            extra = str(extra)
        if len(extra) > MAX_EXTRA_REPR:
            extra = extra[:MAX_EXTRA_REPR] + f"… ({len(extra):,} characters in all)"
        bare = isinstance(mod, KeyPrefix)
        info = ModuleInfo(path, "" if bare else type(mod).__name__, extra_repr="" if bare else extra)
        modules[path] = info
        paths_of.setdefault(id(mod), []).append(path)
        if path:
            parent = path.rsplit(".", 1)[0] if "." in path else ""
            modules[parent].children.append(path)
        for attr, t, kind, persistent in module_tensors(mod):
            name = f"{path}.{attr}" if path else attr
            uninit = is_lazy(t)
            if uninit:
                lazy_count += 1
                info.lazy = True
            grad = t.grad if kind == "parameter" and not uninit else None
            if bare and kind == "parameter":
                kind = "tensor"
            tensors[name] = TensorInfo(
                name=name,
                module=path,
                attr=attr,
                kind=kind,
                shape=None if uninit else tuple(t.shape),
                dtype=dtype_name(t.dtype),
                device=str(t.device),
                requires_grad=bool(t.requires_grad) if kind == "parameter" else False,
                has_grad=grad is not None and not bare,
                persistent=persistent,
            )
            info.tensors.append(name)
            by_name[name] = t
            identity[name] = tensor_identity(t)
    for paths in paths_of.values():
        if len(paths) > 1:
            for p in paths:
                modules[p].shared_with = [o for o in paths if o != p]
    bare_root = isinstance(model, KeyPrefix)
    result = ModelInfo(label, "state_dict" if bare_root else "module", modules, tensors)
    finish(result, identity, ("parameter", "tensor") if bare_root else ("parameter",))
    if lazy_count:
        result.warnings.append(
            f"{lazy_count} lazy parameter(s) are uninitialised until a forward pass (f in the app, -i/--input-shape on the command line)"
        )
    return result, by_name
