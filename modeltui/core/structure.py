"""The module tree model: modules, tensors, tied groups and totals.

Plain data only, no torch at import time: a checkpoint header becomes a
``ModelInfo`` without loading torch (time to first paint), and a live
``nn.Module`` becomes one through :func:`modeltui.core.from_module`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Literal

# bytes per element, by torch dtype name (without "torch.")
ITEMSIZE: dict[str, float] = {
    "bool": 1, "uint8": 1, "int8": 1, "float8_e5m2": 1, "float8_e4m3fn": 1,
    "float8_e5m2fnuz": 1, "float8_e4m3fnuz": 1, "float8_e8m0fnu": 1,
    "int16": 2, "uint16": 2, "float16": 2, "bfloat16": 2,
    "int32": 4, "uint32": 4, "float32": 4, "complex32": 4,
    "int64": 8, "uint64": 8, "float64": 8, "complex64": 8, "complex128": 16,
    "float4_e2m1fn_x2": 1, "qint8": 1, "quint8": 1, "qint32": 4,
}


#: what a tensor is to its module: an ``nn.Parameter``, a registered buffer, a plain
#: tensor attribute (not in the state_dict), or an entry of a checkpoint without an architecture
TensorKind = Literal["parameter", "buffer", "constant", "tensor"]
#: a live ``nn.Module``, or a checkpoint's keys without an architecture
ModelKind = Literal["module", "state_dict"]

# ``--json`` lists at most this many other names of a tied tensor; ``tied_count`` has them all
TIED_JSON_MAX = 16


@dataclass(slots=True)
class TensorInfo:
    """One tensor of the model, as the tree and the tables show it."""

    name: str  # full dotted name, e.g. "encoder.0.weight"
    module: str  # path of the owning module ("" for the root)
    attr: str  # name inside its module, e.g. "weight"
    kind: TensorKind
    shape: tuple[int, ...] | None  # None: an uninitialised lazy parameter
    dtype: str
    device: str = "cpu"
    requires_grad: bool = False
    has_grad: bool = False
    persistent: bool = True  # False for non-persistent buffers (not in state_dict)
    # every name of the same tensor, this one included: one tuple shared by the
    # whole group (empty when untied), so N names of one tensor cost O(N), not O(N²)
    group: tuple[str, ...] = ()

    @property
    def tied_with(self) -> list[str]:
        """The other names of the same tensor (O(group size) per call: prefer ``tied_count``)."""
        return [o for o in self.group if o != self.name]

    @property
    def tied_count(self) -> int:
        """How many other names share this tensor."""
        return len(self.group) - 1 if self.group else 0

    def some_tied(self, limit: int) -> list[str]:
        """At most ``limit`` other names of the same tensor, in group order."""
        out: list[str] = []
        for o in self.group:
            if len(out) >= limit:
                break
            if o != self.name:
                out.append(o)
        return out

    @property
    def numel(self) -> int:
        """Number of elements (0 for an uninitialised lazy parameter)."""
        if self.shape is None:
            return 0
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        """Bytes of the data (not counting storage shared with others)."""
        return int(self.numel * ITEMSIZE.get(self.dtype, 4))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "shape": list(self.shape) if self.shape is not None else None,
            "dtype": self.dtype,
            "device": self.device,
            "requires_grad": self.requires_grad,
            "tied_with": self.some_tied(TIED_JSON_MAX),
            "tied_count": self.tied_count,
        }


@dataclass(slots=True)
class ModuleInfo:
    """One node of the module tree."""

    path: str  # "" for the root
    type: str  # class name; "" for a key prefix of a bare state_dict
    children: list[str] = field(default_factory=list)  # child paths, in order
    tensors: list[str] = field(default_factory=list)  # names of its own tensors
    params: int = 0  # unique parameter elements in its subtree
    own_params: int = 0  # unique parameter elements of its own
    extra_repr: str = ""
    lazy: bool = False  # has uninitialised lazy parameters
    shared_with: list[str] = field(default_factory=list)  # other paths of the same module object

    @property
    def name(self) -> str:
        return self.path.rsplit(".", 1)[-1] if self.path else ""

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "type": self.type, "params": self.params, "children": list(self.children)}


@dataclass
class ModelInfo:
    """Everything the screen and ``--json`` show about an opened model or checkpoint."""

    label: str
    kind: ModelKind
    modules: dict[str, ModuleInfo]
    tensors: dict[str, TensorInfo]
    tied_groups: list[list[str]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    total_params: int = 0
    trainable_params: int = 0
    total_bytes: int = 0
    # an architecture's key surgery: state_dict name -> the name a save writes (None: not saved)
    saved_keys: dict[str, str | None] = field(default_factory=dict)

    @property
    def root(self) -> ModuleInfo:
        return self.modules[""]

    def dtypes(self) -> list[str]:
        known = getattr(self.tensors, "dtype_names", None)  # a lazy listing knows them from its headers
        return list(known) if known is not None else sorted({t.dtype for t in self.tensors.values()})

    def devices(self) -> list[str]:
        known = getattr(self.tensors, "device_names", None)
        return list(known) if known is not None else sorted({t.device for t in self.tensors.values()})

    def to_json(self) -> dict[str, Any]:
        """The stable ``--json`` contract (see README)."""
        return {
            "target": self.label,
            "kind": self.kind,
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "total_bytes": self.total_bytes,
            "modules": list(_json_rows(self.modules)),
            "tensors": list(_json_rows(self.tensors)),
            "metadata": self.metadata,
            "warnings": list(self.warnings),
        }


def _json_rows(items) -> Iterable[dict[str, Any]]:
    """The ``to_json()`` of every value; a lazy mapping gives them without making its objects."""
    rows = getattr(items, "rows_json", None)
    return rows() if rows is not None else (x.to_json() for x in items.values())


def _last_key(path: str) -> tuple:
    last = path.rpartition(".")[2]
    return (0, int(last), "") if last.isdigit() else (1, 0, last)


def from_state_dict_entries(
    label: str,
    entries: Iterable[tuple[str, tuple[int, ...], str, str]],
    *,
    aliases: dict[str, str] | None = None,
    storage_keys: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    warnings: list[str] | None = None,
    sort: bool = False,
) -> ModelInfo:
    """Build the key tree of a checkpoint without an architecture.

    ``entries`` yields ``(name, shape, dtype, device)``. ``aliases`` maps a
    name that was deduplicated on save to the name that holds its data;
    ``storage_keys`` maps names to an identity of their storage, so tensors
    saved sharing memory come out as one tied group. ``sort`` orders children
    naturally (for formats whose key order is alphabetical, like safetensors).
    """
    root = ModuleInfo("", "")
    modules: dict[str, ModuleInfo] = {"": root}
    tensors: dict[str, TensorInfo] = {}

    def module_for(path: str) -> ModuleInfo:
        m = modules.get(path)
        if m is None:
            parent = module_for(path.rpartition(".")[0])
            m = ModuleInfo(path, "", [], [])
            modules[path] = m
            parent.children.append(path)
        return m

    last_path, last_mod = None, root
    for name, shape, dtype, device in entries:
        mod_path, _, attr = name.rpartition(".")
        tensors[name] = TensorInfo(name, mod_path, attr, "tensor", shape, dtype, device, False, False, True)
        if mod_path != last_path:
            last_path, last_mod = mod_path, module_for(mod_path)
        last_mod.tensors.append(name)

    keys: dict[str, Any] | None = dict(storage_keys) if storage_keys else None
    for alias, real in (aliases or {}).items():
        if real in tensors and alias not in tensors:
            src = tensors[real]
            mod_path, _, attr = alias.rpartition(".")
            tensors[alias] = TensorInfo(alias, mod_path, attr, "tensor", src.shape, src.dtype, src.device)
            module_for(mod_path).tensors.append(alias)
            if keys is None:
                keys = {}
            keys[alias] = keys.get(real, ("name", real))
            keys.setdefault(real, ("name", real))
    if sort:
        for m in modules.values():
            if len(m.children) > 1:
                m.children.sort(key=_last_key)
            if len(m.tensors) > 1:
                m.tensors.sort(key=_last_key)
        ordered: dict[str, ModuleInfo] = {}
        stack = [""]
        while stack:
            m = modules[stack.pop()]
            ordered[m.path] = m
            stack.extend(reversed(m.children))
        modules = ordered
        tensors = {n: tensors[n] for m in modules.values() for n in m.tensors}
    info = ModelInfo(label, "state_dict", modules, tensors, metadata=dict(metadata or {}), warnings=list(warnings or []))
    finish(info, keys, counted_kinds=("tensor",))
    return info


def finish(info: ModelInfo, identity: dict[str, Any] | None, counted_kinds: tuple[str, ...] = ("parameter",)) -> None:
    """Fill tied groups, per-module counts and totals from tensor identities.

    ``identity`` maps tensor names to a hashable key that is equal for
    tensors that are the same object or view the same memory; a name it
    lacks (or ``None`` for all) is its own identity. Tied tensors count once
    in every total.
    """
    if not identity:
        _finish_distinct(info, counted_kinds)
        return
    identity = {n: identity.get(n, ("name", n)) for n in info.tensors}
    groups: dict[Any, list[str]] = {}
    for name in info.tensors:
        groups.setdefault(identity[name], []).append(name)
    info.tied_groups = [g for g in groups.values() if len(g) > 1]
    for g in info.tied_groups:
        shared = tuple(g)
        for n in g:
            info.tensors[n].group = shared

    counted = {n for n, t in info.tensors.items() if t.kind in counted_kinds}
    seen: set[Any] = set()
    seen_bytes: set[Any] = set()
    total = trainable = nbytes = 0
    for name, t in info.tensors.items():
        key = identity[name]
        if key not in seen_bytes:
            seen_bytes.add(key)
            nbytes += t.nbytes
        if name in counted and key not in seen:
            seen.add(key)
            total += t.numel
            if t.requires_grad or t.kind == "tensor":
                trainable += t.numel
    info.total_params, info.trainable_params, info.total_bytes = total, trainable, nbytes

    # Subtree counts: plain sums unless some counted tensor appears twice.
    has_ties = any(n in counted for g in info.tied_groups for n in g)
    order = list(info.modules)  # parents come before their children
    if not has_ties:
        for path in reversed(order):
            m = info.modules[path]
            m.own_params = sum(info.tensors[n].numel for n in m.tensors if n in counted)
            m.params = m.own_params + sum(info.modules[c].params for c in m.children)
        return
    numel = {identity[n]: info.tensors[n].numel for n in counted}
    subtree: dict[str, set[Any]] = {}
    for path in reversed(order):
        m = info.modules[path]
        own = {identity[n] for n in m.tensors if n in counted}
        m.own_params = sum(numel[k] for k in own)
        keys = set(own)
        for c in m.children:
            keys |= subtree[c]
        subtree[path] = keys
        m.params = sum(numel[k] for k in keys)


def _finish_distinct(info: ModelInfo, counted_kinds: tuple[str, ...]) -> None:
    """:func:`finish` when no two tensors share memory (the fast path)."""
    info.tied_groups = []
    total = trainable = nbytes = 0
    own: dict[str, int] = {}
    for t in info.tensors.values():
        shape = t.shape
        n = 1
        if shape is None:
            n = 0
        else:
            for d in shape:
                n *= d
        nbytes += int(n * ITEMSIZE.get(t.dtype, 4))
        if t.kind in counted_kinds:
            total += n
            if t.requires_grad or t.kind == "tensor":
                trainable += n
            own[t.module] = own.get(t.module, 0) + n
    info.total_params, info.trainable_params, info.total_bytes = total, trainable, nbytes
    modules = info.modules
    for path in reversed(list(modules)):
        m = modules[path]
        m.own_params = own.get(path, 0)
        m.params = m.own_params + sum(modules[c].params for c in m.children)
