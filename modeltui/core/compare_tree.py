"""A comparison laid over the module tree: a mark for every tensor and module, and rows for what only B has.

Marks: ``=`` identical, ``~`` changed (values, dtype or shape), ``+`` only
here (A), ``−`` only there (B). A module's mark sums up its subtree: ``=``
when everything in it is identical, else the marks of what differs
(``~+``). B's tensors that A lacks are placed, under A's names (the key
mapping undone), in the deepest module of A that holds them. Plain data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from modeltui.core.compare import IDENTICAL, DiffReport
from modeltui.core.structure import ModelInfo

SAME, CHANGED_MARK, HERE, THERE = "=", "~", "+", "−"
ORDER = (CHANGED_MARK, HERE, THERE)


@dataclass(frozen=True, slots=True)
class Ghost:
    """A tensor only B has, shown in A's tree: B's name, and the attribute shown under ``module``."""

    other: str
    module: str
    attr: str
    shape: tuple[int, ...] | None
    dtype: str


@dataclass
class CompareMarks:
    """Per tensor and per module marks of one comparison, and B's extra tensors per module of A."""

    tensors: dict[str, str] = field(default_factory=dict)  # A's tensor name -> mark
    modules: dict[str, str] = field(default_factory=dict)  # module path -> "=" or e.g. "~+"
    ghosts: dict[str, list[Ghost]] = field(default_factory=dict)  # module path -> B-only tensors placed there

    @classmethod
    def build(cls, report: DiffReport, info: ModelInfo) -> CompareMarks:
        out = cls()
        for d in report.diffs:
            if d.name in info.tensors:
                out.tensors[d.name] = SAME if d.status == IDENTICAL else CHANGED_MARK
        for t in report.only_a:
            if t.name in info.tensors:
                out.tensors[t.name] = HERE
        seen: dict[str, set[str]] = {}

        def add(path: str, mark: str) -> None:
            while True:
                marks = seen.setdefault(path, set())
                if mark in marks:  # then every ancestor has it too
                    return
                marks.add(mark)
                if not path:
                    return
                path = path.rpartition(".")[0]

        for name, mark in out.tensors.items():
            add(info.tensors[name].module, mark)
        mapping = report.mapping
        for t in report.only_b:
            as_a = mapping.b_to_a(t.name) if mapping is not None else t.name
            module = _deepest(info, as_a.rpartition(".")[0])
            attr = as_a[len(module) + 1:] if module else as_a
            out.ghosts.setdefault(module, []).append(Ghost(t.name, module, attr, t.shape, t.dtype))
            add(module, THERE)
        for path, marks in seen.items():
            out.modules[path] = SAME if marks == {SAME} else "".join(m for m in ORDER if m in marks)
        return out

    def changed(self, name: str) -> bool:
        """Whether tensor ``name`` is anything but identical (the changed-only filter keeps it)."""
        mark = self.tensors.get(name)
        return mark is not None and mark != SAME

    def module_changed(self, path: str) -> bool:
        mark = self.modules.get(path)
        return bool(mark) and mark != SAME


def _deepest(info: ModelInfo, path: str) -> str:
    """``path`` or its deepest ancestor that is a module of ``info``."""
    while path and path not in info.modules:
        path = path.rpartition(".")[0]
    return path


@dataclass
class Comparison:
    """A comparison the app holds: the report, its marks on A's tree, and the other target, open."""

    report: DiffReport
    marks: CompareMarks
    other: object  # core.targets.Opened of the other target (its tensors are read for the details)
    label: str  # what the other target is called
    log_length: int = 0  # the session's log length when it was made: a longer log means the model changed since
    by_name: dict = field(default_factory=dict)  # A's name -> TensorDiff

    @classmethod
    def make(cls, report: DiffReport, info: ModelInfo, other, label: str, log_length: int = 0) -> Comparison:
        return cls(report, CompareMarks.build(report, info), other, label, log_length, report.by_name())

    def summary(self) -> str:
        """``3 changed, 1 only here, 2 only there, 120 identical``."""
        c = self.report.counts()
        changed = c["changed"] + c["shape"] + c["uncompared"]
        return (f"{changed:,} changed, {c['only_a']:,} only here, {c['only_b']:,} only there, "
                f"{c['identical']:,} identical")
