"""Compare two opened targets (any formats, a live model included): which tensors changed, and how.

Three steps, so that a later version can spread the middle one over
processes or ranks:

1. :func:`plan_diff` pairs the tensors of A and B from their listings alone
   (:func:`modeltui.core.keymatch.match_keys`: names, or a prefix change);
2. :func:`diff_names` -- the unit of work -- turns a list of pairs into a
   list of :class:`~modeltui.core.difference.TensorDiff` (plain, picklable),
   reading one piece of each side at a time;
3. :func:`merge_diff` puts any split of those results back together into a
   :class:`DiffReport`, deterministically (A's order).

:func:`compare_opened` runs the three on the cores of this machine.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from modeltui.core.difference import CHANGED, IDENTICAL, SHAPE, UNCOMPARED, TensorDiff, diff_tensors
from modeltui.core.errors import CheckpointError, ModelTuiError, StatsError, TargetError, first_line
from modeltui.core.keymatch import KeyMapping, Matching, match_keys
from modeltui.core.structure import ModelInfo

__all__ = ["DiffPlan", "DiffReport", "OnlyTensor", "compare_opened", "diff_names", "merge_diff", "plan_diff",
           "CHANGED", "IDENTICAL", "SHAPE", "UNCOMPARED", "TensorDiff"]


@dataclass(frozen=True, slots=True)
class OnlyTensor:
    """A tensor one side has and the other lacks."""

    name: str
    shape: tuple[int, ...] | None
    dtype: str
    # another name of the same tensor on its side that both sides have (a tied alias one save kept and
    # the other stored once, as save_pretrained does with lm_head.weight): not a difference by itself
    tied_to: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape) if self.shape is not None else None, "dtype": self.dtype,
                "tied_to": self.tied_to}


@dataclass
class DiffPlan:
    """What will be compared: the pairs (A name, B name), what only one side has, the key mapping."""

    a: str  # A's label
    b: str
    matching: Matching
    weights: list[int] = field(default_factory=list)  # bytes of both sides per pair (progress)
    only_a: list[OnlyTensor] = field(default_factory=list)
    only_b: list[OnlyTensor] = field(default_factory=list)

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return self.matching.pairs


def _shapes(info: ModelInfo) -> dict[str, Any]:
    return {n: t.shape for n, t in info.tensors.items() if _compared(t)}


def _compared(t) -> bool:
    """Tensors a diff covers: what a save writes (no constants, no non-persistent buffers)."""
    return t.kind in ("parameter", "tensor") or (t.kind == "buffer" and t.persistent)


def plan_diff(a: ModelInfo, b: ModelInfo) -> DiffPlan:
    """Pair A's and B's tensors (their state_dict entries) from the listings; no values are read.

    Raises :class:`TargetError` when they have nothing in common (one line naming a key of each).
    """
    sa, sb = _shapes(a), _shapes(b)
    m = match_keys(sa, sb)
    if not m.pairs and sa and sb:
        ea, eb = next(iter(sa)), next(iter(sb))
        raise TargetError(f"{a.label} and {b.label} have no tensor in common ({len(sa):,} tensors such as '{ea}' "
                          f"against {len(sb):,} such as '{eb}', no prefix change pairs them): nothing to compare")
    weights = [a.tensors[x].nbytes + b.tensors[y].nbytes for x, y in m.pairs]
    matched_a, matched_b = {x for x, _ in m.pairs}, {y for _, y in m.pairs}
    only_a = [_only(a, n, matched_a) for n in m.only_a]
    only_b = [_only(b, n, matched_b) for n in m.only_b]
    return DiffPlan(a.label, b.label, m, weights, only_a, only_b)


def _only(info: ModelInfo, name: str, matched: set[str]) -> OnlyTensor:
    t = info.tensors[name]
    partner = next((o for o in t.group if o != name and o in matched), None)
    return OnlyTensor(name, t.shape, t.dtype, partner)


def diff_names(a, b, pairs: Iterable[tuple[str, str]], *, should_stop: Callable[[], bool] | None = None,
               progress: Callable[[int], None] | None = None) -> list[TensorDiff]:
    """The unit of work: one :class:`TensorDiff` per ``(A name, B name)`` of opened targets ``a`` and ``b``.

    Reads one piece of each side at a time. A tensor torch cannot compute
    with comes back ``uncompared`` with the reason; a file that is corrupt
    or changed on disk raises (:class:`CheckpointError`).
    ``progress(bytes)`` is called after each pair.
    """
    out = []
    for x, y in pairs:
        out.append(diff_pair(a, b, x, y, should_stop=should_stop))
        if progress is not None:
            progress(a.info.tensors[x].nbytes + b.info.tensors[y].nbytes)
    return out


def diff_pair(a, b, x: str, y: str, *, should_stop: Callable[[], bool] | None = None) -> TensorDiff:
    """:func:`diff_tensors` of A's ``x`` and B's ``y``; a tensor torch cannot compute with is ``uncompared``."""
    ta = _read(a, x, "A")
    tb = _read(b, y, "B")
    try:
        return diff_tensors(ta, tb, x, y, should_stop=should_stop)
    except (ModelTuiError, KeyboardInterrupt):
        raise
    except (RuntimeError, NotImplementedError, TypeError, ValueError) as e:
        ia, ib = a.info.tensors[x], b.info.tensors[y]
        return TensorDiff(x, y, UNCOMPARED, ia.shape, ib.shape, ia.dtype, ib.dtype,
                          note=f"torch cannot compare these ({type(e).__name__}: {first_line(e, 160)})")


#: getting a tensor (a view of a mapped file, mostly) is serialised: sources map their files on first use
_GET = threading.Lock()


def _read(opened, name: str, side: str = ""):
    try:
        with _GET:
            return opened.tensor(name)
    except ModelTuiError:
        raise
    except Exception as e:
        where = f"{side}: " if side else ""
        raise CheckpointError(f"{where}cannot read '{name}' ({type(e).__name__}: {first_line(e, 200)})") from None


@dataclass
class DiffReport:
    """Everything ``--diff`` prints: per-tensor differences, what only one side has, the key mapping."""

    a: str
    b: str
    diffs: list[TensorDiff]  # matched tensors, in A's order
    only_a: list[OnlyTensor] = field(default_factory=list)
    only_b: list[OnlyTensor] = field(default_factory=list)
    mapping: KeyMapping | None = None

    @property
    def identical(self) -> bool:
        """Every tensor matched (through the mapping, if any) and bit-identical.

        A name only one side has that is a tied alias of a tensor both have
        (its partner's figures cover it) does not make the two different.
        """
        loose = [t for t in self.only_a + self.only_b if t.tied_to is None]
        return not loose and all(d.status == IDENTICAL for d in self.diffs)

    def counts(self) -> dict[str, int]:
        c = {IDENTICAL: 0, CHANGED: 0, SHAPE: 0, UNCOMPARED: 0}
        for d in self.diffs:
            c[d.status] += 1
        c["only_a"], c["only_b"] = len(self.only_a), len(self.only_b)
        return c

    def by_name(self) -> dict[str, TensorDiff]:
        """A's name -> its difference."""
        return {d.name: d for d in self.diffs}

    def to_json(self) -> dict[str, Any]:
        """The ``--diff --json`` contract (see README)."""
        return {
            "a": self.a, "b": self.b, "identical": self.identical,
            "mapping": self.mapping.to_json() if self.mapping is not None else None,
            "counts": self.counts(),
            "only_a": [t.to_json() for t in self.only_a],
            "only_b": [t.to_json() for t in self.only_b],
            "tensors": [d.to_json() for d in self.diffs],
        }


def merge_diff(plan: DiffPlan, parts: Iterable[Iterable[TensorDiff]]) -> DiffReport:
    """One report from per-tensor results computed in any split (threads, processes, ranks), in A's order.

    Raises :class:`StatsError` when a pair of the plan has no result or two.
    """
    got: dict[tuple[str, str], TensorDiff] = {}
    for part in parts:
        for d in part:
            key = (d.name, d.other)
            if key in got:
                raise StatsError(f"two results for '{d.name}'")
            got[key] = d
    missing = [p for p in plan.pairs if p not in got]
    if missing or len(got) != len(plan.pairs):
        raise StatsError(f"{len(missing):,} pair(s) of the plan have no result (e.g. '{missing[0][0]}')" if missing
                         else "results for tensors the plan does not pair")
    return DiffReport(plan.a, plan.b, [got[p] for p in plan.pairs], plan.only_a, plan.only_b, plan.matching.mapping)


def compare_opened(a, b, *, workers: int = 1, should_stop: Callable[[], bool] | None = None,
                   progress: Callable[[int, int], None] | None = None) -> DiffReport:
    """Plan, compare every pair on ``workers`` threads, merge (see the module docstring).

    ``progress(done_bytes, total_bytes)``; ``should_stop`` cancels (:class:`~modeltui.core.errors.Cancelled`).
    """
    from modeltui.core.workpool import run_items

    plan = plan_diff(a.info, b.info)
    _check_sources(a, b)
    results = run_items(plan.pairs, lambda p, stop: diff_pair(a, b, p[0], p[1], should_stop=stop),
                        weights=plan.weights, workers=workers, should_stop=should_stop, progress=progress)
    return merge_diff(plan, [results])


def _check_sources(*opened) -> None:
    """A file that changed since it was opened is said so before any work starts."""
    for o in opened:
        if o.source is not None:
            o.source.check()
