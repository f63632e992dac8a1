"""A checkpoint's key tree kept as its parsed headers: objects are made when something looks at them.

A frontier checkpoint has ~100k tensors and ~60k key prefixes. Making a
``TensorInfo`` and a ``ModuleInfo`` for each up front cost several times the
JSON parse itself; here the names are sorted once, the subtree counts are a
prefix sum over that order, and a module's children are found by bisecting
(``O(children x log n)``). :class:`LazyTensors` and :class:`LazyModules` are
read-only mappings with the interface of the dicts ``ModelInfo`` holds, so
every consumer works unchanged; iterating them gives the natural order of
:func:`modeltui.core.structure.from_state_dict_entries` (tensors, then child
modules, numbers in numeric order).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Mapping
from itertools import accumulate
from typing import Any, Callable

from modeltui.core.structure import ModelInfo, ModuleInfo, TensorInfo, _last_key

#: the character after "." : names under prefix "p." sort before "p/"
_AFTER_DOT = chr(ord(".") + 1)


class NameTree:
    """The dotted names of a checkpoint as a tree, computed on demand."""

    def __init__(self, numel: dict[str, int]):
        self.names = sorted(numel)
        self.cum = list(accumulate(map(numel.__getitem__, self.names), initial=0))
        self._numel = numel
        self._scans: dict[str, tuple[list[str], list[str]]] = {}
        self._order: tuple[list[str], list[str]] | None = None

    def span(self, path: str) -> tuple[int, int]:
        """The range of ``names`` under module ``path`` (everything for the root)."""
        if not path:
            return 0, len(self.names)
        return bisect_left(self.names, path + "."), bisect_left(self.names, path + _AFTER_DOT)

    def is_module(self, path: str) -> bool:
        if not path:
            return True
        lo, hi = self.span(path)
        return lo < hi

    def scan(self, path: str) -> tuple[list[str], list[str]]:
        """``(child module paths, own tensor names)`` of module ``path``, in natural order."""
        got = self._scans.get(path)
        if got is not None:
            return got
        names = self.names
        lo, hi = self.span(path)
        prefix = path + "." if path else ""
        k = len(prefix)
        children: list[str] = []
        tensors: list[str] = []
        i = lo
        while i < hi:
            n = names[i]
            # at the root a leading "." separates the root ("") from the rest, as rpartition has it
            dot = n.find(".", k if k or n[:1] != "." else 1)
            if dot < 0:
                tensors.append(n)
                i += 1
            else:
                child = n[:dot]
                children.append(child)
                i = bisect_left(names, child + _AFTER_DOT, i + 1, hi)
        if len(children) > 1:
            children.sort(key=_last_key)
        if len(tensors) > 1:
            tensors.sort(key=_last_key)
        got = (children, tensors)
        self._scans[path] = got
        return got

    def order(self) -> tuple[list[str], list[str]]:
        """``(module paths, tensor names)`` depth first: a module, then its tensors' turn, then its children.

        One pass over the names (the whole listing is wanted: ``--json``, a full walk)
        that also fills every module's :meth:`scan`.
        """
        if self._order is None:
            kids: dict[str, list[str]] = {"": []}
            own: dict[str, list[str]] = {"": []}
            for n in self.names:
                mod = n.rpartition(".")[0]
                lst = own.get(mod)
                if lst is None:
                    chain = [mod]  # mod and its unseen ancestors, as rpartition makes them
                    p = mod.rpartition(".")[0]
                    while p not in kids:
                        chain.append(p)
                        p = p.rpartition(".")[0]
                    for c in reversed(chain):
                        kids[p].append(c)
                        kids[c], own[c] = [], []
                        p = c
                    lst = own[mod]
                lst.append(n)
            scans = self._scans
            for p, children in kids.items():
                if len(children) > 1:
                    children.sort(key=_last_key)
                tensors = own[p]
                if len(tensors) > 1:
                    tensors.sort(key=_last_key)
                scans[p] = (children, tensors)
            modules: list[str] = []
            names: list[str] = []
            stack = [""]
            while stack:
                p = stack.pop()
                modules.append(p)
                children, tensors = scans[p]
                names.extend(tensors)
                stack.extend(reversed(children))
            self._order = (modules, names)
        return self._order


class LazyTensors(Mapping):
    """name -> :class:`TensorInfo`, made from the header entry on first access."""

    def __init__(self, tree: NameTree, specs: dict[str, dict], dtype_of: Callable[[str], str], device: str = "cpu"):
        self._tree = tree
        self._specs = specs
        self._dtype_of = dtype_of
        self._device = device
        self._made: dict[str, TensorInfo] = {}
        self.dtype_names: list[str] = []  # sorted, filled by lazy_info from the headers' codes
        self.device_names = [device]

    def __getitem__(self, name: str) -> TensorInfo:
        t = self._made.get(name)
        if t is None:
            spec = self._specs[name]
            mod, _, attr = name.rpartition(".")
            t = TensorInfo(name, mod, attr, "tensor", tuple(spec["shape"]), self._dtype_of(spec["dtype"]), self._device)
            self._made[name] = t
        return t

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __len__(self) -> int:
        return len(self._specs)

    def __iter__(self) -> Iterator[str]:
        return iter(self._tree.order()[1])

    def sorted_names(self) -> list[str]:
        """Every name in string order (its first and last bound every prefix test)."""
        return self._tree.names

    def rows_json(self) -> Iterator[dict[str, Any]]:
        """``TensorInfo.to_json()`` of every tensor without making the objects."""
        specs, dtype_of, device = self._specs, self._dtype_of, self._device
        for n in self._tree.order()[1]:
            s = specs[n]
            yield {"name": n, "kind": "tensor", "shape": s["shape"], "dtype": dtype_of(s["dtype"]), "device": device,
                   "requires_grad": False, "tied_with": [], "tied_count": 0}


class LazyModules(Mapping):
    """path -> :class:`ModuleInfo` of a key prefix, made when it is first looked at."""

    def __init__(self, tree: NameTree, specs: dict[str, dict]):
        self._tree = tree
        self._specs = specs
        self._made: dict[str, ModuleInfo] = {}

    def __getitem__(self, path: str) -> ModuleInfo:
        m = self._made.get(path)
        if m is None:
            if not isinstance(path, str) or not self._tree.is_module(path):
                raise KeyError(path)
            tree = self._tree
            children, tensors = tree.scan(path)
            numel = tree._numel
            own = sum(numel[n] for n in tensors)
            lo, hi = tree.span(path)
            # the root's span holds every name; a module's holds its subtree (its own tensors included)
            m = ModuleInfo(path, "", list(children), list(tensors), tree.cum[hi] - tree.cum[lo], own)
            self._made[path] = m
        return m

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and self._tree.is_module(path)

    def __len__(self) -> int:
        return len(self._tree.order()[0])

    def __iter__(self) -> Iterator[str]:
        return iter(self._tree.order()[0])

    def signature(self, path: str) -> tuple:
        """The subtree of ``path`` as (relative name, shape, dtype code) of its tensors, in string order."""
        tree = self._tree
        lo, hi = tree.span(path)
        k = len(path) + 1
        specs = self._specs
        return tuple((n[k:], tuple(specs[n]["shape"]), specs[n]["dtype"]) for n in tree.names[lo:hi])

    def subtree_counts(self, path: str) -> tuple[int, int]:
        """(modules, tensors) under ``path``, itself included."""
        tree = self._tree
        lo, hi = tree.span(path)
        modules, stack = 0, [path]
        while stack:
            modules += 1
            stack.extend(tree.scan(stack.pop())[0])
        return modules, hi - lo

    def footprint_parts(self, path: str, float_codes: set[str]) -> tuple[int, int, int]:
        """(stored bytes, floating-point elements, bytes of the other tensors) under ``path``."""
        tree = self._tree
        lo, hi = tree.span(path)
        specs, numel = self._specs, tree._numel
        stored = elements = fixed = 0
        for n in tree.names[lo:hi]:
            s = specs[n]
            b, e = s["data_offsets"]
            stored += e - b
            if s["dtype"] in float_codes:
                elements += numel[n]
            else:
                fixed += e - b
        return stored, elements, fixed

    def walk(self) -> Iterator[tuple[str, list[str]]]:
        """``(path, own tensor names)`` of every module in order, without making objects (search)."""
        tree = self._tree
        scans = tree._scans
        for p in tree.order()[0]:
            yield p, scans[p][1]

    def rows_json(self) -> Iterator[dict[str, Any]]:
        """``ModuleInfo.to_json()`` of every module without making the objects."""
        tree = self._tree
        for p in tree.order()[0]:
            lo, hi = tree.span(p)
            yield {"path": p, "type": "", "params": tree.cum[hi] - tree.cum[lo], "children": list(tree.scan(p)[0])}


def lazy_info(label: str, specs: dict[str, dict], numel: dict[str, int], dtype_of: Callable[[str], str],
              codes: set[str], nbytes: int, *, metadata: dict[str, Any] | None = None,
              warnings: list[str] | None = None) -> ModelInfo:
    """A ``ModelInfo`` over parsed headers (no tied names): totals from one pass, everything else on demand."""
    tree = NameTree(numel)
    total = tree.cum[-1]
    info = ModelInfo(label, "state_dict", LazyModules(tree, specs), LazyTensors(tree, specs, dtype_of),  # type: ignore[arg-type]
                     metadata=dict(metadata or {}), warnings=list(warnings or []),
                     total_params=total, trainable_params=total, total_bytes=nbytes)
    info.tensors.dtype_names = sorted({dtype_of(c) for c in codes})  # type: ignore[attr-defined]
    return info
