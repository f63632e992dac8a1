"""Repeated blocks: numbered siblings with identical structure, shown as one group.

A frontier model is the same block many times over (``layers.3`` … ``layers.60``,
``experts.0`` … ``experts.255``). Siblings whose last name is a number and whose
subtrees hold the same tensors (relative name, shape, dtype; the same module
classes) collapse into a :class:`Group`; a member that differs ends the run, so
it shows on its own between the groups around it (:attr:`Grouping.odd`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from modeltui.core.structure import ModelInfo

MIN_GROUP = 3  # members a run needs to be shown as a group (two in a row read fine as they are)


@dataclass(frozen=True)
class Group:
    """A run of numbered siblings with the same structure."""

    parent: str
    members: tuple[str, ...]  # module paths, in order
    params: int  # of all the members together
    member_params: int  # of one member

    @property
    def first(self) -> str:
        return self.members[0]

    @property
    def label(self) -> str:
        """``experts.[0-255]``: the family (the parent's last name) and the numbers it holds."""
        family = self.parent.rpartition(".")[2]
        return f"{family}.[{index_ranges(self.members)}]" if family else f"[{index_ranges(self.members)}]"


@dataclass
class Grouping:
    """A module's children with runs collapsed: each row a child path or a :class:`Group`."""

    rows: list[str | Group] = field(default_factory=list)
    odd: set[str] = field(default_factory=set)  # numbered children that differ from their grouped siblings

    def group_of(self, path: str) -> Group | None:
        for r in self.rows:
            if isinstance(r, Group) and path in r.members:
                return r
        return None


def index_ranges(members, limit: int = 40) -> str:
    """``0-2,5,7-9`` from the last names of ``members`` (numbers), cut with ``…`` past ``limit`` characters."""
    nums = [int(m.rpartition(".")[2]) for m in members]
    parts: list[str] = []
    start = prev = nums[0]
    for n in nums[1:] + [None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    text = ",".join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def signature(info: ModelInfo, path: str) -> tuple:
    """What makes two subtrees the same block: their tensors (relative name, shape, dtype) and module classes."""
    fast = getattr(info.modules, "signature", None)
    if fast is not None:  # a lazy listing: straight from the parsed headers
        return fast(path)
    k = len(path) + 1
    out: list = []
    stack = [path]
    while stack:
        p = stack.pop()
        m = info.modules[p]
        out.append((p[k:], m.type))
        for n in m.tensors:
            t = info.tensors[n]
            out.append((n[k:], t.shape, t.dtype, t.kind))
        stack.extend(reversed(m.children))
    return tuple(out)


def group_children(info: ModelInfo, path: str, min_group: int = MIN_GROUP) -> Grouping:
    """The children of module ``path`` with runs of identical numbered siblings collapsed."""
    m = info.modules[path]
    out = Grouping()
    run: list[str] = []
    head: tuple | None = None
    numbered: list[str] = []

    def flush() -> None:
        if len(run) >= min_group:
            one = info.modules[run[0]].params
            out.rows.append(Group(path, tuple(run), sum(info.modules[p].params for p in run), one))
        else:
            out.rows.extend(run)
        run.clear()

    sigs: dict[str, tuple] = {}
    for c in m.children:
        if not c.rpartition(".")[2].isdigit():
            flush()
            head = None
            out.rows.append(c)
            continue
        numbered.append(c)
        sig = sigs[c] = signature(info, c)
        if run and sig == head:
            run.append(c)
            continue
        flush()
        run.append(c)
        head = sig
    flush()
    if any(isinstance(r, Group) for r in out.rows):
        shared = {sigs[r.first] for r in out.rows if isinstance(r, Group)}
        out.odd = {c for c in numbered if sigs[c] not in shared}  # unlike every group (not merely a short run)
    return out
