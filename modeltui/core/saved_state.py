"""What a save writes: the state_dict under its saved keys, a subtree of it, the source's metadata, a container.

Split from :mod:`modeltui.core.saving` (which re-exports these).
"""

from __future__ import annotations

import os
from typing import Any

from modeltui.core.errors import first_line
from modeltui.core.save_checks import TORCH, SaveError
from modeltui.format import visible


def state_for_saving(opened) -> dict[str, Any]:
    """The state_dict of a module target (under the keys its key surgery gave them), or every tensor of a checkpoint."""
    if opened.model is not None:
        sd = module_state_dict(opened.model)
        keys = getattr(opened, "keys", None)
        if not keys:
            return sd
        out: dict[str, Any] = {}
        for k, v in sd.items():
            new = keys.get(k, k)
            if new is None:
                continue
            if new in out:
                raise SaveError(f"two tensors would be saved as '{visible(new)}' (a rename and the model's own name); "
                                "rename one of them; nothing was written")
            out[new] = v
        return out
    return {name: opened.tensor(name) for name in opened.info.tensors}


def extract_keys(sd: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Only the keys under ``prefix`` (``encoder``), with it removed: ``encoder.layers.0.w`` -> ``layers.0.w``."""
    p = prefix.strip().rstrip(".")
    if not p:
        return sd
    out = {k[len(p) + 1:]: v for k, v in sd.items() if k.startswith(p + ".")}
    if not out:
        raise SaveError(f"no key lies under '{visible(p)}', so there is nothing to extract; nothing was written")
    return out


def source_metadata(opened) -> dict[str, str]:
    """The ``__metadata__`` entries of the safetensors files ``opened`` was read from (not its aliases, not format)."""
    from modeltui.core.readers import SafetensorsSource
    from modeltui.core.readers.safetensors import read_header

    source = getattr(opened, "source", None)
    if not isinstance(source, SafetensorsSource):
        return {}
    out: dict[str, str] = {}
    for p in dict.fromkeys(source.files.values()):
        try:
            _, meta = read_header(p)
        except Exception:
            continue
        for k, v in meta.items():
            if k != "format" and k not in source.aliases:
                out.setdefault(k, v)
    return out


def module_state_dict(model) -> dict[str, Any]:
    """``model.state_dict()``, built without recursion when the model nests too deep for it."""
    try:
        return dict(model.state_dict())
    except RecursionError:
        pass
    out: dict[str, Any] = {}
    stack: list[tuple[bool, str, Any]] = [(False, "", model)]
    while stack:
        done, prefix, m = stack.pop()
        if done:  # after the children, as Module.state_dict runs its post-hooks
            for hook in m._state_dict_hooks.values():
                result = hook(m, out, prefix, {})
                if result is not None and not getattr(hook, "_from_public_api", False):
                    out = result
            continue
        for hook in m._state_dict_pre_hooks.values():
            hook(m, prefix, False)
        m._save_to_state_dict(out, prefix, False)
        stack.append((True, prefix, m))
        stack.extend((False, f"{prefix}{name}.", child) for name, child in reversed(m._modules.items()) if child is not None)
    return out


def _container_for(opened, dest: str):
    """The training checkpoint whose other entries a save to ``dest`` keeps, if any.

    The one ``opened`` was read from, or the ``-w`` file when saving back over it.
    """
    if getattr(opened, "container", None) is not None:
        return opened.container
    weights = getattr(opened, "weights", None)
    if weights is None or not dest.endswith(TORCH) or not os.path.isfile(weights.path):
        return None
    try:
        if not os.path.samefile(weights.path, dest):
            return None
    except OSError:
        return None
    import zipfile

    import torch

    from modeltui.core.readers import find_state_dict
    from modeltui.core.readers.containers import Container

    name = visible(os.path.basename(dest))
    try:
        obj = torch.load(weights.path, map_location="cpu", mmap=zipfile.is_zipfile(weights.path), weights_only=True)
        flat, where, _ = find_state_dict(obj)
        c = Container.from_object(weights.path, obj, (where,) if where else (), flat)
    except Exception as e:
        raise SaveError(f"cannot read {name} again to keep its other entries ({type(e).__name__}: {visible(first_line(e, 200))}); "
                        f"save to another file; {name} is unchanged") from None
    return c if c.other_entries() else None
