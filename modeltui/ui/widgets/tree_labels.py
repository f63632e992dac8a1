"""Labels of the module tree's rows: a module, a tensor, a compared-only tensor, a group of blocks, a page."""

from __future__ import annotations

import math

from rich.text import Text

from modeltui.core.compare_tree import Ghost
from modeltui.core.groups import Group
from modeltui.core.structure import ModelInfo, ModuleInfo, TensorInfo
from modeltui.format import fmt_count, fmt_shape, visible

TIED, FROZEN, LAZY, BAD = "⇄", "❄", "?", "⚠"
NAME_LIMIT = 80  # a name longer than this is cut (the full name is in the panels)


def compact_shape(shape) -> str:
    """``(2, 10, 32)`` -> ``"2×10×32"``: output shapes in the tree take little room."""
    if shape is None:
        return "?"
    return "×".join(str(d) for d in shape) if len(shape) else "scalar"


#: compare marks (see core.compare_tree) and their styles
MARK_STYLES = {"=": "green", "~": "bold yellow", "+": "bold cyan", "−": "bold red"}


def _compare_mark(t: Text, mark: str) -> None:
    """``~+ `` before a label: what a comparison found (one style per mark)."""
    for ch in mark:
        t.append(ch, style=MARK_STYLES.get(ch, ""))
    t.append(" ")


def module_label(m: ModuleInfo, info: ModelInfo, bad: set[str], outputs: dict | None = None,
                 nonfinite: bool = False, mark: str = "") -> Text:
    """``name Class 1.2K ⇄❄?⚠ → 2×10``: marks, and the last forward's output shape (red when it held NaN/Inf;
    a compare mark first)."""
    t = Text()
    if mark:
        _compare_mark(t, mark)
    t.append(visible(m.name or "(root)", limit=NAME_LIMIT), style="bold")
    if m.type:
        t.append(f" {visible(m.type, limit=NAME_LIMIT)}", style="cyan")
    t.append(f" {fmt_count(m.params)}", style="dim")
    marks = ""
    if m.shared_with or any(info.tensors[n].tied_count for n in m.tensors):
        marks += TIED
    if any(_frozen(info.tensors[n]) for n in m.tensors):
        marks += FROZEN
    if m.lazy:
        marks += LAZY
    if nonfinite or (bad and any(n in bad for n in m.tensors)):
        marks += BAD
    if marks:
        t.append(f" {marks}", style="bold yellow")
    shapes = (outputs or {}).get(m.path)
    if shapes is not None:
        t.append(" → " + ", ".join(compact_shape(s) for s in shapes[:2]) + ("…" if len(shapes) > 2 else ""),
                 style="bold red" if nonfinite else "magenta")
    return t


def _frozen(x: TensorInfo) -> bool:
    return x.kind == "parameter" and not x.requires_grad and x.shape is not None


def grad_text(norm: float) -> str:
    """A grad norm in few characters: ``∇0.0123``."""
    return f"∇{norm:.3g}"


def tensor_label(x: TensorInfo, bad: set[str], grad_norm: float | None = None, saved_keys: dict | None = None,
                 mark: str = "") -> Text:
    """``.weight [8, 4] float32 ∇0.012`` with the same marks as modules, its grad's norm after a backward,
    ``→ key`` / ``✗ not saved`` after key surgery (a compare mark first)."""
    t = Text()
    if mark:
        _compare_mark(t, mark)
    style = {"parameter": "", "buffer": "italic", "constant": "italic magenta", "tensor": ""}.get(x.kind, "")
    t.append(f".{visible(x.attr, limit=NAME_LIMIT)}", style=style or "white")
    t.append(f" {fmt_shape(x.shape)}", style="green")
    t.append(f" {x.dtype}", style="dim")
    if x.kind in ("buffer", "constant"):
        t.append(f" {x.kind}", style="dim italic")
    marks = ""
    if x.tied_count:
        marks += TIED
    if _frozen(x):
        marks += FROZEN
    if x.shape is None:
        marks += LAZY
    if x.name in bad:
        marks += BAD
    if marks:
        t.append(f" {marks}", style="bold yellow")
    if grad_norm is not None and x.has_grad:
        t.append(f" {grad_text(grad_norm)}", style="blue" if math.isfinite(grad_norm) else "bold red")
    if saved_keys and x.name in saved_keys:
        key = saved_keys[x.name]
        t.append(" ✗ not saved" if key is None else f" → {visible(key, limit=NAME_LIMIT)}", style="bold magenta")
    return t


def ghost_label(g: Ghost) -> Text:
    """``− .weight [8, 4] float32 only there``: a tensor only the compared target has."""
    t = Text()
    _compare_mark(t, "−")
    t.append(f".{visible(g.attr, limit=NAME_LIMIT)}", style="red")
    t.append(f" {fmt_shape(g.shape)}", style="green")
    t.append(f" {visible(g.dtype)}", style="dim")
    t.append(" only there", style="dim italic")
    return t


def group_label(g: Group, info: ModelInfo) -> Text:
    """``experts.[0-255] ×256 11.3B (each 44.0M)``: a run of identical numbered blocks."""
    t = Text()
    t.append(visible(g.label, limit=NAME_LIMIT), style="bold")
    t.append(f" ×{len(g.members):,}", style="bold magenta")
    t.append(f" {fmt_count(g.params)}", style="dim")
    t.append(f" (each {fmt_count(g.member_params)})", style="dim italic")
    return t


def _page_label(count: int, later: bool) -> Text:
    arrow, where = ("▼", "more") if later else ("▲", "earlier")
    return Text(f"{arrow} {count:,} {where} (enter shows them)", style="dim italic")
