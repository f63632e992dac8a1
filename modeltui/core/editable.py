"""Make a checkpoint without an architecture editable.

The key tree becomes a tree of :class:`KeyPrefix` modules whose tensors are
parameters, so the session, ties, initialisers, value edits, casts, moves and
saving work on it exactly as on a model. Tensors the file shares (safetensors
aliases, storage shared in a ``.pt``) become one Parameter. Nothing is copied
up front: ``.pt`` tensors are already memory-mapped copy-on-write, and
safetensors files are mapped the same way; edits never touch the file.
"""

from __future__ import annotations

from modeltui.core.errors import ModelTuiError


class NotEditable(ModelTuiError):
    """The checkpoint's keys cannot be laid out as a module tree."""


def make_editable(opened) -> None:
    """Give a bare checkpoint ``opened`` a module (in place); no-op for a model."""
    if opened.model is not None:
        return
    if opened.source is None:
        raise NotEditable("this target has nothing to edit")
    import torch
    from torch import nn

    from modeltui.core.describe import from_module

    opened.source.check()  # a file truncated or rewritten since it was opened cannot be edited
    info = opened.info
    names = list(info.tensors)
    values = {n: opened.source.get(n) for n in names}  # views of the file, nothing copied
    group_of = {n: g[0] for g in info.tied_groups for n in g}
    params: dict[str, nn.Parameter] = {}
    items = []
    for name in names:
        first = group_of.get(name, name)
        p = params.get(first)
        if p is None:
            t = values[name]
            if not isinstance(t, torch.Tensor):
                raise NotEditable(f"'{name}' is not a tensor")
            p = nn.Parameter(t, requires_grad=False)
            params[first] = p
        items.append((name, p))
    root = build_key_tree(items)
    new, tensors = from_module(root, info.label)
    new.metadata = info.metadata
    new.warnings = info.warnings
    opened.info, opened.tensors, opened.model = new, tensors, root


def build_key_tree(items):
    """A tree of :class:`KeyPrefix` modules holding each ``(dotted name, Parameter)`` of ``items``, in order.

    One Parameter under several names stays one object (tied). Raises
    :class:`NotEditable` for names that cannot form a tree.
    """
    from modeltui.core.describe import KeyPrefix

    root = KeyPrefix()
    for name, p in items:
        parts = name.split(".")
        if any(part == "" for part in parts):
            raise NotEditable(f"key '{name}' has an empty part; this checkpoint cannot be edited as a tree")
        mod = root
        for i, part in enumerate(parts[:-1]):
            if part in mod._parameters:
                raise NotEditable(f"'{'.'.join(parts[:i + 1])}' is both a tensor and a prefix of '{name}'; cannot edit this checkpoint")
            child = mod._modules.get(part)
            if child is None:
                child = KeyPrefix()
                mod._modules[part] = child
            mod = child
        attr = parts[-1]
        if attr in mod._modules:
            raise NotEditable(f"'{name}' is both a tensor and a prefix of other keys; cannot edit this checkpoint")
        mod._parameters[attr] = p
    return root


def is_bare(opened) -> bool:
    """True for a checkpoint without an architecture (editable or not yet)."""
    if opened.model is None:
        return True  # (and torch is not imported for it)
    from modeltui.core.describe import KeyPrefix

    return isinstance(opened.model, KeyPrefix)
