"""Undo records: what a tensor object or a module attribute held, and putting it back.

A :class:`TensorState` keeps a tensor object's data object (its storage,
shape, strides and dtype, alive) and, when that is not enough, a copy of its
values; module slots are the entries of a module's ``_parameters``,
``_buffers``, ``_modules`` and plain attributes. :func:`_put` and
:func:`_put_slots` restore them and return what they replaced, so undo and
redo are the same operation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from modeltui.core.tensors import same_bits

_MISSING = object()  # a slot that did not exist
_DICTS = ("_parameters", "_buffers", "_modules")


@dataclass
class TensorState:
    """What tensor object ``t`` held: its data object and, when that is not enough, its values."""

    t: Any
    data: Any  # t.detach() when recorded: keeps the storage, shape, strides and dtype
    values: Any = None  # a copy of the values (None: ``data`` itself still holds them)
    requires_grad: bool = False
    grad: Any = None

    @property
    def nbytes(self) -> int:
        n = self.values.numel() * self.values.element_size() if self.values is not None else 0
        if _data_key(self.t) != _data_key(self.data):  # the old storage is kept alive by this record
            n += self.data.numel() * self.data.element_size()
        return n


def _data_key(t) -> tuple:
    """Identity of the data a tensor object holds now (storage, offset, layout, dtype, device)."""
    try:
        ptr = t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):
        ptr = None
    try:
        offset, stride = t.storage_offset(), tuple(t.stride())
    except (RuntimeError, NotImplementedError):
        offset, stride = None, None
    return (ptr, offset, tuple(t.shape), stride, t.dtype, t.device)


def _record(t) -> TensorState:
    data = t.detach()
    return TensorState(t, data, data.clone(), bool(t.requires_grad), getattr(t, "grad", None) if t.is_leaf else None)


def _settle(s: TensorState, prune: bool) -> TensorState | None:
    """After a change: drop what the record does not need; None when ``s.t`` is unchanged (and ``prune``)."""
    t = s.t
    grad = t.grad if t.is_leaf else None
    if _data_key(t) == _data_key(s.data):
        if prune and t.requires_grad == s.requires_grad and grad is s.grad and same_bits(t.detach(), s.values):
            return None
        return s
    if same_bits(s.data, s.values):
        s.values = None  # the old storage was not written: swapping it back restores the values
    return s


def _restorable(s: TensorState) -> bool:
    import torch

    t = s.t
    return t.layout == torch.strided and s.data.layout == torch.strided and torch._has_compatible_shallow_copy_type(t, s.data)


def _put(s: TensorState) -> TensorState:
    """Make ``s.t`` hold ``s``'s data, values, requires_grad and grad; returns the state it replaced."""
    t = s.t
    now = t.detach()
    back = TensorState(t, now, None, bool(t.requires_grad), t.grad if t.is_leaf else None)
    if not s.requires_grad and t.requires_grad:
        t.requires_grad_(False)
    if t.device != s.data.device:
        # moved to another device since (moves are not undo steps): restore the values there
        src = s.values if s.values is not None else s.data
        if tuple(t.shape) == tuple(src.shape) and t.dtype == src.dtype:
            back.values = now.clone()
            t.copy_(src)
        else:
            t.data = src.to(t.device)
    elif _data_key(t) != _data_key(s.data):
        t.data = s.data
        if s.values is not None:
            t.copy_(s.values)
    elif s.values is not None:
        back.values = now.clone()
        t.copy_(s.values)
    if s.requires_grad and not t.requires_grad:
        t.requires_grad_(True)
    if t.is_leaf and t.grad is not s.grad:
        t.grad = s.grad
    return back


# ---------------------------------------------------------------- module slots


def _snapshot_slots(modules: Iterable[Any]) -> list[tuple[Any, str, dict]]:
    """``(module, where, shallow copy)`` of every attribute mapping of every module under ``modules``."""
    out: list[tuple[Any, str, dict]] = []
    seen: set[int] = set()
    stack = list(modules)
    while stack:
        m = stack.pop()
        if id(m) in seen:
            continue
        seen.add(id(m))
        out.append((m, "__dict__", dict(vars(m))))
        for where in _DICTS:
            d = vars(m).get(where)
            if isinstance(d, dict):
                out.append((m, where, dict(d)))
        out.append((m, "_non_persistent", {k: True for k in vars(m).get("_non_persistent_buffers_set", ())}))
        stack.extend(c for c in vars(m).get("_modules", {}).values() if c is not None)
    return out


def _slot_tensors(slots) -> list[Any]:
    import torch

    out, seen = [], set()
    for _, where, d in slots:
        if where == "_modules" or where == "_non_persistent":
            continue
        for v in d.values():
            if isinstance(v, torch.Tensor) and id(v) not in seen:
                seen.add(id(v))
                out.append(v)
    return out


def _mapping(module, where: str):
    if where == "__dict__":
        return vars(module)
    if where == "_non_persistent":
        return None
    return vars(module).get(where)


def _changed_slots(slots) -> list[tuple[Any, str, Any, Any]]:
    """The entries that differ from the snapshot: ``(module, where, key, object before)``."""
    out = []
    for m, where, old in slots:
        if where == "_non_persistent":
            now = set(vars(m).get("_non_persistent_buffers_set", ()))
            if now != set(old):
                out.append((m, where, None, frozenset(old)))
            continue
        d = _mapping(m, where)
        if d is None:
            continue
        for k in set(old) | set(d):
            if d.get(k, _MISSING) is not old.get(k, _MISSING):
                out.append((m, where, k, old.get(k, _MISSING)))
    return out


def _put_slots(slots) -> list[tuple[Any, str, Any, Any]]:
    """Put back each slot's object; returns the slots holding what was there."""
    back = []
    # plain attributes first: a rebound ``_parameters`` dict must be back before its entries
    for m, where, key, obj in sorted(slots, key=lambda s: s[1] != "__dict__"):
        if where == "_non_persistent":
            current = vars(m).setdefault("_non_persistent_buffers_set", set())
            back.append((m, where, None, frozenset(current)))
            current.clear()
            current.update(obj)
            continue
        d = _mapping(m, where)
        back.append((m, where, key, d.get(key, _MISSING)))
        if obj is _MISSING:
            d.pop(key, None)
        else:
            d[key] = obj
    return back
