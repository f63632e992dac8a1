"""Find the weights inside a loaded checkpoint object, without recursion.

Training frameworks keep the weights under a key of a bigger object
(Lightning's ``state_dict`` beside ``epoch`` and ``optimizer_states``), or
beside other entries, or in nested dicts, lists and tuples. The search
flattens them to dotted names and remembers each name's chain of keys, so a
save can put new weights back where they were.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: how many levels of dicts / lists the search for tensors goes down
MAX_NESTING = 16
#: containers and items the search looks at before it gives up (a hostile object can be huge)
MAX_VISITS = 2_000_000

# Keys under which training frameworks keep the weights, most likely first.
_WEIGHT_KEYS = (
    "state_dict", "model_state_dict", "model", "module", "net", "network",
    "weights", "params", "model_ema", "ema", "ema_model", "state",
)
_NOT_WEIGHTS = ("optim", "scheduler", "scaler", "lr_")


@dataclass
class FoundWeights:
    """Where :func:`locate_weights` found the tensors of a loaded object."""

    flat: dict[str, Any]  # dotted name -> tensor
    key: tuple = ()  # chain of keys from the object to the weights; () for the object itself
    names: dict[str, tuple] = field(default_factory=dict)  # dotted name -> chain inside the weights
    metadata: dict[str, Any] = field(default_factory=dict)  # the other entries, summarised
    too_deep: bool = False  # some entries nest deeper than MAX_NESTING and were not searched
    clashes: int = 0  # tensors whose dotted name another tensor already had
    cut_short: bool = False  # the search stopped after MAX_VISITS items


def locate_weights(obj: Any) -> FoundWeights:
    """Find the weights in a loaded checkpoint object.

    Looks under the usual keys first (``state_dict``, ``model``...), then for
    the largest nested mapping or list, then at tensors stored directly
    beside other entries. Nested dicts, lists and tuples are flattened with
    dots (``layers.0.weight``); the other entries of a training checkpoint
    (epoch, optimizer state, hyper-parameters) become metadata.
    """
    import torch

    if isinstance(obj, torch.Tensor):
        return FoundWeights({"tensor": obj}, (), {"tensor": ()})
    if isinstance(obj, (list, tuple)):
        return _found(obj, (), {})
    if not isinstance(obj, Mapping):
        return FoundWeights({}, metadata={"object": summarize(obj)})
    best: FoundWeights | None = None
    deep = False
    for k in _WEIGHT_KEYS:
        v = obj.get(k)
        if isinstance(v, (Mapping, list, tuple)):
            cand = _found(v, (k,), {})
            deep = deep or cand.too_deep
            if cand.flat:
                best = cand
                break
    if best is None:
        for k, v in obj.items():
            if isinstance(v, (Mapping, list, tuple)) and not _not_weights(k):
                cand = _found(v, (k,), {})
                deep = deep or cand.too_deep
                if cand.flat and (best is None or len(cand.flat) > len(best.flat)):
                    best = cand
    direct = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if best is not None and len(best.flat) >= len(direct):
        best.metadata = {str(k): summarize(v) for k, v in obj.items() if k != best.key[0]}
        return best
    if direct:
        metadata = {str(k): summarize(v) for k, v in obj.items() if not isinstance(v, torch.Tensor)}
        flat: dict[str, Any] = {}
        names: dict[str, tuple] = {}
        clashes = 0
        for k, v in direct.items():
            if str(k) in flat:
                clashes += 1
                continue
            flat[str(k)], names[str(k)] = v, (k,)
        return FoundWeights(flat, (), names, metadata, clashes=clashes)
    return FoundWeights({}, metadata={str(k): summarize(v) for k, v in obj.items()}, too_deep=deep)


def find_state_dict(obj: Any) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """``(flat name -> tensor, key where found, metadata)``: :func:`locate_weights` in short."""
    found = locate_weights(obj)
    return found.flat, ".".join(map(str, found.key)), found.metadata


def _not_weights(key: Any) -> bool:
    low = str(key).lower()
    return any(w in low for w in _NOT_WEIGHTS)


def _items(node: Any):
    return iter(node.items()) if isinstance(node, Mapping) else iter(enumerate(node))


def _found(node: Any, key: tuple, metadata: dict) -> FoundWeights:
    """Flatten the tensors under ``node`` (dicts, lists, tuples), without recursion.

    Each container is walked once (a pickle can share or nest one in itself),
    at most MAX_NESTING levels down and MAX_VISITS items in all.
    """
    import torch

    Tensor = torch.Tensor
    out = FoundWeights({}, key, {}, metadata)
    flat, names = out.flat, out.names
    seen = {id(node)}
    stack = [(_items(node), "", (), 0)]
    visits = 0
    while stack:
        items, prefix, chain, depth = stack[-1]
        try:
            k, v = next(items)
        except StopIteration:
            stack.pop()
            continue
        visits += 1
        if visits > MAX_VISITS:
            out.cut_short = True
            break
        if isinstance(v, Tensor):
            name = f"{prefix}{k}"
            if name in flat:
                out.clashes += 1
            else:
                flat[name] = v
                names[name] = chain + (k,)
        elif isinstance(v, (Mapping, list, tuple)) and id(v) not in seen and not _not_weights(k):
            seen.add(id(v))
            if depth + 1 >= MAX_NESTING:
                out.too_deep = out.too_deep or len(v) > 0
            else:
                stack.append((_items(v), f"{prefix}{k}.", chain + (k,), depth + 1))
    return out


def summarize(v: Any, depth: int = 0) -> Any:
    """A JSON-safe, bounded summary of a metadata value.

    Needs no torch: a tensor can only be here when torch is already loaded.
    """
    torch = sys.modules.get("torch")
    if v is None or isinstance(v, (bool, int)):
        return v
    if isinstance(v, float):
        return v if v == v and v not in (float("inf"), float("-inf")) else str(v)
    if isinstance(v, str):
        return v if len(v) <= 200 else v[:200] + "…"
    if torch is not None and isinstance(v, torch.Tensor):
        if v.numel() == 1 and not v.is_meta:
            try:
                return summarize(v.item(), depth)
            except Exception:
                pass
        return f"tensor{list(v.shape)} {str(v.dtype).removeprefix('torch.')}"
    if isinstance(v, Mapping):
        if depth >= 2:
            return f"{{… {len(v)} keys}}"
        out = {str(k): summarize(x, depth + 1) for k, x in itertools.islice(v.items(), 50)}
        if len(v) > 50:
            out["…"] = f"{len(v) - 50} more keys"
        return out
    if isinstance(v, (list, tuple)):
        if len(v) <= 10 and depth < 2:
            return [summarize(x, depth + 1) for x in v]
        return f"{type(v).__name__} of {len(v)} items"
    return f"<{type(v).__name__}>"
