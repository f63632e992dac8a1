"""The layers view of a forward (and backward) run: one row per module that ran, in execution order.

Shared by the app's layers screen, ``--summary`` and the ``"forward"``
object of ``--json``, so the three can never disagree. Plain data: no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from modeltui.core.activations import ActivationStats, _num

if TYPE_CHECKING:
    from modeltui.core.forward import ForwardResult


@dataclass(slots=True)
class LayerRow:
    """One module of a run: where it ran in order, what it output, its grads' norm."""

    index: int  # position in execution order (when it first output)
    path: str
    type: str
    shapes: list[tuple[int, ...]]
    stats: ActivationStats | None  # over its whole output (every tensor, every call)
    outputs: list[ActivationStats] = field(default_factory=list)  # per output tensor, last call
    grad_norm: float | None = None  # over the grads of its subtree's parameters (after a backward)
    ms: float = 0.0
    calls: int = 1
    leaf: bool = True  # no module below it ran (a layer, not a container)

    @property
    def nonfinite(self) -> int:
        return (self.stats.nan + self.stats.inf) if self.stats is not None else 0


def layer_rows(result: ForwardResult) -> list[LayerRow]:
    """The run's modules in execution order (modules that never ran, such as a ModuleList, are left out)."""
    inner: set[str] = set()  # paths with a module below them that ran
    for path in result.order:
        p = path
        while p:
            p = p.rpartition(".")[0]
            if p in inner:
                break
            inner.add(p)
    rows = []
    for i, path in enumerate(result.order):
        rec = result.records[path]
        rows.append(LayerRow(i, path, rec.type, list(rec.shapes), rec.summary, list(rec.outputs),
                             result.module_grad_norms.get(path), rec.ms, rec.calls, leaf=path not in inner))
    return rows


def _figure(get: Callable[[ActivationStats], Any]) -> Callable[[LayerRow], float]:
    def key(row: LayerRow) -> float:
        v = get(row.stats) if row.stats is not None else None
        return -math.inf if v is None else float(v)
    return key


#: sort keys of the layers table: name -> (title, key of a row)
SORTS: dict[str, tuple[str, Callable[[LayerRow], Any]]] = {
    "order": ("order", lambda r: r.index),
    "std": ("std", _figure(lambda s: s.std)),
    "mean": ("mean", _figure(lambda s: s.mean)),
    "zeros": ("zero fraction", _figure(lambda s: s.zero_fraction)),
    "nonfinite": ("NaN/Inf", lambda r: r.nonfinite),
    "grad": ("grad norm", lambda r: -math.inf if r.grad_norm is None else r.grad_norm),
    "time": ("time", lambda r: r.ms),
    "module": ("module", lambda r: r.path),
}


def sort_rows(rows: list[LayerRow], by: str = "order", reverse: bool | None = None) -> list[LayerRow]:
    """``rows`` sorted by one of :data:`SORTS`; figures largest first unless ``reverse`` says otherwise."""
    _, key = SORTS[by]
    if reverse is None:
        reverse = by not in ("order", "module")
    return sorted(rows, key=key, reverse=reverse)


def pair_rows(now: list[LayerRow], before: list[LayerRow]) -> list[tuple[LayerRow, LayerRow | None]]:
    """Each row of the latest run with the row of the same module in the run before (None if it did not run)."""
    earlier = {r.path: r for r in before}
    return [(r, earlier.get(r.path)) for r in now]


def forward_json(result: ForwardResult) -> dict[str, Any]:
    """The ``"forward"`` object of ``--json`` (see README)."""
    modules = []
    for row in layer_rows(result):
        s = row.stats
        modules.append({
            "path": row.path, "type": row.type, "output_shapes": [list(x) for x in row.shapes],
            "mean": _num(s.mean) if s else None, "std": _num(s.std) if s else None,
            "min": _num(s.min) if s else None, "max": _num(s.max) if s else None,
            "zero_fraction": _num(s.zero_fraction) if s else None,
            "nan": s.nan if s else 0, "inf": s.inf if s else 0, "ms": round(row.ms, 4),
            "calls": row.calls, "bytes": s.bytes if s else sum(o.bytes for o in row.outputs),
            "grad_norm": _num(row.grad_norm), "outputs": [o.to_json() for o in row.outputs],
        })
    return {
        "inputs": [str(s) for s in result.inputs],
        "loss": _num(result.loss),
        "backward": result.loss_kind,
        "accumulated": result.accumulated if result.loss_kind else None,
        "first_nonfinite": result.first_nonfinite,
        "modules": modules,
    }
