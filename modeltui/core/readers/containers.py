"""Training-checkpoint containers: find the weights inside a loaded object, and put new ones back.

Training frameworks keep the weights under a key of a bigger object
(Lightning's ``state_dict`` beside ``epoch`` and ``optimizer_states``), or
beside other entries, or in nested dicts, lists and tuples. The search
(:func:`locate_weights`, without recursion) flattens them to dotted names and
remembers each name's chain of keys. Saving back to such a file must keep
every other entry exactly as it was, so the reader keeps the whole object
(its tensors memory-mapped, never modified) in a :class:`Container`, and the
saver asks it for a copy with new weights (:meth:`Container.with_weights`).
"""

from __future__ import annotations

import itertools
import sys
from modeltui.core.tensors import dtype_name
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Key = Any  # a dict key (usually str) or a list index

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
        return f"tensor{list(v.shape)} {dtype_name(v.dtype)}"
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


# ---------------------------------------------------------------- writing back


@dataclass
class Container:
    """A loaded checkpoint object and where its weights are inside it.

    ``weights_key`` is the chain of keys from ``obj`` to the mapping that
    holds the weights (``("state_dict",)``; ``()`` when ``obj`` itself holds
    them beside other entries). ``names`` maps each flat tensor name (dotted,
    as shown) to its chain of keys inside that mapping, for weights stored
    as nested dicts; a flat mapping has ``names[k] == (k,)``.
    """

    path: str
    obj: Any
    weights_key: tuple[Key, ...] = ()
    names: dict[str, tuple[Key, ...]] = field(default_factory=dict)
    trusted: bool = False  # loaded with --trust: the written copy is checked the same way

    @classmethod
    def from_object(cls, path: str, obj: Any, weights_key: tuple[Key, ...], flat: Mapping[str, Any], *, trusted: bool = False) -> Container:
        """The container of ``obj`` whose weights ``flat`` (dotted name -> tensor) sit under ``weights_key``.

        ``flat`` is what the reader found (nested mappings flattened with
        dots, values the very objects inside ``obj``); each name is traced
        back to its chain of keys. Raises ``ValueError`` if one cannot be.
        """
        node = obj
        for k in weights_key:
            node = node[k]
        names: dict[str, tuple[Key, ...]] = {}
        stack: list[tuple[Any, tuple, str]] = [(node, (), "")] if isinstance(node, Mapping) else []
        while stack:
            m, chain, prefix = stack.pop()
            for k, v in m.items():
                dotted = f"{prefix}{k}"
                if dotted in flat and flat[dotted] is v and dotted not in names:
                    names[dotted] = chain + (k,)
                elif isinstance(v, Mapping) and len(chain) < 32:
                    stack.append((v, chain + (k,), dotted + "."))
        lost = [n for n in flat if n not in names]
        if lost:
            raise ValueError(f"'{lost[0]}' was not found inside the checkpoint object")
        return cls(path, obj, tuple(weights_key), names, trusted)

    def other_entries(self) -> list[str]:
        """The names of the entries saved beside the weights (for messages)."""
        if not isinstance(self.obj, Mapping):
            return []
        skip = self.weights_key[0] if self.weights_key else None
        top = {n[0] for n in self.names.values() if n} if not self.weights_key else set()
        return [str(k) for k in self.obj if k != skip and k not in top]

    def weights(self) -> Any:
        """The mapping (or object) that holds the weights."""
        node = self.obj
        for k in self.weights_key:
            node = node[k]
        return node

    def with_weights(self, sd: Mapping[str, Any]) -> Any:
        """A new object like ``obj`` with the weights replaced by ``sd``.

        Every other entry is the same object as before (nothing is copied
        but the dicts along the path to the weights). Tensors missing from
        ``sd`` are dropped; names not in :attr:`names` (a renamed or new
        key) go in at the top of the weights mapping.
        """
        import torch

        if isinstance(self.obj, torch.Tensor):  # a file holding one tensor, listed as "tensor"
            if set(sd) != {"tensor"}:
                raise ValueError("a file that holds one tensor cannot hold other names: save as .safetensors")
            return sd["tensor"]
        by_chain = {chain: name for name, chain in self.names.items()}

        def rebuilt(mapping: Any, sd: Mapping[str, Any]) -> Any:
            # the old structure in its order: tensors replaced (or dropped), other entries kept
            placed: set[str] = set()

            def walk(m: Any, prefix: tuple) -> Any:
                if isinstance(m, (list, tuple)):  # a list of tensors keeps its places: read-only in structure
                    items = []
                    for k, v in enumerate(m):
                        chain = prefix + (k,)
                        if isinstance(v, torch.Tensor) and chain in by_chain:
                            name = by_chain[chain]
                            if name not in sd:
                                raise ValueError(f"'{name}' sits in a list: a list's tensors cannot be dropped")
                            items.append(sd[name])
                            placed.add(name)
                        elif isinstance(v, (Mapping, list, tuple)) and any(c[: len(chain)] == chain for c in by_chain):
                            items.append(walk(v, chain))
                        else:
                            items.append(v)
                    return items if isinstance(m, list) else tuple(items)
                out = type(m)() if isinstance(m, dict) else {}
                for k, v in m.items():
                    chain = prefix + (k,)
                    if isinstance(v, torch.Tensor) and chain in by_chain:
                        name = by_chain[chain]
                        if name in sd:
                            out[k] = sd[name]
                            placed.add(name)
                    elif isinstance(v, (Mapping, list, tuple)) and any(c[: len(chain)] == chain for c in by_chain):
                        out[k] = walk(v, chain)
                    else:
                        out[k] = v
                return out

            new = walk(mapping, ()) if isinstance(mapping, (Mapping, list, tuple)) else {}
            if not isinstance(new, dict):
                extra = [n for n in sd if n not in placed]
                if extra:
                    raise ValueError(f"'{extra[0]}' cannot be added to a checkpoint that is a list of tensors")
                return new
            for name, t in sd.items():
                if name in placed:
                    continue
                chain = self.names.get(name, (name,))
                node = new
                for k in chain[:-1]:
                    nxt = node.get(k)
                    if not isinstance(nxt, dict):
                        nxt = {}
                        node[k] = nxt
                    node = nxt
                node[chain[-1]] = t
            return new

        if not self.weights_key:
            return rebuilt(self.obj, sd)

        def replace(node: Any, chain: tuple[Key, ...]) -> Any:
            head, rest = chain[0], chain[1:]
            if isinstance(node, list):
                copy: Any = list(node)
            elif isinstance(node, tuple):
                copy = list(node)
            else:
                copy = type(node)(node) if isinstance(node, dict) else dict(node)
            copy[head] = replace(node[head], rest) if rest else rebuilt(node[head], sd)
            return tuple(copy) if isinstance(node, tuple) else copy

        return replace(self.obj, self.weights_key)
