"""Training checkpoints: weights that sit inside a bigger object.

Lightning's ``.ckpt`` keeps the weights under ``state_dict`` beside ``epoch``,
``global_step``, ``optimizer_states`` and ``hyper_parameters``; other
frameworks use ``{"model": state_dict, "optimizer": ..., "step": ...}``.
Saving back to such a file must keep every other entry exactly as it was, so
the reader keeps the whole object (its tensors memory-mapped, never modified)
in a :class:`Container`, and the saver asks it for a copy with new weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Key = Any  # a dict key (usually str) or a list index


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
